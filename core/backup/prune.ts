import { readFile } from "node:fs/promises";
import os from "node:os";
import type { BlobStore, ObjectInfo } from "../../storage-adapters/blob-store.js";
import type { Settings } from "../config.js";
import type { UserKey } from "../crypto/keys.js";
import { NotFoundError, UsageError } from "../errors.js";
import { forgetHandoffs, readLedger } from "../handoff-ledger.js";
import { withLock } from "../lock.js";
import { describeError } from "../pointer/abort.js";
import { type VerifiedPacket, verifyPayload } from "../pointer/packet.js";
import { forgetSlots, type PointerPayload, readSlots } from "../pointer/record.js";
import { resolveNewest } from "../pointer/resolver.js";
import type { PointerTransport } from "../pointer/transport.js";
import { lastRecordFile } from "../publish.js";
import { storeLayout } from "../store-layout.js";
import { machineMatcher } from "./filter.js";
import { applyPolicy, type KeepPolicy, type KeepReason } from "./policy.js";
import { mapPool } from "./pool.js";
import {
  backupRecipients,
  newSnapshot,
  readSnapshot,
  type Snapshot,
  snapshotIdsToRead,
  snapshotTime,
  writeSnapshot,
} from "./snapshot.js";
import { BackupStateFile, machineId } from "./state.js";

/**
 * `ccbundle prune`: forget snapshots outside the keep policy, then delete the
 * blobs nothing kept needs. A blob is deleted only when all of this holds:
 *
 * - it is ours: named by a snapshot being removed, or uploaded by this machine
 *   (a run cut short), or an expired handoff of ours (`--expired`: named by an
 *   expired slot of the record or by this machine's handoff ledger), or, with
 *   `--unreferenced`, anything in `blobs/` (only for a store no one else uses:
 *   blob names do not say whose they are);
 * - no kept snapshot names it, and this machine's backup state does not;
 * - no live (unexpired) handoff slot in the owner's record names it: handoffs
 *   share `blobs/`;
 * - the store has had it for longer than the grace period, so a backup running
 *   elsewhere right now never loses a blob it just uploaded.
 *
 * Blobs to delete are written into this machine's state before any snapshot is
 * deleted, so a prune killed half-way finishes the job next time instead of
 * leaking them.
 */

export interface PruneOptions {
  settings: Settings;
  key: UserKey;
  store: BlobStore;
  policy: KeepPolicy;
  graceSeconds: number;
  dryRun: boolean;
  /** Also delete the blobs of expired handoffs named by the owner's record. */
  expired: boolean;
  /** Also delete blobs in the store that nothing of ours names (a store used by no one else). */
  unreferenced: boolean;
  /** DHT and relays, to read the owner's newest record (besides the store's mirror and this machine's copy). */
  transports: PointerTransport[];
  /**
   * A retired machine (host name or machine id prefix, see machineMatcher): a new newest snapshot
   * without its sessions, so their blobs go once no kept snapshot names them.
   */
  forgetMachine?: string | undefined;
  now?: number;
}

export interface PruneResult {
  store: string;
  dryRun: boolean;
  snapshots: { kept: Array<{ id: string; reasons: KeepReason[] }>; removed: string[]; damaged: string[] };
  blobs: {
    removed: number;
    removedBytes: number;
    /** Would go, but are younger than the grace period. */
    young: number;
    /** Kept because a live handoff names them. */
    liveHandoffs: number;
    /** In the store, named by nothing of ours, left alone (without --unreferenced). */
    unknown: number;
  };
  /** What --forget-machine took out of the newest snapshot (the new snapshot's id unless a dry run). */
  forgot?: { machine: string; host: string; sessions: number; snapshot: string | undefined };
  warnings: string[];
}

export async function pruneBackups(options: PruneOptions): Promise<PruneResult> {
  return withLock(options.settings.home, "backup", () => pruneLocked(options), { waitMs: 60_000 });
}

async function pruneLocked(options: PruneOptions): Promise<PruneResult> {
  const { settings, key, store } = options;
  const now = options.now ?? Date.now();
  const warnings: string[] = [];

  const ids = await snapshotIdsToRead(store, key.z32);
  const opened = await mapPool(ids, 8, (id) => readSnapshot(store, key, id));
  const snapshots = new Map<string, Snapshot>();
  const damaged: string[] = [];
  opened.forEach((result, index) => {
    const id = ids[index]!;
    if (result.status === "fulfilled") snapshots.set(id, result.value);
    else {
      // Never delete what cannot be read: it may be someone's only copy of something.
      damaged.push(id);
      warnings.push(`kept snapshot ${id}: ${describeError(result.reason)}`);
    }
  });
  const forgot = options.forgetMachine === undefined ? undefined : await forgetMachine(options, ids, snapshots, now);
  const policy = applyPolicy(
    [...snapshots].map(([id, snapshot]) => ({ id, time: snapshotTime(id), madeAt: Date.parse(snapshot.created) })),
    options.policy,
    now,
  );

  const stateFile = await BackupStateFile.open(settings.home, key.z32, store.url);
  const state = stateFile.state;
  const needed = new Set<string>();
  for (const { id } of policy.keep) for (const entry of snapshots.get(id)!.sessions) needed.add(entry.blob.key);
  for (const saved of Object.values(state.sessions)) needed.add(saved.entry.blob.key);

  // Handoffs share blobs/: what the record's slots and this machine's handoff ledger
  // (which remembers them after the record has forgotten an expired slot) say about them.
  const owner = await ownerSlots(options, warnings);
  const handoffs = [
    ...owner.payloads.flatMap((slot) =>
      slot.kind === "handoff" && slot.blob ? [{ key: slot.blob.key, expires: slot.expires }] : [],
    ),
    ...(await readLedger(settings.home, key.z32)),
  ];
  const live = new Set<string>();
  for (const handoff of handoffs) {
    if (handoff.expires === undefined || handoff.expires * 1000 >= now) live.add(handoff.key);
  }
  const expired = new Set(handoffs.map((handoff) => handoff.key).filter((blobKey) => !live.has(blobKey)));

  const inStore = new Map<string, ObjectInfo>();
  for await (const object of store.list(storeLayout.blobsPrefix)) inStore.set(object.key, object);

  const candidates = new Set<string>(state.uploaded);
  for (const id of policy.remove) for (const entry of snapshots.get(id)!.sessions) candidates.add(entry.blob.key);
  if (options.expired) for (const blobKey of expired) candidates.add(blobKey);
  const known = new Set([...candidates, ...needed, ...live, ...expired]);
  for (const snapshot of snapshots.values()) for (const entry of snapshot.sessions) known.add(entry.blob.key);
  const unknown = [...inStore.keys()].filter((blobKey) => !known.has(blobKey));
  // --unreferenced: everything in blobs/ is a candidate; the checks below still keep
  // what kept snapshots, this machine's state and live handoffs name, and young blobs.
  const unreadable = damaged.length > 0 || owner.newer > 0;
  if (options.unreferenced && damaged.length > 0) {
    warnings.push("--unreferenced skipped: a snapshot that cannot be read may name any blob");
  } else if (options.unreferenced && owner.newer > 0) {
    warnings.push(
      "--unreferenced skipped: your record holds slots a newer ccbundle wrote, which may name any blob (upgrade ccbundle)",
    );
  } else if (options.unreferenced) {
    for (const blobKey of inStore.keys()) candidates.add(blobKey);
  }

  const graceMs = options.graceSeconds * 1000;
  const doomed: ObjectInfo[] = [];
  const pending = new Set<string>();
  let young = 0;
  let liveHandoffs = 0;
  for (const blobKey of candidates) {
    if (needed.has(blobKey)) continue;
    if (live.has(blobKey)) {
      liveHandoffs++;
      continue;
    }
    const info = inStore.get(blobKey);
    if (!info) continue; // already gone
    if (now - info.modified.getTime() < graceMs) {
      young++;
      pending.add(blobKey);
      continue;
    }
    doomed.push(info);
  }

  if (!options.dryRun) {
    // Remember every blob that is to go before the snapshots naming them disappear.
    state.uploaded = [...new Set([...pending, ...doomed.map((info) => info.key)])];
    await stateFile.save();
    for (const id of policy.remove) await store.delete(storeLayout.snapshot(key.z32, id));
    const deleted = await mapPool(doomed, 8, (info) => store.delete(info.key));
    const failed = doomed.filter((_, index) => deleted[index]!.status === "rejected");
    for (const info of failed) warnings.push(`could not delete ${info.key}; the next prune tries again`);
    const gone = doomed.filter((info) => !failed.includes(info) && expired.has(info.key)).map((info) => info.key);
    if (gone.length > 0) await forgetHandoffs(settings.home, key.z32, gone);
    state.uploaded = [...pending, ...failed.map((info) => info.key)];
    await stateFile.save();
  }
  return {
    store: store.url,
    dryRun: options.dryRun,
    snapshots: { kept: policy.keep, removed: policy.remove, damaged },
    blobs: {
      removed: doomed.length,
      removedBytes: doomed.reduce((sum, info) => sum + info.size, 0),
      young,
      liveHandoffs,
      unknown: options.unreferenced && !unreadable ? 0 : unknown.length,
    },
    ...(forgot ? { forgot } : {}),
    warnings,
  };
}

/**
 * --forget-machine: the newest snapshot again, without that machine's sessions, as the new newest
 * (added to `snapshots` and `ids`, so the keep policy sees it). A laptop that was replaced keeps
 * its sessions in every snapshot the other machines write, since each carries the others' entries;
 * this is how they leave. A machine that is still in use puts its own back at its next backup.
 */
async function forgetMachine(
  options: PruneOptions,
  ids: string[],
  snapshots: Map<string, Snapshot>,
  now: number,
): Promise<PruneResult["forgot"]> {
  const { settings, key, store } = options;
  const newestId = ids.find((id) => snapshots.has(id));
  const newest = newestId === undefined ? undefined : snapshots.get(newestId);
  if (!newest) {
    throw new NotFoundError(`no snapshot in ${store.url} to forget a machine from`, {
      hint: "`ccbundle list` shows the snapshots",
    });
  }
  const matches = machineMatcher(newest.sessions, options.forgetMachine!);
  const gone = newest.sessions.filter(matches);
  const { machine, host } = gone[0]!;
  const here = await machineId(settings.home);
  if (machine === here) {
    throw new UsageError(`${options.forgetMachine} is this machine`, {
      hint: "run it on another machine of yours: this one's next backup would put its sessions back",
    });
  }
  // A dry run builds the snapshot too (and does not write it): the keep policy below must see it
  // as the newest, or the old newest, which names every bundle of that machine, looks kept.
  const snapshot = newSnapshot({
    key,
    machine: here,
    host: os.hostname(),
    parent: newest,
    sessions: newest.sessions.filter((entry) => !matches(entry)),
    now: new Date(now),
  });
  if (!options.dryRun) await writeSnapshot(store, key, snapshot, backupRecipients(key, settings.backupRecipients));
  snapshots.set(snapshot.id, snapshot);
  ids.unshift(snapshot.id);
  return { machine, host, sessions: gone.length, snapshot: options.dryRun ? undefined : snapshot.id };
}

/**
 * Every slot of the owner's record we can see: the store's mirror (any push into
 * this store wrote its record there), this machine's last published record, and
 * the newest one on the DHT and relays. A handoff live in any of them is kept.
 */
/** The payloads of the owner's record slots, and how many slots a newer ccbundle wrote (unreadable here). */
async function ownerSlots(
  options: PruneOptions,
  warnings: string[],
): Promise<{ payloads: PointerPayload[]; newer: number }> {
  const { key, store, settings } = options;
  const identities = [key.ageIdentity()];
  const packets: Uint8Array[] = [];
  try {
    packets.push(await store.getBytes(storeLayout.record(key.z32)));
  } catch (err) {
    if (!(err instanceof NotFoundError)) throw err;
  }
  try {
    packets.push(await readFile(lastRecordFile(settings.home, key.z32)));
  } catch {
    // never published from here
  }
  const payloads: PointerPayload[] = [];
  let newer = 0;
  const read = async (verified: VerifiedPacket) => {
    const slots = await readSlots(verified, key.z32, identities);
    forgetSlots(slots.opened);
    payloads.push(...slots.opened.map((slot) => slot.payload));
    newer += slots.newer.length;
  };
  for (const bytes of packets) {
    try {
      await read(verifyPayload(key.publicKey, bytes));
    } catch (err) {
      warnings.push(`ignored a record that does not verify: ${describeError(err)}`);
    }
  }
  if (options.transports.length > 0) {
    try {
      await read((await resolveNewest(options.transports, key.publicKey, { home: settings.home })).payload);
    } catch (err) {
      if (!(err instanceof NotFoundError)) {
        warnings.push(`could not read your record on the network: ${describeError(err)}`);
      }
    }
  }
  return { payloads, newer };
}
