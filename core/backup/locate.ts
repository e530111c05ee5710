import { stat } from "node:fs/promises";
import type { BlobStore } from "../../storage-adapters/blob-store.js";
import { openStore } from "../../storage-adapters/index.js";
import type { Settings } from "../config.js";
import type { UserKey } from "../crypto/keys.js";
import { IntegrityError, NotFoundError } from "../errors.js";
import { closeTransports, transportsFor } from "../pointer/resolver.js";
import { type RecordStores, resolveRecordStores } from "./slot.js";
import { listSnapshotIds } from "./snapshot.js";

/**
 * Where the backups are, for list, restore and prune: the configured store
 * (--store, CCBUNDLE_STORE, config.json); else the default local store if it
 * holds snapshots of ours; else the store named by the snapshot slot of our
 * own record (a new laptop that has only the identity).
 */

export interface BackupLocation {
  store: BlobStore;
  via: "configured store" | "default store" | "record";
  /** The snapshot the record points at, when found through it. */
  published?: string;
}

export async function locateBackups(settings: Settings, key: UserKey): Promise<BackupLocation> {
  if (settings.store) return { store: await openStore(settings.store), via: "configured store" };
  if ((await stat(settings.defaultStore).catch(() => undefined))?.isDirectory()) {
    const local = await openStore(settings.defaultStore);
    if ((await listSnapshotIds(local, key.z32)).length > 0) return { store: local, via: "default store" };
    await local.close?.();
  }
  const transports = transportsFor(settings, undefined);
  if (transports.length === 0) throw noBackups("no store is configured and the DHT and relays are disabled");
  let named: RecordStores;
  try {
    named = await resolveRecordStores({ settings, key, transports });
  } catch (err) {
    if (err instanceof NotFoundError) throw noBackups(err.message, err);
    throw err;
  } finally {
    await closeTransports(transports);
  }
  if (named.snapshot) {
    return { store: await openStore(named.snapshot.store), via: "record", published: named.snapshot.id };
  }
  // No snapshot slot (a push took its room): backups often live in the store the handoff names.
  for (const url of named.handoffStores) {
    const store = await openStore(url).catch(() => undefined);
    if (!store) continue;
    if ((await listSnapshotIds(store, key.z32).catch(() => [])).length > 0) return { store, via: "record" };
    await store.close?.();
  }
  if (named.newerSlots > 0) {
    throw new IntegrityError(
      "your record's pointer to your backups may be in a newer ccbundle's format, which this one cannot read",
      {
        hint: "upgrade ccbundle (npm install -g ccbundle), or pass --store <url> naming the store `ccbundle backup` wrote to",
      },
    );
  }
  throw noBackups("your record points at no backup snapshot");
}

function noBackups(why: string, cause?: unknown): NotFoundError {
  return new NotFoundError(`no backups found: ${why}`, {
    hint: "pass --store <url> naming the store `ccbundle backup` wrote to (or back up with --publish)",
    cause,
  });
}
