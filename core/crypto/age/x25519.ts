/**
 * The native X25519 recipient type (c2sp.org/age, "The X25519 recipient type").
 *
 * Wrap: a fresh ephemeral key per stanza; shared = X25519(ephemeral, recipient);
 * wrap key = HKDF-SHA-256(shared, salt = share || recipient,
 * info = "age-encryption.org/v1/X25519"); body = ChaCha20-Poly1305(file key).
 *
 * The curve work runs in OpenSSL through KeyObjects. Raw 32-byte keys are
 * turned into KeyObjects with the fixed DER prefixes of RFC 8410, which is the
 * only raw-key import node:crypto offers besides JWK.
 */

import { createPrivateKey, createPublicKey, diffieHellman, type KeyObject, randomFillSync } from "node:crypto";
import { UsageError } from "../../errors.js";
import * as bech32 from "./bech32.js";
import { headerError } from "./errors.js";
import { b64decode, b64encode, type Stanza } from "./format.js";
import type { Identity, Recipient } from "./index.js";
import { FILE_KEY_SIZE, hkdf, isAllZero, openFileKey, sealFileKey, TAG_SIZE } from "./primitives.js";

const KEY_SIZE = 32;
const PKCS8_PREFIX = Buffer.from("302e020100300506032b656e04220420", "hex");
const INFO = "age-encryption.org/v1/X25519";
const RECIPIENT_HRP = "age";
const IDENTITY_HRP = "AGE-SECRET-KEY-";

/**
 * Public keys go in and out of OpenSSL as JWK, not DER: OpenSSL 3 parses and
 * writes DER through its decoder framework, ~0.12 ms per key against ~0.02 ms
 * (import) and ~0.003 ms (export), and every blob needs two or three (the
 * ephemeral share out, the recipients and the share in). Private keys stay DER:
 * a JWK would hold the secret in a JS string, which cannot be zeroed.
 */
function publicKeyObject(raw: Uint8Array): KeyObject {
  return createPublicKey({
    key: { kty: "OKP", crv: "X25519", x: Buffer.from(raw).toString("base64url") },
    format: "jwk",
  });
}

function rawPublicKey(key: KeyObject): Buffer {
  return Buffer.from(key.export({ format: "jwk" }).x ?? "", "base64url");
}

/**
 * A fresh X25519 private key from 32 random bytes (X25519 clamps any 32 bytes), imported from
 * DER, never `generateKeyPairSync`: on Node 20.20 a JWK export of a generated key can deadlock
 * its own thread when a garbage collection inside the export destroys a finished key
 * generation job, which takes a lock the export holds (gdb: ExportJWKEdKey → GC → ~KeyGenJob).
 * A backup or push then hung at 0% CPU, deaf to Ctrl-C and SIGTERM (about 1 command in 150;
 * a loop of generate + JWK export hung within seconds in 3 of 3 runs, the import route never).
 * The DER import costs ~0.9 ms against ~0.09 ms: per bundle, next to milliseconds of work.
 */
function newPrivateKey(): KeyObject {
  const der = Buffer.alloc(PKCS8_PREFIX.length + KEY_SIZE);
  PKCS8_PREFIX.copy(der);
  randomFillSync(der, PKCS8_PREFIX.length);
  try {
    return createPrivateKey({ key: der, format: "der", type: "pkcs8" });
  } finally {
    der.fill(0);
  }
}

/**
 * X25519(private, public), or undefined when the result would be all zeros
 * (a low-order public point): OpenSSL refuses those derivations outright, and
 * the spec requires aborting on them either way.
 */
function x25519(privateKey: KeyObject, publicKey: KeyObject): Buffer | undefined {
  let shared: Buffer;
  try {
    shared = diffieHellman({ privateKey, publicKey });
  } catch {
    return undefined;
  }
  return isAllZero(shared) ? undefined : shared;
}

export class X25519Recipient implements Recipient {
  readonly publicKey: Uint8Array;
  readonly #key: KeyObject;

  constructor(publicKey: Uint8Array) {
    if (publicKey.length !== KEY_SIZE) throw new UsageError("an X25519 public key must be 32 bytes");
    this.publicKey = Uint8Array.from(publicKey);
    this.#key = publicKeyObject(this.publicKey);
  }

  /** Parse an `age1…` recipient (lowercase, as age prints them). */
  static fromString(s: string): X25519Recipient {
    const invalid = () =>
      new UsageError("not a valid age recipient", {
        hint: "an age recipient looks like age1… (62 characters), as printed by age-keygen or `ccbundle whoami`",
      });
    let decoded: bech32.Decoded;
    try {
      decoded = bech32.decode(s);
    } catch {
      throw invalid();
    }
    if (decoded.hrp !== RECIPIENT_HRP || decoded.data.length !== KEY_SIZE) throw invalid();
    return new X25519Recipient(decoded.data);
  }

  toString(): string {
    return bech32.encode(RECIPIENT_HRP, this.publicKey);
  }

  wrapFileKey(fileKey: Uint8Array): Stanza[] {
    // A fresh ephemeral key per stanza, as age does.
    return wrapFileKeySharedEphemeral([this], fileKey, this.#key);
  }
}

export class X25519Identity implements Identity {
  // The raw scalar is kept for toString(). JS cannot promise it is never
  // copied (the KeyObject holds its own copy inside OpenSSL); destroy() zeroes
  // ours.
  readonly #secret: Uint8Array;
  readonly #key: KeyObject;
  readonly #publicKey: Buffer;

  constructor(secret: Uint8Array) {
    if (secret.length !== KEY_SIZE) throw new UsageError("an X25519 secret key must be 32 bytes");
    this.#secret = Uint8Array.from(secret);
    const der = Buffer.concat([PKCS8_PREFIX, this.#secret]);
    this.#key = createPrivateKey({ key: der, format: "der", type: "pkcs8" });
    der.fill(0);
    this.#publicKey = rawPublicKey(createPublicKey(this.#key));
  }

  static generate(): X25519Identity {
    const der = newPrivateKey().export({ format: "der", type: "pkcs8" });
    const id = new X25519Identity(der.subarray(PKCS8_PREFIX.length));
    der.fill(0);
    return id;
  }

  /** Parse an `AGE-SECRET-KEY-1…` identity (uppercase, as age writes them). */
  static fromString(s: string): X25519Identity {
    const invalid = () =>
      new UsageError("not a valid age identity", {
        hint: "an age identity is one line starting with AGE-SECRET-KEY-1, as written by age-keygen",
      });
    let decoded: bech32.Decoded;
    try {
      decoded = bech32.decode(s);
    } catch {
      throw invalid();
    }
    if (decoded.hrp !== IDENTITY_HRP || decoded.data.length !== KEY_SIZE) {
      decoded.data.fill(0);
      throw invalid();
    }
    const id = new X25519Identity(decoded.data);
    decoded.data.fill(0);
    return id;
  }

  recipient(): X25519Recipient {
    return new X25519Recipient(this.#publicKey);
  }

  toString(): string {
    return bech32.encode(IDENTITY_HRP, this.#secret, true);
  }

  /** Zero this object's copy of the secret scalar. */
  destroy(): void {
    this.#secret.fill(0);
  }

  async unwrapFileKey(stanzas: Stanza[]): Promise<Uint8Array | undefined> {
    for (const s of stanzas) {
      if (s.type !== "X25519") continue;
      // A stanza of our type that is malformed is an error, not a mismatch:
      // the spec says reject, and silently skipping would hide tampering.
      if (s.args.length !== 1) throw headerError("X25519 stanza must have exactly one argument");
      const share = b64decode(s.args[0] as string);
      if (share === undefined || share.length !== KEY_SIZE) {
        throw headerError("X25519 stanza share is not a canonical 32-byte value");
      }
      if (s.body.length !== FILE_KEY_SIZE + TAG_SIZE) throw headerError("X25519 stanza body has the wrong length");
      const shared = x25519(this.#key, publicKeyObject(share));
      if (shared === undefined) throw headerError("X25519 stanza share is a low-order point");
      const wrapKey = hkdf(shared, Buffer.concat([share, this.#publicKey]), INFO);
      shared.fill(0);
      const fileKey = openFileKey(wrapKey, s.body);
      wrapKey.fill(0);
      if (fileKey !== undefined) return fileKey;
    }
    return undefined;
  }
}

/**
 * Parse an identity file as age-keygen writes it: one AGE-SECRET-KEY-1… per
 * line, `#` comments and blank lines ignored. At least one identity is required.
 */
export function parseIdentityFile(text: string): X25519Identity[] {
  const ids: X25519Identity[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.replace(/\r$/, "").trim();
    if (line === "" || line.startsWith("#")) continue;
    ids.push(X25519Identity.fromString(line));
  }
  if (ids.length === 0) {
    throw new UsageError("no age identity found in the identity file", {
      hint: "the file should contain a line starting with AGE-SECRET-KEY-1",
    });
  }
  return ids;
}

/**
 * X25519 stanzas for several recipients that share one ephemeral key: each
 * stanza is exactly what X25519Recipient makes (wrap key = HKDF(X25519(e, R),
 * share || R)), so any X25519Identity opens its own, but the share is the same
 * in all of them. Record slots use this to store the 32-byte share once
 * (slot-seal.ts): the recipient's key in the HKDF salt keeps every wrap key
 * distinct, as in multi-recipient ECIES. Files keep a fresh share per stanza.
 */
export function wrapFileKeySharedEphemeral(
  recipients: readonly X25519Recipient[],
  fileKey: Uint8Array,
  /** The KeyObject of a single recipient, when the caller holds it already. */
  keyObject?: KeyObject,
): Stanza[] {
  const ephemeral = newPrivateKey();
  const share = rawPublicKey(createPublicKey(ephemeral));
  return recipients.map((recipient) => {
    const shared = x25519(ephemeral, keyObject ?? publicKeyObject(recipient.publicKey));
    if (shared === undefined) {
      throw new UsageError("the recipient is not a valid X25519 public key (low-order point)", {
        hint: "check the recipient key; it cannot receive encrypted files",
      });
    }
    const wrapKey = hkdf(shared, Buffer.concat([share, recipient.publicKey]), INFO);
    const body = sealFileKey(wrapKey, fileKey);
    shared.fill(0);
    wrapKey.fill(0);
    return { type: "X25519", args: [b64encode(share)], body };
  });
}
