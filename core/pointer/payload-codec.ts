import { IntegrityError } from "../errors.js";
import { idBytes, idFromBytes, storeLayout } from "../store-layout.js";
import type { BlobPointer, PointerPayload, SlotKind } from "./record.js";

/**
 * The plaintext of a record slot, in a compact binary form: a version byte,
 * then tag-length-value fields in ascending tag order, each at most once.
 * JSON spent ~450 bytes on a handoff; this spends ~150, because keys, hashes,
 * the session UUID and the blob id go in as raw bytes and field names as one
 * byte (no CBOR or MessagePack library is installed, and this is 150 lines).
 *
 * Decoding is strict: unknown tags, duplicates, out-of-order fields, bad
 * lengths and non-canonical numbers are refused (IntegrityError, exit 5).
 * The publisher is not stored: the slot's seal binds it (see slot-seal.ts).
 */

export const PAYLOAD_FORMAT = 1;
const MAX_TEXT = 2048;

const TAG = {
  slot: 0x01,
  kind: 0x02,
  created: 0x03,
  expires: 0x04,
  flags: 0x05,
  sessionUuid: 0x06,
  sessionText: 0x07,
  title: 0x08,
  host: 0x09,
  snapshot: 0x0a,
  store: 0x10,
  blobId: 0x11,
  blobKey: 0x12,
  url: 0x13,
  size: 0x14,
  sha256: 0x15,
  age: 0x16,
} as const;

const SLOT = { self: 0, to: 1, pin: 2, named: 3 } as const;
const KINDS: SlotKind[] = ["handoff", "snapshot", "tombstone"];
const FLAG_BURN = 0x01;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const BLOB_KEY = new RegExp(`^${storeLayout.blobsPrefix.replace(/[/.]/g, "\\$&")}([a-z2-7]{26})$`);
/** Recipient slot ids: 8 bytes each (see record.ts recipientSlotId). */
export const SLOT_ID_BYTES = 8;

/**
 * `omitBlobKey`: leave the blob's age key out, because the reader derives it
 * from the slot's file key (slot-seal.ts blobSecretFor).
 */
export function encodePayload(payload: PointerPayload, options: { omitBlobKey?: boolean } = {}): Buffer {
  const fields: Array<[number, Uint8Array]> = [];
  const text = (tag: number, value: string | undefined) => {
    if (value !== undefined) fields.push([tag, Buffer.from(value, "utf8")]);
  };
  fields.push([TAG.slot, encodeSlot(payload.slot)]);
  fields.push([TAG.kind, Buffer.from([KINDS.indexOf(payload.kind) + 1])]);
  fields.push([TAG.created, uint(payload.created)]);
  if (payload.expires !== undefined) fields.push([TAG.expires, uint(payload.expires)]);
  if (payload.burn) fields.push([TAG.flags, Buffer.from([FLAG_BURN])]);
  if (payload.session) {
    const id = payload.session.id;
    if (UUID.test(id)) fields.push([TAG.sessionUuid, Buffer.from(id.replaceAll("-", ""), "hex")]);
    else text(TAG.sessionText, id);
    text(TAG.title, payload.session.title);
  }
  text(TAG.host, payload.host);
  text(TAG.snapshot, payload.snapshot);
  const blob = payload.blob;
  // A snapshot slot names a store but no blob: the store tag stands alone.
  if (!blob) text(TAG.store, payload.store);
  if (blob) {
    text(TAG.store, blob.store);
    const id = BLOB_KEY.exec(blob.key)?.[1];
    const raw = id === undefined ? undefined : idBytes(id);
    if (raw) fields.push([TAG.blobId, raw]);
    else text(TAG.blobKey, blob.key);
    text(TAG.url, blob.url);
    fields.push([TAG.size, uint(blob.size)]);
    fields.push([TAG.sha256, Buffer.from(blob.sha256, "hex")]);
    if (!options.omitBlobKey) fields.push([TAG.age, Buffer.from(blob.age, "base64url")]);
  }
  const parts: Buffer[] = [Buffer.from([PAYLOAD_FORMAT])];
  for (const [tag, value] of fields) {
    if (value.length > MAX_TEXT) throw new RangeError(`record field ${tag} is ${value.length} bytes, over ${MAX_TEXT}`);
    parts.push(Buffer.from([tag]), length(value.length), Buffer.from(value));
  }
  return Buffer.concat(parts);
}

/** `derivedBlobKey`: the blob key to use when the payload carries none (see encodePayload). */
export function decodePayload(input: Uint8Array, publisher: string, derivedBlobKey?: string): PointerPayload {
  const bytes = Buffer.from(input.buffer, input.byteOffset, input.byteLength);
  if (bytes.length === 0) throw malformed("empty");
  if (bytes[0] !== PAYLOAD_FORMAT) {
    throw new IntegrityError(`record payload format ${bytes[0]} is not supported`, {
      hint: "the sender uses another ccbundle version; upgrade ccbundle",
    });
  }
  const fields = new Map<number, Buffer>();
  let offset = 1;
  let lastTag = 0;
  while (offset < bytes.length) {
    const tag = bytes[offset++]!;
    if (tag <= lastTag) throw malformed("fields out of order or repeated");
    lastTag = tag;
    let size = bytes[offset++];
    if (size === undefined) throw malformed("truncated");
    if (size & 0x80) {
      const high = bytes[offset++];
      if (high === undefined || high === 0) throw malformed("bad length");
      size = (size & 0x7f) | (high << 7);
    }
    if (size > MAX_TEXT || offset + size > bytes.length) throw malformed("bad length");
    fields.set(tag, bytes.subarray(offset, offset + size));
    offset += size;
  }
  const known = new Set<number>(Object.values(TAG));
  for (const tag of fields.keys()) if (!known.has(tag)) throw malformed(`unknown field ${tag}`);

  const need = (tag: number, what: string): Buffer => {
    const value = fields.get(tag);
    if (value === undefined) throw malformed(`no ${what}`);
    return value;
  };
  const text = (tag: number): string | undefined => {
    const value = fields.get(tag);
    if (value === undefined) return undefined;
    const s = value.toString("utf8");
    if (!Buffer.from(s, "utf8").equals(value)) throw malformed("text is not UTF-8");
    return s;
  };
  const fixed = (tag: number, size: number, what: string): Buffer | undefined => {
    const value = fields.get(tag);
    if (value !== undefined && value.length !== size) throw malformed(`bad ${what}`);
    return value;
  };

  const kindByte = need(TAG.kind, "kind");
  const kind = kindByte.length === 1 ? KINDS[kindByte[0]! - 1] : undefined;
  if (!kind) throw malformed("bad kind");
  const flags = fixed(TAG.flags, 1, "flags")?.[0] ?? 0;
  if (flags & ~FLAG_BURN) throw malformed("unknown flags");
  const payload: PointerPayload = {
    v: 1,
    pub: publisher,
    slot: decodeSlot(need(TAG.slot, "slot")),
    kind,
    created: readUint(need(TAG.created, "created")),
  };
  if (fields.has(TAG.expires)) payload.expires = readUint(fields.get(TAG.expires)!);
  if (flags & FLAG_BURN) payload.burn = true;

  const uuid = fixed(TAG.sessionUuid, 16, "session id");
  const sessionId = uuid ? uuidText(uuid) : text(TAG.sessionText);
  const title = text(TAG.title);
  if (uuid && fields.has(TAG.sessionText)) throw malformed("two session ids");
  if (sessionId !== undefined) payload.session = { id: sessionId, ...(title !== undefined ? { title } : {}) };
  else if (title !== undefined) throw malformed("a title without a session");
  const host = text(TAG.host);
  if (host !== undefined) payload.host = host;
  const snapshot = text(TAG.snapshot);
  if (snapshot !== undefined) payload.snapshot = snapshot;

  const blobTags = [TAG.blobId, TAG.blobKey, TAG.url, TAG.size, TAG.sha256, TAG.age];
  if (blobTags.some((tag) => fields.has(tag))) payload.blob = decodeBlob(text, fixed, need, derivedBlobKey);
  else if (fields.has(TAG.store)) {
    if (kind !== "snapshot") throw malformed("a store without a blob");
    payload.store = text(TAG.store)!;
  }
  if (kind === "handoff" && !payload.blob) throw malformed("a handoff without a blob");
  return payload;
}

function decodeBlob(
  text: (tag: number) => string | undefined,
  fixed: (tag: number, size: number, what: string) => Buffer | undefined,
  need: (tag: number, what: string) => Buffer,
  derivedBlobKey: string | undefined,
): BlobPointer {
  const id = fixed(TAG.blobId, 16, "blob id");
  const keyText = text(TAG.blobKey);
  if (id && keyText !== undefined) throw malformed("two blob keys");
  const key = id ? storeLayout.blob(idFromBytes(id)) : keyText;
  if (key === undefined) throw malformed("no blob key");
  if (!isStoreKey(key)) throw malformed("bad blob key");
  const sha256 = fixed(TAG.sha256, 32, "hash") ?? need(TAG.sha256, "hash");
  const age = fixed(TAG.age, 32, "blob key")?.toString("base64url") ?? derivedBlobKey;
  if (age === undefined) throw malformed("no blob key");
  const store = text(TAG.store);
  const url = text(TAG.url);
  return {
    ...(store !== undefined ? { store } : {}),
    key,
    ...(url !== undefined ? { url } : {}),
    size: readUint(need(TAG.size, "size")),
    sha256: sha256.toString("hex"),
    age,
  };
}

/** A store-relative key: no `.`/`..`/empty segments, no backslash or control characters. */
function isStoreKey(key: string): boolean {
  return (
    key.length > 0 &&
    !key.includes("\\") &&
    !/[\u0000-\u001f]/.test(key) &&
    key.split("/").every((part) => part !== "" && part !== "." && part !== "..")
  );
}

function encodeSlot(slot: string): Buffer {
  if (slot === "self") return Buffer.from([SLOT.self]);
  if (slot === "pin") return Buffer.from([SLOT.pin]);
  const ids = /^to:([0-9a-f]{16})(,[0-9a-f]{16})*$/.test(slot) ? slot.slice(3).split(",") : undefined;
  if (ids) return Buffer.concat([Buffer.from([SLOT.to]), ...ids.map((id) => Buffer.from(id, "hex"))]);
  return Buffer.concat([Buffer.from([SLOT.named]), Buffer.from(slot, "utf8")]);
}

function decodeSlot(bytes: Buffer): string {
  const rest = bytes.subarray(1);
  switch (bytes[0]) {
    case SLOT.self:
      if (rest.length === 0) return "self";
      break;
    case SLOT.pin:
      if (rest.length === 0) return "pin";
      break;
    case SLOT.to:
      if (rest.length > 0 && rest.length % SLOT_ID_BYTES === 0) {
        const ids: string[] = [];
        for (let i = 0; i < rest.length; i += SLOT_ID_BYTES) {
          ids.push(rest.subarray(i, i + SLOT_ID_BYTES).toString("hex"));
        }
        return `to:${ids.join(",")}`;
      }
      break;
    case SLOT.named: {
      const name = rest.toString("utf8");
      if (name.length > 0 && Buffer.from(name, "utf8").equals(rest) && encodeSlot(name)[0] === SLOT.named) return name;
      break;
    }
  }
  throw malformed("bad slot");
}

/** Minimal big-endian unsigned integer, up to 2^53 - 1. */
function uint(value: number): Buffer {
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`not a record number: ${value}`);
  const out: number[] = [];
  for (let v = value; v > 0; v = Math.floor(v / 256)) out.unshift(v % 256);
  return Buffer.from(out.length > 0 ? out : [0]);
}

function readUint(bytes: Buffer): number {
  if (bytes.length === 0 || bytes.length > 7 || (bytes.length > 1 && bytes[0] === 0)) throw malformed("bad number");
  let value = 0;
  for (const byte of bytes) value = value * 256 + byte;
  if (!Number.isSafeInteger(value)) throw malformed("bad number");
  return value;
}

function length(n: number): Buffer {
  return n < 0x80 ? Buffer.from([n]) : Buffer.from([0x80 | (n & 0x7f), n >> 7]);
}

function uuidText(b: Buffer): string {
  const h = b.toString("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function malformed(what: string): IntegrityError {
  return new IntegrityError(`record payload is malformed (${what})`, { hint: "ask the publisher to push again" });
}
