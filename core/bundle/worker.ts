import { parentPort } from "node:worker_threads";
import { collectSession } from "../claude/session.js";
import { parseRecipient } from "../crypto/keys.js";
import { bundleStream } from "./blob.js";
import { CHUNK_BYTES, type FromWorker, type ToWorker, toFailure, WINDOW } from "./worker-protocol.js";

/**
 * A bundle worker thread (see worker-protocol.ts): collects sessions and
 * encodes their blobs off the main thread, so `backup --all` keeps every core
 * busy. zstd runs here with nbWorkers=0: a ~1 MB session is one zstd job, so
 * zstd's own threads gave no parallelism, and the main thread waited on them.
 */

const port = parentPort;
if (!port) throw new Error("core/bundle/worker.js runs as a worker thread");

const send = (message: FromWorker, transfer?: ArrayBuffer[]) => port.postMessage(message, transfer);

/** Flow control of the encode job running now. */
let current: { id: number; unacked: number; cancelled: boolean; wake: (() => void) | undefined } | undefined;

port.on("message", (message: ToWorker) => {
  switch (message.type) {
    case "collect":
      void run(message.id, async () => {
        send({ type: "collected", id: message.id, session: await collectSession(message.claudeDir, message.ref) });
      });
      return;
    case "encode":
      void run(message.id, () => encode(message));
      return;
    case "credit":
    case "cancel":
      if (current?.id !== message.id) return;
      if (message.type === "credit") current.unacked -= message.chunks;
      else current.cancelled = true;
      current.wake?.();
      return;
  }
});

async function run(id: number, job: () => Promise<void>): Promise<void> {
  try {
    await job();
  } catch (err) {
    send({ type: "failed", id, failure: toFailure(err) });
  }
}

async function encode(job: Extract<ToWorker, { type: "encode" }>): Promise<void> {
  const flow = { id: job.id, unacked: 0, cancelled: false, wake: undefined as (() => void) | undefined };
  current = flow;
  let plain = 0;
  const blob = bundleStream({
    manifestJson: Buffer.from(job.manifestJson.buffer, job.manifestJson.byteOffset, job.manifestJson.byteLength),
    files: job.files.map((file) => (file.content ? { ...file, content: Buffer.from(file.content) } : file)),
    recipients: job.recipients.map(parseRecipient),
    compression: { ...job.compression, workers: 0 },
    onPlainBytes: (bytes) => {
      plain = bytes;
    },
  });
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  const post = async () => {
    const data = pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingBytes);
    pending = [];
    pendingBytes = 0;
    const buffer = ownBuffer(data);
    send({ type: "chunk", id: job.id, data: buffer, plain }, [buffer]);
    flow.unacked++;
    while (flow.unacked >= WINDOW && !flow.cancelled) await new Promise<void>((wake) => (flow.wake = wake));
    flow.wake = undefined;
  };
  try {
    for await (const chunk of blob as AsyncIterable<Buffer>) {
      pending.push(chunk);
      pendingBytes += chunk.length;
      if (pendingBytes >= CHUNK_BYTES) await post();
      if (flow.cancelled) break;
    }
    if (flow.cancelled) blob.destroy();
    else if (pendingBytes > 0) await post();
    // Also after a cancel: the pool gives this worker its next job only after "done" or "failed".
    send({ type: "done", id: job.id });
  } finally {
    current = undefined;
  }
}

/** An ArrayBuffer holding exactly `data`, safe to transfer (not a slice of Node's shared small-buffer pool). */
function ownBuffer(data: Buffer): ArrayBuffer {
  const whole = data.byteOffset === 0 && data.buffer.byteLength === data.length && data.buffer instanceof ArrayBuffer;
  return whole ? (data.buffer as ArrayBuffer) : (new Uint8Array(data).buffer as ArrayBuffer);
}
