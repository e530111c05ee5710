import type { Settings } from "./config.js";
import { type Identity, X25519Identity } from "./crypto/age/index.js";
import { decodeZ32PublicKey, type UserKey } from "./crypto/keys.js";
import { isoTime } from "./duration.js";
import { NotFoundError } from "./errors.js";
import { forgetHandoffs, readLedger, recipientNames } from "./handoff-ledger.js";
import { MAX_DNS_BYTES, signPacket, txtRecords } from "./pointer/packet.js";
import {
  describeSlot,
  forgetSlots,
  type OpenedSlot,
  type PointerPayload,
  RECORD_NAME,
  readSlots,
  recipientSlotId,
  recordEntries,
  resealPayload,
  sealPayload,
} from "./pointer/record.js";
import { nextSeq, publishAll, publishFailures, resolveNewest } from "./pointer/resolver.js";
import type { PointerTransport } from "./pointer/transport.js";
import {
  blobPickedUp,
  forgetUnpublished,
  newer,
  ownLatestRecord,
  publishRecord,
  resolveCurrent,
  saveLastPublished,
} from "./publish.js";
import { deleteBlob, storeToDeleteFrom, tombstoneFor } from "./pull.js";

/** `status`, `republish`, `revoke`: looking after the published record. */

export interface StatusSlot extends PointerPayload {
  /** "to yourself", "by PIN", "to <names or ids>". */
  label: string;
  /** Bytes this slot takes in the record. */
  bytes: number;
  state: "live" | "expired" | "revoked" | "picked up";
}

export interface StatusReport {
  publisher: string;
  published: string;
  dnsBytes: number;
  budget: number;
  slotCount: number;
  /** Slots a newer ccbundle wrote, which this one cannot read (they are kept when it pushes). */
  newerSlots: number;
  from: string[];
  failures: { transport: string; reason: string }[];
  slots: StatusSlot[];
}

export async function recordStatus(options: {
  settings: Settings;
  publisher: string;
  identities: Identity[];
  transports: PointerTransport[];
}): Promise<StatusReport> {
  const resolved = await resolveNewest(options.transports, decodeZ32PublicKey(options.publisher), {
    home: options.settings.home,
  });
  const { opened: slots, newer: newerSlots } = await readSlots(resolved.payload, options.publisher, options.identities);
  forgetSlots(slots);
  const names = await recipientNames(options.settings.home, options.publisher);
  // A teammate reading someone else's record: the slot meant for them says so.
  const publisherKey = decodeZ32PublicKey(options.publisher);
  for (const identity of options.identities) {
    if (identity instanceof X25519Identity) names.set(recipientSlotId(publisherKey, identity.recipient()), "you");
  }
  const now = Math.floor(Date.now() / 1000);
  return {
    publisher: options.publisher,
    published: isoTime(resolved.payload.timestamp / 1_000_000),
    dnsBytes: resolved.payload.dns.length,
    budget: MAX_DNS_BYTES,
    slotCount: txtRecords(resolved.payload, RECORD_NAME).length,
    newerSlots: newerSlots.length,
    from: resolved.from,
    failures: resolved.failures,
    slots: await Promise.all(
      slots.map(async (slot) => ({
        ...redact(slot.payload),
        label: describeSlot(slot.payload.slot, names),
        bytes: slot.sealed.length,
        state: (await blobPickedUp(slot.payload)) ? "picked up" : stateOf(slot.payload, now),
      })),
    ),
  };
}

function stateOf(payload: PointerPayload, now: number): StatusSlot["state"] {
  if (payload.kind === "tombstone") return payload.burn ? "picked up" : "revoked";
  return payload.expires !== undefined && payload.expires < now ? "expired" : "live";
}

/** What status may show: never the blob's key or a presigned URL's signature. */
function redact(payload: PointerPayload): PointerPayload {
  if (!payload.blob) return payload;
  const { age: _age, url, ...blob } = payload.blob;
  return { ...payload, blob: { ...blob, age: "(hidden)", ...(url ? { url: url.split("?")[0]! } : {}) } };
}

/**
 * Re-sign the current record with a fresh seq and publish it everywhere again:
 * DHT nodes drop items after a few hours, so a cron job runs this. The current
 * record is the newer of this machine's last and the network's.
 */
export async function republish(options: { settings: Settings; key: UserKey; transports: PointerTransport[] }) {
  const { settings, key } = options;
  // A push that could publish nowhere left its record for this command (its hint says so).
  const current = newer(
    await ownLatestRecord(settings.home, key),
    await resolveCurrent(options.transports, key, settings.home),
  );
  if (!current) {
    throw new NotFoundError(`no record of ${key.z32} to republish`, { hint: "push something first" });
  }
  const entries = recordEntries(txtRecords(current, RECORD_NAME));
  const seed = key.exportSeed();
  let packet: ReturnType<typeof signPacket>;
  try {
    packet = signPacket(seed, entries, await nextSeq(settings.home, key.z32));
  } finally {
    seed.fill(0);
  }
  const report = await publishAll(options.transports, packet);
  await saveLastPublished(settings.home, key.z32, packet);
  await forgetUnpublished(settings.home, key.z32);
  return {
    dnsBytes: packet.dns.length,
    slots: entries.length,
    summary: report.summary,
    failures: publishFailures(report),
  };
}

/**
 * Delete every live handoff blob of ours and replace each slot with a signed
 * tombstone its readers can open, in one publish.
 */
export async function revoke(options: { settings: Settings; key: UserKey; transports: PointerTransport[] }) {
  const { settings, key } = options;
  // With a record a push could publish nowhere: its handoff is tombstoned too, or it would go out live.
  const current = newer(
    await ownLatestRecord(settings.home, key),
    await resolveCurrent(options.transports, key, settings.home),
  );
  const read = current ? await readSlots(current, key.z32, [key.ageIdentity()]) : undefined;
  const slots: OpenedSlot[] = read?.opened ?? [];
  // Slots a newer ccbundle wrote cannot be tombstoned here; they leave the record (see below).
  const newerSlots = read?.newer.length ?? 0;
  try {
    // An expired handoff is already refused to every reader: its bundle goes, but it gets no
    // tombstone (one that expired before it was published) and is not called revoked.
    const now = Date.now() / 1000;
    const handoffs = slots.filter((slot) => slot.payload.kind === "handoff");
    const isLive = (slot: OpenedSlot) => slot.payload.expires === undefined || slot.payload.expires >= now;
    const live = handoffs.filter(isLive);
    const revoked: Array<{ slot: string; label: string; session: string | undefined; blobDeleted: boolean }> = [];
    const warnings: string[] = [];
    const tombstones = [];
    const names = await recipientNames(settings.home, key.z32);
    const expiredGone: string[] = [];
    for (const slot of handoffs.filter((slot) => !isLive(slot))) {
      const blob = slot.payload.blob;
      const storeUrl = await storeToDeleteFrom(blob?.store, settings.store);
      if (!blob || !storeUrl) continue;
      // Only if it is there: the slot stays in the record until a push replaces it, and every later
      // revoke would say it deleted that bundle again.
      const deleted = await deleteBlob(storeUrl, blob.key, { onlyIfPresent: true });
      if (deleted === true) expiredGone.push(blob.key);
      else if (deleted !== false)
        warnings.push(
          `could not delete an expired handoff's bundle (${describeSlot(slot.payload.slot, names)}): ${deleted}`,
        );
    }
    for (const slot of live) {
      const blob = slot.payload.blob;
      const storeUrl = await storeToDeleteFrom(blob?.store, settings.store);
      let blobDeleted = false;
      if (blob && storeUrl) {
        const deleted = await deleteBlob(storeUrl, blob.key);
        blobDeleted = deleted === true;
        if (deleted !== true)
          warnings.push(`could not delete the bundle (${describeSlot(slot.payload.slot, names)}): ${deleted}`);
      }
      const tombstone = tombstoneFor(key, slot.payload, false);
      tombstones.push({
        payload: tombstone,
        sealed: resealPayload(slot, tombstone) ?? (await sealPayload(tombstone, [key.ageRecipient()])),
      });
      revoked.push({
        slot: slot.payload.slot,
        label: describeSlot(slot.payload.slot, names),
        session: slot.payload.session?.id,
        blobDeleted,
      });
    }
    const liveBlobs = live.flatMap((slot) => (slot.payload.blob ? [slot.payload.blob.key] : []));
    const listed = new Set(handoffs.flatMap((slot) => (slot.payload.blob ? [slot.payload.blob.key] : [])));
    const olderDeleted = await deleteOlderHandoffs(settings, key, listed, names, warnings);
    await forgetHandoffs(settings.home, key.z32, expiredGone);
    const expiredDeleted = expiredGone.length;
    if (tombstones.length === 0 && newerSlots === 0) {
      // Nothing live in it: an unpublished record has nothing left to send either.
      await forgetUnpublished(settings.home, key.z32);
      return { revoked, olderDeleted, expiredDeleted, newerRemoved: 0, summary: "", failures: [], warnings };
    }
    // A revoke must not leave a handoff it cannot judge readable and call itself done: slots a
    // newer ccbundle wrote are dropped from the record (their readers lose the way to them), but
    // their bundles stay in the store, since this build cannot tell which they are.
    const report = await publishRecord({
      settings,
      key,
      slots: tombstones,
      current,
      transports: options.transports,
      dryRun: false,
      keepNewer: false,
    });
    if (report.newerRemoved > 0) {
      warnings.push(
        `removed ${report.newerRemoved === 1 ? "a slot" : `${report.newerRemoved} slots`} a newer ccbundle wrote from your record without deleting ${report.newerRemoved === 1 ? "its bundle" : "their bundles"} (this version cannot read ${report.newerRemoved === 1 ? "it" : "them"}): upgrade ccbundle and run revoke again to delete them`,
      );
    }
    await forgetHandoffs(settings.home, key.z32, liveBlobs);
    return {
      revoked,
      olderDeleted,
      expiredDeleted,
      newerRemoved: report.newerRemoved,
      summary: report.summary,
      failures: report.failures,
      warnings,
    };
  } finally {
    forgetSlots(slots);
  }
}

/**
 * The bundles of handoffs this machine pushed that the record no longer lists (left out for lack
 * of room, or replaced by a newer push) but that have not expired: a cached copy of an older record
 * still leads to them (relays and DHT nodes keep records for hours). Returns how many went.
 */
async function deleteOlderHandoffs(
  settings: Settings,
  key: UserKey,
  listed: Set<string>,
  names: Map<string, string>,
  warnings: string[],
): Promise<number> {
  const now = Date.now() / 1000;
  const older = (await readLedger(settings.home, key.z32)).filter((e) => e.expires >= now && !listed.has(e.key));
  const deleted: string[] = [];
  for (const entry of older) {
    const storeUrl = await storeToDeleteFrom(entry.store, settings.store);
    const outcome = storeUrl ? await deleteBlob(storeUrl, entry.key) : "the record names no store";
    if (outcome === true) deleted.push(entry.key);
    else warnings.push(`could not delete an older handoff's bundle (${describeSlot(entry.slot, names)}): ${outcome}`);
  }
  await forgetHandoffs(settings.home, key.z32, deleted);
  return deleted.length;
}
