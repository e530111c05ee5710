import { execFile } from "node:child_process";
import { lstatSync, realpathSync, statSync } from "node:fs";
import path from "node:path";
import type { GitContext } from "../bundle/manifest.js";
import { withoutSecrets } from "../crypto/secrets.js";

/** Git facts about a project, for the manifest and for the warnings pull prints. Never fails: git is optional. */

/** Runs `git -C cwd …args`: its trimmed stdout, or undefined if it failed. */
export type GitRunner = (cwd: string, args: string[]) => Promise<string | undefined>;

/** How long one git command may take, and how much output it may give (stdout, bytes). */
export const GIT_TIMEOUT_MS = 5000;
export const GIT_MAX_OUTPUT = 1 << 20;

/** The plain runner: one git process per command. */
export function git(cwd: string, args: string[]): Promise<string | undefined> {
  return new Promise((resolve) => {
    execFile(
      "git",
      ["-C", cwd, ...args],
      { timeout: GIT_TIMEOUT_MS, maxBuffer: GIT_MAX_OUTPUT, env: withoutSecrets(process.env) },
      (err, stdout) => {
        resolve(err ? undefined : stdout.trim());
      },
    );
  });
}

/**
 * One round of three git processes, all at once: `rev-parse` (root, common
 * dir), `status --porcelain=v2 --branch` (HEAD, branch, dirtiness) and the
 * origin URL. `worktree list` runs only when the common dir is not
 * `<root>/.git`, i.e. in a linked worktree (or a submodule, or a separate git
 * dir). Each spawn costs the event loop 10–25 ms; this was 1 + 5 processes in
 * two rounds before, ~500 ms of a 20-project backup.
 */
export async function gitContext(cwd: string, run: GitRunner = git): Promise<GitContext | undefined> {
  return (await gitCheckout(cwd, run))?.context;
}

/** A directory's git context and the root of its checkout (`rev-parse --show-toplevel`), from one gitContext round. */
export interface GitCheckout {
  root: string;
  context: GitContext;
}

export async function gitCheckout(cwd: string, run: GitRunner = git): Promise<GitCheckout | undefined> {
  if (findCheckout(cwd) === "none") return undefined;
  const [paths, status, remote] = await Promise.all([
    run(cwd, ["rev-parse", "--show-toplevel", "--git-common-dir"]),
    run(cwd, ["status", "--porcelain=v2", "--branch", "--untracked-files=no"]),
    run(cwd, ["remote", "get-url", "origin"]),
  ]);
  const [root, commonDir] = (paths ?? "").split("\n");
  if (!root) return undefined;
  const context: GitContext = { subdir: subdirOf(root, cwd) };
  if (remote) context.remote = stripCredentials(remote);
  if (status !== undefined) {
    const lines = status.split("\n");
    const header = (name: string) =>
      lines.find((line) => line.startsWith(`# branch.${name} `))?.slice(name.length + 10);
    const branch = header("head");
    const head = header("oid");
    if (branch && branch !== "(detached)") context.branch = branch;
    if (head && /^[0-9a-f]{40,64}$/.test(head)) context.head = head;
    context.dirty = lines.some((line) => line !== "" && !line.startsWith("#"));
  }
  if (commonDir && path.resolve(cwd, commonDir) !== path.join(root, ".git")) {
    // The first entry of `worktree list` is the main checkout; another root means a linked worktree.
    const worktrees = await run(cwd, ["worktree", "list", "--porcelain"]);
    const main = /^worktree (.+)$/m.exec(worktrees ?? "")?.[1];
    if (main && path.resolve(main) !== path.resolve(root)) context.mainWorktree = main;
  }
  return { root, context };
}

/** Environment variables that change which repository git finds for a folder. */
const DISCOVERY_VARIABLES = [
  "GIT_DIR",
  "GIT_WORK_TREE",
  "GIT_COMMON_DIR",
  "GIT_CEILING_DIRECTORIES",
  "GIT_DISCOVERY_ACROSS_FILESYSTEM",
];

/**
 * Where git finds the repository of `cwd`, worked out without starting git: the folder holding
 * the first `.git` (folder or gitfile) up from its real path; "none" when there is none up to
 * the root, where `rev-parse --show-toplevel` fails (gitCheckout then starts no git: projects
 * outside any checkout are common, and all 20 of the bench's); "unsure" whenever the walk
 * might disagree with git (GIT_* discovery variables, a folder inside a git dir, a bare
 * repository or a filesystem boundary on the way, an unreadable folder): only git can tell.
 */
export function findCheckout(cwd: string, env: NodeJS.ProcessEnv = process.env): { root: string } | "none" | "unsure" {
  if (DISCOVERY_VARIABLES.some((name) => env[name] !== undefined)) return "unsure";
  let dir: string;
  try {
    dir = realpathSync(cwd);
  } catch {
    return "unsure";
  }
  if (dir.split(path.sep).includes(".git")) return "unsure";
  let device: number | undefined;
  for (;;) {
    try {
      const info = statSync(dir);
      if (device !== undefined && info.dev !== device) return "unsure";
      device = info.dev;
      if (lstatSync(path.join(dir, ".git"), { throwIfNoEntry: false })) return { root: dir };
      // A bare repository (or a git dir) on the way up is found by git before any `.git` above it.
      if (lstatSync(path.join(dir, "HEAD"), { throwIfNoEntry: false })) return "unsure";
    } catch {
      return "unsure";
    }
    const parent = path.dirname(dir);
    if (parent === dir) return "none";
    dir = parent;
  }
}

/** A folder relative to its checkout's root, forward slashes (GitContext.subdir). */
export function subdirOf(root: string, cwd: string): string {
  return path.relative(root, cwd).split(path.sep).join("/");
}

/** Never carry a token embedded in an https remote (https://user:token@host/…) into a bundle. */
function stripCredentials(remote: string): string {
  return remote.replace(/^(https?:\/\/)[^@/]+@/, "$1");
}

/** `git@github.com:me/app.git`, `https://github.com/me/app`, `ssh://git@github.com/me/app.git` → `github.com/me/app`. */
export function normalizeRemote(remote: string): string {
  let r = remote
    .trim()
    .replace(/\/+$/, "")
    .replace(/\.git$/, "");
  const scp = /^[\w.-]+@([\w.-]+):(?!\/)(.+)$/.exec(r);
  if (scp) return `${scp[1]}/${scp[2]}`.toLowerCase();
  r = r.replace(/^[a-z+]+:\/\//, "").replace(/^[^@/]+@/, "");
  r = r.replace(/^([\w.-]+):\d+\//, "$1/");
  return r.toLowerCase();
}

export function sameRemote(a: string | undefined, b: string | undefined): boolean {
  return !!a && !!b && normalizeRemote(a) === normalizeRemote(b);
}

/**
 * How the target checkout relates to the one the session was pushed from, as
 * warnings printed before resuming: another repository, another branch, or a
 * HEAD that is behind, ahead of or diverged from the session's.
 */
export async function describeGitDrift(
  targetCwd: string,
  source: GitContext | undefined,
  ask: GitAsker = askGit,
): Promise<string[]> {
  if (!source?.head) return [];
  const target = (await ask.checkout(targetCwd))?.context;
  if (!target)
    return [
      `the session ran in a git checkout (${source.branch ?? "detached"} @ ${short(source.head)}); ${targetCwd} is not one`,
    ];
  if (source.remote && target.remote && !sameRemote(source.remote, target.remote)) {
    return [`${targetCwd} is a checkout of ${target.remote}, but the session ran in one of ${source.remote}`];
  }
  const warnings: string[] = [];
  if (source.branch && target.branch !== source.branch) {
    warnings.push(
      `branch differs: the session was on ${source.branch}, this checkout is on ${target.branch ?? "a detached HEAD"}`,
    );
  }
  if (target.head && target.head !== source.head) warnings.push(await ask.heads(targetCwd, target.head, source.head));
  if (source.dirty) warnings.push("the source checkout had uncommitted changes; they are not part of the bundle");
  return warnings;
}

/**
 * Where describeGitDrift and chooseTarget get their git answers: straight from git, or
 * remembered per checkout for a whole receiving run (git-memo.ts).
 */
export interface GitAsker {
  checkout(cwd: string): Promise<GitCheckout | undefined>;
  /** How HEAD `here` of the checkout at `cwd` relates to `theirs` (a warning line). */
  heads(cwd: string, here: string, theirs: string): Promise<string>;
}

export const askGit: GitAsker = { checkout: gitCheckout, heads: describeHeads };

async function describeHeads(cwd: string, here: string, theirs: string): Promise<string> {
  const prefix = `HEAD differs: this checkout (${short(here)})`;
  if ((await git(cwd, ["cat-file", "-e", `${theirs}^{commit}`])) === undefined) {
    return `${prefix} does not have the session's commit ${short(theirs)} (git fetch, then compare)`;
  }
  const counts = await git(cwd, ["rev-list", "--left-right", "--count", `${here}...${theirs}`]);
  const [ahead = 0, behind = 0] = (counts ?? "0 0").split(/\s+/).map(Number);
  const commits = (n: number) => `${n} commit${n === 1 ? "" : "s"}`;
  if (ahead && behind) {
    return `${prefix} has diverged from the session's ${short(theirs)}: ${commits(ahead)} ahead, ${commits(behind)} behind`;
  }
  if (behind) return `${prefix} is ${commits(behind)} behind the session's ${short(theirs)} (git pull?)`;
  return `${prefix} is ${commits(ahead)} ahead of the session's ${short(theirs)}`;
}

function short(sha: string): string {
  return sha.slice(0, 8);
}
