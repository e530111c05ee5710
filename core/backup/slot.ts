import type { Settings } from "../config.js";
import type { UserKey } from "../crypto/keys.js";
import { openSlots } from "../pointer/record.js";
import { resolveNewest } from "../pointer/resolver.js";
import type { PointerTransport } from "../pointer/transport.js";
import { type PublishRecordReport, publishRecord } from "../publish.js";

/**
 * The owner's record can point at the latest backup snapshot: a slot of kind
 * "snapshot" naming the store and the snapshot id, encrypted to the owner
 * alone. A new laptop with only the identity resolves its own record, finds
 * the store there and restores everything.
 *
 * The slot has its own name, so a push does not replace it, but a record has
 * 1000 bytes: a handoff slot and this one rarely fit together. A push drops it
 * (the handoff is what someone waits for now), and `backup --publish` never
 * drops a live handoff to make room: it defers until the handoff expires.
 * Meanwhile a new laptop still finds the store through the handoff's own store
 * URL when backups live there too (locate.ts).
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
      snapshot: options.snapshot,
      store: options.storeUrl,
    },
    transports: options.transports,
    dryRun: false,
    // The pointer to backups yields to live handoffs: a pull on another machine is
    // waiting for those now; the next `backup --publish` after they expire puts it back.
    keep: (slot) => slot.kind === "handoff",
  });
}

export interface RecordStores {
  /** The snapshot slot, if the record has one. */
  snapshot: { store: string; id: string } | undefined;
  /** Stores the record's handoff slots name: backups often live in the same store. */
  handoffStores: string[];
  /** Transports that served the record. */
  from: string[];
}

/** The stores the owner's newest record names; NotFoundError when there is no record. */
export async function resolveRecordStores(options: {
  settings: Settings;
  key: UserKey;
  transports: PointerTransport[];
}): Promise<RecordStores> {
  const { key } = options;
  const resolved = await resolveNewest(options.transports, key.publicKey, { home: options.settings.home });
  const payloads = (await openSlots(resolved.payload, key.z32, [key.ageIdentity()])).map((slot) => slot.payload);
  const newest = payloads
    .filter((payload) => payload.kind === "snapshot" && payload.store && payload.snapshot)
    .sort((a, b) => b.created - a.created)[0];
  const handoffStores = payloads.flatMap((payload) =>
    payload.kind === "handoff" && payload.blob?.store ? [payload.blob.store] : [],
  );
  return {
    snapshot: newest ? { store: newest.store!, id: newest.snapshot! } : undefined,
    handoffStores: [...new Set(handoffStores)],
    from: resolved.from,
  };
}
