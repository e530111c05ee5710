import type { BlobStore } from "../../storage-adapters/blob-store.js";
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
 * announcement before it waits. An announcement left by a killed run is passed over once it is
 * STALE_MS old, and deleted by the next backup of the machine that left it.
 *
 * Announcements are empty objects at `snapshots/<z32>/.writing/<time>-<machine>-<random>`: the
 * machine id is random (no host or path); ccbundle versions that predate them list snapshots by
 * id pattern and pass over them.
 */

/** An announcement older than this (by its name and by the store's time) is a killed run's. */
const STALE_MS = 5 * 60_000;
/** How long to wait for another machine's snapshot before reading the newest anyway. */
export const ANNOUNCED_WAIT_MS = 30_000;
const POLL_FIRST_MS = 50;
const POLL_MAX_MS = 1000;

function prefix(owner: string): string {
  return `${storeLayout.snapshotDir(owner)}.writing/`;
}

function stamp(now: Date): string {
  return now.toISOString().replace(/[-:.]/g, "");
}

/** The announcement's time, from its name; NaN for a name this module did not make. */
function announcedAt(name: string): number {
  const match = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})(\d{3})Z-/.exec(name);
  if (!match) return Number.NaN;
  const [, y, mo, d, h, mi, s, ms] = match;
  return Date.parse(`${y}-${mo}-${d}T${h}:${mi}:${s}.${ms}Z`);
}

export interface Announcement {
  key: string;
  /** Delete it (once; later calls do nothing). */
  withdraw(): Promise<void>;
}

/** Announce a snapshot write by `machine`; withdrawn on Ctrl-C too. */
export async function announceSnapshotWrite(store: BlobStore, owner: string, machine: string): Promise<Announcement> {
  const key = `${prefix(owner)}${stamp(new Date())}-${machine}-${randomId().slice(0, 8)}`;
  await store.put(key, new Uint8Array(0), { size: 0 });
  const forget = onInterrupt(() => store.delete(key));
  let withdrawn: Promise<void> | undefined;
  return {
    key,
    withdraw() {
      withdrawn ??= store.delete(key).finally(forget);
      return withdrawn;
    },
  };
}

/**
 * Waits until the snapshot writes other machines announced are done (their announcements
 * withdrawn), at most ANNOUNCED_WAIT_MS. Our own machine's leftovers (a killed run: this machine
 * writes one snapshot at a time, under the backup lock) are deleted on the way. Returns the
 * announcements still there when the wait ran out (none, normally).
 */
export async function awaitAnnouncedWrites(
  store: BlobStore,
  owner: string,
  machine: string,
  options: { waitMs?: number; now?: () => number } = {},
): Promise<string[]> {
  const now = options.now ?? Date.now;
  const deadline = now() + (options.waitMs ?? ANNOUNCED_WAIT_MS);
  for (let pause = POLL_FIRST_MS; ; pause = Math.min(pause * 2, POLL_MAX_MS)) {
    const pending: string[] = [];
    for await (const object of store.list(prefix(owner))) {
      const name = object.key.slice(prefix(owner).length);
      const time = announcedAt(name);
      if (name.includes(`-${machine}-`)) {
        await store.delete(object.key);
        continue;
      }
      // Stale by both clocks: one machine's clock being off does not make a live write look dead.
      const newest = Math.max(Number.isNaN(time) ? 0 : time, object.modified.getTime());
      if (now() - newest > STALE_MS) continue;
      pending.push(object.key);
    }
    if (pending.length === 0 || now() >= deadline) return pending;
    await new Promise((resolve) => setTimeout(resolve, Math.min(pause, Math.max(0, deadline - now()))));
  }
}
