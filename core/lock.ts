import { randomBytes } from "node:crypto";
import { link, mkdir, open, readFile, rename, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { CcbError, errnoCode } from "./errors.js";

/**
 * A lock file in CCBUNDLE_HOME, so two pushes or two backups on one machine
 * (cron firing while one still runs) do not interleave. The file holds the
 * owner's pid, host and start time; a lock whose process is gone (or that is
 * older than `staleAfterMs`) is taken over, so a `kill -9` never wedges cron.
 *
 * The lock file appears complete or not at all: it is written under a temp
 * name and hard-linked into place (link fails if the name exists), so a
 * contender never reads a half-written lock and mistakes it for a stale one.
 * A stale lock is taken over by renaming it aside first and checking that
 * what was moved is still the stale holder, so two contenders cannot both
 * "clear" it and each believe they hold the lock.
 */

export interface LockOptions {
  /** Wait this long for a live holder before giving up (0 = fail at once). */
  waitMs?: number;
  staleAfterMs?: number;
}

/** Who holds a lock or a staging folder: enough to tell whether that process is still alive. */
export interface OwnerInfo {
  pid: number;
  host: string;
  started: number;
}

export async function withLock<T>(
  home: string,
  name: string,
  fn: () => Promise<T>,
  options: LockOptions = {},
): Promise<T> {
  const release = await acquireLock(home, name, options);
  try {
    return await fn();
  } finally {
    await release();
  }
}

export function lockPath(home: string, name: string): string {
  return path.join(home, "locks", `${name}.lock`);
}

export function currentOwner(): OwnerInfo {
  return { pid: process.pid, host: os.hostname(), started: Date.now() };
}

export async function acquireLock(home: string, name: string, options: LockOptions = {}): Promise<() => Promise<void>> {
  const file = lockPath(home, name);
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  const deadline = Date.now() + (options.waitMs ?? 0);
  const staleAfter = options.staleAfterMs ?? 6 * 3600_000;
  const me = currentOwner();
  for (;;) {
    if (await tryCreate(file, me)) {
      return async () => {
        // Only remove the lock if it is still ours (a stale-lock takeover may have replaced it).
        const current = await readOwner(file);
        if (typeof current === "object" && sameOwner(current, me)) await rm(file, { force: true });
      };
    }
    const holder = await readOwner(file);
    if (holder === "missing") continue;
    if (holder === "unreadable" || isStale(holder, staleAfter)) {
      await takeOver(file, holder);
      continue;
    }
    if (Date.now() >= deadline) {
      throw new CcbError(
        `another ccbundle ${name} is running (pid ${holder.pid}, since ${new Date(holder.started).toISOString()})`,
        1,
        { hint: `wait for it to finish; if it is gone, remove ${file}` },
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 100 + Math.random() * 100));
  }
}

/** Create the lock file atomically with our owner info; false when someone holds it. */
async function tryCreate(file: string, me: OwnerInfo): Promise<boolean> {
  const tmp = `${file}.${randomBytes(6).toString("hex")}.tmp`;
  const handle = await open(tmp, "wx", 0o600);
  try {
    await handle.writeFile(JSON.stringify(me));
  } finally {
    await handle.close();
  }
  try {
    await link(tmp, file);
    return true;
  } catch (err) {
    if (errnoCode(err) === "EEXIST") return false;
    throw err;
  } finally {
    await rm(tmp, { force: true });
  }
}

/**
 * Move a stale lock out of the way. If another contender replaced it with a
 * fresh lock between our read and our rename, put that one back.
 */
async function takeOver(file: string, seen: OwnerInfo | "unreadable"): Promise<void> {
  const aside = `${file}.${randomBytes(6).toString("hex")}.stale`;
  try {
    await rename(file, aside);
  } catch (err) {
    if (errnoCode(err) === "ENOENT") return;
    throw err;
  }
  const moved = await readOwner(aside);
  const wasTheStaleOne =
    seen === "unreadable" ? moved === "unreadable" : typeof moved === "object" && sameOwner(moved, seen);
  if (!wasTheStaleOne) {
    // Not what we judged stale: restore it unless yet another lock appeared meanwhile.
    await link(aside, file).catch(() => undefined);
  }
  await rm(aside, { force: true });
}

async function readOwner(file: string): Promise<OwnerInfo | "missing" | "unreadable"> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    if (errnoCode(err) === "ENOENT") return "missing";
    throw err;
  }
  return parseOwner(text) ?? "unreadable";
}

export function parseOwner(text: string): OwnerInfo | undefined {
  try {
    const info = JSON.parse(text) as Partial<OwnerInfo>;
    if (typeof info.pid === "number" && typeof info.host === "string" && typeof info.started === "number") {
      return { pid: info.pid, host: info.host, started: info.started };
    }
  } catch {
    // fall through
  }
  return undefined;
}

function sameOwner(a: OwnerInfo, b: OwnerInfo): boolean {
  return a.pid === b.pid && a.host === b.host && a.started === b.started;
}

function isStale(info: OwnerInfo, staleAfterMs: number): boolean {
  if (Date.now() - info.started > staleAfterMs) return true;
  return ownerIsGone(info);
}

/** True when `info` names a process on this host that no longer exists. */
export function ownerIsGone(info: OwnerInfo): boolean {
  if (info.host !== os.hostname()) return false;
  if (info.pid === process.pid) return false;
  try {
    process.kill(info.pid, 0);
    return false;
  } catch (err) {
    return errnoCode(err) === "ESRCH";
  }
}
