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
  const stat = (file: string) => addFileStat(print, claudeDir, relative(claudeDir, file));
  const dirs = [
    path.join(claudeLayout(claudeDir).projectDir(ref.folder), ref.id),
    path.join(claudeDir, "file-history", ref.id),
    path.join(claudeDir, "tasks", ref.id),
  ];
  for (const dir of dirs) walk(dir, stat);
  for (const slug of slugs) stat(path.join(claudeDir, "plans", `${slug}.md`));
  for (const name of todos.get(ref.id) ?? []) stat(path.join(claudeDir, "todos", name));
  return print;
}

/** Add `size:mtimeMs` of one config-dir-relative file, if it is a regular file. */
export function addFileStat(print: Fingerprint, claudeDir: string, rel: string): void {
  const info = lstatSync(path.join(claudeDir, ...rel.split("/")), { throwIfNoEntry: false });
  if (info?.isFile()) print[rel] = `${info.size}:${info.mtimeMs}`;
}

export function sameFingerprint(a: Fingerprint, b: Fingerprint): boolean {
  const keys = Object.keys(a);
  if (keys.length !== Object.keys(b).length) return false;
  return keys.every((key) => a[key] === b[key]);
}

function walk(dir: string, visit: (file: string) => void): void {
  let entries: Dirent[];
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch (err) {
    if (errnoCode(err) === "ENOENT" || errnoCode(err) === "ENOTDIR") return;
    throw err;
  }
  for (const entry of entries) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) walk(full, visit);
    else if (entry.isFile()) visit(full);
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
