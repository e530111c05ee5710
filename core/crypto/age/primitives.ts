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
  const c = createCipheriv("chacha20-poly1305", wrapKey, ZERO_NONCE, { authTagLength: TAG_SIZE });
  const body = Buffer.concat([c.update(fileKey), c.final(), c.getAuthTag()]);
  return body;
}

/**
 * Decrypt a wrapped file key; undefined when the tag does not verify (the
 * stanza is for someone else). Callers check the body length first, as the
 * spec requires, so this never sees a body of the wrong size.
 */
export function openFileKey(wrapKey: Uint8Array, body: Uint8Array): Buffer | undefined {
  const d = createDecipheriv("chacha20-poly1305", wrapKey, ZERO_NONCE, { authTagLength: TAG_SIZE });
  d.setAuthTag(body.subarray(body.length - TAG_SIZE));
  const key = d.update(body.subarray(0, body.length - TAG_SIZE));
  try {
    d.final();
  } catch {
    key.fill(0);
    return undefined;
  }
  return key;
}

export function isAllZero(b: Uint8Array): boolean {
  let acc = 0;
  for (const x of b) acc |= x;
  return acc === 0;
}
