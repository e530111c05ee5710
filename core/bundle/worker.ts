import { parentPort } from "node:worker_threads";
import { collectSession } from "../claude/session.js";
import { X25519Recipient } from "../crypto/age/x25519.js";
import { encodeBlob } from "./blob-encoder.js";
import { zstdEncoder } from "./codec.js";
import { asBuffer, CHUNK_BYTES, type FromWorker, type ToWorker, toFailure, WINDOW } from "./worker-protocol.js";

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
  const options = {
    manifestJson: asBuffer(job.manifestJson),
    // Views of what structured clone already copied: no second copy.
    files: job.files.map((file) => (file.content ? { ...file, content: asBuffer(file.content) } : file)),
    recipients: job.recipients.map(recipientOf),
    compression: { ...job.compression, workers: 0 },
    onPlainBytes: (bytes: number) => {
      plain = bytes;
    },
  };
  // zstd: the synchronous encoder's Buffer lists; gzip (no zstd here): the stream path.
  const zstd = zstdEncoder(options.compression);
  // blob.js (and the unpack side it carries) loads only for gzip: a lighter worker start-up.
  const source = zstd ? encodeBlob(zstd, options) : asLists((await import("./blob.js")).bundleStream(options));
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  const post = async () => {
    const data = transferable(pending);
    pending = [];
    pendingBytes = 0;
    send({ type: "chunk", id: job.id, data, plain }, data);
    flow.unacked++;
    while (flow.unacked >= WINDOW && !flow.cancelled) await new Promise<void>((wake) => (flow.wake = wake));
    flow.wake = undefined;
  };
  try {
    for await (const list of source) {
      for (const bytes of list) pending.push(bytes);
      for (const bytes of list) pendingBytes += bytes.length;
      if (pendingBytes >= CHUNK_BYTES) await post();
      if (flow.cancelled) break;
    }
    if (!flow.cancelled && pendingBytes > 0) await post();
    // Also after a cancel: the pool gives this worker its next job only after "done" or "failed".
    send({ type: "done", id: job.id });
  } finally {
    current = undefined;
  }
}

/**
 * Recipients parsed once per thread: every blob of a backup goes to the same few, and parsing one
 * (bech32, then an OpenSSL public KeyObject) per blob was ~0.15 ms each. Always `age1…` strings
 * (String of an X25519Recipient): the light parser, not keys.js and its curves.
 */
const recipients = new Map<string, X25519Recipient>();

function recipientOf(text: string): X25519Recipient {
  let recipient = recipients.get(text);
  if (!recipient) {
    recipient = X25519Recipient.fromString(text);
    if (recipients.size >= 16) recipients.clear();
    recipients.set(text, recipient);
  }
  return recipient;
}

async function* asLists(stream: AsyncIterable<Buffer>): AsyncGenerator<Buffer[]> {
  for await (const chunk of stream) yield [chunk];
}

/**
 * The bytes as ArrayBuffers to transfer, in order. Buffers that own their
 * whole ArrayBuffer (node:crypto's output) go as they are: moved, not copied,
 * and no garbage left here (V8 collects dead ArrayBuffers only when its heap
 * asks for a GC, and a worker's small heap rarely does: tens of MB piled up
 * per thread). The rest (slices of Node's small-buffer pool) are copied
 * together into one new buffer.
 */
function transferable(buffers: Buffer[]): ArrayBuffer[] {
  const out: ArrayBuffer[] = [];
  let small: Buffer[] = [];
  const flushSmall = () => {
    if (small.length === 0) return;
    out.push(new Uint8Array(Buffer.concat(small)).buffer as ArrayBuffer);
    small = [];
  };
  for (const bytes of buffers) {
    const owns =
      bytes.byteOffset === 0 && bytes.buffer.byteLength === bytes.length && bytes.buffer instanceof ArrayBuffer;
    if (!owns) {
      small.push(bytes);
      continue;
    }
    flushSmall();
    out.push(bytes.buffer as ArrayBuffer);
  }
  flushSmall();
  return out;
}
