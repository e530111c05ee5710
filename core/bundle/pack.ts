import { createHash, type Hash } from "node:crypto";
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { Readable } from "node:stream";
import { CcbError } from "../errors.js";
import { type FileIdentity, fileIdentity, sameFile } from "../file-identity.js";
import { MANIFEST_NAME } from "./manifest.js";
import { END_OF_ARCHIVE, fileHeader, padding } from "./tar-header.js";

/** A file to pack: read `size` bytes from `source` (or take `content`) and check they hash to `sha256`. */
export interface PackFile {
  path: string;
  size: number;
  sha256: string;
  source?: string | undefined;
  content?: Buffer | undefined;
  /**
   * The file as it was when `sha256` was computed. If it still looks the same
   * (inode, size, mtime) it is not hashed a second time while packing.
   */
  hashedAt?: FileIdentity | undefined;
  /**
   * The file's `size` bytes already compressed, as whole zstd frames, made from exactly the
   * bytes that were hashed (push compresses the transcript while it scans it). Used by the
   * zstd blob encoder only; every other writer reads `source`.
   */
  compressed?: Buffer[] | undefined;
}

/** A file's data as zstd frames made earlier (PackFile.compressed), in place of its bytes. */
export interface CompressedData {
  frames: Buffer[];
  size: number;
}

/** Bytes read per file read: large enough that per-chunk stream costs vanish. */
export const READ_SIZE = 1 << 20;
const HEADER_MODE = 0o600;

/**
 * The tar stream of a bundle: the manifest first, then each file exactly as the
 * manifest lists it. Files are read a second time here (the first pass hashed
 * them). A file whose inode, size and mtime are what they were when it was
 * hashed is sent as is; any other file is hashed again as it is sent, and if
 * its bytes changed in between, packing fails rather than ship a bundle whose
 * manifest lies. (Transcripts being appended to keep their hashed prefix, so
 * they pass.)
 */
export function packBundle(manifestJson: Buffer, files: PackFile[]): Readable {
  // Without `precompressed`, every part is a Buffer.
  const chunks = tarParts(manifestJson, files, undefined, false) as Generator<Buffer>;
  return Readable.from(chunks, { objectMode: false, highWaterMark: 4 << 20 });
}

/**
 * The same tar, as a synchronous generator. With `readBuffer`, file bytes are
 * read into it and yielded as views of it: the caller must be done with each
 * chunk before it asks for the next (the blob encoder is: zstd copies its
 * input), and the run allocates no read buffers at all. With `precompressed`,
 * a file that has `compressed` frames yields them (as CompressedData) in place
 * of its data; the header and padding around it are as always, so the
 * decompressed stream is the same tar byte for byte.
 */
export function* tarParts(
  manifestJson: Buffer,
  files: PackFile[],
  readBuffer: Buffer | undefined,
  precompressed: boolean,
): Generator<Buffer | CompressedData> {
  const mtime = Math.floor(Date.now() / 1000);
  const header = (name: string, size: number) => fileHeader({ name, size, mode: HEADER_MODE, mtime });
  yield Buffer.concat([header(MANIFEST_NAME, manifestJson.length), manifestJson, padding(manifestJson.length)]);
  for (const file of files) {
    if (file.content !== undefined || file.size === 0) {
      const content = file.content ?? Buffer.alloc(0);
      checkHash(file, createHash("sha256").update(content).digest("hex"));
      yield Buffer.concat([header(file.path, content.length), content, padding(content.length)]);
      continue;
    }
    yield header(file.path, file.size);
    if (precompressed && file.compressed) yield { frames: file.compressed, size: file.size };
    else yield* fileChunks(file, readBuffer);
    const pad = padding(file.size);
    if (pad.length > 0) yield pad;
  }
  yield END_OF_ARCHIVE;
}

/**
 * The first `file.size` bytes of the file, checked against `file.sha256` unless stat shows it untouched.
 *
 * Synchronous fs calls on purpose: a config dir is thousands of small files in
 * the page cache, and with fs/promises each open/fstat/read/close is a
 * thread-pool round trip; those waits, one file after another, kept the
 * pipeline idle more than half the time (bench/stages.ts). A sync pread of at
 * most 1 MiB blocks the event loop for well under a millisecond.
 */
function* fileChunks(file: PackFile, readBuffer: Buffer | undefined): Generator<Buffer> {
  let fd: number;
  try {
    fd = openSync(file.source!, "r");
  } catch (err) {
    throw changed(file, err);
  }
  try {
    const before = fileIdentity(fstatSync(fd));
    const trusted = file.hashedAt !== undefined && sameFile(before, file.hashedAt);
    const hash: Hash | undefined = trusted ? undefined : createHash("sha256");
    for (let position = 0; position < file.size; ) {
      const want = Math.min(readBuffer?.length ?? READ_SIZE, file.size - position);
      // Without readBuffer, a fresh buffer per chunk: the stream may hold it until the compressor has taken it.
      const buffer = readBuffer ? readBuffer.subarray(0, want) : Buffer.allocUnsafe(want);
      if (readFully(fd, buffer, position) !== want) throw changed(file);
      hash?.update(buffer);
      position += want;
      yield buffer;
    }
    if (hash) {
      checkHash(file, hash.digest("hex"));
      return;
    }
    // Trusted and sent without hashing: if it was written to while we read it, hash what is there now.
    if (!sameFile(fileIdentity(fstatSync(fd)), before)) checkHash(file, hashPrefix(fd, file.size));
  } finally {
    closeSync(fd);
  }
}

function readFully(fd: number, buffer: Buffer, position: number): number {
  let done = 0;
  while (done < buffer.length) {
    const n = readSync(fd, buffer, done, buffer.length - done, position + done);
    if (n === 0) break;
    done += n;
  }
  return done;
}

function hashPrefix(fd: number, size: number): string {
  const hash = createHash("sha256");
  const buffer = Buffer.allocUnsafe(Math.min(READ_SIZE, size));
  for (let position = 0; position < size; ) {
    const n = readFully(fd, buffer.subarray(0, Math.min(buffer.length, size - position)), position);
    if (n === 0) break;
    hash.update(buffer.subarray(0, n));
    position += n;
  }
  return hash.digest("hex");
}

function checkHash(file: PackFile, actual: string): void {
  if (actual !== file.sha256) throw changed(file);
}

function changed(file: PackFile, cause?: unknown): CcbError {
  return new CcbError(`${file.path} changed while it was being packed`, 1, {
    hint: "run the command again (Claude Code rewrote the file meanwhile)",
    cause,
  });
}
