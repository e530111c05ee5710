import { execFileSync, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import {
  appendFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import os from "node:os";
import path from "node:path";
import { Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import tar from "tar-stream";
import { afterAll, describe, expect, it } from "vitest";
import { bundleStream } from "../core/bundle/blob.js";
import { createCompressor, createDecompressor, PLAIN_CHUNK, zstdEncoder } from "../core/bundle/codec.js";
import { packBundle } from "../core/bundle/pack.js";
import { fileHeader } from "../core/bundle/tar-header.js";
import { scanTranscript } from "../core/claude/transcript.js";
import { loadSettings } from "../core/config.js";
import { createDecryptStream, X25519Identity } from "../core/crypto/age/index.js";
import { fileIdentity } from "../core/file-identity.js";
import { sample } from "./helpers/sample.js";

/**
 * The fast paths of the bundle pipeline (see docs/performance.md) against
 * real tools: GNU tar and tar-stream read our tar headers, Debian's zstd reads
 * our zstd (one thread or several) and we read its, transcripts scan the same
 * as a plain JSON.parse of every line, and packing trusts only files that stat
 * shows untouched.
 */

const root = mkdtempSync(path.join(os.tmpdir(), "ccb-pipeline-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

async function collect(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of stream) parts.push(chunk as Buffer);
  return Buffer.concat(parts);
}

function through(input: Buffer, transform: NodeJS.ReadWriteStream, chunk = 64 * 1024): Promise<Buffer> {
  const parts: Buffer[] = [];
  const slices = Array.from({ length: Math.ceil(input.length / chunk) }, (_, i) =>
    input.subarray(i * chunk, (i + 1) * chunk),
  );
  return pipeline(
    Readable.from(slices),
    transform,
    new Writable({
      write(c: Buffer, _e, cb) {
        parts.push(c);
        cb();
      },
    }),
  ).then(() => Buffer.concat(parts));
}

describe("tar headers written by hand", () => {
  const long = `claude/projects/${"-home-al-very-long-project-path".repeat(8)}/11111111-2222-4333-8444-555555555555/subagents/agent-1.jsonl`;
  const entries = [
    { name: "ccbundle.json", content: Buffer.from("{}") },
    { name: "claude/plans/short.md", content: Buffer.from("# plan\n") },
    { name: `claude/${"a".repeat(120)}/${"b".repeat(90)}.txt`, content: randomBytes(1000) },
    { name: long, content: randomBytes(513) },
    { name: "claude/file-history/café 😀/ü@v1", content: Buffer.alloc(0) },
    { name: "claude/tasks/x/exactly-512", content: randomBytes(512) },
  ];
  const files = entries.slice(1).map((e) => {
    const source = path.join(root, sha(Buffer.from(e.name)));
    writeFileSync(source, e.content);
    return { path: e.name, size: e.content.length, sha256: sha(e.content), source };
  });

  it("are read back by tar-stream and by GNU tar, names, sizes and bytes intact", async () => {
    expect(Buffer.byteLength(long)).toBeGreaterThan(256); // needs a pax header
    const archive = await collect(packBundle(entries[0]!.content, files));
    expect(archive.length % 512).toBe(0);

    const extract = tar.extract();
    const seen: { name: string; body: Buffer }[] = [];
    const reading = (async () => {
      for await (const entry of extract) {
        seen.push({ name: entry.header.name, body: await collect(entry as unknown as Readable) });
      }
    })();
    Readable.from([archive]).pipe(extract as unknown as NodeJS.WritableStream);
    await reading;
    expect(seen.map((s) => s.name)).toEqual(entries.map((e) => e.name));
    for (const [i, s] of seen.entries()) expect(s.body.equals(entries[i]!.content)).toBe(true);

    const tarFile = path.join(root, "gnu.tar");
    writeFileSync(tarFile, archive);
    const listed = execFileSync("tar", ["-tf", tarFile], { encoding: "utf8" }).trim().split("\n");
    expect(listed).toEqual(entries.map((e) => e.name));
    const out = path.join(root, "gnu-x");
    mkdirSync(out);
    execFileSync("tar", ["-xf", tarFile, "-C", out]);
    for (const e of entries) expect(readFileSync(path.join(out, e.name)).equals(e.content)).toBe(true);
  });

  it("say sizes beyond ustar's 8 GiB in a pax record", () => {
    const header = fileHeader({ name: "claude/huge.jsonl", size: 9 * 2 ** 30, mode: 0o600, mtime: 0 });
    expect(header.length).toBe(3 * 512);
    expect(header.subarray(512, 1024).toString("latin1")).toContain(` size=${9 * 2 ** 30}\n`);
    expect(String.fromCharCode(header[156]!)).toBe("x");
    expect(String.fromCharCode(header[1024 + 156]!)).toBe("0");
  });
});

describe("zstd through the binding", () => {
  const input = sample(6 << 20);
  const zstdFile = path.join(root, "in.bin");
  writeFileSync(zstdFile, input);

  for (const [level, workers] of [
    [3, 0],
    [3, 2],
    [1, 1],
    [19, 0],
  ] as const) {
    it(`level ${level} with ${workers} worker thread(s) is what Debian's zstd decodes`, async () => {
      // Level 19 is slow by design: a smaller sample keeps the test fast.
      const data = level > 9 ? input.subarray(0, 512 * 1024) : input;
      const compressed = await through(data, createCompressor({ codec: "zstd", level, workers }));
      expect(compressed.length).toBeLessThan(data.length / 2);
      const decoded = execFileSync("zstd", ["-d", "-q", "-c"], { input: compressed, maxBuffer: 64 << 20 });
      expect(decoded.equals(data)).toBe(true);
      expect((await through(compressed, createDecompressor(), 4096)).equals(data)).toBe(true);
    });
  }

  it("decodes what the zstd CLI wrote, frames one after another, and gzip", async () => {
    const one = execFileSync("zstd", ["-3", "-q", "-c", zstdFile], { maxBuffer: 64 << 20 });
    const two = execFileSync("zstd", ["-1", "-q", "-c", "--no-check", zstdFile], { maxBuffer: 64 << 20 });
    const out = await through(Buffer.concat([one, two]), createDecompressor(), 1000);
    expect(out.equals(Buffer.concat([input, input]))).toBe(true);
    const gz = await through(input, createCompressor({ codec: "gzip", level: 6 }));
    expect((await through(gz, createDecompressor())).equals(input)).toBe(true);
  });

  it("decodes a frame that ends exactly where an output buffer fills (data of k × 256 KiB)", async () => {
    // The decoder emits PLAIN_CHUNK-byte buffers; a frame ending on one's last byte was once taken
    // for a truncated one, and every bundle whose tar had such a size failed to restore.
    for (const size of [PLAIN_CHUNK, 3 * PLAIN_CHUNK, 7 * PLAIN_CHUNK, PLAIN_CHUNK - 1, PLAIN_CHUNK + 1]) {
      const data = sample(size).subarray(0, size);
      const file = path.join(root, `exact-${size}.bin`);
      writeFileSync(file, data);
      const byCli = execFileSync("zstd", ["-3", "-q", "-c", "--check", file], { maxBuffer: 64 << 20 });
      const ours = await through(data, createCompressor({ codec: "zstd", level: 3, workers: 0 }));
      const cases: [Buffer, Buffer][] = [
        [byCli, data],
        [ours, data],
        [Buffer.concat([ours, byCli]), Buffer.concat([data, data])],
      ];
      for (const [compressed, expected] of cases) {
        for (const chunk of [compressed.length, 4096, 7]) {
          const out = await through(compressed, createDecompressor(), chunk);
          expect(out.equals(expected), `${size} bytes in ${chunk}-byte pieces`).toBe(true);
        }
      }
      // Still refused when cut there: before the checksum, in the last block, in a next frame's header.
      for (const cut of [byCli.subarray(0, byCli.length - 2), byCli.subarray(0, byCli.length - 9)]) {
        for (const chunk of [cut.length, 4096, 7]) {
          await expect(through(cut, createDecompressor(), chunk), `${size} cut`).rejects.toMatchObject({ exitCode: 5 });
        }
      }
      const halfHeader = Buffer.concat([byCli, byCli.subarray(0, 3)]);
      await expect(through(halfHeader, createDecompressor(), 4096)).rejects.toMatchObject({ exitCode: 5 });
    }
  });

  it("refuses truncated data and output past the limit with an IntegrityError", async () => {
    const compressed = await through(input, createCompressor({ codec: "zstd", level: 3, workers: 0 }));
    await expect(through(compressed.subarray(0, compressed.length - 100), createDecompressor())).rejects.toMatchObject({
      exitCode: 5,
    });
    await expect(through(compressed, createDecompressor(input.length - 1))).rejects.toMatchObject({ exitCode: 5 });
    await expect(through(Buffer.from("not compressed at all"), createDecompressor())).rejects.toMatchObject({
      exitCode: 5,
    });
  });
});

describe("the transcript scan", () => {
  /** What the scan must find, by the slow obvious route: JSON.parse every whole line. */
  function reference(text: string) {
    const whole = text.slice(0, text.lastIndexOf("\n") + 1);
    const records = whole
      .split("\n")
      .slice(0, -1)
      .map((l) => {
        try {
          return JSON.parse(l) as Record<string, unknown>;
        } catch {
          return {};
        }
      });
    const stamps = records.map((r) => r.timestamp).filter((t): t is string => typeof t === "string");
    return {
      size: Buffer.byteLength(whole),
      sha256: sha(Buffer.from(whole)),
      lines: records.length,
      cwd: records.find((r) => typeof r.cwd === "string")?.cwd,
      slugs: new Set(records.map((r) => r.slug).filter((s) => typeof s === "string")),
      firstTimestamp: stamps[0],
      lastTimestamp: stamps.at(-1),
      gitBranch: records
        .map((r) => r.gitBranch)
        .filter((b) => typeof b === "string" && b)
        .at(-1),
      version: records
        .map((r) => r.version)
        .filter((v) => typeof v === "string")
        .at(-1),
    };
  }

  it("finds what a JSON.parse of every line finds, across 1 MiB read boundaries and multi-MiB lines", async () => {
    const line = (i: number, extra: Record<string, unknown> = {}) =>
      JSON.stringify({
        parentUuid: null,
        isSidechain: false,
        cwd: "/home/al/app",
        sessionId: "s",
        version: `2.1.${i % 7}`,
        gitBranch: i % 5 === 0 ? "feature/ü" : "main",
        slug: i % 3 === 0 ? `plan-${i % 4}` : undefined,
        type: i === 0 ? "user" : "assistant",
        message: { role: "user", content: i === 0 ? "Fix the bug" : `${"x".repeat((i * 7919) % 40_000)}` },
        timestamp: new Date(Date.UTC(2026, 0, 1) + i * 1000).toISOString(),
        ...extra,
      });
    const lines = Array.from({ length: 400 }, (_, i) => line(i));
    lines.splice(200, 0, line(200, { big: "y".repeat(3 << 20) }));
    lines.push(JSON.stringify({ type: "summary", summary: "First summary", leafUuid: "u" }));
    lines.push(JSON.stringify({ type: "custom-title", customTitle: "Named by the user", sessionId: "s" }));
    lines.push(JSON.stringify({ type: "summary", summary: "Later summary", leafUuid: "v" }));
    const text = `${lines.join("\n")}\n{"type":"assistant","partial`;
    const file = path.join(root, "scan.jsonl");
    writeFileSync(file, text);

    const scan = await scanTranscript(file);
    const want = reference(text);
    expect(scan.size).toBe(want.size);
    expect(scan.sha256).toBe(want.sha256);
    expect(scan.cwd).toBe(want.cwd);
    expect(scan.slugs).toEqual(want.slugs);
    expect(scan.firstTimestamp).toBe(want.firstTimestamp);
    expect(scan.lastTimestamp).toBe(want.lastTimestamp);
    expect(scan.gitBranch).toBe(want.gitBranch);
    expect(scan.claudeVersion).toBe(want.version);
    expect(scan.title).toBe("Named by the user");
    expect(scan.hashedAt).toEqual(fileIdentity(statSync(file)));
  });

  it("titles a session by its first real prompt, skipping meta lines, commands and subagents", async () => {
    const file = path.join(root, "prompt.jsonl");
    const user = (content: unknown, extra: Record<string, unknown> = {}) =>
      JSON.stringify({ type: "user", cwd: "/p", message: { role: "user", content }, ...extra });
    writeFileSync(
      file,
      `${[
        user("side work", { isSidechain: true }),
        user("Caveat: the messages below…", { isMeta: true }),
        user("<command-name>/model</command-name>"),
        user([{ type: "text", text: "Make   the\nbuild green" }]),
        user("not the first"),
      ].join("\n")}\n`,
    );
    expect((await scanTranscript(file)).title).toBe("Make the build green");
  });
});

describe("packing", () => {
  const transcript = path.join(root, "live.jsonl");

  it("sends an untouched file without hashing it again, and re-checks a file whose stat changed", async () => {
    const content = Buffer.from('{"a":1}\n'.repeat(1000));
    writeFileSync(transcript, content);
    const file = {
      path: "claude/projects/-p/x.jsonl",
      size: content.length,
      sha256: sha(content),
      source: transcript,
      hashedAt: fileIdentity(statSync(transcript)),
    };
    expect((await collect(packBundle(Buffer.from("{}"), [file]))).includes(content)).toBe(true);

    // Same size, new bytes, new mtime: stat no longer matches, the bytes are hashed and refused.
    writeFileSync(transcript, Buffer.from('{"b":2}\n'.repeat(1000)));
    const later = new Date(Date.now() + 10_000);
    utimesSync(transcript, later, later);
    await expect(collect(packBundle(Buffer.from("{}"), [file]))).rejects.toThrow(/changed while it was being packed/);
  });

  it("keeps the hashed prefix of a transcript that another process appends to meanwhile", async () => {
    const content = Buffer.from(`${JSON.stringify({ type: "user", pad: "z".repeat(2000) })}\n`.repeat(3000));
    writeFileSync(transcript, content);
    const scan = await scanTranscript(transcript);
    const writer = spawn(process.execPath, [
      "-e",
      `const fs=require("fs");for(let i=0;i<4000;i++)fs.appendFileSync(${JSON.stringify(transcript)},'{"more":'+i+'}\\n');`,
    ]);
    try {
      for (let i = 0; i < 5; i++) {
        const archive = await collect(
          packBundle(Buffer.from("{}"), [
            {
              path: "claude/t.jsonl",
              size: scan.size,
              sha256: scan.sha256,
              source: transcript,
              hashedAt: scan.hashedAt,
            },
          ]),
        );
        expect(archive.includes(content)).toBe(true);
      }
    } finally {
      await new Promise((resolve) => writer.on("close", resolve));
    }
    appendFileSync(transcript, "");
  });
});

describe("a transcript compressed while it is scanned (push)", () => {
  it("its frames stand in for its bytes: the same tar, read by the zstd CLI, partial last line left out", async () => {
    const file = path.join(root, "scanned.jsonl");
    const lines = Array.from({ length: 40_000 }, (_, i) =>
      JSON.stringify({ type: i % 2 ? "user" : "assistant", i, text: randomBytes(30).toString("base64") }),
    );
    writeFileSync(file, `${lines.join("\n")}\n{"type":"user","half a line`);
    const frames: Buffer[] = [];
    const keep = (bytes: Buffer) => frames.push(Buffer.from(bytes));
    const encoder = zstdEncoder({ codec: "zstd", level: 3, workers: 2 })!;
    const scan = await scanTranscript(file, (whole) => encoder.write(whole, keep));
    encoder.end(keep);
    expect(scan.size).toBe(readFileSync(file).lastIndexOf(0x0a) + 1);

    const side = Buffer.from('{"todos":[]}\n');
    const files = [
      {
        path: "claude/projects/p/s.jsonl",
        source: file,
        size: scan.size,
        sha256: scan.sha256,
        hashedAt: scan.hashedAt,
      },
      { path: "claude/todos/s.json", size: side.length, sha256: sha256(side), content: side },
    ];
    const manifestJson = Buffer.from('{"format":"test"}');
    const identity = X25519Identity.generate();
    const blob = await collect(
      bundleStream({
        manifestJson,
        files: [{ ...files[0]!, compressed: frames }, files[1]!],
        recipients: [identity.recipient()],
        compression: { codec: "zstd", level: 3 },
      }),
    );
    const zst = await collect(Readable.from([blob]).pipe(createDecryptStream([identity])));
    const fromCli = execFileSync("zstd", ["-d", "-q", "-c"], { input: zst, maxBuffer: 64 << 20 });
    const expected = await collect(packBundle(manifestJson, files));
    expect(await tarEntries(fromCli)).toEqual(await tarEntries(expected));
    expect((await tarEntries(fromCli)).map((entry) => entry.name)).toEqual([
      "ccbundle.json",
      "claude/projects/p/s.jsonl",
      "claude/todos/s.json",
    ]);
  });
});

/** Each entry's name, size and sha256 (headers carry the time they were written, which differs). */
async function tarEntries(tarBytes: Buffer): Promise<{ name: string; size: number; sha256: string }[]> {
  const entries: { name: string; size: number; sha256: string }[] = [];
  const extract = tar.extract();
  Readable.from([tarBytes]).pipe(extract as unknown as NodeJS.WritableStream);
  for await (const entry of extract) {
    const data = await collect(entry as unknown as Readable);
    entries.push({ name: entry.header.name, size: entry.header.size ?? 0, sha256: sha256(data) });
  }
  return entries;
}

function sha256(bytes: Buffer): string {
  return createHash("sha256").update(bytes).digest("hex");
}

describe("compression settings", () => {
  const home = path.join(root, "home");

  it("take the level from CCBUNDLE_COMPRESSION_LEVEL or config.json and refuse nonsense", () => {
    mkdirSync(home, { recursive: true });
    const env = { HOME: home, CCBUNDLE_HOME: home };
    expect(loadSettings(env).compression).toMatchObject({ codec: "zstd", level: 3 });
    expect(loadSettings({ ...env, CCBUNDLE_COMPRESSION_LEVEL: "9" }).compression.level).toBe(9);
    writeFileSync(path.join(home, "config.json"), JSON.stringify({ compression: { level: 12, threads: 1 } }));
    expect(loadSettings(env).compression).toMatchObject({ level: 12, workers: 1 });
    expect(() => loadSettings({ ...env, CCBUNDLE_COMPRESSION_LEVEL: "30" })).toThrow(/1-19/);
    writeFileSync(path.join(home, "config.json"), JSON.stringify({ compression: { codec: "gzip", level: 12 } }));
    expect(() => loadSettings(env)).toThrow(/1-9 for gzip/);
  });
});
