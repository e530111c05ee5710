import { performance } from "node:perf_hooks";
import type { BlobStore } from "../../storage-adapters/blob-store.js";
import { describeFailure } from "../errors.js";
import { onInterrupt } from "../interrupt.js";
import { randomId, storeLayout } from "../store-layout.js";

/**
 * Two machines backing up into one store at the same moment (two cron jobs at `0 * * * *`).
 * Each writes a snapshot built on the newest it read: this machine's entries, and everyone
 * else's as that snapshot had them. Stores have no compare-and-swap, so a machine that read the
 * newest just before our snapshot landed, and writes its own just after we looked, makes the
 * newest snapshot without our new sessions; reading the newest again after writing (backup.ts)
 * cannot see a write that has not landed yet.
 *
 * So a machine announces a snapshot write before it reads the snapshot it builds on, and
 * withdraws the announcement once its snapshot is stored. After writing, it waits until every
 * announcement it sees (other than its own) is withdrawn, and only then reads the newest again.
 * Any machine whose read missed our snapshot announced before that read, so before we looked:
 * either we see its announcement and wait for its snapshot, or it was withdrawn already and its
 * snapshot is there to read. Two machines never wait on each other: each withdraws its own
 * announcement before it waits. The same holds for any number of machines, as long as the waits
 * end by withdrawals.
 *
 * They do not when a run was killed, or a laptop went to sleep mid-write: an announcement older
 * than STALE_MS is passed over, judged by the store's clock only (the machines' clocks may be
 * minutes apart), and the machine that left it deletes it on its next snapshot write. A snapshot
 * write already under way when a signal comes keeps its announcement (the write may still land:
 * an S3 put cannot be called back), so others wait for it until it is stale.
 *
 * Announcements are empty objects at `snapshot-writes/<z32>/<time>-<machine>-<random>`, outside
 * `snapshots/` so snapshot listings never meet them; the machine id is random (no host or path).
 * Failing to announce, withdraw or look (a store that takes puts but no deletes) is a warning:
 * the snapshot is stored either way, only the guarantee is lost.
 */

/** An announcement older than this (by the store's clock) is a killed or sleeping run's. */
const STALE_MS = 60_000;
/** How long to wait for another machine's snapshot before reading the newest anyway. */
export const ANNOUNCED_WAIT_MS = 30_000;
const POLL_FIRST_MS = 50;
const POLL_MAX_MS = 1000;

export function announcementPrefix(owner: string): string {
  return `${storeLayout.root}/snapshot-writes/${owner}/`;
}

export interface Announcement {
  key: string | undefined;
  /** The store's time now (ms), from our announcement's stored time; our own clock if unknown. */
  storeNow(): number;
  /** The snapshot write starts: from here on a signal leaves the announcement (see above). */
  writing(): void;
  /** Delete it (once; later calls do nothing); a failure is a warning. */
  withdraw(warnings: string[]): Promise<void>;
}

/** Announce a snapshot write by `machine`. A store that refuses it gives a warning and no announcement. */
export async function announceSnapshotWrite(
  store: BlobStore,
  owner: string,
  machine: string,
  warnings: string[],
): Promise<Announcement> {
  const stamp = new Date().toISOString().replace(/[-:.]/g, "");
  const key = `${announcementPrefix(owner)}${stamp}-${machine}-${randomId().slice(0, 8)}`;
  const started = performance.now();
  let storedAt: number | undefined;
  try {
    await store.put(key, new Uint8Array(0), { size: 0 });
    storedAt = (await store.stat(key))?.modified.getTime();
  } catch (err) {
    warnings.push(
      `could not announce this snapshot write in the store (${describeFailure(err).message}): a backup on another machine at this same moment may leave this one's new sessions out of the newest snapshot until the next backup`,
    );
    return { key: undefined, storeNow: () => Date.now(), writing() {}, withdraw: async () => {} };
  }
  let inFlight = false;
  const forget = onInterrupt(() => (inFlight ? undefined : store.delete(key)));
  let withdrawn: Promise<void> | undefined;
  return {
    key,
    storeNow: () => (storedAt === undefined ? Date.now() : storedAt + (performance.now() - started)),
    writing() {
      inFlight = true;
    },
    withdraw(warnings: string[]) {
      withdrawn ??= store
        .delete(key)
        .catch((err: unknown) => {
          warnings.push(
            `could not withdraw this machine's snapshot-write announcement ${key} (${describeFailure(err).message}): other machines' backups wait for it for up to a minute; it is deleted by the next backup here`,
          );
        })
        .finally(forget);
      return withdrawn;
    },
  };
}

/**
 * Waits until the snapshot writes other machines announced are done (their announcements
 * withdrawn), at most ANNOUNCED_WAIT_MS. Our own machine's leftovers (a killed run: this machine
 * writes one snapshot at a time, under the backup lock) are deleted on the way. Returns the
 * announcements still there when the wait ran out (none, normally); a store that cannot be
 * listed gives a warning and no wait.
 */
export async function awaitAnnouncedWrites(
  store: BlobStore,
  owner: string,
  machine: string,
  options: { storeNow: () => number; warnings: string[]; waitMs?: number },
): Promise<string[]> {
  const started = performance.now();
  const waitMs = options.waitMs ?? ANNOUNCED_WAIT_MS;
  const prefix = announcementPrefix(owner);
  for (let pause = POLL_FIRST_MS; ; pause = Math.min(pause * 2, POLL_MAX_MS)) {
    const pending: string[] = [];
    try {
      for await (const object of store.list(prefix)) {
        const name = object.key.slice(prefix.length);
        if (name.includes(`-${machine}-`)) {
          await store.delete(object.key);
          continue;
        }
        if (options.storeNow() - object.modified.getTime() > STALE_MS) continue;
        pending.push(object.key);
      }
    } catch (err) {
      options.warnings.push(
        `could not look for other machines' snapshot writes (${describeFailure(err).message}): a backup on another machine at this same moment may leave this one's new sessions out of the newest snapshot until the next backup`,
      );
      return [];
    }
    const waited = performance.now() - started;
    if (pending.length === 0 || waited >= waitMs) return pending;
    await new Promise((resolve) => setTimeout(resolve, Math.min(pause, waitMs - waited)));
  }
}
