import { IntegrityError } from "../errors.js";
import { headerError } from "./age/errors.js";
import { b64decode, b64encode, type Stanza } from "./age/format.js";
import type { Identity, Recipient } from "./age/index.js";
import { FILE_KEY_SIZE, generateFileKey, hkdf, openOnce, sealOnce, TAG_SIZE } from "./age/primitives.js";
import { wrapFileKeySharedEphemeral, X25519Recipient } from "./age/x25519.js";
import { PIN_SALT_SIZE, PIN_STANZA, PinIdentity } from "./pin.js";

/**
 * The envelope of one record slot: age's recipient stanzas (the same X25519
 * and Argon2id wrapping of a 16-byte file key, made by the same code) in a
 * binary frame instead of age's text header. Why not plain age: a DHT record
 * has 1000 bytes, and age's base64 text header costs ~100 bytes per recipient
 * plus ~100 fixed; this frame costs 65 for the first recipient, 33 for each
 * further one (their stanzas share one ephemeral key, see x25519.ts
 * wrapFileKeySharedEphemeral) plus 19, which is what lets the owner's own
 * handoff and a handoff to teammates share one record.
 *
 *     u8  version (1)
 *     u8  epoch: 0 when sealed; a tombstone that replaces the slot reuses the
 *         stanzas (so everyone who could read the slot reads the tombstone)
 *         under the next epoch, which derives a different payload key
 *     u8  stanza count n
 *     n × stanza:  0x01 X25519:   share(32) body(32)
 *                  0x03 X25519 with the share of the stanza before it: body(32)
 *                  0x02 argon2id: salt(16) log2 KiB(1) passes(1) lanes(1) body(32)
 *     payload: ChaCha20-Poly1305(key = HKDF-SHA-256(file key, salt = epoch,
 *              info = "ccbundle/slot/v1 payload"), nonce = 0,
 *              aad = "ccbundle/slot/v1" || publisher ed25519 key || header)
 *
 * A handoff's blob key may be derived from the file key (blobSecretFor)
 * instead of travelling in the payload.
 *
 * The AAD does the work of age's header MAC (no stanza can be changed) and
 * binds the slot to its publisher: a slot copied into another key's record
 * opens its file key but not its payload. Observers learn the number of
 * recipients per slot and whether a slot takes a PIN, not who.
 */

export const SEAL_VERSION = 1;
const MAX_EPOCH = 255;
const MAX_STANZAS = 16;
const X25519_TYPE = 0x01;
const PIN_TYPE = 0x02;
const X25519_SAME_SHARE_TYPE = 0x03;
const SHARE_SIZE = 32;
const BODY_SIZE = FILE_KEY_SIZE + TAG_SIZE;
const AAD_LABEL = "ccbundle/slot/v1";
const PAYLOAD_INFO = "ccbundle/slot/v1 payload";
const BLOB_INFO = "ccbundle/slot/v1 blob key";

export interface ParsedSeal {
  epoch: number;
  stanzas: Stanza[];
  /** The stanza section as published, reused by resealSlot. */
  stanzaBytes: Buffer;
  ciphertext: Buffer;
}

export interface OpenedSeal {
  plaintext: Buffer;
  epoch: number;
  /** Kept so the owner can reseal a tombstone for the same readers; the caller zeroes it when done. */
  fileKey: Buffer;
  stanzaBytes: Buffer;
  /** How it opened: with a PIN, or with an X25519 identity. */
  via: "pin" | "x25519";
}

/** Seal `plaintext` for `recipients` (X25519 and PIN recipients), bound to the publisher's ed25519 key. */
export async function sealSlot(
  plaintext: Uint8Array,
  recipients: readonly Recipient[],
  publisherKey: Uint8Array,
  /** A file key made beforehand (see slotFileKey); the caller zeroes it. Default: a fresh one. */
  givenFileKey?: Uint8Array,
): Promise<Buffer> {
  if (recipients.length === 0 || recipients.length > MAX_STANZAS) {
    throw new RangeError(`a slot needs 1 to ${MAX_STANZAS} recipients`);
  }
  if (givenFileKey && givenFileKey.length !== FILE_KEY_SIZE) throw new RangeError("a file key is 16 bytes");
  const fileKey = givenFileKey ? Buffer.from(givenFileKey) : generateFileKey();
  try {
    const x25519 = recipients.filter((r): r is X25519Recipient => r instanceof X25519Recipient);
    const stanzas: Stanza[] = wrapFileKeySharedEphemeral(x25519, fileKey);
    for (const recipient of recipients) {
      if (!(recipient instanceof X25519Recipient)) stanzas.push(...(await recipient.wrapFileKey(fileKey)));
    }
    return frame(0, encodeStanzas(stanzas), stanzas.length, fileKey, plaintext, publisherKey);
  } finally {
    fileKey.fill(0);
  }
}

/** A slot file key made before sealing, so the blob key can be derived from it (see blobSecretFor). */
export function slotFileKey(): Buffer {
  return generateFileKey();
}

/**
 * The X25519 secret of a handoff's blob, derived from its slot's file key:
 * whoever opens the slot can open the blob, and the slot does not spend 34 of
 * the record's bytes carrying the blob key.
 */
export function blobSecretFor(fileKey: Uint8Array): Buffer {
  return hkdf(fileKey, Buffer.alloc(0), BLOB_INFO);
}

/** A new payload for the same readers: same stanzas and file key, next epoch (so a new payload key). */
export function resealSlot(opened: OpenedSeal, plaintext: Uint8Array, publisherKey: Uint8Array): Buffer | undefined {
  if (opened.epoch >= MAX_EPOCH) return undefined;
  const count = countStanzas(opened.stanzaBytes);
  return frame(opened.epoch + 1, opened.stanzaBytes, count, opened.fileKey, plaintext, publisherKey);
}

/**
 * Open a slot with the first identity that unwraps a stanza. Undefined when
 * none does (the slot is for someone else). Throws IntegrityError when a
 * stanza opens but the payload does not: the slot was sealed for another
 * publisher's record, or damaged.
 */
export async function openSlot(
  bytes: Uint8Array,
  identities: readonly Identity[],
  publisherKey: Uint8Array,
): Promise<OpenedSeal | undefined> {
  const seal = parseSeal(bytes);
  for (const identity of identities) {
    const fileKey = await identity.unwrapFileKey(seal.stanzas);
    if (fileKey === undefined) continue;
    const key = Buffer.from(fileKey);
    fileKey.fill(0);
    const header = Buffer.concat([Buffer.from([SEAL_VERSION, seal.epoch, seal.stanzas.length]), seal.stanzaBytes]);
    const plaintext = openPayload(key, seal.epoch, header, seal.ciphertext, publisherKey);
    if (plaintext === undefined) {
      key.fill(0);
      throw new IntegrityError("a slot of this record opens with your key but was sealed for another record", {
        hint: "someone copied it here from another key's record, or it is damaged; do not trust it",
      });
    }
    const via = identity instanceof PinIdentity ? "pin" : "x25519";
    return { plaintext, epoch: seal.epoch, fileKey: key, stanzaBytes: seal.stanzaBytes, via };
  }
  return undefined;
}

/** Parse the frame strictly; anything malformed is an IntegrityError (exit 5). */
export function parseSeal(input: Uint8Array): ParsedSeal {
  const bytes = Buffer.from(input.buffer, input.byteOffset, input.byteLength);
  if (bytes.length < 3 + TAG_SIZE) throw headerError("record slot is too short");
  if (bytes[0] !== SEAL_VERSION) {
    throw new IntegrityError(`record slot format ${bytes[0]} is not supported`, {
      hint: "the sender uses another ccbundle version; upgrade ccbundle on both sides",
    });
  }
  const epoch = bytes[1]!;
  const count = bytes[2]!;
  if (count === 0 || count > MAX_STANZAS) throw headerError("record slot has no or too many recipients");
  const stanzas: Stanza[] = [];
  let offset = 3;
  let share: string | undefined;
  for (let i = 0; i < count; i++) {
    const type = bytes[offset];
    const size = stanzaSize(type);
    if (size === 0) throw headerError(`record slot has an unknown recipient type ${type}`);
    if (offset + size > bytes.length) throw headerError("record slot is truncated");
    const body = bytes.subarray(offset + size - BODY_SIZE, offset + size);
    if (type === X25519_TYPE) {
      share = b64encode(bytes.subarray(offset + 1, offset + 1 + SHARE_SIZE));
      stanzas.push({ type: "X25519", args: [share], body });
    } else if (type === X25519_SAME_SHARE_TYPE) {
      if (share === undefined) throw headerError("record slot reuses a share before giving one");
      stanzas.push({ type: "X25519", args: [share], body });
    } else {
      const salt = bytes.subarray(offset + 1, offset + 1 + PIN_SALT_SIZE);
      const params = [...bytes.subarray(offset + 1 + PIN_SALT_SIZE, offset + 4 + PIN_SALT_SIZE)].map(String);
      stanzas.push({ type: PIN_STANZA, args: [b64encode(salt), ...params], body });
      share = undefined;
    }
    offset += size;
  }
  if (bytes.length - offset < TAG_SIZE) throw headerError("record slot payload is truncated");
  return { epoch, stanzas, stanzaBytes: bytes.subarray(3, offset), ciphertext: bytes.subarray(offset) };
}

function frame(
  epoch: number,
  stanzaBytes: Buffer,
  count: number,
  fileKey: Uint8Array,
  plaintext: Uint8Array,
  publisherKey: Uint8Array,
): Buffer {
  const header = Buffer.concat([Buffer.from([SEAL_VERSION, epoch, count]), stanzaBytes]);
  const key = payloadKey(fileKey, epoch);
  try {
    return Buffer.concat([header, sealOnce(key, plaintext, aad(publisherKey, header))]);
  } finally {
    key.fill(0);
  }
}

function openPayload(
  fileKey: Uint8Array,
  epoch: number,
  header: Buffer,
  ciphertext: Buffer,
  publisherKey: Uint8Array,
): Buffer | undefined {
  const key = payloadKey(fileKey, epoch);
  try {
    return openOnce(key, ciphertext, aad(publisherKey, header));
  } finally {
    key.fill(0);
  }
}

function payloadKey(fileKey: Uint8Array, epoch: number): Buffer {
  return hkdf(fileKey, Buffer.from([epoch]), PAYLOAD_INFO);
}

function aad(publisherKey: Uint8Array, header: Buffer): Buffer {
  if (publisherKey.length !== 32) throw new RangeError("publisher key must be 32 bytes");
  return Buffer.concat([Buffer.from(AAD_LABEL, "latin1"), publisherKey, header]);
}

function stanzaSize(type: number | undefined): number {
  if (type === X25519_TYPE) return 1 + SHARE_SIZE + BODY_SIZE;
  if (type === X25519_SAME_SHARE_TYPE) return 1 + BODY_SIZE;
  if (type === PIN_TYPE) return 1 + PIN_SALT_SIZE + 3 + BODY_SIZE;
  return 0;
}

/** The binary stanza section; an X25519 stanza with the same share as the one before it stores only its body. */
function encodeStanzas(stanzas: Stanza[]): Buffer {
  const parts: Buffer[] = [];
  let previousShare: string | undefined;
  for (const stanza of stanzas) {
    if (stanza.type === "X25519") {
      const share = b64decode(stanza.args[0] ?? "");
      if (stanza.args.length !== 1 || share?.length !== SHARE_SIZE || stanza.body.length !== BODY_SIZE) {
        throw new RangeError("unexpected X25519 stanza");
      }
      parts.push(
        stanza.args[0] === previousShare
          ? Buffer.concat([Buffer.from([X25519_SAME_SHARE_TYPE]), stanza.body])
          : Buffer.concat([Buffer.from([X25519_TYPE]), share, stanza.body]),
      );
      previousShare = stanza.args[0];
    } else if (stanza.type === PIN_STANZA) {
      const salt = b64decode(stanza.args[0] ?? "");
      const params = stanza.args.slice(1).map(Number);
      if (stanza.args.length !== 4 || salt?.length !== PIN_SALT_SIZE || stanza.body.length !== BODY_SIZE) {
        throw new RangeError("unexpected argon2id stanza");
      }
      parts.push(Buffer.concat([Buffer.from([PIN_TYPE]), salt, Buffer.from(params), stanza.body]));
      previousShare = undefined;
    } else {
      // Only recipients whose stanzas have a binary form here can be slot recipients.
      throw new RangeError(`a record slot cannot hold a ${stanza.type} recipient`);
    }
  }
  return Buffer.concat(parts);
}

function countStanzas(stanzaBytes: Buffer): number {
  let count = 0;
  for (let offset = 0; offset < stanzaBytes.length; count++) offset += stanzaSize(stanzaBytes[offset]);
  return count;
}
