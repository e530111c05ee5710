import { type Dirent, lstatSync, readdirSync } from "node:fs";
import path from "node:path";
import { claudeLayout } from "../claude/paths.js";
import type { SessionRef } from "../claude/session.js";
import { errnoCode } from "../errors.js";

/**
 * The cheap test of "has this session changed since its last backup": the
 * size and mtime of each of its files, from directory listings and stat calls
 * only. Nothing is opened or read, so an hourly backup of a thousand unchanged
 * sessions costs a few thousand stat calls.
 *
 * The set of files is the one collectSession packs (DESIGN.md "Claude Code on
 * disk"), except the shared `history.jsonl`: it changes whenever any session
 * gets a prompt, and a prompt also appends to that session's transcript.
 *
 * Synchronous calls on purpose: for thousands of tiny lstat/readdir calls the
 * promise API's thread-pool round trip costs far more than the call itself
 * (measured: 0.9 s vs 0.1 s for 400 sessions), and nothing else runs during
 * the scan.
 */

/** Config-dir-relative path → `size:mtimeMs`. */
export type Fingerprint = Record<string, string>;

/** The legacy todo files per session id, from one listing of `todos/`. */
export function todoIndex(claudeDir: string): Map<string, string[]> {
  const index = new Map<string, string[]>();
  for (const name of names(path.join(claudeDir, "todos"))) {
    const at = name.indexOf("-agent-");
    if (at <= 0 || !name.endsWith(".json")) continue;
    const id = name.slice(0, at);
    index.set(id, [...(index.get(id) ?? []), name]);
  }
  return index;
}

export function fingerprintSession(
  claudeDir: string,
  ref: SessionRef,
  slugs: readonly string[],
  todos: Map<string, string[]>,
): Fingerprint {
  const print: Fingerprint = { [relative(claudeDir, ref.transcript)]: `${ref.size}:${ref.modified}` };
  // Paths are built from their config-dir-relative form (no path.relative per file: 2,500 files
  // on the bench, a tenth of the scan's main-thread time).
  const projectDir = relative(claudeDir, claudeLayout(claudeDir).projectDir(ref.folder));
  for (const rel of [`${projectDir}/${ref.id}`, `file-history/${ref.id}`, `tasks/${ref.id}`]) {
    walk(claudeDir, rel, print);
  }
  for (const slug of slugs) addFileStat(print, claudeDir, `plans/${slug}.md`);
  for (const name of todos.get(ref.id) ?? []) addFileStat(print, claudeDir, `todos/${name}`);
  return print;
}

/** Add `size:mtimeMs` of one config-dir-relative file, if it is a regular file. */
export function addFileStat(print: Fingerprint, claudeDir: string, rel: string): void {
  addStat(print, rel, path.join(claudeDir, ...rel.split("/")));
}

/** Add `size:mtimeMs` of `file` under `rel`, if it is a regular file. */
function addStat(print: Fingerprint, rel: string, file: string): void {
  const info = lstatSync(file, { throwIfNoEntry: false });
  if (info?.isFile()) print[rel] = `${info.size}:${info.mtimeMs}`;
}

export function sameFingerprint(a: Fingerprint, b: Fingerprint): boolean {
  const keys = Object.keys(a);
  if (keys.length !== Object.keys(b).length) return false;
  return keys.every((key) => a[key] === b[key]);
}

/** Every regular file below `claudeDir/rel`, stat'ed into `print`. */
function walk(claudeDir: string, rel: string, print: Fingerprint): void {
  const dir = path.join(claudeDir, rel);
  let entries: Dirent[];
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch (err) {
    if (errnoCode(err) === "ENOENT" || errnoCode(err) === "ENOTDIR") return;
    throw err;
  }
  for (const entry of entries) {
    const childRel = `${rel}/${entry.name}`;
    if (entry.isDirectory()) walk(claudeDir, childRel, print);
    else if (entry.isFile()) addStat(print, childRel, `${dir}${path.sep}${entry.name}`);
  }
}

function relative(claudeDir: string, file: string): string {
  return path.relative(claudeDir, file).split(path.sep).join("/");
}

function names(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch (err) {
    if (errnoCode(err) === "ENOENT" || errnoCode(err) === "ENOTDIR") return [];
    throw err;
  }
}
