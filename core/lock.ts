import { createHash, randomBytes } from "node:crypto";
import { linkSync, readFileSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { CcbError, errnoCode, withPath } from "./errors.js";
import { onInterrupt } from "./interrupt.js";
import { removeOldFiles } from "./old-files.js";

/**
 * A lock file in CCBUNDLE_HOME, so two pushes or two backups on one machine
 * (cron firing while one still runs) do not interleave. The file holds the
 * owner's pid, host, start time (on Linux also the boot id and the process's
 * start ticks, see OwnerInfo) and a random token; a lock whose process is
 * gone (or that is older than `staleAfterMs`) is taken over, so a `kill -9`
 * never wedges cron, not even after a reboot that gave its pid to another process.
 *
 * The lock file appears complete or not at all: it is written under a temp
 * name and hard-linked into place (link fails if the name exists), so a
 * contender never reads a half-written lock and mistakes it for a stale one.
 *
 * Removing a lock is the delicate part, because "it is still the stale one,
 * so remove it" must be a single step or two contenders can each clear the
 * way for the other. A rename-aside-and-put-back did not do it: in the moment
 * a wrongly moved live lock was gone, a third contender got in. So whoever
 * removes a lock (a contender taking over, or the owner releasing) first
 * creates a ticket named after the lock's exact content, exclusively. Under
 * the ticket it rereads the lock and removes it only if the content is the
 * same. No one else can remove that content meanwhile (they would need the
 * same ticket), and no one can create a lock while it exists. Every lock's
 * content is unique, thanks to the token, so a ticket never outlives its use.
 */

export interface LockOptions {
  /** Wait this long for a live holder before giving up (0 = fail at once). */
  waitMs?: number;
  staleAfterMs?: number;
}

/**
 * A ticket is held for two file operations, so one this old was left by a
 * process that died (or froze) in between; its owner may be on another host.
 */
const TICKET_STALE_MS = 30_000;
/** Tickets on tickets: past this depth something keeps dying mid-takeover; ask the user. */
const MAX_TICKET_DEPTH = 2;

/** Who holds a lock or a staging folder: enough to tell whether that process is still alive. */
export interface OwnerInfo {
  pid: number;
  host: string;
  started: number;
  /**
   * Linux: the boot's id and the process's start in clock ticks since that boot. With the pid they
   * name one process whatever the wall clock did, so a pid used again (after a reboot, or in a
   * restarted container, where pids repeat) is not taken for the owner.
   */
  boot?: string;
  ticks?: string;
  /** The pid namespace the pid and ticks belong to: in another one (a container) they say nothing here. */
  pidns?: string;
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
  return { pid: process.pid, host: os.hostname(), started: Date.now(), ...thisProcess() };
}

type ProcessIdentity = { boot: string; ticks: string; pidns: string };
let ownIdentity: ProcessIdentity | null | undefined;
/** This process's boot id, start ticks and pid namespace (read once), or nothing where /proc does not tell. */
function thisProcess(): ProcessIdentity | Record<string, never> {
  if (ownIdentity === undefined) {
    const boot = bootId();
    const ticks = startTicks(process.pid);
    const pidns = pidNamespace();
    ownIdentity = boot && ticks && pidns ? { boot, ticks, pidns } : null;
  }
  return ownIdentity ?? {};
}

function pidNamespace(): string | undefined {
  try {
    return readlinkSync("/proc/self/ns/pid");
  } catch {
    return undefined;
  }
}

function bootId(): string | undefined {
  try {
    return readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim() || undefined;
  } catch {
    return undefined;
  }
}

/** Field 22 of /proc/<pid>/stat (starttime); the name before it may hold spaces and parentheses. */
function startTicks(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const ticks = fields[22 - 3];
    return ticks && /^\d+$/.test(ticks) ? ticks : undefined;
  } catch {
    return undefined;
  }
}

export async function acquireLock(home: string, name: string, options: LockOptions = {}): Promise<() => Promise<void>> {
  const file = lockPath(home, name);
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  const deadline = Date.now() + (options.waitMs ?? 0);
  const staleAfter = options.staleAfterMs ?? 6 * 3600_000;
  const mine = lockContent();
  for (;;) {
    if (tryCreate(file, mine)) {
      await sweepLeftovers(file);
      // Ctrl-C: the next command would take it over as its owner's process is gone, but it need
      // not find it at all. Still ours (same content) means no one has taken it over.
      const forget = onInterrupt(() => removeUnderTicket(file, mine), { last: true });
      return () => {
        forget();
        return release(file, mine);
      };
    }
    const seen = readText(file);
    if (seen === undefined) continue;
    const holder = parseOwner(seen);
    if (holder === undefined || isStale(holder, staleAfter)) {
      // False: another contender is removing it right now; give it a moment.
      if (!(await removeIfStill(file, seen))) await sleep(5 + Math.random() * 10);
      continue;
    }
    if (Date.now() >= deadline) {
      throw new CcbError(
        `another ccbundle ${name} is running (pid ${holder.pid}, since ${new Date(holder.started).toISOString()})`,
        1,
        { hint: `wait for it to finish; if it is gone, remove ${file}` },
      );
    }
    await sleep(100 + Math.random() * 100);
  }
}

/**
 * Remove our lock. While a contender holds its ticket (it judged the lock stale by age), wait
 * for it to finish; when a dead contender's ticket was in the way, it was cleared: try again.
 * Best effort: if that never settles, or the disk is full (a ticket is a file), the lock is left.
 * It names this process, so once we exit the next command takes it over as stale.
 */
async function release(file: string, mine: string): Promise<void> {
  const giveUpAt = Date.now() + TICKET_STALE_MS;
  try {
    while (!(await removeIfStill(file, mine))) {
      if (Date.now() > giveUpAt) return;
      await sleep(5 + Math.random() * 10);
    }
  } catch {
    // Left for the next command, as above.
  }
}

/** Files this old beside a lock are left by processes that died mid-step (a live one takes milliseconds). */
const LEFTOVER_MS = 3600_000;

/**
 * Remove the temp and ticket files that processes killed between two steps left beside our
 * lock. Safe while we hold it: a ticket names the exact content of a lock, and ours is new.
 */
function sweepLeftovers(file: string): Promise<void> {
  const prefix = `${path.basename(file)}.`;
  const leftover = (name: string) => name.startsWith(prefix) && (name.endsWith(".tmp") || name.endsWith(".takeover"));
  return removeOldFiles(path.dirname(file), leftover, LEFTOVER_MS);
}

/** What a lock or ticket file holds: its owner, made unique by a token (one process may take many). */
function lockContent(): string {
  return JSON.stringify({ ...currentOwner(), token: randomBytes(8).toString("hex") });
}

/**
 * Create `file` atomically with `content`; false when it exists. Synchronous (a few bytes, written
 * under a temp name and linked into place), so an interrupt handler can take a ticket too.
 */
function tryCreate(file: string, content: string): boolean {
  const tmp = `${file}.${randomBytes(6).toString("hex")}.tmp`;
  try {
    writeFileSync(tmp, content, { flag: "wx", mode: 0o600 });
    linkSync(tmp, file);
    return true;
  } catch (err) {
    if (errnoCode(err) === "EEXIST") return false;
    // A full disk fails the write without a path: name the lock, so the user knows which disk.
    throw withPath(err, file);
  } finally {
    rmSync(tmp, { force: true });
  }
}

/**
 * Remove `file` if it still holds `content`, under that content's ticket.
 * False when someone else holds the ticket (they will do the removing); a
 * ticket whose owner is gone is itself removed the same way, one level down.
 */
async function removeIfStill(file: string, content: string, depth = 0): Promise<boolean> {
  if (removeUnderTicket(file, content)) return true;
  const ticket = ticketFor(file, content);
  const taker = readText(ticket);
  if (taker === undefined) return false;
  const owner = parseOwner(taker);
  if (owner !== undefined && !ownerIsGone(owner) && Date.now() - owner.started <= TICKET_STALE_MS) return false;
  if (depth >= MAX_TICKET_DEPTH) {
    throw new CcbError(`cannot take over the stale lock ${file}: its takeover keeps being left unfinished`, 1, {
      hint: `if no ccbundle is running, remove ${file} and the ${path.basename(file)}.*.takeover files beside it`,
    });
  }
  await removeIfStill(ticket, taker, depth + 1);
  return false;
}

/** The ticket that whoever removes the lock file holding `content` must hold (see the top). */
function ticketFor(file: string, content: string): string {
  return `${file}.${createHash("sha256").update(content).digest("hex").slice(0, 16)}.takeover`;
}

/**
 * Take `content`'s ticket and, holding it, remove `file` if it still holds `content`; false when
 * someone else holds the ticket. Synchronous, without waiting: what removeIfStill does first, and
 * all an interrupt handler does (a later command takes the lock over as its owner is gone).
 */
function removeUnderTicket(file: string, content: string): boolean {
  const ticket = ticketFor(file, content);
  if (!tryCreate(ticket, lockContent())) return false;
  try {
    if (readText(file) === content) rmSync(file, { force: true });
  } finally {
    rmSync(ticket, { force: true });
  }
  return true;
}

/** A lock or ticket file's content (a few bytes), or undefined when it is gone. */
function readText(file: string): string | undefined {
  try {
    return readFileSync(file, "utf8");
  } catch (err) {
    if (errnoCode(err) === "ENOENT") return undefined;
    throw err;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export function parseOwner(text: string): OwnerInfo | undefined {
  try {
    const info = JSON.parse(text) as Partial<OwnerInfo>;
    if (typeof info.pid === "number" && typeof info.host === "string" && typeof info.started === "number") {
      const owner: OwnerInfo = { pid: info.pid, host: info.host, started: info.started };
      for (const field of ["boot", "ticks", "pidns"] as const) {
        const value = info[field];
        if (typeof value === "string") owner[field] = value;
      }
      return owner;
    }
  } catch {
    // fall through
  }
  return undefined;
}

function isStale(info: OwnerInfo, staleAfterMs: number): boolean {
  if (Date.now() - info.started > staleAfterMs) return true;
  return ownerIsGone(info);
}

/** True when `info` names a process on this host that no longer exists. */
export function ownerIsGone(info: OwnerInfo): boolean {
  if (info.host !== os.hostname()) return false;
  const now = thisProcess();
  // Written in an earlier boot: every process of it is gone.
  if (info.boot !== undefined && now.boot !== undefined && info.boot !== now.boot) return true;
  // The start ticks name a process only within its own pid namespace (a container sharing this
  // home and host name has another): elsewhere the pid check alone, as before.
  const sameSpace = info.ticks !== undefined && now.pidns !== undefined && info.pidns === now.pidns;
  if (info.pid === process.pid) return sameSpace && info.ticks !== now.ticks;
  try {
    process.kill(info.pid, 0);
  } catch (err) {
    return errnoCode(err) === "ESRCH";
  }
  // The pid is alive; it is the owner only if it started when the owner did (an owner written
  // without ticks, by an older version or another OS, keeps the pid check alone).
  if (!sameSpace) return false;
  const ticks = startTicks(info.pid);
  return ticks !== undefined && ticks !== info.ticks;
}
