import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { createCompressor, createDecompressor } from "../core/bundle/codec.js";
import { END_OF_ARCHIVE, fileHeader, padding } from "../core/bundle/tar-header.js";
import { readTar, type TarBatch } from "../core/bundle/tar-reader.js";

// The built module: from the TypeScript sources there is no worker script, and it reads in-process.
const built = fileURLToPath(new URL("../dist/core/bundle/threaded-reader.js", import.meta.url));
const { createThreadedTarReader, readerThreadsStarted } = (await import(
  built
)) as typeof import("../core/bundle/threaded-reader.js");

async function zstd(data: Buffer): Promise<Buffer> {
  const chunks: Buffer[] = [];
  await pipeline(Readable.from([data]), createCompressor({ codec: "zstd", level: 3, workers: 0 }), async (source) => {
    for await (const chunk of source) chunks.push(chunk as Buffer);
  });
  return Buffer.concat(chunks);
}

function tarOf(files: [string, Buffer][]): Buffer {
  const parts: Buffer[] = [];
  for (const [name, content] of files) {
    parts.push(fileHeader({ name, size: content.length, mode: 0o600, mtime: 0 }), content, padding(content.length));
  }
  parts.push(END_OF_ARCHIVE);
  return Buffer.concat(parts);
}

/** What a reader made of a tar: each entry's name, bytes and reported sha256, and the tar bytes counted. */
interface Read {
  entries: { name: string; bytes: string; sha256: string | undefined }[];
  bytes: number;
}

/** Data views left behind by released batches, to check that they were emptied (handed back). */
const releasedViews: Buffer[] = [];

/** With `release`, each batch is released once read, as unpackTar does (the data is copied first). */
async function collect(batches: AsyncIterable<TarBatch>, release = false): Promise<Read> {
  const read: Read = { entries: [], bytes: 0 };
  let parts: Buffer[] = [];
  let name = "";
  for await (const batch of batches) {
    read.bytes += batch.bytes;
    for (const event of batch.events) {
      if (event.type === "entry") {
        name = event.name;
        parts = [];
      } else if (event.type === "data") parts.push(Buffer.from(event.bytes));
      else {
        const bytes = Buffer.concat(parts);
        read.entries.push({ name, bytes: createHash("sha256").update(bytes).digest("hex"), sha256: event.sha256 });
      }
    }
    if (release && batch.release) {
      batch.release();
      for (const event of batch.events) if (event.type === "data") releasedViews.push(event.bytes);
    }
  }
  return read;
}

/** Read `input` (compressed) through the threaded reader, cut into `piece`-byte chunks. */
async function threaded(input: Buffer, piece: number, release = false): Promise<Read> {
  const pieces: Buffer[] = [];
  for (let at = 0; at < input.length; at += piece) pieces.push(input.subarray(at, at + piece));
  let read: Read | undefined;
  await pipeline(Readable.from(pieces), createThreadedTarReader(), async (source) => {
    read = await collect(source as AsyncIterable<TarBatch>, release);
  });
  return read!;
}

async function inProcess(input: Buffer): Promise<Read> {
  let read: Read | undefined;
  await pipeline(Readable.from([input]), createDecompressor(), async (source) => {
    read = await collect(readTar(source as AsyncIterable<Buffer>));
  });
  return read!;
}

describe("threaded tar reader", () => {
  const transcript = Buffer.from(
    Array.from({ length: 60_000 }, (_, i) => `{"i":${i},"cwd":"/home/u/p","t":"${"x".repeat(i % 97)}"}\n`).join(""),
  );
  const tar = tarOf([
    ["ccbundle.json", Buffer.from('{"format":"ccbundle/1"}')],
    ["claude/projects/-p/s.jsonl", transcript],
    ["claude/empty", Buffer.alloc(0)],
    [`claude/projects/-p/${"d".repeat(180)}/tool-results/x.txt`, Buffer.from("x".repeat(777))],
  ]);

  it("reads entries, bytes and hashes, whatever the chunking, for zstd (on the thread) and gzip (in process)", async () => {
    const expected = await inProcess(await zstd(tar));
    expect(expected.entries.map((e) => e.name)).toEqual([
      "ccbundle.json",
      "claude/projects/-p/s.jsonl",
      "claude/empty",
      `claude/projects/-p/${"d".repeat(180)}/tool-results/x.txt`,
    ]);
    for (const entry of expected.entries) expect(entry.sha256).toBe(entry.bytes);
    expect(expected.bytes).toBe(tar.length);
    const z = await zstd(tar);
    for (const piece of [4096, 65_536, z.length]) expect(await threaded(z, piece)).toEqual(expected);
    // Frames one after another (parallel zstd, precompressed transcripts) read as one stream.
    const [head, rest] = [tar.subarray(0, 70_000), tar.subarray(70_000)];
    expect(await threaded(Buffer.concat([await zstd(head), await zstd(rest)]), 65_536)).toEqual(expected);
    expect(await threaded(gzipSync(tar), 10_000)).toEqual(expected);
    expect((await threaded(Buffer.alloc(0), 1)).entries).toEqual([]);
  });

  it("reads a tar of exactly 1 and 3 × 256 KiB (a zstd frame ending as an output buffer fills)", async () => {
    for (const buffers of [1, 3]) {
      // header + content + end-of-archive = buffers × 256 KiB, the content a multiple of 512.
      const content = Buffer.alloc(buffers * 256 * 1024 - 512 - 1024, "x");
      const exact = tarOf([["claude/projects/-p/s.jsonl", content]]);
      expect(exact.length).toBe(buffers * 256 * 1024);
      const z = await zstd(exact);
      const expected = await inProcess(z);
      expect(expected.entries[0]!.bytes).toBe(createHash("sha256").update(content).digest("hex"));
      for (const piece of [4096, z.length]) expect(await threaded(z, piece)).toEqual(expected);
    }
  });

  it("fails on damaged and truncated data with the in-process reader's messages", async () => {
    const z = await zstd(tar);
    const variants = [
      z.subarray(0, z.length - 100),
      Buffer.from("ab"),
      Buffer.from("not a bundle at all"),
      // Whole zstd, bad tar: cut in the middle of an entry, and a header with a wrong checksum.
      await zstd(tar.subarray(0, 5000)),
      await zstd(Buffer.concat([Buffer.alloc(100, 1), tar.subarray(100)])),
    ];
    for (const [from, to] of [
      [4, 12],
      [100, 400],
      [z.length - 50, z.length],
    ] as const) {
      const damaged = Buffer.from(z);
      damaged.fill(0xff, from, to);
      variants.push(damaged);
    }
    const messages: string[] = [];
    for (const input of variants) {
      const fromThread = await threaded(input, 65_536).then(
        (read) => JSON.stringify(read),
        (err: Error) => err.message,
      );
      const local = await inProcess(input).then(
        (read) => JSON.stringify(read),
        (err: Error) => err.message,
      );
      expect(fromThread).toBe(local);
      messages.push(fromThread);
    }
    expect(messages.filter((m) => /not valid compressed data|neither zstd nor gzip/.test(m)).length).toBeGreaterThan(3);
    expect(messages).toContain("unexpected end of data");
    expect(messages).toContain("invalid tar header (bad checksum)");
  });

  it("takes released batches' memory back and fills it again: many blobs read right through it", async () => {
    const z = await zstd(tar);
    const expected = await inProcess(z);
    releasedViews.length = 0;
    for (let i = 0; i < 8; i++) {
      for (const piece of [4096, 65_536]) expect(await threaded(z, piece, true)).toEqual(expected);
    }
    // Handed back: each view of a released batch is empty now (its memory moved to the thread).
    expect(releasedViews.length).toBeGreaterThan(100);
    expect(releasedViews.every((view) => view.length === 0)).toBe(true);
  });

  it("keeps a thread that read a blob to its end for the next blob, and never one that failed", async () => {
    const z = await zstd(tar);
    const expected = await inProcess(z);
    // One blob first, so that a thread is spare whatever ran before.
    expect(await threaded(z, 65_536)).toEqual(expected);
    const before = readerThreadsStarted();
    for (let i = 0; i < 5; i++) expect(await threaded(z, 65_536)).toEqual(expected);
    expect(readerThreadsStarted()).toBe(before);
    // A failed read ends its thread: the next blob starts another, and reads right.
    await expect(threaded(await zstd(tar.subarray(0, 5000)), 65_536)).rejects.toThrow("unexpected end of data");
    expect(await threaded(z, 65_536)).toEqual(expected);
    expect(readerThreadsStarted()).toBe(before + 1);
  });
});
