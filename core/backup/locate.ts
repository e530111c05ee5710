import { stat } from "node:fs/promises";
import type { BlobStore } from "../../storage-adapters/blob-store.js";
import { openStore } from "../../storage-adapters/index.js";
import type { Settings } from "../config.js";
import type { UserKey } from "../crypto/keys.js";
import { NotFoundError } from "../errors.js";
import { closeTransports, transportsFor } from "../pointer/resolver.js";
import { resolveSnapshotSlot } from "./slot.js";
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
  if (transports.length === 0) {
    throw new NotFoundError("no backups found: no store is configured and the DHT and relays are disabled", {
      hint: "pass --store <url> naming the store `ccbundle backup` wrote to",
    });
  }
  try {
    const pointer = await resolveSnapshotSlot({ settings, key, transports });
    return { store: await openStore(pointer.store), via: "record", published: pointer.snapshot };
  } catch (err) {
    if (err instanceof NotFoundError) {
      throw new NotFoundError(`no backups found: ${err.message}`, {
        hint: "pass --store <url> naming the store `ccbundle backup` wrote to (or back up with --publish)",
        cause: err,
      });
    }
    throw err;
  } finally {
    await closeTransports(transports);
  }
}
