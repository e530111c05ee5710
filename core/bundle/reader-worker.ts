import { parentPort } from "node:worker_threads";
import { loadZstd, PLAIN_CHUNK, ZstdDecoder } from "./codec.js";
import { type TarEvent, TarReader } from "./tar-reader.js";
import type { FromReaderWorker, ToReaderWorker } from "./threaded-reader.js";
import { JsZstdDecoder } from "./zstd-js.js";

/**
 * The thread of ThreadedTarReader (threaded-reader.ts): decompresses one zstd frame
 * sequence chunk by chunk, reads the tar in it and hashes each file. Each chunk's events
 * go back in one message; the data they point into is moved (not copied) to the main thread.
 */

const port = parentPort;
if (!port) throw new Error("core/bundle/reader-worker.js runs as a worker thread");
const send = (message: FromReaderWorker, transfer?: ArrayBuffer[]) => port.postMessage(message, transfer);

let tar = new TarReader();
let decoder: ZstdDecoder | JsZstdDecoder | undefined;
let events: TarEvent[] = [];
/** The decompressed buffers the events of this chunk point into; each owns its memory. */
let outputs: ArrayBuffer[] = [];
let bytes = 0;
let failed = false;
const BATCH_BYTES = 1 << 20;

/** Output buffers the main thread handed back ("recycle"), filled again before new ones are made. */
const returned: ArrayBuffer[] = [];
/** Enough for what is in flight at once (4 chunks, batches of 1 MiB); more are let go. */
const MAX_RETURNED = 32;

function outputBuffer(): Buffer {
  const reused = returned.pop();
  return reused ? Buffer.from(reused) : Buffer.allocUnsafe(PLAIN_CHUNK);
}

/** Send what the chunk gave so far; `last`: the chunk is done (the main thread may send another). */
function post(last: boolean): void {
  send({ type: "batch", events, bytes, last, buffers: outputs }, outputs);
  events = [];
  outputs = [];
  bytes = 0;
}

function fail(err: unknown, stage: "zstd" | "tar"): void {
  failed = true;
  send({ type: "failed", stage, message: err instanceof Error ? err.message : String(err) });
}

port.on("message", (message: ToReaderWorker) => {
  if (message.type === "recycle") {
    for (const buffer of message.buffers) {
      if (returned.length < MAX_RETURNED && buffer.byteLength === PLAIN_CHUNK) returned.push(buffer);
    }
    return;
  }
  if (failed) return;
  let stage: "zstd" | "tar" = "zstd";
  try {
    if (message.type === "end") {
      decoder?.end();
      stage = "tar";
      tar.end();
      // The JavaScript decoder holds a last frame under 18 bytes until it knows the data ended.
      if (events.length > 0 || outputs.length > 0) post(false);
      // Ready for the next blob (the main thread keeps this thread for it), with the same context.
      decoder?.release();
      decoder = undefined;
      tar = new TarReader();
      send({ type: "ended" });
      return;
    }
    if (!decoder) {
      const emit = (data: Buffer) => {
        stage = "tar";
        outputs.push(data.buffer as ArrayBuffer);
        bytes += data.length;
        tar.push(data, events);
        stage = "zstd";
        // A chunk that holds much (repetitive output, or a bomb) goes back in parts: the main
        // thread starts on them, and checks its limits, while this thread goes on.
        if (bytes >= BATCH_BYTES) post(false);
        return true;
      };
      // Without the addon, the JavaScript decoder: slower, but still off the main thread.
      const zstd = loadZstd();
      decoder = zstd ? new ZstdDecoder(zstd, emit, outputBuffer) : new JsZstdDecoder(emit, outputBuffer);
    }
    decoder.write(Buffer.from(message.chunk.buffer, message.chunk.byteOffset, message.chunk.byteLength));
    post(true);
  } catch (err) {
    fail(err, stage);
  }
});
