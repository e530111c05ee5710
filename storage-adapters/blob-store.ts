import type { Readable } from "node:stream";
import { CcbError, ExitCode, NotFoundError } from "../core/errors.js";

/**
 * The one interface every store implements (local folder, S3/MinIO).
 *
 * Keys are relative, slash-separated object names below the store's own
 * prefix (for example `ccbundle/v1/blobs/<id>`); the adapter maps them to
 * files or object keys. Like restic's backend, the contract is narrow and the
 * write ordering is the adapter's job:
 *
 * - `put` makes an object visible under `key` only once all of its bytes are
 *   stored (temp file + rename, or multipart completed after the last part).
 *   If it fails or the process dies, no object a reader could trust is left
 *   under `key`.
 * - `get` of a missing key throws NotFoundError (exit 4).
 * - `delete` of a missing key succeeds.
 * - A store that is not there at all (no such folder or bucket) makes every
 *   call throw another CcbError: callers take NotFoundError to mean "no such
 *   object here" (and a delete's success to mean it is gone), which would hide
 *   a typo or a NAS that is not mounted.
 */
export interface BlobStore {
  /** The store's URL for display and for records, never with credentials. */
  readonly url: string;

  put(key: string, body: Readable | Uint8Array, options?: PutOptions): Promise<PutResult>;
  get(key: string, options?: GetOptions): Promise<Readable>;
  getBytes(key: string): Promise<Uint8Array>;
  stat(key: string): Promise<ObjectInfo | undefined>;
  delete(key: string): Promise<void>;
  /** Objects whose key starts with `prefix`, in no particular order. */
  list(prefix: string): AsyncIterable<ObjectInfo>;
  /**
   * Fail now, with the store's own error, when puts cannot succeed (say a store
   * folder the user named that does not exist): called before long work, so a
   * backup does not encode every session first. Stores that can only tell by
   * trying leave it out.
   */
  checkWritable?(): Promise<void>;
  /**
   * Why a listing found nothing, when the store can tell something the user should hear instead
   * of "nothing here": a store folder with nothing at all in it (EmptyStoreError: a NAS mount point
   * with nothing mounted). `list` itself stays empty there, since a new store starts out so;
   * commands that read what an earlier run wrote ask this once they found nothing.
   */
  explainEmpty?(): Promise<CcbError | undefined>;
  /**
   * Where this store's credentials come from, for `doctor` (S3: "AWS_ACCESS_KEY_ID in the
   * environment", "profile nas", ...); undefined when none were found. Names only, never a key.
   */
  credentialSource?(): Promise<string | undefined>;
  /** A URL anyone can GET until it expires; only stores that can presign have it. */
  presignGet?(key: string, expiresInSeconds: number): Promise<string>;
  /** Release sockets or handles. */
  close?(): Promise<void>;
}

export interface PutOptions {
  /** Bytes expected, when known: lets adapters pick part sizes and check the result. */
  size?: number;
  onProgress?: (bytesDone: number) => void;
  signal?: AbortSignal;
}

export interface PutResult {
  size: number;
}

export interface GetOptions {
  onProgress?: (bytesDone: number) => void;
  signal?: AbortSignal;
}

export interface ObjectInfo {
  key: string;
  size: number;
  modified: Date;
}

/**
 * A read from a store whose folder is there but empty: on Linux, a mount point with nothing
 * mounted on it looks just like that. Still a NotFoundError (the object is not there, and a
 * first push to a new store reads before it writes), but pull and status name it instead of
 * saying "no record" or "gone".
 */
export class EmptyStoreError extends NotFoundError {
  constructor(
    /** The store folder. */
    readonly root: string,
    options: { cause?: unknown } = {},
  ) {
    super(`store folder ${root} is empty`, {
      hint: "nothing was stored there yet, or it is a mount point with nothing mounted on it: mount the NAS, or check --store",
      ...options,
    });
    this.name = "EmptyStoreError";
  }
}

/**
 * A store folder that is not there at all: a mistyped --store, or a NAS not mounted here. No
 * NotFoundError, which callers take for "no such object" (no record here, a handoff already
 * picked up, an empty listing). Exit 1, "store unreachable" in the README's table: a script
 * must not read it as exit 4's "nothing there" (nothing pushed, no backups).
 */
export class StoreMissingError extends CcbError {
  constructor(
    /** The store folder. */
    readonly root: string,
    options: { cause?: unknown } = {},
  ) {
    super(`store folder ${root} does not exist`, ExitCode.failure, {
      hint: "check --store (or CCBUNDLE_STORE), and that the folder is mounted on this machine",
      ...options,
    });
    this.name = "StoreMissingError";
  }
}
