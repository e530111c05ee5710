import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import path from "node:path";

/** Git for tests: a fixed identity, no user or system config, never a network remote. */
export const GIT_ENV = {
  ...process.env,
  GIT_AUTHOR_NAME: "t",
  GIT_AUTHOR_EMAIL: "t@example.com",
  GIT_COMMITTER_NAME: "t",
  GIT_COMMITTER_EMAIL: "t@example.com",
  GIT_CONFIG_NOSYSTEM: "1",
  GIT_CONFIG_GLOBAL: "/dev/null",
};

export function git(cwd: string, ...args: string[]): string {
  return execFileSync("git", ["-C", cwd, ...args], { env: GIT_ENV, encoding: "utf8" }).trim();
}

/** Write a file, commit everything, return the new HEAD. */
export function commit(repo: string, file: string, content: string): string {
  writeFileSync(path.join(repo, file), content);
  git(repo, "add", "-A");
  git(repo, "commit", "-q", "-m", file);
  return git(repo, "rev-parse", "HEAD");
}

/** A local clone (no network) whose origin then names `remote`. */
export function cloneAs(source: string, dir: string, remote: string): void {
  execFileSync("git", ["clone", "-q", source, dir], { env: GIT_ENV });
  git(dir, "remote", "set-url", "origin", remote);
}
