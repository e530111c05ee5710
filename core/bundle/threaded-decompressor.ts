import { existsSync } from "node:fs";
import { Transform, type TransformCallback } from "node:stream";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { createDecompressor, loadZstd, notCompressedData, ZSTD_MAGIC } from "./codec.js";

/**
 * zstd decompression on a worker thread, for receiving one big blob (pull, import): the
 * main thread decrypts, parses the tar, hashes, remaps and writes the unpacked bytes while
 * the worker decompresses the next chunks, so a 50 MB session's ~50 ms of zstd overlaps
 * the rest instead of adding to it. Output, errors and limits are those of
 * createDecompressor: its messages for bad data, and gzip (or no worker, as when running
 * from the TypeScript sources) goes through createDecompressor itself.
 *
 * Flow: up to IN_FLIGHT chunks are with the worker at once; the next write waits for one
 * to come back, so memory stays bounded as with the in-process decompressor.
 */

export type ToDecompressWorker = { type: "chunk"; chunk: Uint8Array } | { type: "end" };
export type FromDecompressWorker =
  | { type: "data"; data: Uint8Array[] }
  | { type: "ended" }
  | { type: "failed"; message: string };

const WORKER_FILE = new URL("./decompress-worker.js", import.meta.url);
const IN_FLIGHT = 4;

let spare: Worker | undefined;

/** Whether this build has the worker script (not when running from the TypeScript sources). */
function workerAvailable(): boolean {
  return existsSync(fileURLToPath(WORKER_FILE)) && loadZstd() !== null;
}

/**
 * Start a decompression thread now, for the next ThreadedDecompressor: its start-up
 * (~20 ms) then overlaps what the caller does first (a pull resolves its record).
 */
export function warmDecompressor(): void {
  if (spare || !workerAvailable()) return;
  spare = new Worker(WORKER_FILE);
  // An idle spare never keeps the process alive (a pull that fails before reading a blob).
  spare.unref();
  spare.on("error", () => {
    spare = undefined;
  });
}

function takeWorker(): Worker {
  const worker = spare ?? new Worker(WORKER_FILE);
  spare = undefined;
  worker.ref();
  return worker;
}

export function createThreadedDecompressor(): Transform {
  return workerAvailable() ? new ThreadedDecompressor() : createDecompressor();
}

class ThreadedDecompressor extends Transform {
  #head: Buffer = Buffer.alloc(0);
  /** The in-process decompressor, for anything that is not zstd. */
  #local: Transform | undefined;
  #worker: Worker | undefined;
  #inFlight = 0;
  #waiting: TransformCallback | undefined;
  #ending: TransformCallback | undefined;

  constructor() {
    super({ writableHighWaterMark: 1 << 20, readableHighWaterMark: 1 << 20 });
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
      local.once("end", () => callback());
      if (this.#head.length > 0) this.#feedLocal(this.#head, () => local.end());
      else local.end();
      this.#head = Buffer.alloc(0);
      return;
    }
    this.#ending = callback;
    this.#worker!.postMessage({ type: "end" } satisfies ToDecompressWorker);
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.#local?.destroy();
    void this.#worker?.terminate();
    this.#worker = undefined;
    callback(err);
  }

  #start(callback: TransformCallback): void {
    const head = this.#head;
    this.#head = Buffer.alloc(0);
    if (!ZSTD_MAGIC.every((byte, i) => head[i] === byte)) {
      this.#startLocal();
      this.#feedLocal(head, callback);
      return;
    }
    const worker = takeWorker();
    this.#worker = worker;
    worker.on("message", (message: FromDecompressWorker) => this.#received(message));
    worker.on("error", (err) => this.destroy(err));
    worker.on("exit", (code) => {
      if (this.#worker === worker) this.destroy(new Error(`the decompression thread stopped (exit code ${code})`));
    });
    this.#send(head, callback);
  }

  #send(chunk: Buffer, callback: TransformCallback): void {
    // A copy of just these bytes, moved: posting the Buffer would copy all the memory it views.
    const copy = new Uint8Array(chunk);
    this.#worker!.postMessage({ type: "chunk", chunk: copy } satisfies ToDecompressWorker, [copy.buffer]);
    this.#inFlight++;
    if (this.#inFlight < IN_FLIGHT) callback();
    else this.#waiting = callback;
  }

  #received(message: FromDecompressWorker): void {
    // Messages the thread sent before it was stopped.
    if (this.destroyed) return;
    if (message.type === "failed") {
      this.destroy(notCompressedData(message.message));
      return;
    }
    if (message.type === "ended") {
      const worker = this.#worker;
      this.#worker = undefined;
      void worker?.terminate();
      const ending = this.#ending;
      this.#ending = undefined;
      ending?.();
      return;
    }
    for (const data of message.data) this.push(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
    this.#inFlight--;
    const waiting = this.#waiting;
    this.#waiting = undefined;
    waiting?.();
  }

  #startLocal(): void {
    const local = createDecompressor();
    this.#local = local;
    local.on("data", (data: Buffer) => this.push(data));
    local.on("error", (err) => this.destroy(err));
  }

  #feedLocal(chunk: Buffer, callback: TransformCallback): void {
    if (this.#local!.write(chunk)) callback();
    else this.#local!.once("drain", () => callback());
  }
}
