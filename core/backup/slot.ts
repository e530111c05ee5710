import type { Settings } from "../config.js";
import type { UserKey } from "../crypto/keys.js";
import { forgetSlots, type PointerPayload, readSlots, sealPayload } from "../pointer/record.js";
import { resolveNewest } from "../pointer/resolver.js";
import type { PointerTransport } from "../pointer/transport.js";
import { type PublishRecordReport, publishRecord, resolveCurrent } from "../publish.js";

/**
 * The owner's record can point at the latest backup snapshot: a slot of kind
 * "snapshot" naming the store and the snapshot id, encrypted to the owner
 * alone. A new laptop with only the identity resolves its own record, finds
 * the store there and restores everything.
 *
 * The slot has its own name, so a push does not replace it; but a record has
 * 1000 bytes, and several handoffs (to people, with presigned links) can fill
 * it. A push may then drop this slot (the handoff is what someone waits for
 * now), and `backup --publish` never drops a live handoff to make room: it
 * defers until the handoffs expire. Meanwhile a new laptop still finds the
 * store through a handoff's own store URL when backups live there too
 * (locate.ts).
 */

export const SNAPSHOT_SLOT = "backup";

export type SnapshotSlotOutcome =
  | { status: "published"; report: PublishRecordReport }
  /** The record is full with live handoffs; the next `backup --publish` after they expire publishes. */
  | { status: "deferred"; reason: string };

export async function publishSnapshotSlot(options: {
  settings: Settings;
  key: UserKey;
  storeUrl: string;
  snapshot: string;
  transports: PointerTransport[];
}): Promise<SnapshotSlotOutcome> {
  const { settings, key, transports } = options;
  const payload: PointerPayload = {
    v: 1,
    pub: key.z32,
    slot: SNAPSHOT_SLOT,
    kind: "snapshot",
    created: Math.floor(Date.now() / 1000),
    snapshot: options.snapshot,
    store: options.storeUrl,
  };
  const slots = [{ payload, sealed: await sealPayload(payload, [key.ageRecipient()]) }];
  // Another machine of ours may have pushed since: its handoffs count too.
  const current = await resolveCurrent(transports, key, settings.home);
  const plan = await publishRecord({ settings, key, slots, current, transports: [], dryRun: true });
  // The pointer to backups yields to live handoffs: a pull elsewhere is waiting for those now.
  const evicted = plan.dropped.filter((slot) => slot.kind === "handoff");
  // A slot a newer ccbundle wrote may be a live handoff too.
  if (evicted.length > 0 || plan.droppedNewer > 0) {
    return {
      status: "deferred",
      reason:
        "the record has no room for it without dropping a live handoff; it goes in once those expire or are revoked",
    };
  }
  return {
    status: "published",
    report: await publishRecord({ settings, key, slots, current, transports, dryRun: false }),
  };
}

export interface RecordStores {
  /** The snapshot slot, if the record has one. */
  snapshot: { store: string; id: string } | undefined;
  /** Stores the record's handoff slots name: backups often live in the same store. */
  handoffStores: string[];
  /** Slots a newer ccbundle wrote (the snapshot slot may be among them). */
  newerSlots: number;
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
  const { opened, newer } = await readSlots(resolved.payload, key.z32, [key.ageIdentity()]);
  forgetSlots(opened);
  const payloads = opened.map((slot) => slot.payload);
  const newest = payloads
    .filter((payload) => payload.kind === "snapshot" && payload.store && payload.snapshot)
    .sort((a, b) => b.created - a.created)[0];
  const handoffStores = payloads.flatMap((payload) =>
    payload.kind === "handoff" && payload.blob?.store ? [payload.blob.store] : [],
  );
  return {
    snapshot: newest ? { store: newest.store!, id: newest.snapshot! } : undefined,
    handoffStores: [...new Set(handoffStores)],
    newerSlots: newer.length,
    from: resolved.from,
  };
}
