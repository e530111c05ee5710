import { decrypt, encrypt, type Identity, type Recipient } from "../crypto/age/index.js";
import { IntegrityError } from "../errors.js";
import { dnsSize, MAX_DNS_BYTES, type TxtEntry, txtRecords, type VerifiedPacket } from "./packet.js";

/**
 * What a ccbundle PKARR record says, and how it is sealed. Each TXT record
 * named `_ccbundle` is one slot: age ciphertext of a small JSON payload,
 * encrypted to whoever the slot is for (and always to the owner). DHT nodes,
 * relays and stores see only opaque bytes. The payload names its publisher and
 * slot, so a slot copied into someone else's record is refused.
 */

export const RECORD_NAME = "_ccbundle";
export const PAYLOAD_VERSION = 1;

export type SlotKind = "handoff" | "snapshot" | "tombstone";

export interface BlobPointer {
  /** Store URL (no credentials), when the blob lives in a store. */
  store?: string;
  /** Object key in that store. */
  key: string;
  /** Presigned GET URL, for receivers without store credentials. */
  url?: string;
  size: number;
  sha256: string;
  /** The blob's own age identity (X25519 secret, base64url). */
  age: string;
}

export interface PointerPayload {
  v: typeof PAYLOAD_VERSION;
  /** Publisher's z32 key: the record it sits in must be signed by this key. */
  pub: string;
  /** Which slot of the record this is: "self", "to:<id>", "pin". */
  slot: string;
  kind: SlotKind;
  /** Unix seconds. */
  created: number;
  expires?: number;
  burn?: boolean;
  host?: string;
  session?: { id: string; title?: string };
  blob?: BlobPointer;
  /** For snapshot slots: the snapshot id in the store. */
  snapshot?: string;
  /** For snapshot slots: the store URL (no credentials) that holds the snapshot and its blobs. */
  store?: string;
}

export interface OpenedSlot {
  payload: PointerPayload;
  /** The ciphertext as published, to carry over unchanged on the next publish. */
  sealed: Uint8Array;
}

export async function sealPayload(payload: PointerPayload, recipients: Recipient[]): Promise<Uint8Array> {
  return encrypt(Buffer.from(JSON.stringify(payload)), recipients);
}

export function recordEntries(sealedSlots: Uint8Array[]): TxtEntry[] {
  return sealedSlots.map((data) => ({ name: RECORD_NAME, data }));
}

export function recordFits(sealedSlots: Uint8Array[]): { fits: boolean; size: number } {
  const size = dnsSize(recordEntries(sealedSlots));
  return { fits: size <= MAX_DNS_BYTES, size };
}

/**
 * Decrypt every slot this reader can, checking each against the key that signed
 * the record. Slots for other people are skipped silently (they learn nothing).
 */
export async function openSlots(
  verified: VerifiedPacket,
  publisherZ32: string,
  identities: Identity[],
): Promise<OpenedSlot[]> {
  const opened: OpenedSlot[] = [];
  for (const sealed of txtRecords(verified, RECORD_NAME)) {
    let plain: Uint8Array;
    try {
      plain = await decrypt(sealed, identities);
    } catch {
      continue;
    }
    const payload = parsePayload(plain);
    if (payload.pub !== publisherZ32) {
      throw new IntegrityError("record payload was made for another key", {
        hint: "someone copied a slot into this record; do not trust it",
      });
    }
    opened.push({ payload, sealed });
  }
  return opened;
}

const MAX_FIELD = 2048;

export function parsePayload(bytes: Uint8Array): PointerPayload {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(bytes).toString("utf8"));
  } catch {
    throw malformed("not JSON");
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw malformed("not an object");
  const p = value as Record<string, unknown>;
  if (p.v !== PAYLOAD_VERSION) {
    throw new IntegrityError(`record payload version ${String(p.v).slice(0, 10)} is not supported`, {
      hint: "upgrade ccbundle",
    });
  }
  const str = (x: unknown, name: string, optional = false): void => {
    if (x === undefined && optional) return;
    if (typeof x !== "string" || x.length > MAX_FIELD) throw malformed(`bad ${name}`);
  };
  const num = (x: unknown, name: string, optional = false): void => {
    if (x === undefined && optional) return;
    if (typeof x !== "number" || !Number.isSafeInteger(x) || x < 0) throw malformed(`bad ${name}`);
  };
  str(p.pub, "publisher");
  str(p.slot, "slot");
  if (p.kind !== "handoff" && p.kind !== "snapshot" && p.kind !== "tombstone") throw malformed("bad kind");
  num(p.created, "created");
  num(p.expires, "expires", true);
  if (p.burn !== undefined && typeof p.burn !== "boolean") throw malformed("bad burn");
  str(p.host, "host", true);
  str(p.snapshot, "snapshot", true);
  str(p.store, "store", true);
  if (p.session !== undefined) {
    const s = p.session as Record<string, unknown>;
    if (typeof s !== "object" || s === null) throw malformed("bad session");
    str(s.id, "session id");
    str(s.title, "title", true);
  }
  if (p.blob !== undefined) {
    const b = p.blob as Record<string, unknown>;
    if (typeof b !== "object" || b === null) throw malformed("bad blob");
    str(b.store, "store", true);
    str(b.key, "blob key");
    if (!isObjectKey(b.key as string)) throw malformed("bad blob key");
    str(b.url, "url", true);
    num(b.size, "size");
    if (typeof b.sha256 !== "string" || !/^[0-9a-f]{64}$/.test(b.sha256)) throw malformed("bad hash");
    if (typeof b.age !== "string" || !/^[A-Za-z0-9_-]{43}$/.test(b.age)) throw malformed("bad blob key");
  }
  if (p.kind === "handoff" && p.blob === undefined) throw malformed("a handoff without a blob");
  return p as unknown as PointerPayload;
}

/** A store-relative object key: no absolute path, no `.`/`..` or empty segments, no control characters. */
function isObjectKey(key: string): boolean {
  return (
    key.length > 0 &&
    !key.includes("\\") &&
    !/[\u0000-\u001f]/.test(key) &&
    key.split("/").every((part) => part !== "" && part !== "." && part !== "..")
  );
}

function malformed(what: string): IntegrityError {
  return new IntegrityError(`record payload is malformed (${what})`, { hint: "ask the publisher to push again" });
}
