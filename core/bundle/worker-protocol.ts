import type { CollectedSession, SessionRef } from "../claude/session.js";
import { CcbError, IntegrityError, NotFoundError, UsageError } from "../errors.js";
import type { CompressOptions } from "./codec.js";
import type { PackFile } from "./pack.js";

/**
 * The messages between the main thread and a bundle worker
 * (core/bundle/worker.ts, driven by core/bundle/worker-pool.ts).
 *
 * A worker runs one job at a time: `collect` (scan and hash a session's files)
 * or `encode` (tar → zstd → age of files the main thread signed a manifest
 * for). Encoded bytes come back as `chunk` messages whose ArrayBuffers are
 * transferred, not copied; the worker stops after WINDOW chunks the main
 * thread has not taken yet (`credit`), so a slow store holds memory at a few MB.
 */

export type ToWorker =
  | { type: "collect"; id: number; claudeDir: string; ref: SessionRef }
  | {
      type: "encode";
      id: number;
      manifestJson: Uint8Array;
      files: PackFile[];
      /** X25519 age recipients as strings (`age1…`): Recipient objects do not cross threads. */
      recipients: string[];
      compression: CompressOptions;
    }
  /** The main thread took `chunks` more chunks of job `id`. */
  | { type: "credit"; id: number; chunks: number }
  /** The main thread no longer wants job `id` (its upload failed). */
  | { type: "cancel"; id: number };

export type FromWorker =
  | { type: "collected"; id: number; session: CollectedSession }
  /** `plain`: tar bytes encoded so far, for progress. */
  | { type: "chunk"; id: number; data: ArrayBuffer[]; plain: number }
  | { type: "done"; id: number }
  | { type: "failed"; id: number; failure: WorkerFailure };

/** Chunks a worker may have sent that the main thread has not taken yet. */
export const WINDOW = 4;
/** Encoded bytes are gathered into messages of at least this size (fewer, cheaper posts). */
export const CHUNK_BYTES = 1 << 20;

/**
 * An error as it crosses threads. Structured clone keeps only message and
 * stack, but callers look at more: the exit code and hint of a CcbError, the
 * errno code of a system error (a session deleted while read is ENOENT).
 */
export interface WorkerFailure {
  name: string;
  message: string;
  stack: string | undefined;
  code: string | undefined;
  exitCode: number | undefined;
  hint: string | undefined;
}

export function toFailure(err: unknown): WorkerFailure {
  const error = err instanceof Error ? err : new Error(String(err));
  const code = (error as { code?: unknown }).code;
  return {
    name: error.name,
    message: error.message,
    stack: error.stack,
    code: typeof code === "string" ? code : undefined,
    exitCode: error instanceof CcbError ? error.exitCode : undefined,
    hint: error instanceof CcbError ? error.hint : undefined,
  };
}

export function fromFailure(failure: WorkerFailure): Error {
  let error: Error;
  if (failure.exitCode === undefined) {
    error = new Error(failure.message);
    error.name = failure.name;
  } else {
    const options = failure.hint === undefined ? {} : { hint: failure.hint };
    if (failure.name === "IntegrityError") error = new IntegrityError(failure.message, options);
    else if (failure.name === "NotFoundError") error = new NotFoundError(failure.message, options);
    else if (failure.name === "UsageError") error = new UsageError(failure.message, options);
    else error = new CcbError(failure.message, failure.exitCode as CcbError["exitCode"], options);
    // Subclasses that carry nothing more (EmptySessionError) are told apart by name.
    error.name = failure.name;
  }
  if (failure.code !== undefined) Object.assign(error, { code: failure.code });
  if (failure.stack !== undefined) error.stack = failure.stack;
  return error;
}

/** Buffers arrive as plain Uint8Arrays; give them their Buffer methods back without copying. */
export function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
