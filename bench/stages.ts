import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { fileURLToPath } from "node:url";
import tar from "tar-stream";
import { bundleStream } from "../core/bundle/blob.js";
import { createCompressor, createDecompressor } from "../core/bundle/codec.js";
import { scanTranscript } from "../core/claude/transcript.js";
import { createDecryptStream, createEncryptStream, X25519Identity } from "../core/crypto/age/index.js";
import { ensureCorpus } from "./corpus.js";

/**
 * Throughput of each stage of the bundle pipeline on the bench corpus, one at
 * a time, in memory where possible: which stage bounds `backup`?
 *     npm run build && node dist/bench/stages.js
 */

const MB = 1e6;
const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../../bench/.work/corpus");
const corpus = ensureCorpus({ root, seed: 1, sessions: 300, totalBytes: 300 * MB });

function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? walk(path.join(dir, e.name)) : [path.join(dir, e.name)],
  );
}
const files = walk(corpus.claudeDir).sort();
const contents = files.map((file) => readFileSync(file));
const total = contents.reduce((n, b) => n + b.length, 0);

async function time(label: string, bytes: number, fn: () => Promise<unknown> | unknown, runs = 3): Promise<void> {
  let best = Number.POSITIVE_INFINITY;
  for (let i = 0; i < runs; i++) {
    const start = performance.now();
    await fn();
    best = Math.min(best, performance.now() - start);
  }
  console.log(
    `${label.padEnd(44)} ${(bytes / MB / (best / 1000)).toFixed(0).padStart(6)} MB/s  (${best.toFixed(0)} ms)`,
  );
}

const sink = () =>
  new Writable({
    highWaterMark: 1 << 20,
    write(_c, _e, cb) {
      cb();
    },
  });
const chunks = (buf: Buffer, size = 1 << 20) => {
  const out: Buffer[] = [];
  for (let i = 0; i < buf.length; i += size) out.push(buf.subarray(i, i + size));
  return out;
};

console.log(`corpus: ${files.length} files, ${(total / MB).toFixed(0)} MB`);
await time("read files (readFileSync)", total, () => {
  for (const f of files) readFileSync(f);
});
await time("sha256", total, () => {
  for (const c of contents) createHash("sha256").update(c).digest();
});
const jsonl = files.filter((f) => f.endsWith(".jsonl") && !f.endsWith("history.jsonl"));
const jsonlBytes = jsonl.reduce((n, f) => n + readFileSync(f).length, 0);
await time("scanTranscript (all transcripts)", jsonlBytes, async () => {
  for (const f of jsonl) await scanTranscript(f);
});
let tarBuffer = Buffer.alloc(0);
await time("tar-stream pack (in memory)", total, async () => {
  const pack = tar.pack();
  const parts: Buffer[] = [];
  const done = (async () => {
    for await (const chunk of pack as AsyncIterable<Buffer>) parts.push(chunk);
  })();
  for (let i = 0; i < files.length; i++) {
    await new Promise<void>((resolve, reject) =>
      pack.entry({ name: files[i]!, size: contents[i]!.length }, contents[i]!, (err) =>
        err ? reject(err) : resolve(),
      ),
    );
  }
  pack.finalize();
  await done;
  tarBuffer = Buffer.concat(parts);
});
let compressed = Buffer.alloc(0);
for (const workers of [0, 1, 2]) {
  for (const level of [1, 3]) {
    await time(`zstd level ${level}, nbWorkers ${workers}`, tarBuffer.length, async () => {
      const parts: Buffer[] = [];
      await pipeline(
        Readable.from(chunks(tarBuffer)),
        createCompressor({ codec: "zstd", level, workers }),
        async (src) => {
          for await (const c of src) parts.push(c as Buffer);
        },
      );
      if (level === 3) compressed = Buffer.concat(parts);
    });
  }
}
console.log(`  ratio at level 3: ${(tarBuffer.length / compressed.length).toFixed(2)}x`);
await time(
  "gzip level 6",
  tarBuffer.length,
  () => pipeline(Readable.from(chunks(tarBuffer)), createCompressor({ codec: "gzip", level: 6 }), sink()),
  1,
);
await time("zstd decompress", tarBuffer.length, () =>
  pipeline(Readable.from(chunks(compressed)), createDecompressor(), sink()),
);
const id = X25519Identity.generate();
let encrypted = Buffer.alloc(0);
await time("age encrypt (tar bytes)", tarBuffer.length, async () => {
  const parts: Buffer[] = [];
  await pipeline(Readable.from(chunks(tarBuffer)), createEncryptStream([id.recipient()]), async (src) => {
    for await (const c of src) parts.push(c as Buffer);
  });
  encrypted = Buffer.concat(parts);
});
await time("age decrypt (tar bytes)", tarBuffer.length, () =>
  pipeline(Readable.from(chunks(encrypted)), createDecryptStream([id]), sink()),
);
const packFiles = files.map((file, i) => ({
  path: `claude/${path.relative(corpus.claudeDir, file)}`,
  source: file,
  size: contents[i]!.length,
  sha256: createHash("sha256").update(contents[i]!).digest("hex"),
}));
for (const workers of [0, 1, 2]) {
  await time(`bundleStream (files → /dev/null), workers ${workers}`, total, () =>
    pipeline(
      bundleStream({
        manifestJson: Buffer.from("{}"),
        files: packFiles,
        recipients: [id.recipient()],
        compression: { codec: "zstd", level: 3, workers },
      }),
      sink(),
    ),
  );
}
