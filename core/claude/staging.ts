import { randomBytes } from "node:crypto";
import { readdirSync, rmSync } from "node:fs";
import { mkdir, readdir, readFile, rm, rmdir, stat } from "node:fs/promises";
import path from "node:path";
import { errnoCode } from "../errors.js";
import { currentOwner, ownerIsGone, parseOwner } from "../lock.js";
import { writeFileAtomic } from "./files.js";
import { pendingJournals, replayJournal, type StepReport } from "./install-journal.js";

/**
 * Staging folders: `<config dir>/.ccbundle-staging-<random>`, on the same file
 * system as their targets (so installing is a rename) and hidden from Claude
 * Code (it only reads `projects/`, `file-history/`, … by name). Each holds an
 * `owner.json` naming the process that made it. A folder whose owner died
 * (`kill -9`, power cut) is finished (its install journal replayed) or, if it
 * never reached the install phase, removed, by the next receiving command.
 */

const PREFIX = ".ccbundle-staging-";
const OWNER_FILE = "owner.json";
/** A staging folder without an owner file is left alone this long (its creator may be writing it). */
const ORPHAN_GRACE_MS = 10 * 60_000;
/** An owner on another host (a shared config dir) is presumed gone after a day. */
const FOREIGN_OWNER_MS = 24 * 3600_000;

export async function createStaging(claudeDir: string): Promise<string> {
  await mkdir(claudeDir, { recursive: true });
  for (let attempt = 1; ; attempt++) {
    const dir = path.join(claudeDir, `${PREFIX}${randomBytes(6).toString("hex")}`);
    await mkdir(dir, { mode: 0o700 });
    try {
      await writeFileAtomic(path.join(dir, OWNER_FILE), JSON.stringify(currentOwner()), 0o600);
      return dir;
    } catch (err) {
      // Another receiving command took our folder for a dead one's in the instant before the
      // owner file existed (see removeIfNeverUsed): make another.
      if (errnoCode(err) !== "ENOENT" || attempt >= 3) throw err;
    }
  }
}

/**
 * A folder that holds nothing but an unfinished owner file (no owner file, nothing else): made by a
 * process killed before it wrote its owner file, or one killed while removing its folder. Nothing
 * in it is worth keeping, so it goes at once (rmdir refuses a folder that is not empty, and a live
 * creator that loses the race makes a new folder). True if it was removed.
 */
async function removeIfNeverUsed(dir: string): Promise<boolean> {
  const names = await readdir(dir).catch(() => undefined);
  if (names === undefined) return false;
  if (!names.every((name) => name.startsWith(`${OWNER_FILE}.`) && name.endsWith(".tmp"))) return false;
  for (const name of names) await rm(path.join(dir, name), { force: true });
  return rmdir(dir).then(
    () => true,
    () => false,
  );
}

/** Remove a staging folder, whatever state it is in. */
export async function removeStaging(dir: string): Promise<void> {
  // Usually empty by now (restore --all's `bundle-<n>` after its install moved every file): one rmdir,
  // on the threadpool (see StepContext.removals in install-journal.ts: freeing blocks waits for a discard here).
  try {
    await rmdir(dir);
    return;
  } catch (err) {
    if (errnoCode(err) === "ENOENT") return;
  }
  // The owner file goes last: a run killed halfway through this leaves a folder the next run
  // still sees as abandoned by a dead process (without it, the folder sat out a 10-minute grace;
  // test/kill.test.ts caught one killed inside the rm).
  const names = await readdir(dir).catch(() => [] as string[]);
  for (const name of names) if (name !== OWNER_FILE) await rm(path.join(dir, name), { recursive: true, force: true });
  await rm(dir, { recursive: true, force: true });
}

/** removeStaging, synchronously (an interrupt handler), with the owner file last for the same reason. */
export function removeStagingNow(dir: string): void {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  for (const name of names) if (name !== OWNER_FILE) rmSync(path.join(dir, name), { recursive: true, force: true });
  rmSync(dir, { recursive: true, force: true });
}

export interface RecoveredStaging {
  dir: string;
  /** Steps of an interrupted install that were completed now. */
  finished: StepReport[];
}

/** Finish or remove the staging folders of processes that are gone. */
export async function recoverStaging(claudeDir: string): Promise<RecoveredStaging[]> {
  const recovered: RecoveredStaging[] = [];
  for (const { dir } of await abandonedStaging(claudeDir)) {
    const finished: StepReport[] = [];
    for (const journal of await pendingJournals(dir))
      finished.push(...(await replayJournal(journal, path.dirname(journal))));
    await removeStaging(dir);
    recovered.push({ dir, finished });
  }
  return recovered;
}

/**
 * Remove the staging folders of processes that are gone and never reached their install (no
 * journal): decrypted files that only take space, hundreds of MB after an interrupted pull of a big
 * session, enough to fail the next pull's disk space check. Run before staging anything; a folder
 * with a journal waits for recoverStaging, under the install lock.
 */
export async function removeDeadStaging(claudeDir: string): Promise<void> {
  for (const { dir, interrupted } of await abandonedStaging(claudeDir)) if (!interrupted) await removeStaging(dir);
}

/** Staging folders of processes that are gone, and whether they hold an unfinished install. */
export async function abandonedStaging(claudeDir: string): Promise<{ dir: string; interrupted: boolean }[]> {
  let names: string[];
  try {
    names = await readdir(claudeDir);
  } catch (err) {
    if (errnoCode(err) === "ENOENT") return [];
    throw err;
  }
  const out: { dir: string; interrupted: boolean }[] = [];
  for (const name of names.filter((n) => n.startsWith(PREFIX))) {
    const dir = path.join(claudeDir, name);
    if (await removeIfNeverUsed(dir)) continue;
    if (await ownerGone(dir)) out.push({ dir, interrupted: (await pendingJournals(dir)).length > 0 });
  }
  return out;
}

async function ownerGone(dir: string): Promise<boolean> {
  let text: string | undefined;
  try {
    text = await readFile(path.join(dir, OWNER_FILE), "utf8");
  } catch (err) {
    if (errnoCode(err) !== "ENOENT") throw err;
  }
  const owner = text === undefined ? undefined : parseOwner(text);
  if (owner) return ownerIsGone(owner) || Date.now() - owner.started > FOREIGN_OWNER_MS;
  // No owner file: killed between mkdir and writing it, or made by an older ccbundle.
  const info = await stat(dir).catch(() => undefined);
  return info !== undefined && Date.now() - info.mtimeMs > ORPHAN_GRACE_MS;
}
