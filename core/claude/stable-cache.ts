import { readdirSync, readFileSync, type Stats, statSync } from "node:fs";
import { type FileIdentity, fileIdentity, sameFile } from "../file-identity.js";

/**
 * Every session's collect looks at the same shared places: the `plans/` and
 * `todos/` listings and `history.jsonl`. `backup --all` collected 300
 * sessions by listing ~350 names and reading and splitting a 100 KB history
 * 300 times (~0.2 s of a worker's 0.9 s). Here the result is kept per thread
 * and reused while one stat says the directory or file is as it was.
 *
 * Racy entries are not reused (git's "racily clean" rule): if the directory
 * or file changed less than RACY_MS before it was read, a second change within
 * the same timestamp tick would leave its mtime as it was, so it is read
 * again next time. Only results whose mtime was already older are trusted.
 */

const RACY_MS = 2000;
/** Files larger than this are read each time (a huge history is not kept per thread). */
const MAX_CACHED_FILE = 16 << 20;

type Entry<T> = FileIdentity & { value: T };

const listings = new Map<string, Entry<string[]>>();
const derived = new Map<string, Entry<unknown>>();

function statOf(file: string): Stats | undefined {
  try {
    return statSync(file, { throwIfNoEntry: false });
  } catch {
    return undefined;
  }
}

function stable(info: Stats, readAt: number): boolean {
  return info.mtimeMs <= readAt - RACY_MS;
}

function same(entry: Entry<unknown> | undefined, info: Stats): boolean {
  return entry !== undefined && sameFile(entry, info);
}

/** The names in `dir`, sorted; [] if it cannot be listed. */
export function sortedNames(dir: string): string[] {
  const readAt = Date.now();
  const info = statOf(dir);
  if (!info?.isDirectory()) return [];
  const cached = listings.get(dir);
  if (same(cached, info)) return cached!.value;
  let names: string[];
  try {
    names = readdirSync(dir).sort();
  } catch {
    return [];
  }
  if (stable(info, readAt)) listings.set(dir, { ...fileIdentity(info), value: names });
  return names;
}

/**
 * `derive(text)` of the file's UTF-8 text, or undefined if it cannot be read.
 * `key` names the derivation (one file may be derived several ways).
 */
export function derivedFromFile<T>(key: string, file: string, derive: (text: string) => T): T | undefined {
  const readAt = Date.now();
  const info = statOf(file);
  if (!info?.isFile()) return undefined;
  const id = `${key}\0${file}`;
  const cached = derived.get(id);
  if (same(cached, info)) return cached!.value as T;
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch {
    return undefined;
  }
  const value = derive(text);
  // Cached only if the file is what stat saw before the read (not appended to meanwhile).
  if (stable(info, readAt) && info.size <= MAX_CACHED_FILE && Buffer.byteLength(text) === info.size) {
    derived.set(id, { ...fileIdentity(info), value });
  }
  return value;
}
