import { realpathSync, statSync } from "node:fs";
import { realpath, stat } from "node:fs/promises";
import path from "node:path";
import type { ManifestSession } from "../bundle/manifest.js";
import { UsageError } from "../errors.js";
import { askGit, type GitAsker, sameRemote } from "./git.js";
import { projectFolderName } from "./paths.js";
import { isWindowsPath, type PathMapping } from "./remap.js";

/**
 * Where a session lands on this machine, and which path rewrites go with it.
 * Order (issue "Session fidelity"): --project; else a --map that names an
 * existing directory; else the current directory's git repository when its
 * remote matches the bundle's (a session started in a subdirectory lands in
 * the same subdirectory); else the original path if it exists here; else the
 * current directory, with a warning.
 */

export interface TargetChoice {
  /** Real path of the directory the session is filed under and resumed in. */
  cwd: string;
  reason: "project" | "git-remote" | "original-path" | "home-relative" | "current-dir" | "mapped";
  warning?: string;
  /**
   * Root of the target checkout when it is a clone of the session's repository:
   * the source checkout's root maps onto it, so a file keeps its place in the repo.
   */
  repoRoot?: string;
  /**
   * The project folder to file the session under when it is not the one `cwd` names: restore
   * --all keeps a session whose transcript never said its directory in its own folder.
   */
  folder?: string;
}

/**
 * A transcript that never names its directory (no line with a `cwd`: a session left before
 * its first prompt, one of only `file-history-snapshot` or summary lines) is sent with cwd
 * "/" (the manifest wants a path); its folder tells it from a session really run in "/".
 */
export function cwdUnknown(session: Pick<ManifestSession, "cwd" | "folder">): boolean {
  return session.cwd === "/" && session.folder !== projectFolderName("/");
}

/** The folder under projects/ a session goes to for `target`. */
export function targetFolderName(target: TargetChoice): string {
  return target.folder ?? projectFolderName(target.cwd);
}

export async function chooseTarget(
  session: ManifestSession,
  options: {
    project?: string | undefined;
    cwd: string;
    maps: PathMapping[];
    keepOriginalPaths?: boolean | undefined;
    /** The sending machine's home (manifest source) and this one's: see the last two steps. */
    homes?: { source: string; target: string } | undefined;
  },
  /** Where git is asked (a receiving run remembers its answers per checkout). */
  ask: GitAsker = askGit,
): Promise<TargetChoice> {
  if (options.project) {
    const project = path.resolve(options.cwd, options.project);
    if (!(await isDir(project))) {
      throw new UsageError(`--project ${options.project} is not a directory here`, {
        hint: "create it (or clone the repository there) first, or leave --project out",
      });
    }
    return withRepo(session, { cwd: await real(project), reason: "project" }, ask);
  }
  if (options.keepOriginalPaths) {
    const target = wholeRestoreTarget(session, options.maps);
    // A directory that is here: a checkout of the session's repository maps its root too.
    return target.warning === undefined && target.folder === undefined ? withRepo(session, target, ask) : target;
  }
  const unknown = cwdUnknown(session);
  const mapped = unknown ? undefined : applyMaps(session.cwd, options.maps);
  if (mapped !== undefined && (await isDir(mapped))) {
    return withRepo(session, { cwd: await real(mapped), reason: "mapped" }, ask);
  }
  if (session.git?.remote) {
    const root = await sameRepoRoot(options.cwd, session, ask);
    if (root) {
      const subdir = session.git.subdir ? session.git.subdir.split("/").filter(Boolean) : [];
      const sub = path.join(root, ...subdir);
      if (await isDir(sub)) return { cwd: await real(sub), reason: "git-remote", repoRoot: root };
      return {
        cwd: root,
        reason: "git-remote",
        repoRoot: root,
        warning: `the session ran in ${subdir.join("/")}, which this checkout does not have; restoring at the repository root ${root}`,
      };
    }
  }
  if (!unknown && (await isDir(session.cwd)))
    return withRepo(session, { cwd: await real(session.cwd), reason: "original-path" }, ask);
  // ~/src/app on the desktop is ~/src/app on the VM too, when the user keeps the same layout.
  const inHome = unknown ? undefined : homeRelative(session.cwd, options.homes);
  if (inHome && (await isDir(inHome)))
    return withRepo(session, { cwd: await real(inHome), reason: "home-relative" }, ask);
  const here = await real(options.cwd);
  if (!unknown && options.homes && here === (await real(options.homes.target))) {
    const ranInHome = comparable(stripSeparators(session.cwd)) === comparable(stripSeparators(options.homes.source));
    if (!ranInHome) {
      // Filed under ~, its project's paths and the home's would both map onto this home: the way
      // back could not tell them apart (a pull back to the desktop put ~/.config under the project).
      throw new UsageError(`the session ran in ${session.cwd}, which is not here, and you are in your home folder`, {
        hint: `cd into the project (clone it first) and run the command again, or choose with --project <dir>${inHome ? ` (e.g. ${inHome})` : ""}`,
      });
    }
  }
  return {
    cwd: here,
    reason: "current-dir",
    warning: unknown
      ? `the session does not say which directory it ran in; restoring into the current directory ${options.cwd} (use --project <dir> to choose)`
      : `${session.cwd} does not exist here; restoring into the current directory ${options.cwd} (use --project <dir> to choose)`,
  };
}

/**
 * `cwd` moved from the source home to this one, when it is inside the source home. A Windows
 * source (C:\Users\me\src\app, home C:\Users\me) compares without case, on either separator.
 */
function homeRelative(cwd: string, homes: { source: string; target: string } | undefined): string | undefined {
  if (!homes?.source || !homes.target) return undefined;
  const windows = isWindowsPath(homes.source);
  if (isWindowsPath(cwd) !== windows) return undefined;
  const slashes = (text: string) => (windows ? text.replace(/\\/g, "/") : text);
  const base = stripSeparators(slashes(homes.source));
  const inside = slashes(cwd);
  if (!base || base === "/") return undefined;
  const under = comparable(cwd).startsWith(`${stripSeparators(comparable(homes.source))}/`);
  const parts = under
    ? inside
        .slice(base.length + 1)
        .split("/")
        .filter(Boolean)
    : [];
  return parts.length > 0 ? path.join(homes.target, ...parts) : undefined;
}

/** A path as two of them compare: a Windows one with forward slashes and in lower case (its case does not count). */
function comparable(dir: string): string {
  return isWindowsPath(dir) ? dir.replace(/\\/g, "/").toLowerCase() : dir;
}

function stripSeparators(dir: string): string {
  return dir.length > 1 ? dir.replace(/[\\/]+$/, "") : dir;
}

async function withRepo(session: ManifestSession, choice: TargetChoice, ask: GitAsker): Promise<TargetChoice> {
  const root = await sameRepoRoot(choice.cwd, session, ask);
  return root ? { ...choice, repoRoot: root } : choice;
}

/** The root of the checkout `dir` is in, when its origin is the session's remote. */
async function sameRepoRoot(dir: string, session: ManifestSession, ask: GitAsker): Promise<string | undefined> {
  if (!session.git?.remote) return undefined;
  const here = await ask.checkout(dir);
  if (!here || !sameRemote(here.context.remote, session.git.remote)) return undefined;
  return real(here.root);
}

export interface MappingInput {
  /** The manifest's `source`: the sending machine's home and Claude Code config dir. */
  source: { home: string; claudeDir: string };
  session: ManifestSession;
  target: TargetChoice;
  targetHome: string;
  targetClaudeDir: string;
  /** --map pairs. */
  maps: PathMapping[];
}

/**
 * The rewrites for one session, in any order (the remapper tries the longest
 * path first): --map pairs; the session's folders in the old config dir (tool
 * output saved there) onto its folder here; the old config dir onto this one;
 * the source checkout's root (and, for a linked worktree, its main checkout)
 * onto the target checkout's root when they are the same repository, else the
 * original directory onto the target; the old home onto this home.
 */
export function mappingsFor(input: MappingInput): PathMapping[] {
  const { source, session, target } = input;
  const out: PathMapping[] = [...input.maps];
  const targetFolder = path.join(input.targetClaudeDir, "projects", targetFolderName(target));
  if (source.claudeDir) {
    out.push({ from: joinLike(source.claudeDir, "projects", session.folder), to: targetFolder });
    // A transcript Claude Code moved on `cd` (a `relocated` line) still names its first folder in older lines.
    const firstFolder = projectFolderName(session.cwd);
    if (firstFolder !== session.folder) {
      out.push({ from: joinLike(source.claudeDir, "projects", firstFolder), to: targetFolder });
    }
    out.push({ from: source.claudeDir, to: input.targetClaudeDir });
  }
  if (target.repoRoot && session.git) {
    out.push({ from: sourceRepoRoot(session.cwd, session.git.subdir), to: target.repoRoot });
    if (session.git.mainWorktree) out.push({ from: session.git.mainWorktree, to: target.repoRoot });
  } else if (!cwdUnknown(session)) {
    // (An unknown directory is sent as "/": mapping it would rewrite every lone slash, URLs too.)
    out.push({ from: session.cwd, to: target.cwd });
  }
  if (source.home && input.targetHome && source.home !== "/" && !/^[A-Za-z]:\\?$/.test(source.home)) {
    out.push({ from: source.home, to: input.targetHome });
  }
  return out;
}

/** The session's cwd with its subdirectory inside the checkout taken off. */
function sourceRepoRoot(cwd: string, subdir: string | undefined): string {
  let root = cwd.replace(/[\\/]+$/, "");
  for (const _part of (subdir ?? "").split("/").filter(Boolean)) {
    const cut = Math.max(root.lastIndexOf("/"), root.lastIndexOf("\\"));
    if (cut <= 0) break;
    root = root.slice(0, cut);
  }
  return root;
}

/** Join with the separator of the machine `base` comes from (a Windows source keeps backslashes). */
function joinLike(base: string, ...parts: string[]): string {
  const sep = isWindowsPath(base) ? "\\" : "/";
  return [base.replace(/[\\/]+$/, ""), ...parts].join(sep);
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
    const from = value.slice(0, at);
    const to = value.slice(at + 1);
    // A relative prefix matched nothing (old) or went into transcripts as it was (new), silently.
    if (!/^(?:\/|[A-Za-z]:[\\/]|\\\\)/.test(from)) {
      throw new UsageError(`--map: ${from} is not an absolute path`, {
        hint: "give the old prefix as the sessions name it, e.g. --map /Users/bob=/home/bob (or C:\\Users\\bob=…)",
      });
    }
    if (!path.isAbsolute(to)) {
      throw new UsageError(`--map: ${to} is not an absolute path`, {
        hint: `give the new prefix on this machine, e.g. ${path.resolve(to)}`,
      });
    }
    return { from, to };
  });
}

const notHereYet = (cwd: string) => `${cwd} does not exist here yet; create or clone it there to resume the session`;

/**
 * restore --all of a session whose directory is no path on this machine (a Windows one on Linux or
 * macOS) and that no --map moved: kept in its own project folder, as the source machine filed it.
 * (Resolved as a path, it landed under the current directory, in a folder named after both.)
 */
function notAPathHere(session: Pick<ManifestSession, "cwd" | "folder">): TargetChoice {
  const home = /^([A-Za-z]:\\Users\\[^\\]+)/.exec(session.cwd)?.[1];
  return {
    cwd: session.cwd,
    reason: "original-path",
    folder: session.folder,
    warning: `${session.cwd} is not a path on this machine; kept in its own project folder: restore with --map '${home ?? session.cwd}=<a directory here>' to put it under one`,
  };
}

/**
 * Where restore --all puts a session (chooseTarget with keepOriginalPaths, less the checkout root
 * withRepo adds): its own (mapped) path, even one that does not exist here yet; Claude Code names
 * the project folder from the path string, so a later clone into that path finds it. The current
 * directory is never a fallback for a whole restore. Synchronous and without git, so restore --all's
 * memo (core/backup/restore-memo.ts) can check that a session an earlier run restored is still
 * where this run would put it (its directory may have been created, or cloned, since).
 */
export function wholeRestoreTarget(
  session: Pick<ManifestSession, "cwd" | "folder">,
  maps: PathMapping[],
): TargetChoice {
  // Nowhere to put it but where it was: its own folder.
  if (cwdUnknown(session)) return { cwd: session.cwd, reason: "original-path", folder: session.folder };
  const mapped = applyMaps(session.cwd, maps);
  const cwd = mapped ?? session.cwd;
  const reason = mapped !== undefined ? "mapped" : "original-path";
  if (!path.isAbsolute(cwd)) return notAPathHere(session);
  let isDirectory = false;
  try {
    isDirectory = statSync(cwd).isDirectory();
  } catch {
    // Not there (or not readable): filed under the path as it is.
  }
  if (!isDirectory) return { cwd: path.resolve(cwd), reason, warning: notHereYet(cwd) };
  // The native call, as fs/promises' realpath: it spells the path as the disk does (case on macOS
  // and Windows), where the JavaScript realpathSync keeps the caller's.
  try {
    return { cwd: realpathSync.native(cwd), reason };
  } catch {
    return { cwd, reason };
  }
}

async function isDir(p: string): Promise<boolean> {
  return (await stat(p).catch(() => undefined))?.isDirectory() ?? false;
}

async function real(p: string): Promise<string> {
  return realpath(p).catch(() => p);
}
