import { randomBytes } from "node:crypto";
import { closeSync, fstatSync, fsync, mkdirSync, openSync, readSync, renameSync, utimesSync, writeSync } from "node:fs";
import { copyFile, type FileHandle, link, mkdir, rename, rm, stat } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { errnoCode, withPath } from "../errors.js";
import { removeOnInterrupt } from "../interrupt.js";
import type { Remapper } from "./remap.js";
import { rewriteUtf8Lines } from "./remap-bytes.js";

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
 * With `handOver`, the new file's descriptor goes to it once the bytes are written (the caller
 * fsyncs and closes it: one batched wait before the install journal commits); without, it is
 * fsynced and closed here.
 *
 * Synchronous reads and writes on purpose: staged files are in the page cache, and with fs/promises
 * each 1 MiB read and write was a thread-pool round trip (~100 ms of a 1.5 s pull of a 50 MB session).
 * A 4 MiB step blocks the event loop for a few milliseconds.
 */
export async function remapFile(
  source: string,
  target: string,
  remapper: Remapper,
  options: { handOver?: (fd: number) => Promise<void> } = {},
): Promise<void> {
  const out = openSync(target, "wx", 0o600);
  let handedOver = false;
  try {
    const input = openSync(source, "r");
    try {
      const writer = new LineAlignedWriter(out, chunkRewriter(remapper));
      const buffer = Buffer.allocUnsafe(Math.min(REMAP_CHUNK, fstatSync(input).size + 1));
      for (;;) {
        const read = readSync(input, buffer, 0, buffer.length, null);
        if (read === 0) break;
        writer.write(buffer.subarray(0, read));
      }
      writer.end();
    } finally {
      closeSync(input);
    }
    if (options.handOver) {
      handedOver = true;
      await options.handOver(out);
    } else {
      await fsyncAsync(out);
    }
  } finally {
    if (!handedOver) closeSync(out);
  }
}

/**
 * Writes a file's bytes through a rewrite that takes line-aligned pieces (each ends at a line
 * end, or is the file's unterminated last line): whatever the chunks' boundaries, the rewrite
 * sees whole lines. remapFile and the rewrite while unpacking (unpack.ts) both write through it.
 */
export class LineAlignedWriter {
  #held: Buffer[] = [];

  constructor(
    private readonly fd: number,
    private readonly rewrite: (bytes: Buffer) => Buffer,
  ) {}

  write(chunk: Buffer): void {
    let from = 0;
    if (this.#held.length > 0) {
      const newline = chunk.indexOf(NEWLINE);
      if (newline < 0) {
        this.#held.push(Buffer.from(chunk));
        return;
      }
      from = newline + 1;
      this.#put(Buffer.concat([...this.#held, chunk.subarray(0, from)]));
      this.#held = [];
    }
    const lineEnd = chunk.lastIndexOf(NEWLINE) + 1;
    if (lineEnd > from) this.#put(chunk.subarray(from, lineEnd));
    const tail = Math.max(from, lineEnd);
    // Copied: the chunk's memory is not ours to keep.
    if (tail < chunk.length) this.#held.push(Buffer.from(chunk.subarray(tail)));
  }

  /** The file's last line, if it has no line end. */
  end(): void {
    if (this.#held.length > 0) this.#put(Buffer.concat(this.#held));
    this.#held = [];
  }

  #put(bytes: Buffer): void {
    writeFully(this.fd, this.rewrite(bytes));
  }
}

const NEWLINE = 0x0a;

/**
 * The remapper's rewrite of line-aligned bytes (pieces that end at a line end or at the end of
 * the file): its byte fast path, or line by line. remapFile and the rewrite while unpacking
 * (ReceiveRun.stage) share it, so a file comes out the same either way.
 */
export function chunkRewriter(remapper: Remapper): (bytes: Buffer) => Buffer {
  return remapper.rewrite?.bind(remapper) ?? ((bytes: Buffer) => rewriteLines(bytes, remapper));
}

/** `rewrite` for a remapper that only rewrites lines: each valid UTF-8 line through it (rewriteUtf8Lines). */
function rewriteLines(bytes: Buffer, remapper: Remapper): Buffer {
  return rewriteUtf8Lines(bytes, (line) => remapper.line(line));
}

/** All of `bytes` at the descriptor's position (writeSync may write less than asked). */
export function writeFully(fd: number, bytes: Uint8Array): void {
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
  const staged = await stageFileAtomic(file, content, mode, {
    parentExists: options.exclusive || options.parentExists,
  });
  if (!options.exclusive) return staged.commit();
  const tmp = staged.tmp;
  try {
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
  } finally {
    await staged.abort();
  }
}

/**
 * writeFileAtomic's first half: the content written and fsynced beside `file`; `commit()`
 * renames it into place, `abort()` removes it. Publishing writes the record's local copy while
 * the record goes out, and moves it into place only once it was published.
 */
export async function stageFileAtomic(
  file: string,
  content: string | Uint8Array,
  mode = 0o600,
  options: { parentExists?: boolean | undefined } = {},
): Promise<{ tmp: string; commit(): Promise<void>; abort(): Promise<void> }> {
  if (!options.parentExists) mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${randomBytes(6).toString("hex")}.tmp`;
  // Until commit or abort, a Ctrl-C removes it (the caller may wait on the network in between).
  const forget = removeOnInterrupt(tmp);
  try {
    const fd = openSync(tmp, "wx", mode);
    try {
      writeFully(fd, typeof content === "string" ? Buffer.from(content) : content);
      await fsyncAsync(fd);
    } finally {
      closeSync(fd);
    }
  } catch (err) {
    forget();
    await rm(tmp, { force: true });
    throw withPath(err, file);
  }
  const abort = () => {
    forget();
    return rm(tmp, { force: true });
  };
  return {
    tmp,
    commit: async () => {
      try {
        renameSync(tmp, file);
        forget();
      } catch (err) {
        await abort();
        throw err;
      }
    },
    abort,
  };
}
