/**
 * The age v1 header: the text block that carries the file key wrapped for each
 * recipient, and the MAC that binds it to the file key.
 *
 *     age-encryption.org/v1
 *     -> X25519 <share>
 *     <body, base64 wrapped at 64 columns, ending with a line shorter than 64>
 *     --- <base64 HMAC>
 *
 * Parsing is strict (c2sp.org/age): canonical unpadded base64, full body lines
 * of exactly 64 columns and a final short (possibly empty) one, arguments of
 * visible ASCII separated by single spaces, LF only. Anything else is
 * rejected, because a header that can be re-encoded differently is a header
 * an attacker can tweak without touching the MAC input we compute.
 */

import { createHmac, timingSafeEqual } from "node:crypto";
import { headerError } from "./errors.js";
import { hkdf } from "./primitives.js";

export interface Stanza {
  /** The first argument of the `->` line, e.g. `X25519` or `scrypt`. */
  type: string;
  /** The remaining arguments. */
  args: string[];
  body: Uint8Array;
}

export interface ParsedHeader {
  stanzas: Stanza[];
  /** The 32-byte MAC from the `---` line. */
  mac: Buffer;
  /** The header bytes the MAC covers: up to and including `---`. */
  macInput: Buffer;
  /** Header length in bytes, including the MAC line's LF: the payload starts here. */
  length: number;
}

export const INTRO = "age-encryption.org/v1\n";
const VERSION_PREFIX = "age-encryption.org/";
const COLUMNS = 64;
const MAC_SIZE = 32;
/** "--- " + 43 base64 characters + LF. */
export const MAC_LINE_LENGTH = 4 + 43 + 1;

const B64_ALPHABET = /^[A-Za-z0-9+/]*$/;

/** Unpadded standard base64, as age writes it everywhere in the header. */
export function b64encode(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("base64").replace(/=+$/, "");
}

/**
 * Strict unpadded base64: rejects padding, whitespace, and non-canonical
 * encodings (leftover bits set, impossible lengths). Node's decoder is lenient
 * about all of these, so re-encoding and comparing is the check.
 */
export function b64decode(s: string): Buffer | undefined {
  if (!B64_ALPHABET.test(s)) return undefined;
  const b = Buffer.from(s, "base64");
  return b64encode(b) === s ? b : undefined;
}

function isArgument(s: string): boolean {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 33 || c > 126) return false;
  }
  return true;
}

/**
 * Parse a header from the start of `buf`. Bytes after the MAC line (the
 * payload) are ignored. Throws AgeError("header") on any deviation.
 */
export function parseHeader(buf: Uint8Array): ParsedHeader {
  const bytes = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  let pos = 0;
  const readLine = (): string => {
    const nl = bytes.indexOf(0x0a, pos);
    if (nl < 0) throw headerError("the header is incomplete");
    const line = bytes.toString("latin1", pos, nl);
    pos = nl + 1;
    return line;
  };

  const intro = readLine();
  if (`${intro}\n` !== INTRO) {
    throw headerError(
      intro.startsWith(VERSION_PREFIX) ? "unsupported age format version" : "this is not an age encrypted file",
    );
  }

  const stanzas: Stanza[] = [];
  for (;;) {
    const lineStart = pos;
    const line = readLine();
    if (line.startsWith("---")) {
      if (stanzas.length === 0) throw headerError("no recipient stanzas");
      if (!line.startsWith("--- ") || line.length !== MAC_LINE_LENGTH - 1) throw headerError("malformed MAC line");
      const mac = b64decode(line.slice(4));
      if (mac === undefined || mac.length !== MAC_SIZE) throw headerError("malformed MAC line");
      return { stanzas, mac, macInput: bytes.subarray(0, lineStart + 3), length: pos };
    }
    if (!line.startsWith("-> ")) throw headerError("unexpected line (expected a stanza or the MAC line)");
    const args = line.slice(3).split(" ");
    if (!args.every(isArgument)) throw headerError("malformed stanza arguments");
    const type = args.shift() as string;

    let text = "";
    for (;;) {
      const body = readLine();
      if (body.length > COLUMNS || !B64_ALPHABET.test(body)) {
        throw headerError("malformed stanza body (every stanza must end with a line shorter than 64 columns)");
      }
      text += body;
      if (body.length < COLUMNS) break;
    }
    const body = b64decode(text);
    if (body === undefined) throw headerError("stanza body is not canonical base64");
    stanzas.push({ type, args, body });
  }
}

/**
 * Where the header ends in a buffer that holds its start, or -1 if more bytes
 * are needed. The MAC line is the first line that starts with `---` (stanza
 * lines start with `->`, body lines are base64), and it has a fixed length,
 * so a bounded look at what follows decides without scanning the payload.
 * A malformed header may get an "end" here; parseHeader then rejects it.
 * `scanned` is the buffer length at a previous call that returned -1; only
 * the tail that could still hold the marker is searched again.
 */
export function findHeaderEnd(buf: Buffer, scanned = 0): number {
  const i = buf.indexOf("\n---", Math.max(0, scanned - MAC_LINE_LENGTH - 4), "latin1");
  if (i < 0) return -1;
  const nl = buf.indexOf(0x0a, i + 1);
  if (nl >= 0 && nl <= i + MAC_LINE_LENGTH) return nl + 1;
  return buf.length >= i + 1 + MAC_LINE_LENGTH ? i + 1 + MAC_LINE_LENGTH : -1;
}

function encodeStanza(s: Stanza): string {
  const args = [s.type, ...s.args];
  if (!args.every(isArgument)) throw new Error("age: stanza arguments must be non-empty visible ASCII");
  const b64 = b64encode(s.body);
  let out = `-> ${args.join(" ")}\n`;
  // Full 64-column lines, then a final short line, empty when the body fills
  // its last line exactly: that is what tells a reader the stanza ended.
  let i = 0;
  for (; i + COLUMNS <= b64.length; i += COLUMNS) out += `${b64.slice(i, i + COLUMNS)}\n`;
  out += `${b64.slice(i)}\n`;
  return out;
}

/** The header up to and including `---`: the MAC input. */
export function encodeHeaderWithoutMac(stanzas: Stanza[]): Buffer {
  return Buffer.from(`${INTRO}${stanzas.map(encodeStanza).join("")}---`, "latin1");
}

export function encodeHeader(stanzas: Stanza[], mac: Uint8Array): Buffer {
  const head = encodeHeaderWithoutMac(stanzas);
  return Buffer.concat([head, Buffer.from(` ${b64encode(mac)}\n`, "latin1")]);
}

/** HMAC-SHA-256 keyed with HKDF(file key, salt = empty, info = "header"). */
export function headerMac(fileKey: Uint8Array, macInput: Uint8Array): Buffer {
  const key = hkdf(fileKey, Buffer.alloc(0), "header");
  const mac = createHmac("sha256", key).update(macInput).digest();
  key.fill(0);
  return mac;
}

export function verifyHeaderMac(fileKey: Uint8Array, header: ParsedHeader): boolean {
  return timingSafeEqual(headerMac(fileKey, header.macInput), header.mac);
}
