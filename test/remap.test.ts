import { closeSync, createReadStream, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { open } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { chunkRewriter, remapFile } from "../core/claude/files.js";
import { forkId, planFork } from "../core/claude/fork.js";
import { createRemapper, type Remapper, remapJsonl, rewriteFormFor } from "../core/claude/remap.js";

const line = (value: unknown) => JSON.stringify(value);

describe("path remapping in JSONL lines", () => {
  const remap = createRemapper([
    { from: "/home/alice/work/app", to: "/Users/bob/code/my app" },
    { from: "/home/alice", to: "/Users/bob" },
  ]);

  it("rewrites cwd, tool inputs and results, keeps everything else byte-identical", () => {
    const input = line({
      cwd: "/home/alice/work/app",
      message: {
        content: [
          {
            type: "tool_use",
            input: { file_path: "/home/alice/work/app/src/a.ts", command: "cd /home/alice/work/app && ls ~/x" },
          },
        ],
      },
      toolUseResult: { filePath: "/home/alice/work/app/b.ts", stdout: "see /home/alice/.npmrc\n" },
      n: 1.5e3,
      uni: "café ✓",
    });
    const out = remap.line(input);
    expect(JSON.parse(out)).toEqual({
      cwd: "/Users/bob/code/my app",
      message: {
        content: [
          {
            type: "tool_use",
            input: { file_path: "/Users/bob/code/my app/src/a.ts", command: "cd /Users/bob/code/my app && ls ~/x" },
          },
        ],
      },
      toolUseResult: { filePath: "/Users/bob/code/my app/b.ts", stdout: "see /Users/bob/.npmrc\n" },
      n: 1500,
      uni: "café ✓",
    });
    // Bytes outside the paths are unchanged: `1.5e3` stays as written.
    expect(out).toContain('"n":1500');
    expect(remap.line('{"n":1.5e3,"p":"/home/alice/x"}')).toBe('{"n":1.5e3,"p":"/Users/bob/x"}');
  });

  it("matches whole path components only", () => {
    const input = line({
      a: "/home/alice/work/app2/x",
      b: "/home/alicex",
      c: "/x/home/alice/y",
      d: "/home/alice/work/app.old/z",
    });
    expect(remap.line(input)).toBe(
      line({ a: "/Users/bob/work/app2/x", b: "/home/alicex", c: "/x/home/alice/y", d: "/Users/bob/work/app.old/z" }),
    );
  });

  it("matches at the end of a sentence and inside quotes and URLs", () => {
    const input = line({
      t: "Edited /home/alice/work/app. Also 'file:///home/alice/work/app/x' and (/home/alice/work/app)",
    });
    expect(JSON.parse(remap.line(input)).t).toBe(
      "Edited /Users/bob/code/my app. Also 'file:///Users/bob/code/my%20app/x' and (/Users/bob/code/my app)",
    );
  });

  it("handles JSON-escaped Windows paths and their forward-slash form", () => {
    const win = createRemapper([{ from: "C:\\Users\\alice\\app", to: "/home/bob/app" }]);
    const input = line({ cwd: "C:\\Users\\alice\\app", f: "C:/Users/alice/app/src/x.ts", g: "C:\\Users\\alice\\app2" });
    expect(JSON.parse(win.line(input))).toEqual({
      cwd: "/home/bob/app",
      f: "/home/bob/app/src/x.ts",
      g: "C:\\Users\\alice\\app2",
    });
  });

  it("escapes replacement paths that need it, and every rewritten line still parses", () => {
    const odd = createRemapper([{ from: "/home/a", to: '/home/b "quoted" \\ dir' }]);
    const out = odd.line(line({ p: "/home/a/x" }));
    expect(JSON.parse(out).p).toBe('/home/b "quoted" \\ dir/x');
  });

  it("is the identity when nothing maps", () => {
    const none = createRemapper([{ from: "/same", to: "/same" }]);
    expect(none.identity).toBe(true);
    expect(none.line('{"p":"/same/x"}')).toBe('{"p":"/same/x"}');
  });

  it("keeps a path that maps onto itself even when a shorter mapping contains it", async () => {
    // A teammate on a shared server pulls into the sender's own project path: the project stays where
    // it is, while the rest of the sender's home becomes the receiver's.
    const kept = createRemapper([
      { from: "/home/alice/src/app", to: "/home/alice/src/app" },
      { from: "/home/alice", to: "/home/bob" },
    ]);
    expect(kept.identity).toBe(false);
    const input = line({ cwd: "/home/alice/src/app", a: "/home/alice/src/app/x.ts", b: "/home/alice/.npmrc" });
    const want = line({ cwd: "/home/alice/src/app", a: "/home/alice/src/app/x.ts", b: "/home/bob/.npmrc" });
    expect(kept.line(input)).toBe(want);
    expect(kept.rewrite?.(Buffer.from(`${input}\n`)).toString()).toBe(`${want}\n`);
  });
});

describe("paths where tools print them", () => {
  const remap = createRemapper([
    { from: "/home/alice/work/app", to: "/Users/bob/code/my app" },
    { from: "/home/alice", to: "/Users/bob" },
  ]);

  it("rewrites a path at the start of a line of output (after a JSON escape) and after a colour code", () => {
    const stdout =
      "PASS /home/alice/work/app/a.test.ts\n/home/alice/work/app/src/x.ts:3:1 ok\n\t/home/alice/.npmrc\n\u001b[32m/home/alice/work/app/b.ts\u001b[0m";
    const out = JSON.parse(remap.line(line({ stdout }))).stdout;
    expect(out).toBe(
      "PASS /Users/bob/code/my app/a.test.ts\n/Users/bob/code/my app/src/x.ts:3:1 ok\n\t/Users/bob/.npmrc\n\u001b[32m/Users/bob/code/my app/b.ts\u001b[0m",
    );
  });

  it("does not take an escaped backslash followed by n for a newline", () => {
    // The string holds a literal backslash, then `n/home/alice`: `n` continues a name.
    const input = line({ t: "x\\n/home/alice/y" });
    expect(remap.line(input)).toBe(input);
  });

  it("rewrites percent-encoded paths in file:// links", () => {
    const odd = createRemapper([{ from: "/home/al/My Proj ü", to: "/srv/b/new one" }]);
    const input = line({ text: "see [x](file:///home/al/My%20Proj%20%C3%BC/src/x.ts) and /home/al/My Proj ü/y" });
    expect(JSON.parse(odd.line(input)).text).toBe("see [x](file:///srv/b/new%20one/src/x.ts) and /srv/b/new one/y");
  });

  it("rewrites object keys too (absolute trackedFileBackups keys)", () => {
    const input = line({ trackedFileBackups: { "/home/alice/.bashrc": { v: 1 }, "src/a.ts": { v: 2 } } });
    expect(JSON.parse(remap.line(input)).trackedFileBackups).toEqual({
      "/Users/bob/.bashrc": { v: 1 },
      "src/a.ts": { v: 2 },
    });
  });
});

describe("Windows source paths onto a POSIX target", () => {
  const win = createRemapper([
    { from: "C:\\Users\\alice\\My Proj", to: "/home/bob/proj" },
    { from: "C:\\Users\\alice", to: "/home/bob" },
  ]);

  it("converts the separators of the rest of the path, and only of that path", () => {
    const input = line({
      file_path: "C:\\Users\\alice\\My Proj\\src\\new\\app.ts",
      spaced: "C:\\Users\\alice\\My Proj\\My Documents\\a b.txt",
      command: 'cd C:\\Users\\alice\\My Proj && findstr /r "\\d+" src\\x.ts',
      out: "C:\\Users\\alice\\My Proj\\src\\x.ts:3: error \\d C:\\Users\\alice\\.npmrc\nC:\\Users\\alice\\My Proj\\b.ts",
      regexAfter: "C:\\Users\\alice\\My Proj\\src  \\d+",
    });
    expect(JSON.parse(win.line(input))).toEqual({
      file_path: "/home/bob/proj/src/new/app.ts",
      spaced: "/home/bob/proj/My Documents/a b.txt",
      command: 'cd /home/bob/proj && findstr /r "\\d+" src\\x.ts',
      out: "/home/bob/proj/src/x.ts:3: error \\d /home/bob/.npmrc\n/home/bob/proj/b.ts",
      regexAfter: "/home/bob/proj/src  \\d+",
    });
  });

  it("matches either case of drive letter, forward slashes, and file:/// URLs", () => {
    const input = line({
      a: "c:\\Users\\alice\\My Proj\\x",
      b: "C:/Users/alice/My Proj/y",
      c: "file:///C:/Users/alice/My%20Proj/z.ts",
      d: "file:///c:/Users/alice/.npmrc",
    });
    expect(JSON.parse(win.line(input))).toEqual({
      a: "/home/bob/proj/x",
      b: "/home/bob/proj/y",
      c: "file:///home/bob/proj/z.ts",
      d: "file:///home/bob/.npmrc",
    });
  });

  it("rewrites plain text (plans, persisted output) with single backslashes", () => {
    const text = createRemapper([{ from: "C:\\Users\\alice\\My Proj", to: "/home/bob/proj" }], "text");
    expect(text.line("1. Read C:\\Users\\alice\\My Proj\\src\\module_0.ts\n2. Run \\d")).toBe(
      "1. Read /home/bob/proj/src/module_0.ts\n2. Run \\d",
    );
  });
});

describe("which restored files are rewritten", () => {
  it("session lines and JSON side files as JSON, plans and tool output as text, checkpoints never", () => {
    expect(rewriteFormFor("claude/projects/-p/abc.jsonl")).toBe("json");
    expect(rewriteFormFor("claude/projects/-p/abc/subagents/agent-a1.jsonl")).toBe("json");
    expect(rewriteFormFor("claude/projects/-p/abc/subagents/agent-a1.meta.json")).toBe("json");
    expect(rewriteFormFor("claude/tasks/abc/1.json")).toBe("json");
    expect(rewriteFormFor("claude/history.jsonl")).toBe("json");
    expect(rewriteFormFor("claude/plans/slug.md")).toBe("text");
    expect(rewriteFormFor("claude/projects/-p/abc/tool-results/toolu_1.txt")).toBe("text");
    expect(rewriteFormFor("claude/projects/-p/abc/tool-results/img.png")).toBeUndefined();
    expect(rewriteFormFor("claude/file-history/abc/0123456789abcdef@v1")).toBeUndefined();
    expect(rewriteFormFor("claude/file-history/abc/x.json")).toBeUndefined();
  });
});

describe("a Windows path followed by more text", () => {
  it("leaves the next path on the line to be found", () => {
    const win = createRemapper([
      { from: "C:\\Users\\alice\\My Proj", to: "/home/bob/proj" },
      { from: "C:\\Users\\alice", to: "/home/bob" },
    ]);
    const input = line({
      t: "callers in C:\\Users\\alice\\My Proj\\src\\index.ts; plan in C:\\Users\\alice\\.claude\\plans\\p.md",
    });
    expect(JSON.parse(win.line(input)).t).toBe(
      "callers in /home/bob/proj/src/index.ts; plan in /home/bob/.claude/plans/p.md",
    );
  });
});

describe("file:// links", () => {
  it("stay URLs when the target path needs percent-encoding and the source did not", () => {
    const r = createRemapper([{ from: "/home/al/app", to: "/home/bob/my app ü" }]);
    const input = line({ t: "[a](file:///home/al/app/x.ts) in /home/al/app/x.ts" });
    expect(JSON.parse(r.line(input)).t).toBe("[a](file:///home/bob/my%20app%20%C3%BC/x.ts) in /home/bob/my app ü/x.ts");
  });
});

/** remapFile as it was before the byte fast path: streamed, decoded, line by line. The oracle for its bytes. */
async function remapFileByLines(source: string, target: string, remapper: Remapper): Promise<void> {
  const out = await open(target, "wx", 0o600);
  try {
    let carry = "";
    for await (const chunk of createReadStream(source, { encoding: "utf8", highWaterMark: 1 << 20 })) {
      const text = carry + (chunk as string);
      const lastNewline = text.lastIndexOf("\n");
      if (lastNewline < 0) {
        carry = text;
        continue;
      }
      carry = text.slice(lastNewline + 1);
      const lines = text
        .slice(0, lastNewline)
        .split("\n")
        .map((l) => remapper.line(l));
      await out.write(`${lines.join("\n")}\n`);
    }
    if (carry) await out.write(remapper.line(carry));
  } finally {
    await out.close();
  }
}

describe("remapFile", () => {
  const dir = mkdtempSync(path.join(tmpdir(), "ccbundle-remapfile-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const remapper = createRemapper([
    { from: "/home/alice/work/app", to: "/Users/bob/code/my app ü" },
    { from: "/home/alice", to: "/Users/bob" },
  ]);
  const lineOnly: Remapper = { identity: false, line: (text) => text.split("alice").join("carol") };
  let n = 0;
  const same = async (content: Buffer, r: Remapper = remapper) => {
    const source = path.join(dir, `in-${++n}`);
    writeFileSync(source, content);
    // Every other file handed over (the caller fsyncs and closes it), the rest fsynced here.
    const handOver = async (fd: number) => closeSync(fd);
    await remapFile(source, `${source}.new`, r, n % 2 === 0 ? {} : { handOver });
    await remapFileByLines(source, `${source}.old`, r);
    expect(readFileSync(`${source}.new`).equals(readFileSync(`${source}.old`))).toBe(true);
    return readFileSync(`${source}.new`);
  };
  const transcriptLine = (i: number) =>
    line({
      cwd: "/home/alice/work/app",
      i,
      message: {
        content: [{ type: "tool_use", input: { command: `cd /home/alice/work/app && cat ~/x ${"é".repeat(i % 7)}` } }],
      },
      toolUseResult: { stdout: `/home/alice/.npmrc\n/home/alice/work/app/src/${i}.ts\n` },
    });

  it("writes the bytes the line-by-line rewrite wrote, across chunks, with or without a last newline", async () => {
    const lines = Array.from({ length: 40_000 }, (_, i) => transcriptLine(i));
    const out = await same(Buffer.from(`${lines.join("\n")}\n`));
    expect(out.toString()).toContain('"cwd":"/Users/bob/code/my app ü"');
    await same(Buffer.from(lines.slice(0, 100).join("\n")));
    await same(Buffer.alloc(0));
    await same(Buffer.from("\n\n/home/alice\n"));
  });

  it("handles a line longer than its read buffer", async () => {
    const long = line({ cwd: "/home/alice", t: `${"x".repeat(5 << 20)} /home/alice/work/app/z` });
    await same(Buffer.from(`${transcriptLine(1)}\n${long}\n${transcriptLine(2)}`));
  });

  it("keeps lines that are not valid UTF-8 byte for byte, rewrites the others, and rewrites with a line-only remapper", async () => {
    const good = Buffer.from(`${transcriptLine(1)}\n${transcriptLine(2)}\n`);
    const bad = Buffer.from([0x2f, 0x68, 0x6f, 0x6d, 0x65, 0xc3, 0x28, 0xff, 0x0a]); // "/home" then bad bytes
    const source = path.join(dir, "not-utf8");
    writeFileSync(source, Buffer.concat([good, bad, good]));
    await remapFile(source, `${source}.new`, remapper);
    const rewrittenGood = remapJsonl(good, remapper);
    expect(rewrittenGood.toString()).toContain("/Users/bob/code/my app ü");
    expect(readFileSync(`${source}.new`).equals(Buffer.concat([rewrittenGood, bad, rewrittenGood]))).toBe(true);
    await same(good, lineOnly);
    const marking: Remapper = { identity: false, line: (text) => `${text}!` };
    await same(good, marking);
    await same(Buffer.from("a\n\nb"), marking);
  });
});

describe("a fork's rewrite", () => {
  it("gives lines that are not valid UTF-8 the fork's id and slugs too, every other byte kept", async () => {
    const oldId = "11111111-2222-4333-8444-555555555555";
    const newId = forkId(oldId, "a".repeat(64), "-home-bob-app");
    const fork = await planFork(oldId, newId, [], ["gentle-cat.md"]);
    const valid = Buffer.from(`{"sessionId":"${oldId}","slug":"gentle-cat"}\n`);
    const invalid = Buffer.concat([
      Buffer.from(`{"sessionId":"${oldId}","slug":"gentle-cat","t":"`),
      Buffer.from([0xff, 0xfe, 0xc3]),
      Buffer.from('"}\n'),
    ]);
    const out = chunkRewriter(fork.rewriter)(Buffer.concat([valid, invalid]));
    const slug = `gentle-cat-fork-${newId.slice(0, 8)}`;
    expect(
      out.equals(
        Buffer.concat([
          Buffer.from(`{"sessionId":"${newId}","slug":"${slug}"}\n`),
          Buffer.from(`{"sessionId":"${newId}","slug":"${slug}","t":"`),
          Buffer.from([0xff, 0xfe, 0xc3]),
          Buffer.from('"}\n'),
        ]),
      ),
    ).toBe(true);
    // The same bundle over the same copy makes the same fork; another transcript, another fork.
    expect(forkId(oldId, "a".repeat(64), "-home-bob-app")).toBe(newId);
    expect(forkId(oldId, "b".repeat(64), "-home-bob-app")).not.toBe(newId);
    expect(newId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });
});
