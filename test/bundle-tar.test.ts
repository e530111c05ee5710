import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import tar from "tar-stream";
import { afterAll, describe, expect, it } from "vitest";
import { BUNDLE_FORMAT, isAllowedPath, type Manifest, parseManifest } from "../core/bundle/manifest.js";
import { packBundle } from "../core/bundle/pack.js";
import { unpackBundle } from "../core/bundle/unpack.js";
import { chunkRewriter, remapFile } from "../core/claude/files.js";
import { createRemapper, type Remapper } from "../core/claude/remap.js";

const root = mkdtempSync(path.join(os.tmpdir(), "ccb-tar-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const ID = "11111111-2222-4333-8444-555555555555";
const sha = (b: Buffer | string) => createHash("sha256").update(b).digest("hex");

function manifestFor(files: { path: string; content: Buffer }[]): Manifest {
  return {
    format: BUNDLE_FORMAT,
    created: new Date().toISOString(),
    tool: { name: "ccbundle", version: "test" },
    source: { host: "h", user: "u", platform: "linux", home: "/home/u", claudeDir: "/home/u/.claude" },
    sessions: [
      {
        id: ID,
        cwd: "/p",
        folder: "-p",
        files: files.map((f) => ({ path: f.path, size: f.content.length, sha256: sha(f.content) })),
      },
    ],
  };
}

async function tarOf(
  entries: { name: string; content: Buffer; type?: "file" | "symlink" | "directory"; linkname?: string }[],
) {
  const pack = tar.pack();
  for (const e of entries) {
    if (e.type === "symlink") pack.entry({ name: e.name, type: "symlink", linkname: e.linkname ?? "/etc/passwd" });
    else if (e.type === "directory") pack.entry({ name: e.name, type: "directory" });
    else pack.entry({ name: e.name, size: e.content.length }, e.content);
  }
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const c of pack as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks);
}

describe("bundle tar layer", () => {
  it("packs the manifest first and unpacks byte-identical files", async () => {
    const transcript = Buffer.from('{"a":1}\n{"b":2}\n');
    const src = path.join(root, "t.jsonl");
    writeFileSync(src, transcript);
    const files = [{ path: `claude/projects/-p/${ID}.jsonl`, content: transcript }];
    const manifest = manifestFor(files);
    const stream = packBundle(Buffer.from(JSON.stringify(manifest)), [
      { ...manifest.sessions[0]!.files[0]!, source: src },
    ]);
    const staging = mkdtempSync(path.join(root, "s-"));
    const got = await unpackBundle(stream, staging);
    expect(got.sessions[0]!.id).toBe(ID);
    expect(readFileSync(path.join(staging, "claude/projects/-p", `${ID}.jsonl`))).toEqual(transcript);
  });

  it("rewrites a file on its way to staging as remapFile does, however the tar bytes are cut", async () => {
    const remapper = createRemapper([
      { from: "/home/u/p", to: "/Users/bob/code/my app ü" },
      { from: "/home/u", to: "/Users/bob" },
    ]);
    const lineOnly: Remapper = { identity: false, line: (text) => text.split("/home/u").join("/h") };
    const line = (i: number) =>
      JSON.stringify({ cwd: "/home/u/p", i, out: `/home/u/.npmrc\n/home/u/p/${"é".repeat(i % 5)}${i}.ts` });
    const lines = Array.from({ length: 3000 }, (_, i) => line(i));
    const long = JSON.stringify({ cwd: "/home/u/p", t: `${"x".repeat(300_000)} /home/u/p/z` });
    const contents = [
      Buffer.from(`${lines.join("\n")}\n`),
      Buffer.from(`${lines.slice(0, 50).join("\n")}\n${long}\n${lines.slice(50, 60).join("\n")}`),
      Buffer.from("/home/u"),
      Buffer.concat([Buffer.from(`${line(1)}\n`), Buffer.from([0xc3, 0x28, 0xff, 0x0a]), Buffer.from(line(2))]),
      Buffer.alloc(0),
    ];
    let n = 0;
    for (const content of contents) {
      for (const r of [remapper, lineOnly]) {
        const name = `claude/projects/-p/${ID}.jsonl`;
        const manifest = manifestFor([{ path: name, content }]);
        const whole = await tarOf([
          { name: "ccbundle.json", content: Buffer.from(JSON.stringify(manifest)) },
          { name, content },
        ]);
        // Cut into pieces of 1 byte to 70 KB, so line ends fall anywhere.
        const pieces: Buffer[] = [];
        for (let at = 0, i = 0; at < whole.length; i++) {
          const size = [1, 7, 512, 4096, 70_000, 33][i % 6]!;
          pieces.push(whole.subarray(at, at + size));
          at += size;
        }
        const staging = mkdtempSync(path.join(root, "s-"));
        await unpackBundle(Readable.from(pieces), staging, { rewriterFor: async () => chunkRewriter(r) });
        const source = path.join(root, `remap-${++n}`);
        writeFileSync(source, content);
        await remapFile(source, `${source}.out`, r);
        const staged = readFileSync(path.join(staging, "claude/projects/-p", `${ID}.jsonl`));
        expect(staged.equals(readFileSync(`${source}.out`))).toBe(true);
      }
    }
  });

  it("fails packing when a file changed after it was hashed", async () => {
    const src = path.join(root, "changing.jsonl");
    writeFileSync(src, "one\n");
    const manifest = manifestFor([{ path: `claude/projects/-p/${ID}.jsonl`, content: Buffer.from("two\n") }]);
    const stream = packBundle(Buffer.from(JSON.stringify(manifest)), [
      { ...manifest.sessions[0]!.files[0]!, source: src },
    ]);
    await expect(unpackBundle(stream, mkdtempSync(path.join(root, "s-")))).rejects.toThrow();
  });

  const good = Buffer.from("hello\n");
  const goodPath = `claude/projects/-p/${ID}.jsonl`;
  const hostile: [string, () => Promise<Buffer>][] = [
    ["a first entry that is not the manifest", () => tarOf([{ name: goodPath, content: good }])],
    [
      "an entry not in the manifest",
      async () => {
        const m = manifestFor([{ path: goodPath, content: good }]);
        return tarOf([
          { name: "ccbundle.json", content: Buffer.from(JSON.stringify(m)) },
          { name: goodPath, content: good },
          { name: "claude/plans/x.md", content: good },
        ]);
      },
    ],
    [
      "a symlink",
      async () => {
        const m = manifestFor([{ path: goodPath, content: good }]);
        return tarOf([
          { name: "ccbundle.json", content: Buffer.from(JSON.stringify(m)) },
          { name: goodPath, content: good, type: "symlink" },
        ]);
      },
    ],
    [
      "a directory entry",
      async () => {
        const m = manifestFor([{ path: goodPath, content: good }]);
        return tarOf([
          { name: "ccbundle.json", content: Buffer.from(JSON.stringify(m)) },
          { name: "claude/", content: good, type: "directory" },
        ]);
      },
    ],
    [
      "a duplicate entry",
      async () => {
        const m = manifestFor([{ path: goodPath, content: good }]);
        return tarOf([
          { name: "ccbundle.json", content: Buffer.from(JSON.stringify(m)) },
          { name: goodPath, content: good },
          { name: goodPath, content: good },
        ]);
      },
    ],
    [
      "content that does not match its hash",
      async () => {
        const m = manifestFor([{ path: goodPath, content: good }]);
        return tarOf([
          { name: "ccbundle.json", content: Buffer.from(JSON.stringify(m)) },
          { name: goodPath, content: Buffer.from("HELLO\n") },
        ]);
      },
    ],
    [
      "a listed file that never comes",
      async () => {
        const m = manifestFor([{ path: goodPath, content: good }]);
        return tarOf([{ name: "ccbundle.json", content: Buffer.from(JSON.stringify(m)) }]);
      },
    ],
    [
      "a manifest path escaping with ..",
      async () => {
        const m = manifestFor([{ path: "claude/projects/-p/../../../../etc/x", content: good }]);
        return tarOf([
          { name: "ccbundle.json", content: Buffer.from(JSON.stringify(m)) },
          { name: "claude/projects/-p/../../../../etc/x", content: good },
        ]);
      },
    ],
    [
      "an absolute manifest path",
      async () => {
        const m = manifestFor([{ path: "/etc/passwd", content: good }]);
        return tarOf([
          { name: "ccbundle.json", content: Buffer.from(JSON.stringify(m)) },
          { name: "/etc/passwd", content: good },
        ]);
      },
    ],
    ["not a tar at all", async () => Buffer.from("x".repeat(2000))],
  ];
  for (const [name, make] of hostile) {
    it(`rejects ${name} with exit 5 and writes nothing outside staging`, async () => {
      const staging = mkdtempSync(path.join(root, "h-"));
      const err = await unpackBundle(Readable.from([await make()]), staging).catch((e: unknown) => e);
      expect(err).toMatchObject({ exitCode: 5 });
    });
  }
});

describe("allowed bundle paths", () => {
  const s = { id: ID, folder: "-p" };
  it.each([
    [`claude/projects/-p/${ID}.jsonl`, true],
    [`claude/projects/-p/${ID}/subagents/agent-1.jsonl`, true],
    [`claude/projects/-p/${ID}/tool-results/x.txt`, true],
    [`claude/file-history/${ID}/abc@v1`, true],
    [`claude/tasks/${ID}/1.json`, true],
    ["claude/plans/a-b.md", true],
    [`claude/todos/${ID}-agent-${ID}.json`, true],
    ["claude/history.jsonl", true],
    ["claude/.credentials.json", false],
    ["claude/settings.json", false],
    [`claude/projects/-other/${ID}.jsonl`, false],
    [`claude/projects/-p/22222222-2222-4333-8444-555555555555.jsonl`, false],
    [`claude/file-history/${ID}`, false],
    ["claude/plans/../x.md", false],
    [`claude/todos/other-agent-x.json`, false],
    [`x/projects/-p/${ID}.jsonl`, false],
  ])("%s → %s", (p, ok) => expect(isAllowedPath(p, s)).toBe(ok));

  it("parseManifest rejects an unknown format with a hint to upgrade", () => {
    const m = {
      ...manifestFor([{ path: `claude/projects/-p/${ID}.jsonl`, content: Buffer.from("x") }]),
      format: "ccbundle/9",
    };
    expect(() => parseManifest(Buffer.from(JSON.stringify(m)))).toThrow(/unknown bundle format/);
  });
});
