/**
 * age (c2sp.org/age) on node:crypto: the file format ccbundle uses for every
 * blob and record, readable by the stock `age` tool.
 *
 *     const bytes = await encrypt(plaintext, [X25519Recipient.fromString("age1…")]);
 *     const plain = await decrypt(bytes, [X25519Identity.fromString("AGE-SECRET-KEY-1…")]);
 *     pipeline(src, createEncryptStream(recipients), dst);
 *
 * Failures to open a file are AgeError (an IntegrityError, exit 5) with a
 * `failure` of "armor" | "header" | "no-match" | "hmac" | "payload".
 */

import { randomBytes } from "node:crypto";
import { dearmor, looksArmored } from "./armor.js";
import { headerError } from "./errors.js";
import { parseHeader, type Stanza } from "./format.js";
import { openHeader, sealHeader } from "./header.js";
import { generateFileKey } from "./primitives.js";
import { NONCE_SIZE, PayloadOpener, PayloadSealer } from "./stream.js";

/** Something a file key can be encrypted to: produces this recipient's header stanza(s). */
export interface Recipient {
  wrapFileKey(fileKey: Uint8Array): Promise<Stanza[]> | Stanza[];
}

/**
 * Something that may decrypt a file key. Returns undefined when no stanza is
 * addressed to it; throws (preferably an AgeError "header") only when a stanza
 * of its own type is malformed.
 */
export interface Identity {
  unwrapFileKey(stanzas: Stanza[]): Promise<Uint8Array | undefined>;
}

/** Encrypt a whole buffer to `recipients`; returns a binary age file. */
export async function encrypt(plaintext: Uint8Array, recipients: readonly Recipient[]): Promise<Uint8Array> {
  const fileKey = generateFileKey();
  try {
    const header = await sealHeader(recipients, fileKey);
    const nonce = randomBytes(NONCE_SIZE);
    const out: Buffer[] = [header, nonce];
    const sealer = new PayloadSealer(fileKey, nonce);
    sealer.write(plaintext, out);
    sealer.end(out);
    return Buffer.concat(out);
  } finally {
    fileKey.fill(0);
  }
}

export interface DecryptOptions {
  /** Whether the input is ASCII-armored; "auto" (default) detects it. */
  armor?: boolean | "auto";
}

/** Decrypt a whole age file (binary or armored) with the first identity that matches. */
export async function decrypt(
  file: Uint8Array,
  identities: readonly Identity[],
  options: DecryptOptions = {},
): Promise<Uint8Array> {
  const mode = options.armor ?? "auto";
  const armored = mode === "auto" ? looksArmored(file) === true : mode;
  const bytes = armored ? dearmor(file) : Buffer.from(file.buffer, file.byteOffset, file.byteLength);
  if (bytes.length === 0) throw headerError("the file is empty");
  const header = parseHeader(bytes);
  const fileKey = await openHeader(header, identities);
  let opener: PayloadOpener;
  try {
    if (bytes.length < header.length + NONCE_SIZE) throw headerError("the payload nonce is missing or truncated");
    opener = new PayloadOpener(fileKey, bytes.subarray(header.length, header.length + NONCE_SIZE));
  } finally {
    fileKey.fill(0);
  }
  const out: Buffer[] = [];
  try {
    opener.write(bytes.subarray(header.length + NONCE_SIZE), out);
    opener.end(out);
  } catch (err) {
    // Do not hand back a partial plaintext; zero what was decrypted.
    for (const b of out) b.fill(0);
    opener.destroy();
    throw err;
  }
  return out.length === 1 ? (out[0] as Buffer) : Buffer.concat(out);
}

export { ARMOR_BEGIN, ARMOR_END, ArmorDecoder, armor, dearmor, looksArmored } from "./armor.js";
export * as bech32 from "./bech32.js";
export { AgeError, type AgeFailure } from "./errors.js";
export {
  b64decode,
  b64encode,
  encodeHeader,
  encodeHeaderWithoutMac,
  headerMac,
  type ParsedHeader,
  parseHeader,
  type Stanza,
} from "./format.js";
export { openHeader, sealHeader } from "./header.js";
export { ScryptIdentity, ScryptRecipient } from "./scrypt.js";
export {
  CHUNK_SIZE,
  createDecryptStream,
  createEncryptStream,
  type DecryptStreamOptions,
  ENCRYPTED_CHUNK_SIZE,
  PayloadOpener,
  PayloadSealer,
} from "./stream.js";
export { parseIdentityFile, X25519Identity, X25519Recipient } from "./x25519.js";
