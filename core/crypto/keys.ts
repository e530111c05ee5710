/**
 * The user's identity: one ed25519 seed per user.
 *
 * The ed25519 key signs PKARR records and is named by its z-base-32 public key
 * (52 characters), the only thing a sender needs to know about a recipient.
 * The same seed is also the user's age identity, through the birational map
 * between edwards25519 and curve25519 (libsodium's
 * crypto_sign_ed25519_sk_to_curve25519 / _pk_to_curve25519):
 *
 *     X25519 secret = clamp(SHA-512(seed)[0..32])   (the ed25519 secret scalar)
 *     X25519 public = Montgomery u of the ed25519 public point = (1 + y) / (1 - y)
 *
 * so X25519(secret, basepoint) equals the converted public key, and anyone can
 * encrypt to a z32 key without a separate age key exchange. Using one key for
 * signing and for Diffie-Hellman is the construction age's own ssh-ed25519
 * recipient type and libsodium's conversion are built for.
 */

import { getRandomValues } from "node:crypto";
import { UsageError } from "../errors.js";
import { z32DecodeLoose, z32Encode } from "../pointer/z32.js";
import { X25519Identity, X25519Recipient } from "./age/x25519.js";
import {
  isSmallOrderPoint,
  montgomeryPublic,
  montgomerySecret,
  publicKeyFromSeed,
  signWithSeed,
  verifyStrict,
} from "./ed25519.js";

const SEED_SIZE = 32;
const PUBLIC_KEY_SIZE = 32;
const SIGNATURE_SIZE = 64;
const Z32_KEY_LENGTH = 52;

export class UserKey {
  // JS cannot guarantee secret bytes are never copied (GC moves, OpenSSL's
  // own copy in a KeyObject); we keep one copy and zero it in destroy().
  readonly #seed: Uint8Array;
  readonly publicKey: Uint8Array;
  /** The public key in z-base-32, as pkarr names keys. */
  readonly z32: string;
  #recipient: X25519Recipient | undefined;

  private constructor(seed: Uint8Array) {
    this.#seed = seed;
    this.publicKey = publicKeyFromSeed(seed);
    this.z32 = z32Encode(this.publicKey);
  }

  static generate(): UserKey {
    // A plain Uint8Array, not a Buffer that could sit in Node's shared pool.
    return new UserKey(getRandomValues(new Uint8Array(SEED_SIZE)));
  }

  /** From a 32-byte ed25519 seed (RFC 8032 private key). The seed is copied. */
  static fromSeed(seed: Uint8Array): UserKey {
    if (seed.length !== SEED_SIZE) {
      throw new UsageError("an ed25519 seed must be 32 bytes", { hint: "the key file may be damaged" });
    }
    return new UserKey(Uint8Array.from(seed));
  }

  /** A copy of the seed, for writing the key file. The caller should zero it. */
  exportSeed(): Uint8Array {
    return Uint8Array.from(this.#seed);
  }

  sign(message: Uint8Array): Uint8Array {
    return signWithSeed(message, this.#seed);
  }

  /** The age identity for this key (X25519 secret converted from the seed). */
  ageIdentity(): X25519Identity {
    const secret = montgomerySecret(this.#seed);
    try {
      return new X25519Identity(secret);
    } finally {
      secret.fill(0);
    }
  }

  /** The age recipient for this key; equals recipientFromPublicKey(publicKey). */
  ageRecipient(): X25519Recipient {
    // Computed once: a push asks for it several times, and the conversion is BigInt field math.
    this.#recipient ??= recipientFromPublicKey(this.publicKey);
    return this.#recipient;
  }

  /** Zero this object's copy of the seed; the object is unusable afterwards. */
  destroy(): void {
    this.#seed.fill(0);
  }
}

/** The age recipient of an ed25519 public key (Edwards to Montgomery). */
export function recipientFromPublicKey(edPublicKey: Uint8Array): X25519Recipient {
  if (edPublicKey.length !== PUBLIC_KEY_SIZE) throw new UsageError("an ed25519 public key must be 32 bytes");
  return new X25519Recipient(montgomeryPublic(edPublicKey));
}

export function encodeZ32PublicKey(publicKey: Uint8Array): string {
  if (publicKey.length !== PUBLIC_KEY_SIZE) throw new UsageError("an ed25519 public key must be 32 bytes");
  return z32Encode(publicKey);
}

const BAD_KEY_HINT = "a ccbundle key is the 52-character z-base-32 string `ccbundle whoami` prints";

/**
 * Decode and validate a z32 public key: 52 characters of the z-base-32
 * alphabet, canonical (re-encodes to itself), 32 bytes, and a point on the
 * curve that is not of small order (such a key could never receive a file:
 * its X25519 shared secrets are all zero).
 */
export function decodeZ32PublicKey(s: string): Uint8Array {
  const text = s.trim().toLowerCase();
  if (text.length !== Z32_KEY_LENGTH) {
    throw new UsageError(`not a ccbundle key: expected ${Z32_KEY_LENGTH} characters`, { hint: BAD_KEY_HINT });
  }
  const bytes = z32DecodeLoose(text);
  if (!bytes) throw new UsageError("not a ccbundle key: invalid z-base-32 character", { hint: BAD_KEY_HINT });
  if (bytes.length !== PUBLIC_KEY_SIZE || z32Encode(bytes) !== text) {
    throw new UsageError("not a ccbundle key: not a canonical 32-byte encoding", { hint: BAD_KEY_HINT });
  }
  const smallOrder = isSmallOrderPoint(bytes);
  if (smallOrder === undefined) {
    throw new UsageError("not a ccbundle key: not a valid ed25519 public key", { hint: BAD_KEY_HINT });
  }
  if (smallOrder) throw new UsageError("not a ccbundle key: a small-order ed25519 point", { hint: BAD_KEY_HINT });
  return Uint8Array.from(bytes);
}

/**
 * A ccbundle key as a user types or pastes it (any case, pkarr's `pk:` prefix, spaces around it),
 * checked as decodeZ32PublicKey checks it and returned in the one form `whoami` prints. Keys are
 * compared as strings (the own record, the bundle's signer), so every key from the command line
 * goes through here first.
 */
export function canonicalZ32Key(s: string): string {
  const text = s.trim();
  const key = text.toLowerCase().startsWith("pk:") ? text.slice(3) : text;
  return z32Encode(decodeZ32PublicKey(key));
}

/**
 * A recipient as a user types it: a ccbundle key (z32, optionally with pkarr's
 * `pk:` prefix) or an age X25519 recipient (`age1…`).
 */
export function parseRecipient(s: string): X25519Recipient {
  const text = s.trim();
  if (text.startsWith("age1pq1")) {
    throw new UsageError("post-quantum age recipients (age1pq1…) are not supported", {
      hint: "use the recipient's ccbundle key or an age1… X25519 recipient",
    });
  }
  if (text.startsWith("age1")) return X25519Recipient.fromString(text);
  const key = text.startsWith("pk:") ? text.slice(3) : text;
  if (key.length === Z32_KEY_LENGTH) return recipientFromPublicKey(decodeZ32PublicKey(key));
  throw new UsageError("not a recipient: expected a ccbundle key or an age1… recipient", {
    hint: `${BAD_KEY_HINT}; an age recipient starts with age1`,
  });
}

/** Strict RFC 8032 verification (no ZIP-215 leniency); false on any malformed input. */
export function verifyEd25519(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  if (publicKey.length !== PUBLIC_KEY_SIZE || signature.length !== SIGNATURE_SIZE) return false;
  return verifyStrict(publicKey, message, signature);
}
