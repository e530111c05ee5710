import {
  appendFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  realpathSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { askGit, gitCheckout } from "../core/claude/git.js";
import { checkoutRoot, GitMemo } from "../core/claude/git-memo.js";
import { type HistorySnapshot, mergeHistory } from "../core/claude/install-journal.js";
import { commit, git } from "./helpers/git.js";

/**
 * What a receiving run remembers between sessions and blobs (core/receive.ts):
 * git answers per checkout, and history.jsonl's lines. Each must give the
 * answers asking afresh would give.
 */

let root: string;

beforeAll(() => {
  root = realpathSync(mkdtempSync(path.join(os.tmpdir(), "ccb-memo-")));
});

afterAll(() => rmSync(root, { recursive: true, force: true }));

describe("git answers per checkout", () => {
  it("folders of one checkout share its answers, each with its own subdir; git is asked once", async () => {
    const repo = path.join(root, "repo");
    mkdirSync(path.join(repo, "a", "deep"), { recursive: true });
    mkdirSync(path.join(repo, "b"), { recursive: true });
    git(repo, "init", "-q", "-b", "main");
    git(repo, "remote", "add", "origin", "git@github.com:me/app.git");
    commit(repo, "README.md", "one\n");
    expect(checkoutRoot(path.join(repo, "a", "deep"))).toBe(repo);

    const memo = new GitMemo();
    const asked = vi.spyOn(askGit, "checkout");
    try {
      const first = await memo.checkout(path.join(repo, "a", "deep"));
      const second = await memo.checkout(path.join(repo, "b"));
      expect(asked).toHaveBeenCalledTimes(1);
      expect(first).toEqual(await gitCheckout(path.join(repo, "a", "deep")));
      expect(second).toEqual(await gitCheckout(path.join(repo, "b")));
      expect(second?.context.subdir).toBe("b");
    } finally {
      asked.mockRestore();
    }
  });

  it("a nested checkout and a folder outside any checkout are keyed on their own", async () => {
    const outer = path.join(root, "outer");
    const inner = path.join(outer, "vendor", "inner");
    mkdirSync(inner, { recursive: true });
    git(outer, "init", "-q", "-b", "main");
    commit(outer, "README.md", "outer\n");
    git(inner, "init", "-q", "-b", "other");
    commit(inner, "README.md", "inner\n");
    expect(checkoutRoot(inner)).toBe(inner);
    expect(checkoutRoot(path.join(outer, "vendor"))).toBe(outer);

    const memo = new GitMemo();
    expect((await memo.checkout(path.join(outer, "vendor")))?.context.branch).toBe("main");
    expect((await memo.checkout(inner))?.context.branch).toBe("other");

    const plain = path.join(root, "plain");
    mkdirSync(plain);
    expect(await memo.checkout(plain)).toEqual(await gitCheckout(plain));
  });

  it("GIT_DIR and friends turn the sharing off", () => {
    expect(checkoutRoot(root, { GIT_DIR: "/elsewhere/.git" })).toBeUndefined();
    expect(checkoutRoot(root, { GIT_CEILING_DIRECTORIES: "/" })).toBeUndefined();
  });
});

describe("history.jsonl remembered across merges", () => {
  const line = (n: number) => `{"display":"prompt ${n}","sessionId":"s${n}"}`;

  function incoming(name: string, lines: string[]): string {
    const file = path.join(root, name);
    writeFileSync(file, lines.map((l) => `${l}\n`).join(""));
    return file;
  }

  it("lines another process appended between merges are seen, never duplicated", async () => {
    const history = path.join(root, "history-a.jsonl");
    writeFileSync(history, `${line(1)}\n`);
    const cache = new Map<string, HistorySnapshot>();
    await mergeHistory(history, incoming("in-1", [line(1), line(2)]), cache);
    // Claude Code appends a prompt (and an unterminated start of another) meanwhile.
    appendFileSync(history, `${line(3)}\n${line(4)}`);
    await mergeHistory(history, incoming("in-2", [line(2), line(3), line(5)]), cache);
    await mergeHistory(history, incoming("in-3", [line(5), line(6)]), cache);
    expect(readFileSync(history, "utf8")).toBe(
      [line(1), line(2), line(3), line(4), line(5), line(6)].map((l) => `${l}\n`).join(""),
    );
  });

  it("a history file replaced by another is read again", async () => {
    const history = path.join(root, "history-b.jsonl");
    writeFileSync(history, `${line(1)}\n`);
    const cache = new Map<string, HistorySnapshot>();
    await mergeHistory(history, incoming("in-4", [line(2)]), cache);
    // Replaced (rename over it) by a file of the same size that holds other lines.
    const other = `${history}.new`;
    writeFileSync(other, `${line(7)}\n${line(8)}\n`);
    // A rename, not rm + write: the new inode cannot be the old one reused, which on a kernel with
    // coarse timestamps (before 6.13: a 1-4 ms tick) could give the same dev, inode, size and mtime.
    renameSync(other, history);
    await mergeHistory(history, incoming("in-5", [line(7), line(2)]), cache);
    expect(readFileSync(history, "utf8")).toBe(`${line(7)}\n${line(8)}\n${line(2)}\n`);
  });

  it("false once the incoming lines are gone (a replayed step)", async () => {
    const history = path.join(root, "history-c.jsonl");
    expect(await mergeHistory(history, path.join(root, "missing"), new Map())).toBe(false);
  });
});
