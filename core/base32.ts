/**
 * Unpadded base32 over a 32-character alphabet: RFC 4648 lower case for store
 * ids (store-layout.ts), z-base-32 for public keys (pointer/z32.ts). Decoding
 * ignores the padding bits of the last character, as the z32 crate does;
 * callers that need one canonical text re-encode and compare.
 */

export function encodeBase32(bytes: Uint8Array, alphabet: string): string {
  let out = "";
  let bits = 0;
  let value = 0;
  for (const byte of bytes) {
    value = ((value << 8) | byte) & 0xffff;
    bits += 8;
    while (bits >= 5) {
      out += alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += alphabet[(value << (5 - bits)) & 31];
  return out;
}

/** Undefined on a character outside the alphabet. */
export function decodeBase32(text: string, alphabet: string): Uint8Array | undefined {
  const out = new Uint8Array(Math.floor((text.length * 5) / 8));
  let bits = 0;
  let value = 0;
  let index = 0;
  for (const char of text) {
    const quintet = alphabet.indexOf(char);
    if (quintet < 0 || char.length !== 1) return undefined;
    value = ((value << 5) | quintet) & 0xffff;
    bits += 5;
    if (bits >= 8) {
      out[index++] = (value >>> (bits - 8)) & 0xff;
      bits -= 8;
    }
  }
  return out;
}
