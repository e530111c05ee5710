import { randomBytes } from "node:crypto";
import { closeSync, fstatSync, fsync, mkdirSync, openSync, readSync, renameSync, utimesSync, writeSync } from "node:fs";
import { copyFile, type FileHandle, link, mkdir, rename, rm, stat } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { errnoCode } from "../errors.js";
import type { Remapper } from "./remap.js";

/** File helpers for restoring: streamed comparison, streamed line rewriting, atomic writes. */

const fsyncAsync = promisify(fsync);

export type Comparison = "identical" | "local-prefix" | "incoming-prefix" | "diverged";

/** Bytes compared per step (two module buffers, reused: only the synchronous compareFiles uses them). */
const COMPARE_CHUNK = 256 << 10;
let compareBuffers: [Buffer, Buffer] | undefined;

/**
 * How `local` relates to `incoming`: equal, one a prefix of the other (appends), or different.
 * Either side may be an open handle (the caller keeps it open and closes it).
 *
 * Synchronous reads: the files are in the page cache (staged ones just written), and through
 * fs/promises each open, fstat, read and close was a threadpool round trip: ~5 ms of main
 * thread per comparison of two small files on the busy 2-core bench machine, and two fresh
 * 1 MiB buffers each time.
 */
export async function compareFiles(local: string | FileHandle, incoming: string | FileHandle): Promise<Comparison> {
  const a = typeof local === "string" ? openSync(local, "r") : local.fd;
  try {
    const b = typeof incoming === "string" ? openSync(incoming, "r") : incoming.fd;
    try {
      return compareFds(a, b);
    } finally {
      if (typeof incoming === "string") closeSync(b);
    }
  } finally {
    if (typeof local === "string") closeSync(a);
  }
}

function compareFds(a: number, b: number): Comparison {
  const sizeA = fstatSync(a).size;
  const sizeB = fstatSync(b).size;
  const common = Math.min(sizeA, sizeB);
  compareBuffers ??= [Buffer.allocUnsafe(COMPARE_CHUNK), Buffer.allocUnsafe(COMPARE_CHUNK)];
  const [bufA, bufB] = compareBuffers;
  for (let pos = 0; pos < common; ) {
    const want = Math.min(COMPARE_CHUNK, common - pos);
    if (!readFully(a, bufA, want, pos) || !readFully(b, bufB, want, pos)) return "diverged";
    if (!bufA.subarray(0, want).equals(bufB.subarray(0, want))) return "diverged";
    pos += want;
  }
  if (sizeA === sizeB) return "identical";
  return sizeA < sizeB ? "local-prefix" : "incoming-prefix";
}

/** `want` bytes at `position` into the start of `buffer`; false if the file ended first (it shrank). */
function readFully(fd: number, buffer: Buffer, want: number, position: number): boolean {
  for (let done = 0; done < want; ) {
    const read = readSync(fd, buffer, done, want - done, position + done);
    if (read === 0) return false;
    done += read;
  }
  return true;
}

/** Bytes read per step of `remapFile` (whole lines of it are rewritten at once). */
const REMAP_CHUNK = 4 << 20;

/**
 * Rewrite a JSONL (or text) file line by line into `target` without holding it in memory.
 * `fsync: false` leaves flushing to the caller (one batched sync before the install journal commits).
 *
 * Synchronous reads and writes on purpose: staged files are in the page cache, and with fs/promises
 * each 1 MiB read and write was a thread-pool round trip (~100 ms of a 1.5 s pull of a 50 MB session).
 * A 4 MiB step blocks the event loop for a few milliseconds.
 */
export async function remapFile(
  source: string,
  target: string,
  remapper: Remapper,
  options: { fsync?: boolean } = {},
): Promise<void> {
  const out = openSync(target, "wx", 0o600);
  try {
    const input = openSync(source, "r");
    try {
      const rewrite = chunkRewriter(remapper);
      let buffer = Buffer.allocUnsafe(Math.min(REMAP_CHUNK, fstatSync(input).size + 1));
      let filled = 0;
      for (;;) {
        // A line longer than the buffer: make room for the rest of it.
        if (filled === buffer.length) buffer = doubled(buffer);
        const read = readSync(input, buffer, filled, buffer.length - filled, null);
        if (read === 0) {
          if (filled > 0) writeFully(out, rewrite(buffer.subarray(0, filled)));
          break;
        }
        filled += read;
        const lineEnd = buffer.lastIndexOf(0x0a, filled - 1) + 1;
        if (lineEnd === 0) continue;
        writeFully(out, rewrite(buffer.subarray(0, lineEnd)));
        buffer.copyWithin(0, lineEnd, filled);
        filled -= lineEnd;
      }
    } finally {
      closeSync(input);
    }
    if (options.fsync !== false) await fsyncAsync(out);
  } finally {
    closeSync(out);
  }
}

/**
 * The remapper's rewrite of line-aligned bytes (pieces that end at a line end or at the end of
 * the file): its byte fast path, or line by line. remapFile and the rewrite while unpacking
 * (ReceiveRun.stage) share it, so a file comes out the same either way.
 */
export function chunkRewriter(remapper: Remapper): (bytes: Buffer) => Buffer {
  return remapper.rewrite?.bind(remapper) ?? ((bytes: Buffer) => rewriteLines(bytes, remapper));
}

/** `rewrite` for a remapper that only rewrites lines: decode, each line, encode. */
function rewriteLines(bytes: Buffer, remapper: Remapper): Buffer {
  const lines = bytes.toString().split("\n");
  // What follows the last newline is a line only if it is not empty (a file's unterminated end).
  const last = lines.pop()!;
  const rewritten = lines.map((line) => remapper.line(line));
  rewritten.push(last && remapper.line(last));
  return Buffer.from(rewritten.join("\n"));
}

function writeFully(fd: number, bytes: Uint8Array): void {
  for (let done = 0; done < bytes.length; ) done += writeSync(fd, bytes, done, bytes.length - done);
}

/**
 * Move a staged file into place atomically (same filesystem), giving it a fresh
 * mtime. The staged file is already on disk (fsynced before the install
 * journal was written). Sync calls: a restore moves thousands of files whose
 * metadata is in the page cache, and a threadpool round trip per call
 * (mkdir, open, utimes, fsync, close, rename) was most of an import's time.
 * `madeDirs` remembers the target folders known to exist in this run.
 */
export function installFile(staged: string, target: string, madeDirs?: Set<string>): void {
  const now = new Date();
  utimesSync(staged, now, now);
  const dir = path.dirname(target);
  if (!madeDirs?.has(dir)) {
    mkdirSync(dir, { recursive: true });
    madeDirs?.add(dir);
  }
  try {
    renameSync(staged, target);
  } catch (err) {
    // A remembered folder removed since (by the user): make it again.
    if (errnoCode(err) !== "ENOENT" || !madeDirs?.has(dir)) throw err;
    mkdirSync(dir, { recursive: true });
    renameSync(staged, target);
  }
}

/** Copy a file the user had to a backup folder before it is replaced. */
export async function backupFile(file: string, backupDir: string, relative: string): Promise<string> {
  const target = path.join(backupDir, relative);
  await mkdir(path.dirname(target), { recursive: true, mode: 0o700 });
  await copyFile(file, target);
  return target;
}

/**
 * Write a small file atomically: temp file in the same folder, fsync, rename.
 * `parentExists` skips making the folder (an install journal: one per blob of a restore --all).
 * Sync calls but the fsync (the one that waits for the disk): each threadpool round trip of
 * open, write, close and rename cost the main thread a few ms on the busy 2-core bench machine,
 * and restore --all writes a journal per blob.
 */
export async function writeFileAtomic(
  file: string,
  content: string | Uint8Array,
  mode = 0o600,
  options: { exclusive?: boolean; parentExists?: boolean } = {},
): Promise<void> {
  if (!options.exclusive && !options.parentExists) mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${randomBytes(6).toString("hex")}.tmp`;
  try {
    const fd = openSync(tmp, "wx", mode);
    try {
      writeFully(fd, typeof content === "string" ? Buffer.from(content) : content);
      await fsyncAsync(fd);
    } finally {
      closeSync(fd);
    }
    if (options.exclusive) {
      // link() fails with EEXIST instead of replacing: a key export never overwrites a file.
      await link(tmp, file).catch(async (err) => {
        if (errnoCode(err) !== "EPERM" && errnoCode(err) !== "ENOTSUP") throw err;
        // No hard links here (FAT/exFAT USB sticks): check, then rename.
        if (
          await stat(file).then(
            () => true,
            () => false,
          )
        )
          throw Object.assign(new Error("exists"), { code: "EEXIST" });
        await rename(tmp, file);
      });
      await rm(tmp, { force: true });
      return;
    }
    renameSync(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

/** A buffer twice as long holding `full`'s bytes, for a read that filled it and is not done. */
export function doubled(full: Buffer<ArrayBuffer>): Buffer<ArrayBuffer> {
  const grown = Buffer.allocUnsafe(full.length * 2);
  full.copy(grown);
  return grown;
}
