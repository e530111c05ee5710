/**
 * Bech32 (BIP 173) as age uses it for `age1…` recipients and
 * `AGE-SECRET-KEY-1…` identities: the original checksum constant (not
 * Bech32m) and no 90-character limit, since post-quantum recipients run to
 * ~2000 characters. Strings are all-lowercase or all-uppercase; the checksum
 * is always computed over the lowercase form.
 *
 * Errors never echo the input: it may be a secret key.
 */

import { UsageError } from "../../errors.js";

const CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";
const GENERATORS = [0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3];

const REVERSE = new Int8Array(128).fill(-1);
for (let i = 0; i < CHARSET.length; i++) REVERSE[CHARSET.charCodeAt(i)] = i;

function polymod(values: ArrayLike<number>): number {
  let chk = 1;
  for (let i = 0; i < values.length; i++) {
    const top = chk >>> 25;
    chk = ((chk & 0x1ffffff) << 5) ^ (values[i] as number);
    for (let j = 0; j < 5; j++) {
      if ((top >>> j) & 1) chk ^= GENERATORS[j] as number;
    }
  }
  return chk;
}

function hrpExpand(hrp: string): number[] {
  const out: number[] = [];
  for (let i = 0; i < hrp.length; i++) out.push(hrp.charCodeAt(i) >>> 5);
  out.push(0);
  for (let i = 0; i < hrp.length; i++) out.push(hrp.charCodeAt(i) & 31);
  return out;
}

function fail(detail: string): never {
  throw new UsageError(`invalid Bech32 string: ${detail}`, {
    hint: "check that the key was copied completely and without extra characters",
  });
}

/** 8-bit bytes to 5-bit groups, zero-padding the last group. */
function toWords(data: Uint8Array): number[] {
  const words: number[] = [];
  let acc = 0;
  let bits = 0;
  for (const byte of data) {
    acc = ((acc << 8) | byte) & 0xfff;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      words.push((acc >>> bits) & 31);
    }
  }
  if (bits > 0) words.push((acc << (5 - bits)) & 31);
  return words;
}

/** 5-bit groups to bytes; strict: at most 4 padding bits, all zero. */
function fromWords(words: ArrayLike<number>): Uint8Array {
  const out = new Uint8Array(Math.floor((words.length * 5) / 8));
  let acc = 0;
  let bits = 0;
  let n = 0;
  for (let i = 0; i < words.length; i++) {
    acc = ((acc << 5) | (words[i] as number)) & 0xfff;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out[n++] = (acc >>> bits) & 0xff;
    }
  }
  if (bits >= 5 || ((acc << (8 - bits)) & 0xff) !== 0) fail("non-zero padding bits");
  return out;
}

/** Encode `data` under `hrp`; `upper` gives the all-uppercase form age uses for secret keys. */
export function encode(hrp: string, data: Uint8Array, upper = false): string {
  const lowerHrp = hrp.toLowerCase();
  if (lowerHrp.length === 0) throw new Error("bech32: empty human-readable part");
  for (let i = 0; i < lowerHrp.length; i++) {
    const c = lowerHrp.charCodeAt(i);
    if (c < 33 || c > 126) throw new Error("bech32: invalid character in human-readable part");
  }
  const words = toWords(data);
  const values = [...hrpExpand(lowerHrp), ...words, 0, 0, 0, 0, 0, 0];
  const mod = polymod(values) ^ 1;
  let s = `${lowerHrp}1`;
  for (const w of words) s += CHARSET[w];
  for (let i = 0; i < 6; i++) s += CHARSET[(mod >>> (5 * (5 - i))) & 31];
  return upper ? s.toUpperCase() : s;
}

export interface Decoded {
  /** The human-readable part, in the case it was written. */
  hrp: string;
  data: Uint8Array;
}

/** Decode and verify a Bech32 string of any length. */
export function decode(s: string): Decoded {
  const lower = s.toLowerCase();
  if (lower !== s && s.toUpperCase() !== s) fail("mixed case");
  const sep = lower.lastIndexOf("1");
  if (sep < 1) fail("missing separator or human-readable part");
  if (lower.length - sep - 1 < 6) fail("too short");
  for (let i = 0; i < lower.length; i++) {
    const c = lower.charCodeAt(i);
    if (c < 33 || c > 126) fail("invalid character");
  }
  const lowerHrp = lower.slice(0, sep);
  const values: number[] = [];
  for (let i = sep + 1; i < lower.length; i++) {
    const v = REVERSE[lower.charCodeAt(i)] ?? -1;
    if (v < 0) fail("invalid character");
    values.push(v);
  }
  if (polymod([...hrpExpand(lowerHrp), ...values]) !== 1) fail("bad checksum");
  return { hrp: s.slice(0, sep), data: fromWords(values.slice(0, -6)) };
}
