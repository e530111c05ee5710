/**
 * One read buffer per thread for the synchronous scan passes (transcript.ts,
 * session.ts hashedFile). A fresh 1 MiB buffer per file added up to 30-40 MB
 * of dead ArrayBuffers per backup worker thread between GCs (bench peak RSS
 * over 200 MB). Safe to share because every user reads, hashes and scans the
 * bytes synchronously and keeps no view of them (copies what it keeps) before
 * it returns or awaits.
 */

const SIZE = 1 << 20;
let buffer: Buffer | undefined;

/** A view of the thread's scratch buffer, `size` bytes (1 to 1 MiB); valid until the caller next yields. */
export function scratch(size: number): Buffer {
  buffer ??= Buffer.allocUnsafe(SIZE);
  return buffer.subarray(0, Math.min(SIZE, Math.max(1, size)));
}
