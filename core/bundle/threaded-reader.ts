import { existsSync } from "node:fs";
import { Transform, type TransformCallback } from "node:stream";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { createDecompressor, notCompressedData, ZSTD_MAGIC } from "./codec.js";
import { type TarBatch, type TarEvent, TarReadError, TarReader } from "./tar-reader.js";

/**
 * zstd decompression, tar reading and file hashing on a worker thread, for receiving blobs
 * (pull, import, restore): the main thread decrypts, remaps and writes while the worker
 * decompresses, reads and hashes the next chunks. On a 50 MB session that moves ~105 ms of
 * zstd, ~40 ms of sha256 and the tar reading off the main thread, which does the rest. A
 * thread that read a blob to its end is kept for the next one (restore --all reads hundreds).
 *
 * In: the decrypted blob's bytes. Out: TarBatch objects, as readTar (tar-reader.ts) gives
 * for the same tar, and the same errors as createDecompressor for bad compressed data.
 * gzip (or no worker, as when running from the TypeScript sources) is read in-process.
 *
 * Flow: up to IN_FLIGHT chunks are with the worker at once; the next write waits for one
 * to come back, so memory stays bounded as with the in-process decompressor.
 */

export type ToReaderWorker =
  | { type: "chunk"; chunk: Uint8Array }
  | { type: "end" }
  /** Output buffers of earlier batches, handed back (TarBatch.release) to be filled again. */
  | { type: "recycle"; buffers: ArrayBuffer[] };
export type FromReaderWorker =
  /**
   * `last`: the last batch of one chunk sent (a chunk's output may come in several).
   * `buffers`: the memory the events' data points into, moved here with the message.
   */
  | { type: "batch"; events: TarEvent[]; bytes: number; last: boolean; buffers: ArrayBuffer[] }
  | { type: "ended" }
  | { type: "failed"; stage: "zstd" | "tar"; message: string };

const WORKER_FILE = new URL("./reader-worker.js", import.meta.url);
const IN_FLIGHT = 4;

/** An idle reader thread: started ahead (warmReader), or handed back after a blob read to its end. */
let spare: Worker | undefined;

/**
 * Whether this build has the worker script (not when running from the TypeScript sources). The
 * thread decodes zstd with the addon, or without it with the slower JavaScript decoder (zstd-js.ts).
 */
function workerAvailable(): boolean {
  return existsSync(fileURLToPath(WORKER_FILE));
}

/**
 * Start a reader thread now, for the next ThreadedTarReader: its start-up (~20 ms) then
 * overlaps what the caller does first (a pull resolves its record).
 */
export function warmReader(): void {
  if (spare || !workerAvailable()) return;
  keepSpare(newWorker());
}

let started = 0;

/** How many reader threads this process has started (tests: a thread is reused between blobs). */
export function readerThreadsStarted(): number {
  return started;
}

function newWorker(): Worker {
  started++;
  return new Worker(WORKER_FILE);
}

function keepSpare(worker: Worker): void {
  if (spare) {
    void worker.terminate();
    return;
  }
  spare = worker;
  // An idle spare never keeps the process alive (a pull that fails before reading a blob).
  worker.unref();
  worker.once("error", dropSpare);
  worker.once("exit", dropSpare);
}

function dropSpare(): void {
  spare = undefined;
}

function takeWorker(): Worker {
  const worker = spare ?? newWorker();
  worker.off("error", dropSpare);
  worker.off("exit", dropSpare);
  spare = undefined;
  worker.ref();
  return worker;
}

/**
 * Hand a batch's buffers back to the thread that filled them. Each would otherwise be a new
 * 256 KiB allocation there and one more here: V8 counts such memory towards its next garbage
 * collection, and restore --all moved ~450 MB of it through the main thread. The thread may be
 * idle by now (kept for the next blob) or stopped; then the buffers are simply dropped.
 */
function giveBack(worker: Worker, buffers: ArrayBuffer[]): void {
  if (buffers.length === 0) return;
  try {
    worker.postMessage({ type: "recycle", buffers } satisfies ToReaderWorker, buffers);
  } catch {
    // The thread is gone: nothing to reuse them.
  }
}

/** A Transform from a blob's decrypted bytes to its TarBatches. */
export function createThreadedTarReader(): Transform {
  return new ThreadedTarReader(workerAvailable());
}

class ThreadedTarReader extends Transform {
  #head: Buffer = Buffer.alloc(0);
  /** The in-process decompressor and reader, for anything that is not zstd or when there is no worker. */
  #local: { decompressor: Transform; tar: TarReader } | undefined;
  #worker: Worker | undefined;
  #inFlight = 0;
  #waiting: TransformCallback | undefined;
  #ending: TransformCallback | undefined;

  constructor(private readonly threaded: boolean) {
    super({ writableHighWaterMark: 1 << 20, readableObjectMode: true, readableHighWaterMark: IN_FLIGHT });
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    if (this.#worker) {
      this.#send(chunk, callback);
      return;
    }
    if (this.#local) {
      this.#feedLocal(chunk, callback);
      return;
    }
    this.#head = this.#head.length > 0 ? Buffer.concat([this.#head, chunk]) : chunk;
    if (this.#head.length < ZSTD_MAGIC.length) {
      callback();
      return;
    }
    this.#start(callback);
  }

  override _flush(callback: TransformCallback): void {
    if (!this.#worker && !this.#local) {
      if (this.#head.length === 0) {
        callback();
        return;
      }
      // Fewer bytes than a magic number: the in-process decompressor says what is wrong.
      this.#startLocal();
    }
    if (this.#local) {
      const local = this.#local;
      local.decompressor.once("end", () => {
        try {
          local.tar.end();
          callback();
        } catch (err) {
          callback(err as Error);
        }
      });
      if (this.#head.length > 0) this.#feedLocal(this.#head, () => local.decompressor.end());
      else local.decompressor.end();
      this.#head = Buffer.alloc(0);
      return;
    }
    this.#ending = callback;
    this.#worker!.postMessage({ type: "end" } satisfies ToReaderWorker);
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.#local?.decompressor.destroy();
    void this.#worker?.terminate();
    this.#worker = undefined;
    callback(err);
  }

  #start(callback: TransformCallback): void {
    const head = this.#head;
    this.#head = Buffer.alloc(0);
    if (!this.threaded || !ZSTD_MAGIC.every((byte, i) => head[i] === byte)) {
      this.#startLocal();
      this.#feedLocal(head, callback);
      return;
    }
    const worker = takeWorker();
    this.#worker = worker;
    worker.on("message", this.#onMessage);
    worker.on("error", this.#onError);
    worker.on("exit", this.#onExit);
    this.#send(head, callback);
  }

  readonly #onMessage = (message: FromReaderWorker) => this.#received(message);
  readonly #onError = (err: Error) => this.destroy(err);
  readonly #onExit = (code: number) => {
    if (this.#worker) this.destroy(new Error(`the bundle reader thread stopped (exit code ${code})`));
  };

  #send(chunk: Buffer, callback: TransformCallback): void {
    // A copy of just these bytes, moved: posting the Buffer would copy all the memory it views.
    const copy = new Uint8Array(chunk);
    this.#worker!.postMessage({ type: "chunk", chunk: copy } satisfies ToReaderWorker, [copy.buffer]);
    this.#inFlight++;
    if (this.#inFlight < IN_FLIGHT) callback();
    else this.#waiting = callback;
  }

  #received(message: FromReaderWorker): void {
    // Messages the thread sent before it was stopped.
    if (this.destroyed) return;
    if (message.type === "failed") {
      this.destroy(message.stage === "zstd" ? notCompressedData(message.message) : new TarReadError(message.message));
      return;
    }
    if (message.type === "ended") {
      // The thread read the blob to its end and is ready for another: restore --all reads hundreds.
      const worker = this.#worker!;
      this.#worker = undefined;
      worker.off("message", this.#onMessage);
      worker.off("error", this.#onError);
      worker.off("exit", this.#onExit);
      keepSpare(worker);
      const ending = this.#ending;
      this.#ending = undefined;
      ending?.();
      return;
    }
    // Structured clone made the data Uint8Arrays: Buffers over the same (moved) memory.
    for (const event of message.events) {
      if (event.type === "data") {
        const bytes = event.bytes as Uint8Array;
        event.bytes = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      }
    }
    const worker = this.#worker!;
    const buffers = message.buffers;
    this.push({
      events: message.events,
      bytes: message.bytes,
      release: () => giveBack(worker, buffers),
    } satisfies TarBatch);
    if (!message.last) return;
    this.#inFlight--;
    const waiting = this.#waiting;
    this.#waiting = undefined;
    waiting?.();
  }

  #startLocal(): void {
    const decompressor = createDecompressor();
    const tar = new TarReader();
    this.#local = { decompressor, tar };
    decompressor.on("data", (data: Buffer) => {
      const events: TarEvent[] = [];
      try {
        tar.push(data, events);
      } catch (err) {
        this.destroy(err as Error);
        return;
      }
      this.push({ events, bytes: data.length } satisfies TarBatch);
    });
    decompressor.on("error", (err) => this.destroy(err));
  }

  #feedLocal(chunk: Buffer, callback: TransformCallback): void {
    if (this.#local!.decompressor.write(chunk)) callback();
    else this.#local!.decompressor.once("drain", () => callback());
  }
}
