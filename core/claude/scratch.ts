/** Bytes per read of the synchronous read loops (scans, packing): see below. */
export const READ_CHUNK = 128 << 10;

/**
 * One read buffer per thread for the synchronous scan passes (transcript.ts,
 * session.ts hashedFile) and blob encoding (bundle/blob-encoder.ts). A fresh 1 MiB buffer per file added up to 30-40 MB
 * of dead ArrayBuffers per backup worker thread between GCs (bench peak RSS
 * over 200 MB). Safe to share because every user reads, hashes and scans the
 * bytes synchronously and keeps no view of them (copies what it keeps) before
 * it returns or awaits.
 *
 * 128 KiB because the reads that fill it, and the hashing and scanning that
 * follow, stay in the core's cache: reading the 303 MB bench corpus from the
 * page cache took 56 ms into a 128 KiB buffer and 160-190 ms into a 256 KiB
 * or 1 MiB one (2-core EPYC, 1 MiB L2), all of the difference kernel time.
 */

let buffer: Buffer | undefined;

/** A view of the thread's scratch buffer, `size` bytes (1 to READ_CHUNK); valid until the caller next yields. */
export function scratch(size: number): Buffer {
  buffer ??= Buffer.allocUnsafe(READ_CHUNK);
  return buffer.subarray(0, Math.min(READ_CHUNK, Math.max(1, size)));
}
