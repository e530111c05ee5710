import type { BlobStore } from "../../storage-adapters/blob-store.js";
import type { UserKey } from "../crypto/keys.js";
import { type EntryFilter, filterEntries, lastActivity } from "./filter.js";
import { mapPool } from "./pool.js";
import {
  noOlderStandsIn,
  pickSnapshotId,
  readSnapshot,
  type Snapshot,
  type SnapshotSession,
  snapshotIdsToRead,
} from "./snapshot.js";

/** `ccbundle list`: the snapshots in the store, and the sessions of one of them (the newest by default). */

export interface SnapshotSummary {
  id: string;
  created: string;
  host: string;
  machine: string;
  sessions: number;
  /** Uncompressed bytes of every session it lists. */
  bytes: number;
  /** Set when the snapshot cannot be opened or verified. */
  damaged?: string;
}

export interface ListResult {
  store: string;
  snapshots: SnapshotSummary[];
  /** The snapshot whose sessions are listed. */
  snapshot: string | undefined;
  sessions: SnapshotSession[];
}

export async function listBackups(options: {
  store: BlobStore;
  key: UserKey;
  snapshot?: string | undefined;
  filter: EntryFilter;
}): Promise<ListResult> {
  const { store, key } = options;
  const ids = await snapshotIdsToRead(store, key.z32);
  let chosen = await pickSnapshotId(store, key.z32, options.snapshot, ids);
  const opened = await mapPool(ids, 8, (id) => readSnapshot(store, key, id));
  if (options.snapshot === undefined || options.snapshot === "latest") {
    // The newest that opens, as restore does (a damaged newest one is listed as damaged); a
    // snapshot a newer ccbundle wrote, or one this key cannot open, still stops it.
    const newest = opened.findIndex((result) => result.status === "fulfilled" || noOlderStandsIn(result.reason));
    if (newest >= 0) chosen = ids[newest];
  }
  let current: Snapshot | undefined;
  const snapshots = ids.map((id, index): SnapshotSummary => {
    const result = opened[index]!;
    if (result.status === "rejected") {
      const reason = result.reason instanceof Error ? result.reason.message : String(result.reason);
      if (id === chosen) throw result.reason;
      return { id, created: "", host: "", machine: "", sessions: 0, bytes: 0, damaged: reason };
    }
    const snapshot = result.value;
    if (id === chosen) current = snapshot;
    return {
      id,
      created: snapshot.created,
      host: snapshot.host,
      machine: snapshot.machine,
      sessions: snapshot.sessions.length,
      bytes: snapshot.sessions.reduce((sum, entry) => sum + entry.bytes, 0),
    };
  });
  // Newest activity first, by the date list shows: a snapshot keeps file mtime order, and a restored
  // transcript has a new mtime with an old last line.
  const sessions = current
    ? (await filterEntries(current.sessions, options.filter)).sort((a, b) => lastActivity(b) - lastActivity(a))
    : [];
  return { store: store.url, snapshots, snapshot: chosen, sessions };
}
