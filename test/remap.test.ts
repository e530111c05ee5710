import { describe, expect, it } from "vitest";
import { createRemapper } from "../core/claude/remap.js";

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
      "Edited /Users/bob/code/my app. Also 'file:///Users/bob/code/my app/x' and (/Users/bob/code/my app)",
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
});
