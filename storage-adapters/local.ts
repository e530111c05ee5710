import { closeSync, createReadStream, createWriteStream, fstat, open, openSync } from "node:fs";
import { mkdir, readdir, readFile, rename, rm, stat, unlink } from "node:fs/promises";
import path from "node:path";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { CcbError, errnoCode, NotFoundError } from "../core/errors.js";
import { interruptedBy, interruptedUpload, removeOnInterrupt } from "../core/interrupt.js";
import { removeOldFiles } from "../core/old-files.js";
import { randomId, storeLayout } from "../core/store-layout.js";
import {
  type BlobStore,
  EmptyStoreError,
  type GetOptions,
  type ObjectInfo,
  type PutOptions,
  type PutResult,
  StoreMissingError,
} from "./blob-store.js";

const openFile = promisify(open);
const fstatFile = promisify(fstat);

/**
 * Read a blob in 1 MiB pieces, but a smaller one in a single piece of its own size, and stop at
 * its end. fs.ReadStream allocates a whole highWaterMark for every read: a 200 KB blob cost a
 * 1 MiB read, a copy to shrink it, and a second 1 MiB read to find the end. restore --all reads
 * 300 of them, and those ~700 MB of short-lived buffers made V8 collect garbage ~80 times.
 */
function readStreamOptions(size: number): { highWaterMark: number; end?: number } {
  if (size === 0) return { highWaterMark: 1 << 20 };
  return { highWaterMark: Math.min(size, 1 << 20), end: size - 1 };
}

/** Where unfinished uploads live until they are renamed into place; never listed. */
const TMP_DIR = ".tmp";
/**
 * An upload's temp file untouched for this long belongs to a process that was killed
 * (a live upload writes to it continuously): the first put of a later run removes it.
 */
export const STALE_PARTIAL_MS = 24 * 3600 * 1000;

/**
 * A store in a local or network-mounted folder (NAS, USB disk, Syncthing folder).
 * Objects are plain files under `root`; an upload is written to `root/.tmp/`,
 * fsynced, then renamed over its key, so a reader sees all of it or nothing.
 */
export class LocalStore implements BlobStore {
  readonly url: string;

  constructor(readonly root: string) {
    // One spelling per folder (no trailing slash): pull compares it with the store a record names.
    this.url = pathToFileURL(path.resolve(root)).href;
  }

  private file(key: string): string {
    if (key.split("/").some((part) => part === ".." || part === "." || part === "") || key.startsWith(TMP_DIR)) {
      throw new CcbError(`invalid object key: ${key}`);
    }
    return path.join(this.root, ...key.split("/"));
  }

  /** Set once the store folder was checked and `.tmp` exists (once per instance: backup puts hundreds of blobs). */
  #writable: Promise<void> | undefined;
  /** Folders known to exist under the root (blob fan-out folders), so each is made once. */
  readonly #folders = new Set<string>();

  async put(key: string, body: Readable | Uint8Array, options: PutOptions = {}): Promise<PutResult> {
    const target = this.file(key);
    const tmpDir = path.join(this.root, TMP_DIR);
    const tmp = path.join(tmpDir, `${randomId()}.partial`);
    const fd = await this.openTemp(tmp, tmpDir).catch((err) => {
      throw this.wrap(err, key);
    });
    // flush: fsync before close, on the stream's own descriptor (pipeline waits for it and
    // reports its failure): durable before the rename, with no second open and close.
    const out = createWriteStream(tmp, { fd, flush: true });
    // Ctrl-C mid-upload: the temp file goes at once (else a put a day later sweeps it).
    const forgetTmp = removeOnInterrupt(tmp);
    const folder = path.dirname(target);
    let size = 0;
    const counter = new Transform({
      transform(chunk: Buffer, _enc, done) {
        size += chunk.length;
        options.onProgress?.(size);
        done(null, chunk);
      },
    });
    try {
      if (!this.#folders.has(folder)) {
        await mkdir(folder, { recursive: true });
        this.#folders.add(folder);
      }
      const source = body instanceof Uint8Array ? Readable.from([Buffer.from(body)]) : body;
      await pipeline(source, counter, out, options.signal ? { signal: options.signal } : {});
      if (options.size !== undefined && size !== options.size) {
        throw new CcbError(`upload to ${this.url} stored ${size} bytes, expected ${options.size}`);
      }
      await rename(tmp, target).catch(async (err) => {
        // Someone removed the folder since we made it: make it again, once.
        if (errnoCode(err) !== "ENOENT") throw err;
        this.#folders.delete(folder);
        await mkdir(folder, { recursive: true });
        await rename(tmp, target);
      });
    } catch (err) {
      out.destroy(); // closes the descriptor if the pipeline never ran
      await rm(tmp, { force: true });
      throw this.wrap(err, key);
    } finally {
      forgetTmp();
    }
    return { size };
  }

  async get(key: string, options: GetOptions = {}): Promise<Readable> {
    const file = this.file(key);
    // Opened here, not by the stream: a stream that fails to open emits its error before the
    // caller can listen (a teammate without read permission met Node's unhandled-error crash).
    // Its size from the open descriptor: one lookup of the path, not a stat and then an open.
    const fd = await openFile(file, "r").catch(async (err) => {
      throw await this.whyMissing(err, key, "read");
    });
    let size: number;
    try {
      size = (await fstatFile(fd)).size;
    } catch (err) {
      closeSync(fd);
      throw this.wrap(err, key, "read");
    }
    const stream = createReadStream(file, { fd, ...readStreamOptions(size) });
    if (options.onProgress) {
      let done = 0;
      const report = options.onProgress;
      stream.on("data", (chunk) => {
        done += chunk.length;
        report(done);
      });
    }
    return stream;
  }

  async getBytes(key: string): Promise<Uint8Array> {
    try {
      return await readFile(this.file(key));
    } catch (err) {
      throw await this.whyMissing(err, key, "read");
    }
  }

  async stat(key: string): Promise<ObjectInfo | undefined> {
    try {
      const info = await stat(this.file(key));
      return { key, size: info.size, modified: info.mtime };
    } catch (err) {
      if (errnoCode(err) === "ENOENT") return undefined;
      throw this.wrap(err, key);
    }
  }

  async delete(key: string): Promise<void> {
    try {
      await unlink(this.file(key));
    } catch (err) {
      const code = errnoCode(err);
      if (code !== "ENOENT" && code !== "ENOTDIR") throw this.wrap(err, key);
      // Gone already, as the contract allows; but with the store folder missing or empty (a NAS
      // not mounted), nothing was deleted, and revoke must not say it was.
      const unreachable = await this.unreachable(err);
      if (unreachable) throw unreachable;
    }
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    // Walk only the folder the prefix names, not the whole store.
    const slash = prefix.lastIndexOf("/");
    const dirKey = slash >= 0 ? prefix.slice(0, slash) : "";
    const start = dirKey ? path.join(this.root, ...dirKey.split("/")) : this.root;
    yield* this.walk(start, dirKey, prefix);
  }

  private async *walk(dir: string, dirKey: string, prefix: string): AsyncIterable<ObjectInfo> {
    let entries: import("node:fs").Dirent[];
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (err) {
      if (errnoCode(err) !== "ENOENT") throw this.wrap(err, dirKey);
      // A folder under the store that is not there yet is just empty; the store folder itself
      // missing is a mistyped --store (or an unmounted NAS), which "nothing found" would hide.
      if ((await this.rootState()) === "missing") throw new StoreMissingError(this.root, { cause: err });
      return;
    }
    for (const entry of entries) {
      if (!dirKey && entry.name === TMP_DIR) continue;
      const key = dirKey ? `${dirKey}/${entry.name}` : entry.name;
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) {
        if (`${key}/`.startsWith(prefix) || prefix.startsWith(`${key}/`)) yield* this.walk(full, key, prefix);
      } else if (entry.isFile() && key.startsWith(prefix)) {
        // Deleted since the listing (another machine withdrawing its snapshot-write announcement,
        // a prune): not there, as if listed a moment later.
        const info = await stat(full).catch((err: unknown) => {
          if (errnoCode(err) === "ENOENT") return undefined;
          throw this.wrap(err, key);
        });
        if (info) yield { key, size: info.size, modified: info.mtime };
      }
    }
  }

  async checkWritable(): Promise<void> {
    this.#writable ??= this.ensureWritable(path.join(this.root, TMP_DIR));
    await this.#writable.catch((err) => {
      this.#writable = undefined;
      throw this.wrap(err, TMP_DIR);
    });
  }

  /**
   * A new temp file, open for writing. The store folder is checked (and `.tmp` made) on the
   * first put only, and again if `.tmp` has gone since (someone emptied the store).
   */
  private async openTemp(tmp: string, tmpDir: string): Promise<number> {
    for (let fresh = this.#writable === undefined; ; fresh = true) {
      this.#writable ??= this.ensureWritable(tmpDir);
      try {
        await this.#writable;
        // A Ctrl-C while the folder was checked: make nothing its cleanup would not see.
        const signal = interruptedBy();
        if (signal) throw interruptedUpload(signal);
        // Mode 0666 less the umask, as cp and tar make files: blobs and records are encrypted and
        // signed, and a store may be a folder teammates read as other users (a NAS). A sync open:
        // put registers the file's interrupt cleanup in the microtask after it, before any signal
        // callback can run (an async open finished on the threadpool after the cleanup had run).
        return openSync(tmp, "wx", 0o666);
      } catch (err) {
        this.#writable = undefined;
        if (fresh || errnoCode(err) !== "ENOENT") throw err;
      }
    }
  }

  private async ensureWritable(tmpDir: string): Promise<void> {
    try {
      const info = await stat(this.root);
      if (!info.isDirectory()) {
        throw new CcbError(`store ${this.url} is not a folder`, 1, { hint: "point --store at a folder" });
      }
    } catch (err) {
      if (errnoCode(err) === "ENOTDIR") {
        throw new CcbError(`store folder ${this.root} cannot exist: part of its path is a file`, 1, {
          hint: "point --store at a folder",
        });
      }
      if (errnoCode(err) === "ENOENT") {
        // The default store is created on first use; a store the user named must exist.
        throw new CcbError(`store folder ${this.root} does not exist`, 1, {
          hint: `create it (mkdir -p ${JSON.stringify(this.root)}) or pass another --store`,
        });
      }
      throw err;
    }
    await mkdir(tmpDir, { recursive: true }).catch((err) => {
      throw this.wrap(err, TMP_DIR);
    });
    // What killed uploads left (a cron backup killed by a reboot, say) would stay in the store for good.
    await removeOldFiles(tmpDir, (name) => name.endsWith(".partial"), STALE_PARTIAL_MS);
  }

  /**
   * A read's error: an object that is not there, unless the store folder itself is missing (a
   * NAS that is not mounted here, a mistyped --store) or empty.
   */
  private async whyMissing(err: unknown, key: string, doing: "read" | "write" = "write"): Promise<unknown> {
    return (await this.unreachable(err)) ?? this.wrap(err, key, doing);
  }

  explainEmpty(): Promise<CcbError | undefined> {
    return this.rootError(undefined);
  }

  /** For an ENOENT or ENOTDIR: the error to give instead when the store folder is missing or empty. */
  private async unreachable(err: unknown): Promise<CcbError | undefined> {
    const code = errnoCode(err);
    if (code !== "ENOENT" && code !== "ENOTDIR") return undefined;
    return this.rootError(err);
  }

  /** StoreMissingError or EmptyStoreError when the store folder is missing or empty, else undefined. */
  private async rootError(cause: unknown): Promise<CcbError | undefined> {
    const root = await this.rootState();
    if (root === "missing") return new StoreMissingError(this.root, { cause });
    if (root === "empty") return new EmptyStoreError(this.root, { cause });
    return undefined;
  }

  /**
   * The store folder: missing, empty (see EmptyStoreError), or anything else. Empty is also what
   * our own scaffolding leaves in a bare mount point: `.tmp` with no upload in it, and the empty
   * folders of a `doctor` probe (`ccbundle/v1/.doctor`). Once those made it look used, a backup
   * went ahead into the bare mount point. A real store stops the look at its top or at `v1`.
   */
  private async rootState(): Promise<"missing" | "empty" | "present"> {
    try {
      return (await holdsOnly(this.root, SCAFFOLD)) ? "empty" : "present";
    } catch (err) {
      const code = errnoCode(err);
      if (code === "ENOENT") return "missing";
      if (code === "ENOTDIR") {
        // A folder on the way is a file (missing), or the root itself is one (wrap says so).
        const rootIsFile = await stat(this.root).then(
          () => true,
          () => false,
        );
        return rootIsFile ? "present" : "missing";
      }
      return "present";
    }
  }

  private wrap(err: unknown, key: string, doing: "read" | "write" = "write"): unknown {
    if (err instanceof CcbError) return err;
    const code = errnoCode(err);
    if (code === "ENOENT") {
      return new NotFoundError(`no object ${key} in store ${this.url}`, { hint: "check the store URL (--store)" });
    }
    if (doing === "read" && (code === "EACCES" || code === "EPERM")) {
      return new CcbError(`cannot read ${key} in store ${this.url} (${code})`, 1, {
        hint: "its file is not readable by you: on a shared folder, ask its owner to let your user read the store (chmod -R a+rX, or a group), or pass another --store",
        cause: err,
      });
    }
    if (code === "EACCES" || code === "EPERM" || code === "EROFS") {
      return new CcbError(`store ${this.url} is not writable (${code})`, 1, {
        hint: "check the folder's permissions or mount, or pass another --store",
        cause: err,
      });
    }
    if (code === "ENOTDIR" || code === "EEXIST") {
      return new CcbError(`store ${this.url} cannot hold ${key}: a file is where a folder of it should be`, 1, {
        hint: "move that file out of the store folder, or pass another --store",
        cause: err,
      });
    }
    if (code === "ENOSPC") {
      return new CcbError(`store ${this.url} is full`, 1, { hint: "free space or prune old backups", cause: err });
    }
    return err;
  }
}

/** A tree of folder names, each holding at most the folders named under it. */
type Scaffold = { [name: string]: Scaffold };

/** The folders ccbundle itself leaves in a store with nothing stored: `.tmp`, and a doctor probe's. */
const SCAFFOLD: Scaffold = {
  [TMP_DIR]: {},
  ...storeLayout.doctorPrefix
    .split("/")
    .filter(Boolean)
    .reduceRight<Scaffold>((inner, name) => ({ [name]: inner }), {}),
};

/**
 * True when `dir` holds nothing but (some of) the empty folders `allowed` names: no file, and no
 * other name, at any depth. Throws what the first readdir throws (the caller tells missing).
 */
async function holdsOnly(dir: string, allowed: Scaffold): Promise<boolean> {
  const entries = await readdir(dir, { withFileTypes: true });
  for (const entry of entries) {
    const inner = Object.hasOwn(allowed, entry.name) ? allowed[entry.name] : undefined;
    if (inner === undefined || !entry.isDirectory()) return false;
    if (!(await holdsOnly(path.join(dir, entry.name), inner).catch(() => false))) return false;
  }
  return true;
}
