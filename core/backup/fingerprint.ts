import type { Dirent } from "node:fs";
import { lstat, readdir } from "node:fs/promises";
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
 */

/** Config-dir-relative path → `size:mtimeMs`. */
export type Fingerprint = Record<string, string>;

/** The legacy todo files per session id, from one listing of `todos/`. */
export async function todoIndex(claudeDir: string): Promise<Map<string, string[]>> {
  const index = new Map<string, string[]>();
  for (const name of await names(path.join(claudeDir, "todos"))) {
    const at = name.indexOf("-agent-");
    if (at <= 0 || !name.endsWith(".json")) continue;
    const id = name.slice(0, at);
    index.set(id, [...(index.get(id) ?? []), name]);
  }
  return index;
}

export async function fingerprintSession(
  claudeDir: string,
  ref: SessionRef,
  slugs: readonly string[],
  todos: Map<string, string[]>,
): Promise<Fingerprint> {
  const print: Fingerprint = { [relative(claudeDir, ref.transcript)]: `${ref.size}:${ref.modified}` };
  const stat = (file: string) => addFileStat(print, claudeDir, relative(claudeDir, file));
  const dirs = [
    path.join(claudeLayout(claudeDir).projectDir(ref.folder), ref.id),
    path.join(claudeDir, "file-history", ref.id),
    path.join(claudeDir, "tasks", ref.id),
  ];
  for (const dir of dirs) await walk(dir, stat);
  for (const slug of slugs) await stat(path.join(claudeDir, "plans", `${slug}.md`));
  for (const name of todos.get(ref.id) ?? []) await stat(path.join(claudeDir, "todos", name));
  return print;
}

/** Add `size:mtimeMs` of one config-dir-relative file, if it is a regular file. */
export async function addFileStat(print: Fingerprint, claudeDir: string, rel: string): Promise<void> {
  const info = await lstat(path.join(claudeDir, ...rel.split("/"))).catch(() => undefined);
  if (info?.isFile()) print[rel] = `${info.size}:${info.mtimeMs}`;
}

export function sameFingerprint(a: Fingerprint, b: Fingerprint): boolean {
  const keys = Object.keys(a);
  if (keys.length !== Object.keys(b).length) return false;
  return keys.every((key) => a[key] === b[key]);
}

async function walk(dir: string, visit: (file: string) => Promise<void>): Promise<void> {
  let entries: Dirent[];
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (err) {
    if (errnoCode(err) === "ENOENT" || errnoCode(err) === "ENOTDIR") return;
    throw err;
  }
  for (const entry of entries) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) await walk(full, visit);
    else if (entry.isFile()) await visit(full);
  }
}

function relative(claudeDir: string, file: string): string {
  return path.relative(claudeDir, file).split(path.sep).join("/");
}

async function names(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (err) {
    if (errnoCode(err) === "ENOENT" || errnoCode(err) === "ENOTDIR") return [];
    throw err;
  }
}
