import { createHash } from "node:crypto";
import type { Identity, Recipient } from "../crypto/age/index.js";
import { X25519Identity, X25519Recipient } from "../crypto/age/x25519.js";
import { decodeZ32PublicKey, recipientFromPublicKey } from "../crypto/keys.js";
import { PIN_STANZA, PinRecipient } from "../crypto/pin.js";
import {
  blobSecretFor,
  type OpenedSeal,
  openSlot,
  parseSeal,
  resealSlot,
  SEAL_VERSION,
  sealSlot,
} from "../crypto/slot-seal.js";
import { IntegrityError } from "../errors.js";
import { dnsSize, MAX_DNS_BYTES, type TxtEntry, txtRecords, type VerifiedPacket } from "./packet.js";
import { decodePayload, encodePayload, PAYLOAD_FORMAT, SLOT_ID_BYTES } from "./payload-codec.js";

/**
 * What a ccbundle PKARR record says, and how it is sealed. Each TXT record
 * named `_ccbundle` is one slot: a compact payload (payload-codec.ts) sealed
 * (slot-seal.ts) for whoever the slot is for, and always for the owner. DHT
 * nodes, relays and stores see only opaque bytes.
 *
 * Slots: "self" (the owner's own latest handoff, readable by the owner only),
 * "to:<id>,<id>…" (a handoff to people, readable by them and the owner; one
 * 8-byte id per recipient, see recipientSlotId), "pin" (readable with a PIN
 * and by the owner). The seal binds every slot to its publisher's key, and a
 * reader checks the slot names it: a slot copied into another key's record,
 * or sealed for readers other than the ones its name says, is refused.
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
  /** Publisher's z32 key: the record it sits in must be signed by this key (the seal binds it). */
  pub: string;
  /** Which slot of the record this is: "self", "to:<id>,…", "pin" (or a name such as "backup"). */
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
  /** The slot as published, to carry over unchanged on the next publish. */
  sealed: Uint8Array;
  /** The opened seal: its file key lets the owner reseal a tombstone for the same readers. */
  seal: OpenedSeal;
}

// ---------------------------------------------------------------- slot names

const SLOT_ID_LABEL = "ccbundle/slot-id/v1";

/**
 * A recipient's 8-byte slot id: SHA-256 of the publisher's key and the
 * recipient's X25519 key. It sits inside the sealed payload, so only the
 * slot's readers see it; a reader recomputes its own id to check that the
 * slot names it.
 */
export function recipientSlotId(publisherKey: Uint8Array, recipient: X25519Recipient): string {
  return createHash("sha256")
    .update(SLOT_ID_LABEL)
    .update(publisherKey)
    .update(recipient.publicKey)
    .digest()
    .subarray(0, SLOT_ID_BYTES)
    .toString("hex");
}

/** The slot for a handoff to `recipients` (none: "self"). */
export function slotFor(publisherKey: Uint8Array, recipients: readonly X25519Recipient[]): string {
  if (recipients.length === 0) return "self";
  const ids = [...new Set(recipients.map((r) => recipientSlotId(publisherKey, r)))].sort();
  return `to:${ids.join(",")}`;
}

/** The recipient ids a "to:" slot names (empty for other slots). */
export function slotRecipientIds(slot: string): string[] {
  return slot.startsWith("to:") ? slot.slice(3).split(",") : [];
}

/**
 * Whether a new slot takes the place of an old one: the same slot, or (for
 * handoffs to people) one whose every reader is also a reader of the new one.
 */
export function supersedes(next: PointerPayload, old: PointerPayload): boolean {
  if (next.slot === old.slot) return true;
  if (next.kind !== "handoff") return false;
  const nextIds = new Set(slotRecipientIds(next.slot));
  const oldIds = slotRecipientIds(old.slot);
  return oldIds.length > 0 && oldIds.every((id) => nextIds.has(id));
}

/** A slot as people read it: "to yourself", "by PIN", "to <names or ids>". */
export function describeSlot(slot: string, names: ReadonlyMap<string, string> = new Map()): string {
  if (slot === "self") return "to yourself";
  if (slot === "pin") return "by PIN";
  const ids = slotRecipientIds(slot);
  if (ids.length === 0) return slot;
  return `to ${ids.map((id) => names.get(id) ?? `#${id}`).join(", ")}`;
}

// ---------------------------------------------------------------- sealing

/**
 * Seal a payload for `recipients` (the caller includes the owner). With the
 * `fileKey` the blob key was derived from (blobSecretFor), the payload leaves
 * the blob key out and readers derive it.
 */
export async function sealPayload(
  payload: PointerPayload,
  recipients: Recipient[],
  fileKey?: Uint8Array,
): Promise<Uint8Array> {
  const omitBlobKey = fileKey !== undefined && payload.blob?.age === blobSecretFor(fileKey).toString("base64url");
  return sealSlot(encodePayload(payload, { omitBlobKey }), recipients, decodeZ32PublicKey(payload.pub), fileKey);
}

/** A new payload (a tombstone) for exactly the readers of an opened slot; undefined if it cannot be resealed. */
export function resealPayload(opened: OpenedSlot, payload: PointerPayload): Uint8Array | undefined {
  return resealSlot(opened.seal, encodePayload(payload), decodeZ32PublicKey(payload.pub));
}

/** The size `sealPayload` will produce, without running a PIN's key derivation (for budget checks). */
export function sealedSize(
  payload: PointerPayload,
  recipients: readonly Recipient[],
  options: { omitBlobKey?: boolean } = {},
): number {
  let stanzas = 0;
  let x25519 = 0;
  for (const recipient of recipients) {
    if (recipient instanceof PinRecipient) stanzas += 1 + 16 + 3 + 32;
    else if (recipient instanceof X25519Recipient) stanzas += x25519++ === 0 ? 1 + 32 + 32 : 1 + 32;
    else throw new RangeError("a record slot takes only X25519 and PIN recipients");
  }
  return 3 + stanzas + encodePayload(payload, options).length + 16;
}

export function recordEntries(sealedSlots: Uint8Array[]): TxtEntry[] {
  return sealedSlots.map((data) => ({ name: RECORD_NAME, data }));
}

export function recordFits(sealedSlots: Uint8Array[]): { fits: boolean; size: number } {
  const size = dnsSize(recordEntries(sealedSlots));
  return { fits: size <= MAX_DNS_BYTES, size };
}

// ---------------------------------------------------------------- opening

/**
 * Open every slot this reader can, checking each against the key that signed
 * the record and against its own name. Slots for other people are skipped
 * silently (they learn nothing); so are slots of a newer format.
 */
export async function openSlots(
  verified: VerifiedPacket,
  publisherZ32: string,
  identities: Identity[],
): Promise<OpenedSlot[]> {
  return (await readSlots(verified, publisherZ32, identities)).opened;
}

export interface RecordSlots {
  opened: OpenedSlot[];
  /**
   * Slots in a format newer than this build reads (a newer seal, or a newer payload inside a seal
   * this reader opened): a newer ccbundle wrote them. The owner's push carries them over as they
   * are, so a machine not yet upgraded does not erase what an upgraded one published.
   */
  newer: Uint8Array[];
  /** Of `newer`, those whose seal this reader opened: certainly for them (a newer seal may be anyone's). */
  newerForReader: number;
}

/** A format byte a later ccbundle could write: a small version number (not text, such as JSON's `{`). */
function isNewerFormat(byte: number | undefined, current: number): boolean {
  return byte !== undefined && byte > current && byte < 0x20;
}

/** openSlots, and the slots it passed over because a newer ccbundle wrote them. */
export async function readSlots(
  verified: VerifiedPacket,
  publisherZ32: string,
  identities: Identity[],
): Promise<RecordSlots> {
  const publisherKey = decodeZ32PublicKey(publisherZ32);
  const ownerRecipient = recipientFromPublicKey(publisherKey);
  const opened: OpenedSlot[] = [];
  const newer: Uint8Array[] = [];
  let newerForReader = 0;
  for (const sealed of txtRecords(verified, RECORD_NAME)) {
    if (sealed[0] !== SEAL_VERSION) {
      if (isNewerFormat(sealed[0], SEAL_VERSION)) newer.push(sealed);
      continue;
    }
    parseSeal(sealed); // malformed: IntegrityError, whoever it was for
    for (const identity of identities) {
      const seal = await openSlot(sealed, [identity], publisherKey);
      if (!seal) continue;
      if (isNewerFormat(seal.plaintext[0], PAYLOAD_FORMAT)) {
        seal.plaintext.fill(0);
        seal.fileKey.fill(0);
        newer.push(sealed);
        newerForReader++;
        break;
      }
      const payload = decodePayload(seal.plaintext, publisherZ32, blobSecretFor(seal.fileKey).toString("base64url"));
      seal.plaintext.fill(0);
      checkSlotNamesReader(payload.slot, seal.via, identity, publisherKey, ownerRecipient);
      opened.push({ payload, sealed, seal });
      break;
    }
  }
  return { opened, newer, newerForReader };
}

/** Whether any slot of the record takes a PIN (public: the seal shows its stanza types). */
export function hasPinSlot(verified: VerifiedPacket): boolean {
  return txtRecords(verified, RECORD_NAME).some((sealed) => {
    if (sealed[0] !== SEAL_VERSION) return false;
    try {
      return parseSeal(sealed).stanzas.some((stanza) => stanza.type === PIN_STANZA);
    } catch {
      return false;
    }
  });
}

/** Zero the file keys an openSlots call kept. */
export function forgetSlots(slots: OpenedSlot[]): void {
  for (const slot of slots) slot.seal.fileKey.fill(0);
}

function checkSlotNamesReader(
  slot: string,
  via: "pin" | "x25519",
  identity: Identity,
  publisherKey: Uint8Array,
  owner: X25519Recipient,
): void {
  if (via === "pin") {
    if (slot === "pin") return;
  } else if (identity instanceof X25519Identity) {
    const reader = identity.recipient();
    if (Buffer.from(reader.publicKey).equals(Buffer.from(owner.publicKey))) return; // the owner reads every slot
    if (slotRecipientIds(slot).includes(recipientSlotId(publisherKey, reader))) return;
  }
  throw new IntegrityError(`a slot of this record is named "${slot.slice(0, 40)}" but was sealed for other readers`, {
    hint: "the record was put together wrongly or on purpose; do not trust it and ask the sender to push again",
  });
}
