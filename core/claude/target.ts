import { realpath, stat } from "node:fs/promises";
import path from "node:path";
import type { ManifestSession } from "../bundle/manifest.js";
import { UsageError } from "../errors.js";
import { gitContext, gitRoot, sameRemote } from "./git.js";
import type { PathMapping } from "./remap.js";

/**
 * Where a session lands on this machine, and which path rewrites go with it.
 * Order (issue "Session fidelity"): --project; else the current directory's
 * git repository when its remote matches the bundle's (a session started in a
 * subdirectory lands in the same subdirectory); else the original path if it
 * exists here; else the current directory, with a warning.
 */

export interface TargetChoice {
  cwd: string;
  reason: "project" | "git-remote" | "original-path" | "current-dir" | "mapped";
  warning?: string;
}

export async function chooseTarget(
  session: ManifestSession,
  options: { project?: string | undefined; cwd: string; maps: PathMapping[]; keepOriginalPaths?: boolean | undefined },
): Promise<TargetChoice> {
  if (options.project) return { cwd: await real(path.resolve(options.project)), reason: "project" };
  const mapped = applyMaps(session.cwd, options.maps);
  if (options.keepOriginalPaths) {
    // restore --all: each session goes to its own (mapped) path, even one that does not exist
    // here yet; Claude Code names the project folder from the path string, so a later clone
    // into that path finds it. The current directory is never a fallback for a whole restore.
    const cwd = mapped ?? session.cwd;
    const exists = await isDir(cwd);
    return {
      cwd: exists ? await real(cwd) : path.resolve(cwd),
      reason: mapped !== undefined ? "mapped" : "original-path",
      ...(exists ? {} : { warning: `${cwd} does not exist here yet; create or clone it there to resume the session` }),
    };
  }
  if (mapped !== undefined && (await isDir(mapped))) return { cwd: await real(mapped), reason: "mapped" };
  if (session.git?.remote) {
    const here = await gitContext(options.cwd);
    const root = here ? await gitRoot(options.cwd) : undefined;
    if (root && sameRemote(here?.remote, session.git.remote)) {
      const sub = session.git.subdir ? path.join(root, ...session.git.subdir.split("/")) : root;
      return { cwd: await real(sub), reason: "git-remote" };
    }
  }
  if (await isDir(session.cwd)) return { cwd: await real(session.cwd), reason: "original-path" };
  return {
    cwd: await real(options.cwd),
    reason: "current-dir",
    warning: `${session.cwd} does not exist here; restoring into the current directory ${options.cwd} (use --project <dir> to choose)`,
  };
}

/** The rewrites for one session: explicit --map pairs, project path, repo root, and home. */
export function mappingsFor(
  session: ManifestSession,
  sourceHome: string,
  target: string,
  targetHome: string,
  maps: PathMapping[],
): PathMapping[] {
  const out: PathMapping[] = [...maps];
  out.push({ from: session.cwd, to: target });
  if (session.git?.subdir) {
    const depth = session.git.subdir.split("/").filter(Boolean).length;
    let sourceRoot = session.cwd;
    let targetRoot = target;
    for (let i = 0; i < depth; i++) {
      sourceRoot = parentOf(sourceRoot);
      targetRoot = path.dirname(targetRoot);
    }
    out.push({ from: sourceRoot, to: targetRoot });
  }
  if (sourceHome && targetHome && sourceHome !== "/") out.push({ from: sourceHome, to: targetHome });
  return out;
}

/** Prefix mapping (--map /Users/bob=/home/bob): the mapped path, or undefined when none applies. */
export function applyMaps(original: string, maps: PathMapping[]): string | undefined {
  for (const { from, to } of [...maps].sort((a, b) => b.from.length - a.from.length)) {
    const base = from.replace(/[\\/]+$/, "");
    if (original === base) return to;
    if (original.startsWith(`${base}/`) || original.startsWith(`${base}\\`)) {
      return path.join(to, ...original.slice(base.length + 1).split(/[\\/]/));
    }
  }
  return undefined;
}

export function parseMaps(values: string[] | undefined): PathMapping[] {
  return (values ?? []).map((value) => {
    const at = value.indexOf("=");
    if (at <= 0 || at === value.length - 1) {
      throw new UsageError(`--map takes <old>=<new>, got ${value}`, { hint: "e.g. --map /Users/bob=/home/bob" });
    }
    return { from: value.slice(0, at), to: value.slice(at + 1) };
  });
}

function parentOf(p: string): string {
  const i = Math.max(p.lastIndexOf("/"), p.lastIndexOf("\\"));
  return i > 0 ? p.slice(0, i) : p;
}

async function isDir(p: string): Promise<boolean> {
  return (await stat(p).catch(() => undefined))?.isDirectory() ?? false;
}

async function real(p: string): Promise<string> {
  return realpath(p).catch(() => p);
}
