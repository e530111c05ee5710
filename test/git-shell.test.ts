import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { GitShell } from "../core/backup/git-shell.js";
import { gitContext } from "../core/claude/git.js";
import { commit, git } from "./helpers/git.js";

/**
 * backup's git commands go through one long-lived shell (core/backup/git-shell.ts):
 * the git facts must be exactly those of one git process per command.
 */

const root = mkdtempSync(path.join(os.tmpdir(), "ccb-gitshell-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function repo(name: string): string {
  const dir = path.join(root, name);
  mkdirSync(dir, { recursive: true });
  git(dir, "init", "-q", "-b", "main");
  commit(dir, "a.txt", "a\n");
  return dir;
}

describe("GitShell", () => {
  it("gives the git facts one git process per command gives", async () => {
    const plain = repo("plain");
    const quoted = repo('it\'s a "repo" $HOME `x`');
    git(quoted, "remote", "add", "origin", "https://user:token@example.com/me/app.git");
    commit(quoted, "b.txt", "b\n");
    mkdirSync(path.join(quoted, "sub dir"));
    const linked = path.join(root, "linked");
    git(plain, "worktree", "add", "-q", "-b", "side", linked);
    const notRepo = path.join(root, "not-a-repo");
    mkdirSync(notRepo);
    const dirs = [plain, quoted, path.join(quoted, "sub dir"), linked, notRepo, path.join(root, "missing")];

    const shell = new GitShell();
    try {
      const viaShell = await Promise.all(dirs.map((dir) => gitContext(dir, shell.run)));
      const direct = await Promise.all(dirs.map((dir) => gitContext(dir)));
      expect(viaShell).toEqual(direct);
      expect(viaShell[1]).toMatchObject({ remote: "https://example.com/me/app.git", branch: "main" });
      expect(viaShell[2]).toMatchObject({ subdir: "sub dir" });
      expect(viaShell[3]).toMatchObject({ branch: "side", mainWorktree: plain });
      expect(viaShell[4]).toBeUndefined();
    } finally {
      shell.close();
    }
  });

  it("keeps answering (one git process per command) once its shell is gone", async () => {
    const dir = repo("after-close");
    const shell = new GitShell();
    shell.close();
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(await shell.run(dir, ["rev-parse", "--abbrev-ref", "HEAD"])).toBe("main");
    expect(await shell.run(path.join(root, "missing"), ["rev-parse", "HEAD"])).toBeUndefined();
  });

  it("returns a failed command's output as undefined and goes on", async () => {
    const dir = repo("failing");
    const shell = new GitShell();
    try {
      const [bad, good] = await Promise.all([
        shell.run(dir, ["rev-parse", "--verify", "no-such-ref"]),
        shell.run(dir, ["rev-parse", "--abbrev-ref", "HEAD"]),
      ]);
      expect(bad).toBeUndefined();
      expect(good).toBe("main");
    } finally {
      shell.close();
    }
  });
});
