import { execFile } from "node:child_process";
import path from "node:path";
import type { GitContext } from "../bundle/manifest.js";

/** Git facts about a project, for the manifest and for the warnings pull prints. Never fails: git is optional. */

function git(cwd: string, args: string[]): Promise<string | undefined> {
  return new Promise((resolve) => {
    execFile("git", ["-C", cwd, ...args], { timeout: 5000, maxBuffer: 1 << 20 }, (err, stdout) => {
      resolve(err ? undefined : stdout.trim());
    });
  });
}

export async function gitContext(cwd: string): Promise<GitContext | undefined> {
  const root = await git(cwd, ["rev-parse", "--show-toplevel"]);
  if (!root) return undefined;
  const [remote, branch, head, status] = await Promise.all([
    git(cwd, ["remote", "get-url", "origin"]),
    git(cwd, ["symbolic-ref", "--short", "-q", "HEAD"]),
    git(cwd, ["rev-parse", "HEAD"]),
    git(cwd, ["status", "--porcelain", "--untracked-files=no"]),
  ]);
  const context: GitContext = { subdir: path.relative(root, cwd).split(path.sep).join("/") };
  if (remote) context.remote = stripCredentials(remote);
  if (branch) context.branch = branch;
  if (head) context.head = head;
  if (status !== undefined) context.dirty = status.length > 0;
  return context;
}

export async function gitRoot(cwd: string): Promise<string | undefined> {
  return git(cwd, ["rev-parse", "--show-toplevel"]);
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

/** How the target checkout relates to the one the session was pushed from, as warnings. */
export async function describeGitDrift(targetCwd: string, source: GitContext | undefined): Promise<string[]> {
  if (!source?.head) return [];
  const target = await gitContext(targetCwd);
  if (!target)
    return [
      `the session ran in a git checkout (${source.branch ?? "detached"} @ ${short(source.head)}); ${targetCwd} is not one`,
    ];
  const warnings: string[] = [];
  if (source.branch && target.branch !== source.branch) {
    warnings.push(`branch differs: session was on ${source.branch}, here ${target.branch ?? "detached HEAD"}`);
  }
  if (target.head && target.head !== source.head) {
    const known = await git(targetCwd, ["cat-file", "-e", `${source.head}^{commit}`]);
    if (known === undefined) {
      warnings.push(
        `HEAD differs: session was at ${short(source.head)}, which this checkout does not have (git fetch?)`,
      );
    } else {
      const counts = await git(targetCwd, ["rev-list", "--left-right", "--count", `${target.head}...${source.head}`]);
      const [ahead, behind] = (counts ?? "0 0").split(/\s+/).map(Number);
      const how =
        ahead && behind
          ? `diverged (${ahead} ahead, ${behind} behind)`
          : ahead
            ? `${ahead} commit(s) ahead`
            : `${behind} commit(s) behind`;
      warnings.push(`HEAD differs: here ${short(target.head)} is ${how} of the session's ${short(source.head)}`);
    }
  }
  if (source.dirty) warnings.push("the source checkout had uncommitted changes; they are not part of the bundle");
  return warnings;
}

function short(sha: string): string {
  return sha.slice(0, 8);
}
