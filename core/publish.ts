import { readFile } from "node:fs/promises";
import path from "node:path";
import { writeFileAtomic } from "./claude/files.js";
import type { Settings } from "./config.js";
import type { Recipient } from "./crypto/age/index.js";
import type { UserKey } from "./crypto/keys.js";
import { CcbError } from "./errors.js";
import { MAX_DNS_BYTES, signPacket, verifyPayload } from "./pointer/packet.js";
import { openSlots, type PointerPayload, recordEntries, recordFits, sealPayload } from "./pointer/record.js";
import { nextSeq, publishAll, publishFailures } from "./pointer/resolver.js";
import type { PointerTransport, RelayPayload } from "./pointer/transport.js";

/**
 * Publishing the owner's record: the new slot first, then the slots of the
 * last record that are still live (a handoff to a teammate must not evict the
 * owner's own latest handoff while both fit), signed with a fresh seq.
 */

export interface PublishRecordOptions {
  settings: Settings;
  key: UserKey;
  payload: PointerPayload;
  /** Who besides the owner can open the new slot. */
  recipients?: Recipient[];
  transports: PointerTransport[];
  /** Only check that the record fits; publish nothing. */
  dryRun: boolean;
  /**
   * Carried-over slots that must not be dropped to make room; if the new slot does
   * not fit beside them, RecordFullError. (`backup --publish` must not evict a live
   * handoff the user just pushed.) Default: any carried slot may go.
   */
  keep?: (slot: PointerPayload) => boolean;
}

/** The new slot does not fit beside the carried-over slots that must stay. */
export class RecordFullError extends CcbError {
  constructor(size: number) {
    super(`the record would be ${size} bytes with the slots it must keep, over ${MAX_DNS_BYTES}`, 1, {
      hint: "it has room again once the live handoffs in it expire or are revoked",
    });
    this.name = "RecordFullError";
  }
}

export interface PublishRecordReport {
  dnsBytes: number;
  summary: string;
  failures: string[];
  slots: number;
}

export async function publishRecord(options: PublishRecordOptions): Promise<PublishRecordReport> {
  const { key, payload } = options;
  const sealed = await sealPayload(payload, [key.ageRecipient(), ...(options.recipients ?? [])]);
  const now = Math.floor(Date.now() / 1000);
  const kept: Uint8Array[] = [];
  const pinned = new Set<Uint8Array>();
  for (const slot of await lastPublishedSlots(options.settings.home, key)) {
    if (slot.payload.slot === payload.slot) continue;
    if (slot.payload.expires !== undefined && slot.payload.expires < now) continue;
    kept.push(slot.sealed);
    if (options.keep?.(slot.payload)) pinned.add(slot.sealed);
  }
  // Drop the oldest carried-over slots until the record fits; the new slot always stays.
  let slots = [sealed, ...kept];
  let fit = recordFits(slots);
  while (!fit.fits && slots.length > 1) {
    const drop = slots.findLastIndex((slot, index) => index > 0 && !pinned.has(slot));
    if (drop < 0) throw new RecordFullError(fit.size);
    slots = slots.filter((_, index) => index !== drop);
    fit = recordFits(slots);
  }
  if (!fit.fits) {
    throw new CcbError(
      `the record would be ${fit.size} bytes, over the ${MAX_DNS_BYTES}-byte limit of a DHT record`,
      1,
      {
        hint: "use a shorter store URL, or fewer --to recipients",
      },
    );
  }
  if (options.dryRun) return { dnsBytes: fit.size, summary: "", failures: [], slots: slots.length };

  const seq = await nextSeq(options.settings.home, key.z32);
  const packet = signPacket(key.exportSeed(), recordEntries(slots), seq);
  const report = await publishAll(options.transports, packet);
  await saveLastPublished(options.settings.home, key, packet);
  return {
    dnsBytes: packet.dns.length,
    summary: report.summary,
    failures: publishFailures(report),
    slots: slots.length,
  };
}

function lastRecordFile(home: string, z32: string): string {
  return path.join(home, "state", `record-${z32}.bin`);
}

async function lastPublishedSlots(home: string, key: UserKey) {
  let bytes: Buffer;
  try {
    bytes = await readFile(lastRecordFile(home, key.z32));
  } catch {
    return [];
  }
  try {
    return await openSlots(verifyPayload(key.publicKey, bytes), key.z32, [key.ageIdentity()]);
  } catch {
    return [];
  }
}

async function saveLastPublished(home: string, key: UserKey, packet: RelayPayload): Promise<void> {
  await writeFileAtomic(lastRecordFile(home, key.z32), packet.bytes, 0o600);
}
