/**
 * ASCII armor: strict PEM (RFC 7468 section 3, "strict") with the label
 * "AGE ENCRYPTED FILE", padded base64 in 64-column lines.
 *
 * Armor is malleable unless the reader is strict, so the decoder accepts only
 * what a conforming writer produces, plus the two tolerances the age spec and
 * the reference implementation allow: LF or CRLF line endings, and up to
 * 1 KiB of whitespace before and after the block. Every body line is exactly
 * 64 columns except the last, which is shorter and must be followed by the END
 * line; base64 must be canonical.
 *
 * The decoder is incremental so the streaming decryptor can use it on input of
 * any size without buffering the whole file.
 */

import { armorError } from "./errors.js";

export const ARMOR_BEGIN = "-----BEGIN AGE ENCRYPTED FILE-----";
export const ARMOR_END = "-----END AGE ENCRYPTED FILE-----";
const COLUMNS = 64;
const BYTES_PER_LINE = 48;
const MAX_WHITESPACE = 1024;
const MAX_PARTIAL_LINE = MAX_WHITESPACE + 2;
const PADDED_B64 = /^[A-Za-z0-9+/]*={0,2}$/;
const WHITESPACE = /^[ \t\n\v\f\r]*$/;

type State = "begin" | "body" | "end" | "after";

export class ArmorDecoder {
  #state: State = "begin";
  #partial = "";
  #whitespace = 0;

  /** Feed armored bytes; returns the binary bytes decoded so far. */
  write(data: Uint8Array): Buffer[] {
    const out: Buffer[] = [];
    const text = Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString("latin1");
    let pos = 0;
    while (pos < text.length) {
      if (this.#state === "after") {
        this.#trailing(text.slice(pos));
        break;
      }
      const nl = text.indexOf("\n", pos);
      if (nl < 0) {
        this.#partial += text.slice(pos);
        if (this.#partial.length > MAX_PARTIAL_LINE) throw armorError("line too long");
        break;
      }
      const line = this.#partial + text.slice(pos, nl);
      this.#partial = "";
      pos = nl + 1;
      this.#line(line, out);
    }
    return out;
  }

  /** Signal end of input; throws unless a complete armor block was read. */
  end(): Buffer[] {
    const out: Buffer[] = [];
    if (this.#state !== "after" && this.#partial !== "") {
      const line = this.#partial;
      this.#partial = "";
      this.#line(line, out, false);
    }
    if (this.#state === "begin") throw armorError(`missing ${ARMOR_BEGIN} line`);
    if (this.#state !== "after") throw armorError(`missing ${ARMOR_END} line`);
    return out;
  }

  #trailing(text: string): void {
    if (!WHITESPACE.test(text)) throw armorError("unexpected data after the END line");
    this.#whitespace += text.length;
    if (this.#whitespace > MAX_WHITESPACE) throw armorError("too much trailing whitespace");
  }

  #line(raw: string, out: Buffer[], terminated = true): void {
    const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
    switch (this.#state) {
      case "begin":
        if (WHITESPACE.test(line)) {
          this.#whitespace += raw.length + (terminated ? 1 : 0);
          if (this.#whitespace > MAX_WHITESPACE) throw armorError("too much leading whitespace");
          return;
        }
        if (line !== ARMOR_BEGIN) throw armorError(`the first line is not ${ARMOR_BEGIN}`);
        this.#state = "body";
        this.#whitespace = 0;
        return;
      case "body": {
        if (line === ARMOR_END) {
          this.#state = "after";
          return;
        }
        if (line.length === 0) throw armorError("empty line");
        if (line.length > COLUMNS) throw armorError("line longer than 64 columns");
        if (line.length % 4 !== 0 || !PADDED_B64.test(line)) throw armorError("invalid base64");
        const bytes = Buffer.from(line, "base64");
        if (bytes.toString("base64") !== line) throw armorError("non-canonical base64");
        out.push(bytes);
        if (bytes.length < BYTES_PER_LINE) this.#state = "end";
        return;
      }
      case "end":
        if (line !== ARMOR_END) throw armorError(`expected ${ARMOR_END} after the last (short) line`);
        this.#state = "after";
        return;
      case "after":
        this.#trailing(raw);
        return;
    }
  }
}

/** Decode a whole armored file. */
export function dearmor(input: Uint8Array | string): Buffer {
  const d = new ArmorDecoder();
  const bytes = typeof input === "string" ? Buffer.from(input, "latin1") : input;
  return Buffer.concat([...d.write(bytes), ...d.end()]);
}

/** Armor a binary age file (LF line endings). */
export function armor(data: Uint8Array): string {
  const b64 = Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString("base64");
  let out = `${ARMOR_BEGIN}\n`;
  for (let i = 0; i < b64.length; i += COLUMNS) out += `${b64.slice(i, i + COLUMNS)}\n`;
  return `${out}${ARMOR_END}\n`;
}

/**
 * Whether input looks armored: after optional whitespace, it starts with a
 * dash. A binary age file always starts with "age-encryption.org/", so this
 * never misroutes a valid binary file, and it sends malformed armor to the
 * armor decoder, which gives the better error.
 */
export function looksArmored(prefix: Uint8Array): boolean | undefined {
  for (const c of prefix) {
    if (c === 0x20 || (c >= 0x09 && c <= 0x0d)) continue;
    return c === 0x2d;
  }
  return undefined;
}
