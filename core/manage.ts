import { readFile } from "node:fs/promises";
import path from "node:path";
import { openStore } from "../storage-adapters/index.js";
import type { Settings } from "./config.js";
import type { Identity } from "./crypto/age/index.js";
import { decodeZ32PublicKey, type UserKey } from "./crypto/keys.js";
import { errnoCode } from "./errors.js";
import { MAX_DNS_BYTES, signPacket, txtRecords, verifyPayload } from "./pointer/packet.js";
import { openSlots, type PointerPayload, RECORD_NAME, recordEntries } from "./pointer/record.js";
import { nextSeq, publishAll, publishFailures, resolveNewest } from "./pointer/resolver.js";
import type { PointerTransport } from "./pointer/transport.js";
import { publishRecord } from "./publish.js";

/** `status`, `republish`, `revoke`: looking after the published record. */

export interface StatusReport {
  publisher: string;
  published: string;
  dnsBytes: number;
  budget: number;
  slotCount: number;
  from: string[];
  failures: { transport: string; reason: string }[];
  slots: PointerPayload[];
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
  const slots = await openSlots(resolved.payload, options.publisher, options.identities);
  return {
    publisher: options.publisher,
    published: new Date(resolved.payload.timestamp / 1000).toISOString(),
    dnsBytes: resolved.payload.dns.length,
    budget: MAX_DNS_BYTES,
    slotCount: txtRecords(resolved.payload, RECORD_NAME).length,
    from: resolved.from,
    failures: resolved.failures,
    slots: slots.map((slot) => redact(slot.payload)),
  };
}

/** What status may show: never the blob's key or a presigned URL's signature. */
function redact(payload: PointerPayload): PointerPayload {
  if (!payload.blob) return payload;
  const { age: _age, url, ...blob } = payload.blob;
  return { ...payload, blob: { ...blob, age: "(hidden)", ...(url ? { url: url.split("?")[0]! } : {}) } };
}

/**
 * Re-sign the current record with a fresh seq and publish it everywhere again:
 * DHT nodes drop items after a few hours, so a cron job runs this.
 */
export async function republish(options: { settings: Settings; key: UserKey; transports: PointerTransport[] }) {
  const { settings, key } = options;
  let bytes: Uint8Array | undefined;
  try {
    bytes = await readFile(path.join(settings.home, "state", `record-${key.z32}.bin`));
  } catch (err) {
    if (errnoCode(err) !== "ENOENT") throw err;
  }
  const current = bytes
    ? verifyPayload(key.publicKey, bytes)
    : (await resolveNewest(options.transports, key.publicKey, { home: settings.home })).payload;
  const entries = recordEntries(txtRecords(current, RECORD_NAME));
  const packet = signPacket(key.exportSeed(), entries, await nextSeq(settings.home, key.z32));
  const report = await publishAll(options.transports, packet);
  const { writeFileAtomic } = await import("./claude/files.js");
  await writeFileAtomic(path.join(settings.home, "state", `record-${key.z32}.bin`), packet.bytes, 0o600);
  return {
    dnsBytes: packet.dns.length,
    slots: entries.length,
    summary: report.summary,
    failures: publishFailures(report),
  };
}

/** Delete every live handoff blob of ours and replace each slot with a signed tombstone. */
export async function revoke(options: { settings: Settings; key: UserKey; transports: PointerTransport[] }) {
  const { settings, key } = options;
  const resolved = await resolveNewest(options.transports, key.publicKey, { home: settings.home });
  const slots = await openSlots(resolved.payload, key.z32, [key.ageIdentity()]);
  const revoked: string[] = [];
  let last: { summary: string; failures: string[] } = { summary: "", failures: [] };
  for (const slot of slots) {
    const payload = slot.payload;
    if (payload.kind !== "handoff") continue;
    if (payload.blob?.store) {
      const store = await openStore(settings.store ?? payload.blob.store);
      try {
        await store.delete(payload.blob.key);
      } finally {
        await store.close?.();
      }
    }
    last = await publishRecord({
      settings,
      key,
      payload: { v: 1, pub: key.z32, slot: payload.slot, kind: "tombstone", created: Math.floor(Date.now() / 1000) },
      transports: options.transports,
      dryRun: false,
    });
    revoked.push(payload.session?.id ?? payload.slot);
  }
  return { revoked, summary: last.summary, failures: last.failures };
}
