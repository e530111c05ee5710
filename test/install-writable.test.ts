import { spawnSync } from "node:child_process";
import { chmodSync, cpSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

/**
 * A restore whose target folder this user cannot write (a project folder a `sudo claude` left
 * owned by root) is refused before its install journal is written. It used to commit the
 * journal, fail on the first move, and leave the journal behind: every later pull, import or
 * restore replayed it and failed the same way. Run as another user (`nobody` via setpriv when the
 * tests run as root, as in CI), since root may write anywhere.
 */

const DIST = fileURLToPath(new URL("../dist/", import.meta.url));
const asRoot = process.getuid?.() === 0;
let root: string;

beforeAll(() => {
  root = mkdtempSync(path.join(os.tmpdir(), "ccb-install-writable-"));
  chmodSync(root, 0o777);
  cpSync(path.join(DIST, "core"), path.join(root, "dist", "core"), { recursive: true });
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

interface Outcome {
  error?: { code: string; path: string };
  journalLeft: boolean;
  stagedLeft: boolean;
  madeFolders: string[];
  installed: boolean;
}

/** Commit a one-step journal moving a staged file to `target` (relative to a fresh config dir) as the other user. */
function commitAsOtherUser(name: string, lockedFolder: string, target: string, existing = false): Outcome {
  const module = path.join(root, "dist", "core", "claude", "install-journal.js");
  const script = `
    import fs from "node:fs";
    import path from "node:path";
    const { commitJournal } = await import(${JSON.stringify(module)});
    const claudeDir = path.join(${JSON.stringify(root)}, ${JSON.stringify(name)}, ".claude");
    const staging = path.join(claudeDir, ".ccbundle-staging-test");
    fs.mkdirSync(staging, { recursive: true });
    fs.writeFileSync(path.join(staging, "f"), "line\\n");
    const locked = path.join(claudeDir, ${JSON.stringify(lockedFolder)});
    fs.mkdirSync(locked, { recursive: true });
    const target = path.join(claudeDir, ${JSON.stringify(target)});
    if (${JSON.stringify(existing)}) fs.writeFileSync(target, "line\\n");
    fs.chmodSync(locked, 0o555);
    const journal = path.join(staging, "journal-1.json");
    const before = new Set(fs.readdirSync(claudeDir, { recursive: true }));
    const outcome = {};
    try {
      await commitJournal(journal, {
        version: 1, claudeDir, backupDir: path.join(claudeDir, "..", "backups"),
        steps: [{ source: "f", target, kind: "file", replace: false }],
      }, staging, { replay: false });
    } catch (err) {
      outcome.error = { code: err.code, path: err.path };
    }
    outcome.journalLeft = fs.existsSync(journal);
    outcome.stagedLeft = fs.existsSync(path.join(staging, "f"));
    outcome.installed = fs.existsSync(target);
    outcome.madeFolders = fs.readdirSync(claudeDir, { recursive: true }).filter((p) => !before.has(p));
    console.log(JSON.stringify(outcome));`;
  const node = [process.execPath, "--input-type=module", "-e", script];
  const argv = asRoot ? ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", ...node] : node;
  const result = spawnSync(argv[0]!, argv.slice(1), { encoding: "utf8", cwd: root });
  expect(result.stderr).toBe("");
  expect(result.status).toBe(0);
  return JSON.parse(result.stdout) as Outcome;
}

describe.skipIf(process.platform === "win32" || (asRoot && spawnSync("setpriv", ["--version"]).status !== 0))(
  "a target folder this user cannot write",
  () => {
    it("is refused before the journal: nothing moved, no journal left to block the next receive", () => {
      const outcome = commitAsOtherUser("existing", "projects/-srv-app", "projects/-srv-app/s.jsonl");
      expect(outcome.error).toEqual({ code: "EACCES", path: path.join(root, "existing", ".claude/projects/-srv-app") });
      expect(outcome).toMatchObject({ journalLeft: false, stagedLeft: true, installed: false, madeFolders: [] });
    });

    it("also when the folder to make is below one it cannot write", () => {
      const outcome = commitAsOtherUser("below", "projects/-srv-app", "projects/-srv-app/s/subagents/a.jsonl");
      expect(outcome.error).toEqual({ code: "EACCES", path: path.join(root, "below", ".claude/projects/-srv-app") });
      expect(outcome).toMatchObject({ journalLeft: false, installed: false, madeFolders: [] });
    });

    it("a file already there as it arrives is kept, as before: nothing to write, nothing refused", () => {
      const outcome = commitAsOtherUser("kept", "projects/-srv-app", "projects/-srv-app/s.jsonl", true);
      expect(outcome.error).toBeUndefined();
      expect(outcome).toMatchObject({ journalLeft: false, installed: true });
    });

    it("a writable target installs as before", () => {
      const outcome = commitAsOtherUser("fine", "projects/-srv-other", "projects/-srv-app/s.jsonl");
      expect(outcome.error).toBeUndefined();
      expect(outcome).toMatchObject({ journalLeft: false, stagedLeft: false, installed: true });
    });
  },
);
