import dnsPacket, { type Answer, type TxtAnswer } from "dns-packet";
import { publicKeyFromSeed, signWithSeed, verifySodium } from "../crypto/ed25519.js";
import { CcbError, IntegrityError } from "../errors.js";
import type { RelayPayload } from "./transport.js";
import { z32Encode } from "./z32.js";

/**
 * PKARR signed packets: a DNS packet of TXT records, signed with the user's
 * ed25519 key as a BEP44 mutable item (seq = timestamp in µs), read and checked
 * exactly as pkarr-js's SignedPacket.fromBytes does (libsodium's verification
 * rules, dns-packet decoding), without loading pkarr and libsodium: that took
 * ~20 ms in every push and pull. On top, what ccbundle needs: binary TXT
 * payloads split into 255-byte character-strings, and repeated names
 * compressed (see encodeCompressed).
 */

/** The most DNS bytes a BEP44 `v` (and so a pkarr packet) may hold. */
export const MAX_DNS_BYTES = 1000;

const MAX_SAFE_SEQ = BigInt(Number.MAX_SAFE_INTEGER);

/** A TXT record to publish: name relative to the key (e.g. `_ccbundle`), binary data of any length. */
export interface TxtEntry {
  name: string;
  data: Uint8Array;
  ttl?: number;
}

/**
 * Sign `entries` as a pkarr packet with timestamp (BEP44 seq) `timestampMicros`.
 * Refuses (CcbError, exit 1) a packet whose DNS part is over MAX_DNS_BYTES: no
 * DHT node or relay would take it.
 */
export function signPacket(seed: Uint8Array, entries: TxtEntry[], timestampMicros: number): RelayPayload {
  return buildPacket(seed, entries, timestampMicros);
}

/** Size of the DNS part a set of entries would sign to, to check the 1000-byte budget before publishing. */
export function dnsSize(entries: TxtEntry[]): number {
  // Every key's z32 has 52 characters, so any key gives the same size.
  return encodeCompressed(SIZE_ORIGIN, entries).length;
}

/** Throw the same CcbError signPacket would when `entries` do not fit in MAX_DNS_BYTES (or a smaller `limit`). */
export function assertFits(entries: TxtEntry[], limit: number = MAX_DNS_BYTES): void {
  const size = dnsSize(entries);
  if (size > limit) throw tooLarge(size, limit);
}

function tooLarge(size: number, limit: number = MAX_DNS_BYTES): CcbError {
  return new CcbError(`record too large: ${size} bytes of DNS, the limit is ${limit}`, 1, {
    hint: "shorten the session title or leave out the presigned URL; the DHT and relays refuse larger records",
  });
}

const SIZE_ORIGIN = "y".repeat(52);

function buildPacket(seed: Uint8Array, entries: TxtEntry[], timestampMicros: number): RelayPayload {
  if (!Number.isSafeInteger(timestampMicros) || timestampMicros <= 0) {
    throw new CcbError(`invalid record timestamp: ${timestampMicros}`);
  }
  const publicKey = publicKeyFromSeed(seed);
  const dns = encodeCompressed(z32Encode(publicKey), entries);
  if (dns.length > MAX_DNS_BYTES) throw tooLarge(dns.length);
  const bytes = Buffer.alloc(72 + dns.length);
  bytes.set(signWithSeed(bep44Signable(timestampMicros, dns), seed), 0);
  bytes.writeBigUInt64BE(BigInt(timestampMicros), 64);
  bytes.set(dns, 72);
  // Parse it back: the same check every reader makes, so we never publish what they would refuse.
  return toPayload(readSignedPacket(publicKey, bytes));
}

/** BEP44 signable for an unsalted mutable item: `3:seqi<seq>e1:v<len>:<v>` (pkarr's encodeSigData). */
export function bep44Signable(seq: number, v: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from(`3:seqi${seq}e1:v${v.length}:`), v]);
}

/** A packet whose signature verified, its DNS decoded: the read side of pkarr-js's SignedPacket, same methods. */
export class SignedPacket {
  readonly #publicKey: Uint8Array;
  readonly #bytes: Buffer;
  readonly #timestamp: number;
  readonly #packet: dnsPacket.Packet;

  constructor(publicKey: Uint8Array, bytes: Buffer, timestamp: number, packet: dnsPacket.Packet) {
    this.#publicKey = publicKey;
    this.#bytes = bytes;
    this.#timestamp = timestamp;
    this.#packet = packet;
  }

  publicKey(): Uint8Array {
    return this.#publicKey;
  }

  bytes(): Buffer {
    return this.#bytes;
  }

  timestamp(): number {
    return this.#timestamp;
  }

  packet(): dnsPacket.Packet {
    return this.#packet;
  }

  /** The answers under `name`, relative to the key (`_ccbundle`) or absolute. */
  resourceRecords(name: string): Answer[] {
    const wanted = normalizeName(z32Encode(this.#publicKey), name);
    return (this.#packet.answers ?? []).filter((answer) => answer.name === wanted);
  }
}

class InvalidSignature extends Error {}

/**
 * pkarr-js SignedPacket.fromBytes: signature over the BEP44 signable checked
 * with libsodium's rules, then the DNS packet decoded. Throws InvalidSignature,
 * or dns-packet's error for a malformed packet.
 */
function readSignedPacket(publicKey: Uint8Array, input: Uint8Array): SignedPacket {
  const bytes = Buffer.from(input);
  const timestamp = Number(bytes.readBigUInt64BE(64));
  const dns = bytes.subarray(72);
  if (!verifySodium(publicKey, bep44Signable(timestamp, dns), bytes.subarray(0, 64))) {
    throw new InvalidSignature("Invalid signature");
  }
  return new SignedPacket(publicKey, bytes, timestamp, dnsPacket.decode(dns));
}

/**
 * The DNS message of a record, with RFC 1035 name compression: every answer
 * after the first with the same owner name points back at it (2 bytes instead
 * of `_ccbundle.<52-character key>`, 64 bytes). pkarr-js's own encoder does not
 * compress, which would cost 62 of the 1000 bytes for every extra slot; Rust
 * pkarr compresses the same way, and every pkarr parser reads it.
 */
function encodeCompressed(origin: string, entries: TxtEntry[]): Buffer {
  const header = dnsPacket.encode({ type: "response", id: 0, flags: 1 << 10, answers: [] }); // AA, as pkarr sets
  header.writeUInt16BE(entries.length, 6); // ANCOUNT
  const parts: Buffer[] = [header];
  const nameOffsets = new Map<string, number>();
  let offset = header.length;
  for (const entry of entries) {
    const name = normalizeName(origin, entry.name);
    const answer: TxtAnswer = {
      type: "TXT",
      class: "IN",
      name,
      ttl: entry.ttl ?? 300,
      data: splitCharacterStrings(entry.data),
    };
    // A one-answer message, minus its 12-byte header, is exactly that answer uncompressed.
    let bytes = dnsPacket.encode({ type: "response", id: 0, answers: [answer] }).subarray(12);
    const earlier = nameOffsets.get(name);
    if (earlier !== undefined && earlier < 0x3fff) {
      const pointer = Buffer.from([0xc0 | (earlier >> 8), earlier & 0xff]);
      bytes = Buffer.concat([pointer, bytes.subarray(encodedNameLength(name))]);
    } else {
      nameOffsets.set(name, offset);
    }
    parts.push(bytes);
    offset += bytes.length;
  }
  return Buffer.concat(parts);
}

/** As pkarr's SignedPacket normalises names: relative to the key, `@` for the key itself. */
function normalizeName(origin: string, input: string): string {
  const name = input.endsWith(".") ? input.slice(0, -1) : input;
  const last = name.split(".").at(-1);
  if (last === origin) return name;
  if (last === "@" || last === "") return origin;
  return `${name}.${origin}`;
}

function encodedNameLength(name: string): number {
  return name.split(".").reduce((sum, label) => sum + 1 + Buffer.byteLength(label), 0) + 1;
}

/**
 * Verify relay-payload bytes (sig | seq | dns) against the public key they were
 * resolved for. Any malformed or forged input is an IntegrityError (exit 5).
 */
export function verifyPayload(publicKey: Uint8Array, bytes: Uint8Array): VerifiedPacket {
  if (bytes.length < 72) throw new IntegrityError(`signed packet too short (${bytes.length} bytes)`);
  if (bytes.length > 72 + MAX_DNS_BYTES) throw new IntegrityError(`signed packet too large (${bytes.length} bytes)`);
  // pkarr reads the seq as a JS number and bencodes it for the signature check: a seq
  // beyond 2^53 cannot be signed by us and makes its bencode print a warning + stack trace.
  if (Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).readBigUInt64BE(64) > MAX_SAFE_SEQ) {
    throw new IntegrityError("signed packet timestamp is out of range", {
      hint: "the record was forged or corrupted; ask the publisher to push again",
    });
  }
  let signed: SignedPacket;
  try {
    signed = readSignedPacket(publicKey, bytes);
  } catch (err) {
    const invalidSignature = err instanceof InvalidSignature;
    throw new IntegrityError(
      invalidSignature ? "signed packet: signature does not verify for this key" : "signed packet is malformed",
      { hint: "the record was forged or corrupted; ask the publisher to push again", cause: err },
    );
  }
  return { ...toPayload(signed), packet: signed };
}

export interface VerifiedPacket extends RelayPayload {
  packet: SignedPacket;
}

/** TXT data under `name` (relative, e.g. `_ccbundle`), each record's character-strings joined. */
export function txtRecords(verified: VerifiedPacket, name: string): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const answer of verified.packet.resourceRecords(name)) {
    if (answer.type !== "TXT") continue;
    const data = (answer as TxtAnswer).data;
    const parts = Array.isArray(data) ? data : [data];
    out.push(Buffer.concat(parts.map((part) => (typeof part === "string" ? Buffer.from(part) : Buffer.from(part)))));
  }
  return out;
}

function splitCharacterStrings(data: Uint8Array): Buffer[] {
  const parts: Buffer[] = [];
  for (let offset = 0; offset < data.length; offset += 255) {
    parts.push(Buffer.from(data.subarray(offset, offset + 255)));
  }
  return parts.length > 0 ? parts : [Buffer.alloc(0)];
}

function toPayload(signed: SignedPacket): RelayPayload {
  const bytes = signed.bytes();
  return {
    publicKey: signed.publicKey(),
    bytes,
    timestamp: signed.timestamp(),
    signature: bytes.subarray(0, 64),
    dns: bytes.subarray(72),
  };
}
