import { decodeBase32, encodeBase32 } from "../base32.js";
import { isPoint } from "../crypto/ed25519.js";
import { UsageError } from "../errors.js";

/**
 * z-base-32, the encoding pkarr uses for public keys (52 characters for 32
 * bytes). Written out here because the `z32` package decodes anything it is
 * given (wrong lengths, stray characters) without a word. Like it and the Rust
 * `z32` crate, decoding ignores the padding bits of the last character (pkarr's
 * own invalid-key test vector depends on that), so we always print keys by
 * re-encoding the bytes.
 */
const ALPHABET = "ybndrfg8ejkmcpqxot1uwisza345h769";

/** Length of a z32-encoded ed25519 public key. */
export const Z32_KEY_LENGTH = 52;

export function z32Encode(bytes: Uint8Array): string {
  return encodeBase32(bytes, ALPHABET);
}

/** Decode z-base-32; undefined on a character outside the alphabet. Padding bits are ignored. */
export function z32DecodeLoose(text: string): Uint8Array | undefined {
  return decodeBase32(text, ALPHABET);
}

/**
 * Parse a user-supplied public key: `<z32>` or `pk:<z32>`, any case, spaces
 * around it ignored. It must be 52 characters, decode to 32 bytes and be a
 * point on the ed25519 curve; anything else is a UsageError (exit 2).
 */
export function decodePublicKey(text: string): Uint8Array {
  const trimmed = text.trim();
  const z32 = (trimmed.toLowerCase().startsWith("pk:") ? trimmed.slice(3) : trimmed).toLowerCase();
  const shown = z32.length > 60 ? `${z32.slice(0, 60)}…` : z32;
  const hint = "a key is the 52-character z-base-32 string `ccbundle whoami` prints";
  if (z32.length !== Z32_KEY_LENGTH) {
    throw new UsageError(`not a public key: ${JSON.stringify(shown)} has ${z32.length} characters, not 52`, { hint });
  }
  const bytes = z32DecodeLoose(z32);
  if (bytes === undefined || bytes.length !== 32) {
    throw new UsageError(`not a public key: ${JSON.stringify(shown)} is not valid z-base-32`, { hint });
  }
  if (!isPoint(bytes)) {
    throw new UsageError(`not a public key: ${JSON.stringify(shown)} is not an ed25519 point`, {
      hint: `${hint}; check for a typo`,
    });
  }
  return bytes;
}

/** The z32 form of a 32-byte public key. */
export function encodePublicKey(publicKey: Uint8Array): string {
  if (publicKey.length !== 32) throw new UsageError(`public key must be 32 bytes, got ${publicKey.length}`);
  return z32Encode(publicKey);
}
