import { createHash } from "node:crypto";
import { closeSync, mkdirSync, openSync } from "node:fs";
import { statfs } from "node:fs/promises";
import path from "node:path";
import type { Readable } from "node:stream";
import { LineAlignedWriter, writeFully } from "../claude/files.js";
import { formatBytes } from "../duration.js";
import { CcbError, errnoCode, IntegrityError } from "../errors.js";
import { type BundleFile, MANIFEST_NAME, MAX_MANIFEST_BYTES, type Manifest, parseManifest } from "./manifest.js";
import { readTar, type TarBatch } from "./tar-reader.js";

/**
 * Safe extraction of a bundle's tar stream into a staging folder. Nothing is
 * trusted that the manifest does not list: every entry must be a regular file
 * named in the manifest, appear once, have the listed size, and hash to the
 * listed sha256. Paths are built from manifest entries that passed
 * `isAllowedPath`, never from raw tar names, so nothing lands outside
 * `stagingDir`. The caller moves files into place only after this resolves.
 */
export interface UnpackOptions {
  /**
   * Called with the parsed manifest before any file is written; throw to refuse the bundle. Return
   * "signer-accepted" when its signature checked out against the user's own key: from then on the
   * sizes it declares (and the free-space check) bound what it may write, and the
   * decompression-ratio guard, meant for bundles from others, stops. A session of one tool output
   * repeated for hundreds of MB compresses past it, and its owner must still be able to restore it.
   */
  onManifest?: (manifest: Manifest) => ManifestVerdict | Promise<ManifestVerdict>;
  /** Compressed bytes read so far, to bound the decompression ratio (zip bombs). */
  compressedBytes?: () => number;
  /**
   * Takes over each staged file's descriptor once its bytes are written and
   * verified (the caller fsyncs and closes it); without it the file is closed.
   */
  handOver?: (fd: number) => Promise<void>;
  /**
   * A rewrite for a file's bytes on their way to its staged file (path remapping), or undefined
   * to stage it as it is; asked once per file, before its first byte. It gets line-aligned pieces
   * (each ends at a line end or the file's end) and may return its own buffer, reused by its next
   * call. The manifest's size and hash are checked on the bytes as they came.
   */
  rewriterFor?: (file: BundleFile) => Promise<Rewriter | undefined>;
  /** "tree" (default) mirrors the bundle paths below the staging folder; "flat" see stagedPath. */
  layout?: StagingLayout;
  /**
   * The files the caller will write a rewritten second copy of after staging (path remapping
   * after the fact: restore --all), for the free-space check. Pull and import rewrite on the way
   * in (rewriterFor) or not at all, and count each file once. Default: every JSONL file.
   */
  secondCopies?: (bundlePath: string) => boolean;
  /** Override the limits (tests). */
  limits?: Partial<UnpackLimits>;
}

export type ManifestVerdict = undefined | "signer-accepted";

export interface UnpackLimits {
  /** Most bytes a bundle may declare in total. */
  maxTotalBytes: number;
  /** Most tar bytes per compressed byte, once `ratioGraceBytes` have come out. */
  maxRatio: number;
  ratioGraceBytes: number;
}

/**
 * Session JSONL compresses 5-20x, repetitive tool output a few hundred times;
 * past 64 MiB, more than 1000x is a decompression bomb, not a session.
 */
export const DEFAULT_UNPACK_LIMITS: UnpackLimits = {
  maxTotalBytes: 64 * 2 ** 30,
  maxRatio: 1000,
  ratioGraceBytes: 64 * 2 ** 20,
};

export type StagingLayout = "tree" | "flat";

/** Rewrites line-aligned bytes (see UnpackOptions.rewriterFor). */
export type Rewriter = (bytes: Buffer) => Buffer;

/**
 * Where a bundle file is staged. "flat" puts every file directly in the staging
 * folder under a name derived from its path: no folders to make and remove
 * (a 300-session bundle has about 1000), which the receiving commands use since
 * they only ever reach staged files through this function.
 */
export function stagedPath(stagingDir: string, bundlePath: string, layout: StagingLayout = "tree"): string {
  if (layout === "tree") return path.join(stagingDir, ...bundlePath.split("/"));
  return path.join(stagingDir, `f-${createHash("sha256").update(bundlePath).digest("hex").slice(0, 40)}`);
}

/** Slack for tar headers and padding beyond the files' own bytes. */
const TAR_OVERHEAD_PER_FILE = 3 * 512;

/** Unpack a tar stream (see unpackTar). */
export async function unpackBundle(
  tarStream: Readable,
  stagingDir: string,
  options: UnpackOptions = {},
): Promise<Manifest> {
  try {
    return await unpackTar(readTar(tarStream), stagingDir, options);
  } finally {
    tarStream.destroy();
  }
}

/**
 * Unpack a bundle's tar, read into events by readTar or by the reader thread
 * (threaded-reader.ts), which also hash each file: the checks and the writes
 * happen here, on the caller's thread.
 */
export async function unpackTar(
  batches: AsyncIterable<TarBatch>,
  stagingDir: string,
  options: UnpackOptions = {},
): Promise<Manifest> {
  const limits = { ...DEFAULT_UNPACK_LIMITS, ...options.limits };
  // Bounds the bytes we accept from the decompressor: unknown until the manifest is read.
  let budget = MAX_MANIFEST_BYTES + 64 * 1024;
  let consumed = 0;
  let manifest: Manifest | undefined;
  /** The manifest's bytes while it is read (the first entry). */
  let manifestParts: Buffer[] | undefined;
  let manifestSize = 0;
  /** Off once the caller accepted the manifest's signer (see UnpackOptions.onManifest). */
  let ratioGuard = true;
  const expected = new Map<string, BundleFile>();
  const received = new Set<string>();
  const writer = new StagedWriter(stagingDir, options.layout ?? "tree", options.handOver, options.rewriterFor);
  try {
    /** Refuse more bytes than the manifest declares, or a bomb's ratio, before they are written. */
    const checkLimits = () => {
      if (consumed > budget) throw reject("it holds more data than its manifest declares");
      const compressed = ratioGuard ? options.compressedBytes?.() : undefined;
      if (compressed !== undefined && consumed > limits.ratioGraceBytes && consumed > compressed * limits.maxRatio) {
        throw reject(`it decompresses more than ${limits.maxRatio} times its size (a decompression bomb)`);
      }
    };
    for await (const batch of batches) {
      // A batch can be large (what one compressed chunk held): its data is counted as it is met,
      // so that a bomb is refused before its bytes are written, then the batch's exact size.
      const before = consumed;
      for (const event of batch.events) {
        if (event.type === "data") {
          consumed += event.bytes.length;
          checkLimits();
          if (manifestParts) {
            manifestSize += event.bytes.length;
            if (manifestSize > MAX_MANIFEST_BYTES) throw reject("manifest is too large");
            manifestParts.push(Buffer.from(event.bytes));
          } else writer.write(event.bytes);
          continue;
        }
        if (event.type === "end") {
          if (manifestParts) {
            manifest = parseManifest(Buffer.concat(manifestParts));
            manifestParts = undefined;
            let declared = 0;
            for (const session of manifest.sessions) {
              for (const file of session.files) {
                expected.set(file.path, file);
                declared += file.size + TAR_OVERHEAD_PER_FILE;
              }
            }
            if (declared > limits.maxTotalBytes) {
              throw reject(
                `it declares ${formatBytes(declared)}, more than the ${formatBytes(limits.maxTotalBytes)} limit`,
              );
            }
            budget = consumed + declared + 64 * 1024;
            if ((await options.onManifest?.(manifest)) === "signer-accepted") ratioGuard = false;
            await checkFreeSpace(stagingDir, manifest, options.secondCopies ?? ((file) => file.endsWith(".jsonl")));
          } else await writer.finish(event.sha256);
          continue;
        }
        if (event.entryType !== "file") throw reject(`entry ${show(event.name)} is a ${event.entryType}, not a file`);
        if (!manifest) {
          if (event.name !== MANIFEST_NAME) throw reject("the first entry is not ccbundle.json");
          if (event.size > MAX_MANIFEST_BYTES) throw reject("manifest is too large");
          manifestParts = [];
          continue;
        }
        const file = expected.get(event.name);
        if (!file) throw reject(`entry ${show(event.name)} is not listed in the manifest`);
        if (received.has(file.path)) throw reject(`entry ${show(event.name)} appears twice`);
        if (event.size !== file.size)
          throw reject(`${show(file.path)} has ${event.size} bytes, manifest says ${file.size}`);
        received.add(file.path);
        await writer.open(file);
      }
      consumed = before + batch.bytes;
      checkLimits();
      // Written (or copied: the manifest, a line's unfinished end): the memory can be reused.
      batch.release?.();
    }
  } catch (err) {
    writer.abandon();
    // Our own errors and the file system's (disk full, permissions) say what went wrong;
    // anything else came from reading the tar data.
    if (err instanceof CcbError || isSystemError(err)) throw err;
    throw reject(`unreadable tar data (${(err as Error)?.message ?? String(err)})`, err);
  }
  if (!manifest) throw reject("the bundle is empty");
  const missing = [...expected.keys()].filter((p) => !received.has(p));
  if (missing.length > 0) throw reject(`${missing.length} listed file(s) missing, e.g. ${show(missing[0]!)}`);
  return manifest;
}

/**
 * Writes verified entries below the staging folder with sync calls: the files
 * are small and land in the page cache, and `await handle.write(chunk)` cost a
 * threadpool round trip per chunk (52k writes and 5 s of an idle main thread
 * importing the bench corpus). One file is open at a time: open, write its
 * pieces, then finish with the hash the tar reader computed.
 */
class StagedWriter {
  #current: { file: BundleFile; fd: number; lines: LineAlignedWriter | undefined; size: number } | undefined;

  constructor(
    private readonly stagingDir: string,
    private readonly layout: StagingLayout,
    private readonly handOver: ((fd: number) => Promise<void>) | undefined,
    private readonly rewriterFor: ((file: BundleFile) => Promise<Rewriter | undefined>) | undefined,
  ) {}

  /**
   * Open a new staged file; its folder is made only when the open says it is missing. The flat
   * layout's only folder is the staging folder, which exists: a `mkdir -p` per bundle (an
   * EEXIST and a stat) cost `restore --all` 300 pairs of calls on a disk where each is slow.
   */
  #create(target: string): number {
    try {
      return openSync(target, "wx", 0o600);
    } catch (err) {
      if (errnoCode(err) !== "ENOENT") throw err;
      makeDirs(this.stagingDir, path.dirname(target));
      return openSync(target, "wx", 0o600);
    }
  }

  async open(file: BundleFile): Promise<void> {
    const rewriter = await this.rewriterFor?.(file);
    const fd = this.#create(stagedPath(this.stagingDir, file.path, this.layout));
    this.#current = { file, fd, lines: rewriter && new LineAlignedWriter(fd, rewriter), size: 0 };
  }

  write(bytes: Buffer): void {
    const current = this.#current!;
    current.size += bytes.length;
    if (current.lines) current.lines.write(bytes);
    else writeFully(current.fd, bytes);
  }

  /** The file's bytes are all written: check them against the manifest, then hand the file over. */
  async finish(sha256: string | undefined): Promise<void> {
    const current = this.#current!;
    current.lines?.end();
    const { file, fd } = current;
    if (current.size !== file.size || sha256 !== file.sha256) {
      throw reject(`${show(file.path)} does not match its hash in the manifest`);
    }
    this.#current = undefined;
    if (this.handOver) await this.handOver(fd);
    else closeSync(fd);
  }

  /** Unpacking failed: close the file being written, if any (the caller removes the staging folder). */
  abandon(): void {
    if (this.#current) closeSync(this.#current.fd);
    this.#current = undefined;
  }
}

/**
 * `mkdir -p` below `root`. A recursive mkdir reports ENOENT when an
 * intermediate folder cannot be made (out of inodes, say); then make them one
 * by one, so the real cause (ENOSPC) reaches the user.
 */
function makeDirs(root: string, dir: string): void {
  try {
    mkdirSync(dir, { recursive: true });
  } catch (err) {
    if (errnoCode(err) !== "ENOENT") throw err;
    let current = root;
    for (const part of path.relative(root, dir).split(path.sep)) {
      current = path.join(current, part);
      try {
        mkdirSync(current);
      } catch (e) {
        if (errnoCode(e) !== "EEXIST") throw e;
      }
    }
  }
}

/**
 * Refuse early, before a byte is written, when the staging disk cannot hold
 * the bundle: its files rounded up to whole blocks, plus a rewritten copy of
 * each file `secondCopies` names (path remapping after staging writes a second
 * copy before the rename).
 */
async function checkFreeSpace(
  stagingDir: string,
  manifest: Manifest,
  secondCopies: (bundlePath: string) => boolean,
): Promise<void> {
  let stats: { bavail: number; bsize: number };
  try {
    stats = await statfs(stagingDir);
  } catch {
    return; // Not every platform or file system answers; the writes will tell.
  }
  const block = Math.max(512, stats.bsize);
  const rounded = (size: number) => Math.ceil(size / block) * block;
  let need = 0;
  for (const session of manifest.sessions) {
    for (const file of session.files) {
      need += rounded(file.size);
      if (secondCopies(file.path)) need += rounded(file.size);
    }
  }
  const free = stats.bavail * stats.bsize;
  if (need > free) {
    // No ENOSPC behind it (isNoSpace): this bundle does not fit, a smaller one after it may (restore --all goes on).
    throw new CcbError(
      `not enough disk space to restore: the bundle needs ${formatBytes(need)}, ${formatBytes(free)} free on ${path.dirname(stagingDir)}`,
      1,
      { hint: "free some space and run the command again; nothing was changed" },
    );
  }
}

/** An error from a system call (it has an errno code and names the call), not from parsing. */
function isSystemError(err: unknown): boolean {
  return errnoCode(err) !== undefined && typeof (err as { syscall?: unknown }).syscall === "string";
}

function show(name: string | undefined): string {
  return JSON.stringify(String(name).slice(0, 120));
}

function reject(what: string, cause?: unknown): IntegrityError {
  return new IntegrityError(`bundle rejected: ${what}`, {
    hint: "the bundle is damaged or was tampered with; nothing was restored",
    cause,
  });
}
