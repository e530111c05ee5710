// Streaming throughput of the age Transforms (core/crypto/age/stream.ts).
// Run after `npm run build`:  node bench/age-micro.mjs [MiB=256] [writeKiB=1024]
import { randomBytes } from "node:crypto";
import { Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createDecryptStream, createEncryptStream, X25519Identity } from "../dist/core/crypto/age/index.js";

const MiB = 1024 * 1024;
const total = Number(process.argv[2] ?? 256) * MiB;
const write = Number(process.argv[3] ?? 1024) * 1024;

function* source(block, bytes) {
  for (let off = 0; off < bytes; off += block.length) yield block.subarray(0, Math.min(block.length, bytes - off));
}
function* slices(buf, size) {
  for (let off = 0; off < buf.length; off += size) yield buf.subarray(off, off + size);
}
const sink = (keep) => {
  let n = 0;
  const parts = [];
  const w = new Writable({
    highWaterMark: MiB,
    write(chunk, _e, cb) {
      n += chunk.length;
      if (keep) parts.push(chunk);
      cb();
    },
  });
  return { w, bytes: () => n, data: () => Buffer.concat(parts) };
};

const id = X25519Identity.generate();
const block = randomBytes(write);

async function timeIt(label, fn) {
  const runs = [];
  for (let i = 0; i < 3; i++) {
    const t = process.hrtime.bigint();
    await fn();
    runs.push(Number(process.hrtime.bigint() - t) / 1e9);
  }
  const best = Math.min(...runs);
  console.log(
    `${label}: ${(total / MiB / best).toFixed(0)} MiB/s (best of 3, ${runs.map((r) => r.toFixed(2)).join("/")} s)`,
  );
}

await timeIt(`encrypt ${total / MiB} MiB, ${write / 1024} KiB writes`, async () => {
  const s = sink(false);
  await pipeline(Readable.from(source(block, total)), createEncryptStream([id.recipient()]), s.w);
});

const enc = sink(true);
await pipeline(Readable.from(source(block, total)), createEncryptStream([id.recipient()]), enc.w);
const file = enc.data();

await timeIt(`decrypt ${total / MiB} MiB, ${write / 1024} KiB writes`, async () => {
  const s = sink(false);
  await pipeline(Readable.from(slices(file, write)), createDecryptStream([id]), s.w);
  if (s.bytes() !== total) throw new Error("size mismatch");
});
