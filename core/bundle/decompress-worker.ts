import { parentPort } from "node:worker_threads";
import { loadZstd, ZstdDecoder } from "./codec.js";
import type { FromDecompressWorker, ToDecompressWorker } from "./threaded-decompressor.js";

/**
 * The zstd decompression thread of ThreadedDecompressor (threaded-decompressor.ts): one
 * frame sequence per thread, fed chunk by chunk; each chunk's output goes back in one
 * message, its buffers moved (not copied) to the main thread.
 */

const port = parentPort;
if (!port) throw new Error("core/bundle/decompress-worker.js runs as a worker thread");
const send = (message: FromDecompressWorker, transfer?: ArrayBuffer[]) => port.postMessage(message, transfer);

let out: Buffer[] = [];
let decoder: ZstdDecoder | undefined;
let failed = false;

port.on("message", (message: ToDecompressWorker) => {
  if (failed) return;
  try {
    if (message.type === "end") {
      decoder?.end();
      send({ type: "ended" });
      return;
    }
    if (!decoder) {
      const zstd = loadZstd();
      if (!zstd) throw new Error("zstd failed to load");
      decoder = new ZstdDecoder(zstd, (data) => {
        out.push(data);
        return true;
      });
    }
    decoder.write(Buffer.from(message.chunk.buffer, message.chunk.byteOffset, message.chunk.byteLength));
    const data = out;
    out = [];
    send(
      { type: "data", data },
      data.map((buffer) => buffer.buffer as ArrayBuffer),
    );
  } catch (err) {
    failed = true;
    send({ type: "failed", message: err instanceof Error ? err.message : String(err) });
  }
});
