import os from "node:os";
import type { Settings } from "../config.js";
import type { UserKey } from "../crypto/keys.js";
import { NotFoundError } from "../errors.js";
import { openSlots } from "../pointer/record.js";
import { resolveNewest } from "../pointer/resolver.js";
import type { PointerTransport } from "../pointer/transport.js";
import { type PublishRecordReport, publishRecord } from "../publish.js";

/**
 * The owner's record can point at the latest backup snapshot: a slot of kind
 * "snapshot" naming the store and the snapshot id, encrypted to the owner
 * alone. A new laptop with only the identity resolves its own record, finds
 * the store there and restores everything. The slot has its own name, so a
 * push does not replace it (it may still be dropped to make room for handoffs
 * when the 1000-byte record is full; the next `backup --publish` puts it back).
 */

export const SNAPSHOT_SLOT = "backup";

export async function publishSnapshotSlot(options: {
  settings: Settings;
  key: UserKey;
  storeUrl: string;
  snapshot: string;
  transports: PointerTransport[];
}): Promise<PublishRecordReport> {
  return publishRecord({
    settings: options.settings,
    key: options.key,
    payload: {
      v: 1,
      pub: options.key.z32,
      slot: SNAPSHOT_SLOT,
      kind: "snapshot",
      created: Math.floor(Date.now() / 1000),
      host: os.hostname(),
      snapshot: options.snapshot,
      store: options.storeUrl,
    },
    transports: options.transports,
    dryRun: false,
  });
}

export interface SnapshotPointer {
  store: string;
  snapshot: string;
  /** Transports that served the record. */
  from: string[];
}

/** The snapshot slot of the owner's newest record; NotFoundError when there is none. */
export async function resolveSnapshotSlot(options: {
  settings: Settings;
  key: UserKey;
  transports: PointerTransport[];
}): Promise<SnapshotPointer> {
  const { key } = options;
  const resolved = await resolveNewest(options.transports, key.publicKey, { home: options.settings.home });
  const slots = await openSlots(resolved.payload, key.z32, [key.ageIdentity()]);
  const newest = slots
    .map((slot) => slot.payload)
    .filter((payload) => payload.kind === "snapshot" && payload.store && payload.snapshot)
    .sort((a, b) => b.created - a.created)[0];
  if (!newest?.store || !newest.snapshot) {
    throw new NotFoundError("your record points at no backup snapshot", {
      hint: "run `ccbundle backup --publish` on the machine that backs up, or pass --store <url>",
    });
  }
  return { store: newest.store, snapshot: newest.snapshot, from: resolved.from };
}
