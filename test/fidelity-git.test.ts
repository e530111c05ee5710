import {
  appendFileSync,
  chmodSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  realpathSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ManifestSession } from "../core/bundle/manifest.js";
import { describeGitDrift, gitContext, normalizeRemote, sameRemote } from "../core/claude/git.js";
import { projectFolderName } from "../core/claude/paths.js";
import { chooseTarget, mappingsFor } from "../core/claude/target.js";
import { writeSession } from "./helpers/fixture.js";
import { cloneAs, commit, git } from "./helpers/git.js";
import { type Machine, twoMachines } from "./helpers/machine.js";
import { parseLines } from "./helpers/rewrite-oracle.js";

/**
 * Git context (issue 5): the manifest records remote, branch, HEAD and
 * dirtiness; pull finds the target checkout by remote (ssh and https forms
 * alike), lands in the session's subdirectory, maps the source checkout's
 * root onto the target's, and says how the target's HEAD differs. Real git
 * repositories on disk; no remote is ever contacted.
 */

let root: string;
/** The session's checkout: origin is an ssh remote, two commits, the session in packages/api. */
let source: string;
let sourceHead: string;
let firstCommit: string;

beforeAll(() => {
  root = realpathSync(mkdtempSync(path.join(os.tmpdir(), "ccb-git-")));
  source = path.join(root, "alice", "app");
  mkdirSync(path.join(source, "packages", "api"), { recursive: true });
  git(source, "init", "-q", "-b", "main");
  git(source, "remote", "add", "origin", "git@github.com:Me/app.git");
  writeFileSync(path.join(source, "packages", "api", "keep.txt"), "");
  firstCommit = commit(source, "README.md", "one\n");
  sourceHead = commit(source, "packages/api/index.ts", "export {};\n");
});

afterAll(() => rmSync(root, { recursive: true, force: true }));

/** A clone of the source checkout with its origin set to `remote` (no network: a local clone). */
function clone(name: string, remote = "https://github.com/me/app"): string {
  const dir = path.join(root, name);
  cloneAs(source, dir, remote);
  return realpathSync(dir);
}

function sessionIn(cwd: string, git: ManifestSession["git"]): ManifestSession {
  return { id: "11111111-2222-4333-8444-555555555555", cwd, folder: projectFolderName(cwd), files: [], git };
}

describe("remotes", () => {
  it("ssh, scp-like and https forms of one repository match; others do not", () => {
    const same = [
      "git@github.com:Me/app.git",
      "ssh://git@github.com/me/app.git",
      "ssh://git@github.com:22/me/app",
      "https://github.com/me/app",
      "https://github.com/me/app.git/",
      "https://user:token@github.com/me/app.git",
      "git+ssh://git@github.com/me/app.git",
    ];
    for (const remote of same) expect(normalizeRemote(remote), remote).toBe("github.com/me/app");
    expect(sameRemote("git@github.com:me/app.git", "https://github.com/me/app")).toBe(true);
    expect(sameRemote("git@github.com:me/app.git", "https://github.com/me/app2")).toBe(false);
    expect(sameRemote("git@github.com:me/app.git", "https://gitlab.com/me/app")).toBe(false);
    expect(sameRemote(undefined, "https://github.com/me/app")).toBe(false);
  });

  it("the manifest's git context: remote without credentials, branch, HEAD, dirty, subdir, main worktree", async () => {
    const dir = clone("ctx", "https://bob:s3cret@github.com/me/app.git");
    const worktree = path.join(root, "ctx-feature");
    git(dir, "worktree", "add", "-q", "-b", "feature", worktree);
    writeFileSync(path.join(worktree, "README.md"), "changed\n");
    const context = await gitContext(path.join(worktree, "packages", "api"));
    expect(context).toEqual({
      remote: "https://github.com/me/app.git",
      branch: "feature",
      head: sourceHead,
      dirty: true,
      subdir: "packages/api",
      mainWorktree: dir,
    });
    expect(await gitContext(root)).toBeUndefined();
  });
});

describe("drift warnings", () => {
  const sourceGit = () => ({ remote: "git@github.com:me/app.git", branch: "main", head: sourceHead, subdir: "" });

  it("say nothing when the checkout is at the session's commit", async () => {
    expect(await describeGitDrift(clone("same"), sourceGit())).toEqual([]);
  });

  it("say how HEAD differs: ahead, behind, diverged, or unknown here", async () => {
    const ahead = clone("ahead");
    const mine = commit(ahead, "mine.txt", "x\n");
    expect(await describeGitDrift(ahead, sourceGit())).toEqual([
      `HEAD differs: this checkout (${mine.slice(0, 8)}) is 1 commit ahead of the session's ${sourceHead.slice(0, 8)}`,
    ]);

    const behind = clone("behind");
    git(behind, "reset", "-q", "--hard", firstCommit);
    expect(await describeGitDrift(behind, sourceGit())).toEqual([
      `HEAD differs: this checkout (${firstCommit.slice(0, 8)}) is 1 commit behind the session's ${sourceHead.slice(0, 8)} (git pull?)`,
    ]);

    const diverged = clone("diverged");
    git(diverged, "reset", "-q", "--hard", firstCommit);
    commit(diverged, "a.txt", "a\n");
    const other = commit(diverged, "b.txt", "b\n");
    expect(await describeGitDrift(diverged, sourceGit())).toEqual([
      `HEAD differs: this checkout (${other.slice(0, 8)}) has diverged from the session's ${sourceHead.slice(0, 8)}: 2 commits ahead, 1 commit behind`,
    ]);

    const unrelated = path.join(root, "unrelated");
    mkdirSync(unrelated);
    git(unrelated, "init", "-q", "-b", "main");
    git(unrelated, "remote", "add", "origin", "https://github.com/me/app");
    const lone = commit(unrelated, "x.txt", "x\n");
    expect(await describeGitDrift(unrelated, sourceGit())).toEqual([
      `HEAD differs: this checkout (${lone.slice(0, 8)}) does not have the session's commit ${sourceHead.slice(0, 8)} (git fetch, then compare)`,
    ]);
  });

  it("name another branch, another repository, no checkout, and uncommitted changes at the source", async () => {
    const branch = clone("branch");
    git(branch, "checkout", "-q", "-b", "topic");
    expect(await describeGitDrift(branch, sourceGit())).toEqual([
      "branch differs: the session was on main, this checkout is on topic",
    ]);
    const elsewhere = clone("elsewhere", "git@github.com:me/other.git");
    expect(await describeGitDrift(elsewhere, sourceGit())).toEqual([
      `${elsewhere} is a checkout of git@github.com:me/other.git, but the session ran in one of git@github.com:me/app.git`,
    ]);
    const plain = path.join(root, "plain");
    mkdirSync(plain);
    expect((await describeGitDrift(plain, sourceGit()))[0]).toContain(`${plain} is not one`);
    expect(await describeGitDrift(clone("dirty"), { ...sourceGit(), dirty: true })).toEqual([
      "the source checkout had uncommitted changes; they are not part of the bundle",
    ]);
  });
});

describe("choosing the target", () => {
  const session = () =>
    sessionIn(path.join(source, "packages", "api"), {
      remote: "git@github.com:me/app.git",
      branch: "main",
      head: sourceHead,
      subdir: "packages/api",
    });

  it("the current checkout of the same remote, in the session's subdirectory, from anywhere inside it", async () => {
    const target = clone("target");
    const choice = await chooseTarget(session(), { cwd: path.join(target, "packages"), maps: [] });
    expect(choice).toEqual({ cwd: path.join(target, "packages", "api"), reason: "git-remote", repoRoot: target });
  });

  it("a linked worktree of the clone is a checkout of its own", async () => {
    const target = clone("wt-main");
    const worktree = path.join(root, "wt-linked");
    git(target, "worktree", "add", "-q", "-b", "linked", worktree);
    const choice = await chooseTarget(session(), { cwd: worktree, maps: [] });
    expect(choice.cwd).toBe(path.join(worktree, "packages", "api"));
    expect(choice.repoRoot).toBe(worktree);
  });

  it("the repository root, with a warning, when the subdirectory is not in this checkout", async () => {
    const target = clone("nosub");
    git(target, "rm", "-q", "-r", "packages");
    const choice = await chooseTarget(session(), { cwd: target, maps: [] });
    expect(choice.cwd).toBe(target);
    expect(choice.warning).toContain("packages/api");
  });

  it("a --map that names a directory here comes before the remote and the original path", async () => {
    const mapped = path.join(root, "mapped", "packages", "api");
    mkdirSync(mapped, { recursive: true });
    const choice = await chooseTarget(session(), {
      cwd: clone("map-cwd"),
      maps: [{ from: source, to: path.join(root, "mapped") }],
    });
    expect(choice).toEqual({ cwd: mapped, reason: "mapped" });
  });

  it("--project must be a directory here", async () => {
    await expect(
      chooseTarget(session(), { project: path.join(root, "missing"), cwd: root, maps: [] }),
    ).rejects.toMatchObject({ exitCode: 2, hint: expect.stringContaining("create it") });
  });

  it("maps the source checkout's root (and its main worktree) onto the target's", () => {
    const s = sessionIn("/home/al/wt/app-feature/packages/api", {
      remote: "git@github.com:me/app.git",
      subdir: "packages/api",
      mainWorktree: "/home/al/app",
    });
    const mappings = mappingsFor({
      source: { home: "/home/al", claudeDir: "/home/al/.claude" },
      session: s,
      target: { cwd: "/srv/b/app/packages/api", reason: "git-remote", repoRoot: "/srv/b/app" },
      targetHome: "/srv/b",
      targetClaudeDir: "/srv/b/.claude",
      maps: [],
    });
    expect(mappings).toEqual([
      {
        from: `/home/al/.claude/projects/${s.folder}`,
        to: `/srv/b/.claude/projects/${projectFolderName("/srv/b/app/packages/api")}`,
      },
      { from: "/home/al/.claude", to: "/srv/b/.claude" },
      { from: "/home/al/wt/app-feature", to: "/srv/b/app" },
      { from: "/home/al/app", to: "/srv/b/app" },
      { from: "/home/al", to: "/srv/b" },
    ]);
  });
});

describe("pull into a clone, end to end", () => {
  let alice: Machine;
  let bob: Machine;

  beforeAll(async () => {
    ({ alice, bob } = await twoMachines("alice-git", "bob-git"));
  });

  afterAll(() => {
    alice?.cleanup();
    bob?.cleanup();
  });

  it("lands in the session's subdirectory of the clone, maps repo paths, and warns before resuming", async () => {
    // Alice's checkout is under her home at work/app; Bob's clone is at code/app-clone.
    const aliceRepo = path.join(alice.home, "work", "app");
    cloneAs(source, aliceRepo, "git@github.com:Me/app.git");
    writeFileSync(path.join(aliceRepo, "README.md"), "edited, not committed\n");
    const aliceCwd = path.join(aliceRepo, "packages", "api");
    const s = writeSession({ claudeDir: alice.claudeDir, projectDir: aliceCwd, home: alice.home, turns: 1 });
    appendFileSync(
      s.transcript,
      `${JSON.stringify({ type: "user", sessionId: s.id, cwd: aliceCwd, message: { role: "user", content: `see ${aliceRepo}/README.md` } })}\n`,
    );
    await alice.runOk(["push", "--session", s.id], { cwd: aliceCwd });

    const bobRepo = path.join(bob.home, "code", "app-clone");
    cloneAs(source, bobRepo, "https://github.com/me/app");
    git(bobRepo, "reset", "-q", "--hard", firstCommit);
    const bobHead = commit(bobRepo, "bob.txt", "bob\n");
    const bin = path.join(bob.root, "bin");
    mkdirSync(bin);
    writeFileSync(path.join(bin, "claude"), `#!/bin/sh\necho "claude started in $(pwd -P) with $*" >&2\n`);
    chmodSync(path.join(bin, "claude"), 0o755);

    const result = await bob.runOk(["pull", "--resume"], {
      cwd: bobRepo,
      env: { PATH: `${bin}:${process.env.PATH}` },
    });
    const target = path.join(bobRepo, "packages", "api");
    const started = result.stderr.indexOf(`claude started in ${target} with --resume ${s.id}`);
    expect(started, result.stderr).toBeGreaterThan(0);
    const diverged = result.stderr.indexOf(
      `HEAD differs: this checkout (${bobHead.slice(0, 8)}) has diverged from the session's ${sourceHead.slice(0, 8)}: 1 commit ahead, 1 commit behind`,
    );
    const dirty = result.stderr.indexOf("the source checkout had uncommitted changes");
    expect(diverged).toBeGreaterThanOrEqual(0);
    expect(dirty).toBeGreaterThanOrEqual(0);
    expect(Math.max(diverged, dirty)).toBeLessThan(started);

    const restored = parseLines(
      readFileSync(path.join(bob.claudeDir, "projects", projectFolderName(target), `${s.id}.jsonl`), "utf8"),
    ) as { cwd?: string; message?: { content?: unknown } }[];
    for (const line of restored.filter((l) => l.cwd)) expect(line.cwd).toBe(target);
    expect(restored.at(-1)!.message!.content).toBe(`see ${bobRepo}/README.md`);
  });
});
