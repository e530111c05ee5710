import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { createCompressor, createDecompressor } from "../core/bundle/codec.js";

// The built module: from the TypeScript sources there is no worker script, and it falls back in-process.
const built = fileURLToPath(new URL("../dist/core/bundle/threaded-decompressor.js", import.meta.url));
const { createThreadedDecompressor } = (await import(
  built
)) as typeof import("../core/bundle/threaded-decompressor.js");

async function zstd(data: Buffer): Promise<Buffer> {
  const chunks: Buffer[] = [];
  await pipeline(Readable.from([data]), createCompressor({ codec: "zstd", level: 3, workers: 0 }), async (source) => {
    for await (const chunk of source) chunks.push(chunk as Buffer);
  });
  return Buffer.concat(chunks);
}

/** Decompress `input` cut into `piece`-byte chunks. */
async function decompress(input: Buffer, piece: number): Promise<Buffer> {
  const pieces: Buffer[] = [];
  for (let at = 0; at < input.length; at += piece) pieces.push(input.subarray(at, at + piece));
  const out: Buffer[] = [];
  await pipeline(Readable.from(pieces), createThreadedDecompressor(), async (source) => {
    for await (const chunk of source) out.push(chunk as Buffer);
  });
  return Buffer.concat(out);
}

async function decompressLocally(input: Buffer): Promise<Buffer> {
  const out: Buffer[] = [];
  await pipeline(Readable.from([input]), createDecompressor(), async (source) => {
    for await (const chunk of source) out.push(chunk as Buffer);
  });
  return Buffer.concat(out);
}

describe("threaded decompressor", () => {
  const plain = Buffer.from(
    Array.from({ length: 60_000 }, (_, i) => `{"i":${i},"cwd":"/home/u/p","t":"${"x".repeat(i % 97)}"}\n`).join(""),
  );

  it("gives back the bytes, whatever the chunking, for zstd (on the thread) and gzip (in process)", async () => {
    const z = await zstd(plain);
    for (const piece of [4096, 65_536, z.length]) expect((await decompress(z, piece)).equals(plain)).toBe(true);
    const small = plain.subarray(0, 20_000);
    expect((await decompress(await zstd(small), 1)).equals(small)).toBe(true);
    // Frames one after another (appended bundles, parallel zstd) read as one stream.
    const twice = Buffer.concat([z, z]);
    expect((await decompress(twice, 65_536)).equals(Buffer.concat([plain, plain]))).toBe(true);
    expect((await decompress(gzipSync(plain), 10_000)).equals(plain)).toBe(true);
    expect((await decompress(Buffer.alloc(0), 1)).length).toBe(0);
  });

  it("fails (or not) on damaged and truncated data as the in-process decompressor does", async () => {
    const z = await zstd(plain);
    const variants = [z.subarray(0, z.length - 100), Buffer.from("ab"), Buffer.from("not a bundle at all")];
    for (const [from, to] of [
      [4, 12],
      [100, 400],
      [z.length - 50, z.length],
    ] as const) {
      const damaged = Buffer.from(z);
      damaged.fill(0xff, from, to);
      variants.push(damaged);
    }
    let failures = 0;
    for (const input of variants) {
      const threaded = await decompress(input, 65_536).then(
        (out) => out.toString("hex"),
        (err: Error) => err.message,
      );
      const local = await decompressLocally(input).then(
        (out) => out.toString("hex"),
        (err: Error) => err.message,
      );
      expect(threaded).toBe(local);
      if (/not valid compressed data|neither zstd nor gzip/.test(threaded)) failures++;
    }
    expect(failures).toBeGreaterThanOrEqual(4);
  });
});
