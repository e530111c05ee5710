/**
 * The few primitives age builds on, all from node:crypto (OpenSSL): HKDF-SHA-256
 * with a 32-byte output, and ChaCha20-Poly1305 under a fixed all-zero nonce,
 * which is how every native stanza wraps the file key (each wrap key is used
 * exactly once, so the fixed nonce is safe).
 */

import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from "node:crypto";

export const FILE_KEY_SIZE = 16;
export const TAG_SIZE = 16;
const ZERO_NONCE = Buffer.alloc(12);

export function hkdf(ikm: Uint8Array, salt: Uint8Array, info: string): Buffer {
  return Buffer.from(hkdfSync("sha256", ikm, salt, info, 32));
}

export function generateFileKey(): Buffer {
  return randomBytes(FILE_KEY_SIZE);
}

/** Encrypt a file key under a single-use wrap key. */
export function sealFileKey(wrapKey: Uint8Array, fileKey: Uint8Array): Buffer {
  return sealOnce(wrapKey, fileKey);
}

/**
 * Decrypt a wrapped file key; undefined when the tag does not verify (the
 * stanza is for someone else). Callers check the body length first, as the
 * spec requires, so this never sees a body of the wrong size.
 */
export function openFileKey(wrapKey: Uint8Array, body: Uint8Array): Buffer | undefined {
  return openOnce(wrapKey, body);
}

/** ChaCha20-Poly1305 under a key used exactly once (so the all-zero nonce), with optional associated data. */
export function sealOnce(key: Uint8Array, plaintext: Uint8Array, aad?: Uint8Array): Buffer {
  const c = createCipheriv("chacha20-poly1305", key, ZERO_NONCE, { authTagLength: TAG_SIZE });
  if (aad) c.setAAD(aad, { plaintextLength: plaintext.length });
  return Buffer.concat([c.update(plaintext), c.final(), c.getAuthTag()]);
}

/** Open what sealOnce sealed; undefined when the tag does not verify (wrong key, altered bytes or AAD). */
export function openOnce(key: Uint8Array, sealed: Uint8Array, aad?: Uint8Array): Buffer | undefined {
  if (sealed.length < TAG_SIZE) return undefined;
  const d = createDecipheriv("chacha20-poly1305", key, ZERO_NONCE, { authTagLength: TAG_SIZE });
  if (aad) d.setAAD(aad, { plaintextLength: sealed.length - TAG_SIZE });
  d.setAuthTag(sealed.subarray(sealed.length - TAG_SIZE));
  const plain = d.update(sealed.subarray(0, sealed.length - TAG_SIZE));
  try {
    d.final();
  } catch {
    plain.fill(0);
    return undefined;
  }
  return plain;
}

export function isAllZero(b: Uint8Array): boolean {
  let acc = 0;
  for (const x of b) acc |= x;
  return acc === 0;
}
