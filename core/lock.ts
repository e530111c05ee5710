import { mkdir, open, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { CcbError, errnoCode } from "./errors.js";

/**
 * A lock file in CCBUNDLE_HOME, so two pushes or two backups on one machine
 * (cron firing while one still runs) do not interleave. The file holds the
 * owner's pid, host and start time; a lock whose process is gone (or that is
 * older than `staleAfterMs`) is taken over, so a `kill -9` never wedges cron.
 */

export interface LockOptions {
  /** Wait this long for a live holder before giving up (0 = fail at once). */
  waitMs?: number;
  staleAfterMs?: number;
}

interface LockInfo {
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

export async function acquireLock(home: string, name: string, options: LockOptions = {}): Promise<() => Promise<void>> {
  const dir = path.join(home, "locks");
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const file = path.join(dir, `${name}.lock`);
  const deadline = Date.now() + (options.waitMs ?? 0);
  const staleAfter = options.staleAfterMs ?? 6 * 3600_000;
  const me: LockInfo = { pid: process.pid, host: os.hostname(), started: Date.now() };
  for (;;) {
    try {
      const handle = await open(file, "wx", 0o600);
      await handle.writeFile(JSON.stringify(me));
      await handle.close();
      return async () => {
        // Only remove the lock if it is still ours (a stale-lock takeover may have replaced it).
        const current = await readInfo(file);
        if (current?.pid === me.pid && current.started === me.started) await rm(file, { force: true });
      };
    } catch (err) {
      if (errnoCode(err) !== "EEXIST") throw err;
    }
    const holder = await readInfo(file);
    if (!holder || isStale(holder, staleAfter)) {
      await rm(file, { force: true });
      continue;
    }
    if (Date.now() >= deadline) {
      throw new CcbError(
        `another ccbundle ${name} is running (pid ${holder.pid}, since ${new Date(holder.started).toISOString()})`,
        1,
        {
          hint: `wait for it to finish; if it is gone, remove ${file}`,
        },
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

async function readInfo(file: string): Promise<LockInfo | undefined> {
  try {
    const info = JSON.parse(await readFile(file, "utf8")) as LockInfo;
    return typeof info.pid === "number" ? info : undefined;
  } catch {
    return undefined;
  }
}

function isStale(info: LockInfo, staleAfterMs: number): boolean {
  if (Date.now() - info.started > staleAfterMs) return true;
  if (info.host !== os.hostname()) return false;
  try {
    process.kill(info.pid, 0);
    return false;
  } catch (err) {
    return errnoCode(err) === "ESRCH";
  }
}
