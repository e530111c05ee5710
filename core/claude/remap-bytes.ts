import { isUtf8 } from "node:buffer";
import type { TextForm } from "./remap.js";

/**
 * The fast path of `Remapper.line` (remap.ts): the same rewrite of every line,
 * done on the UTF-8 bytes of many lines at once. Restoring rewrites every
 * transcript line (each holds `cwd`), and decoding, splitting, matching,
 * JSON-parsing and re-encoding line by line ran at ~35 MB/s; this runs the
 * native `Buffer#indexOf` for each needle over the chunk, checks the few
 * characters around a hit, and copies the bytes in between untouched.
 *
 * Same result as `line` on each line, byte for byte (test/fuzz/remap-bytes.test.ts
 * checks it against the line-by-line implementation):
 * - Needles are valid UTF-8 that starts on a character (ASCII or lead byte), so
 *   in valid UTF-8 text a byte hit is a character hit; text that is not valid
 *   UTF-8 goes the decoding way, as before (its bad bytes come out as U+FFFD).
 * - A match never spans a line end (needles and the rest of a Windows path hold
 *   no newline), and a newline before or after a match reads like the start or
 *   end of the line did (not a name character), so one pass over many lines
 *   finds what a pass per line finds.
 * - The characters checked around a hit (name character before and after, the
 *   escape before, the rest of a Windows path) are decoded where they are not
 *   ASCII, with the regexes of remap.ts, so the rules are the same.
 *
 * The JSON parse check of `line` ("a rewrite never breaks a line that parsed")
 * runs only for a line with a risky match, through `line` itself. Why the
 * others cannot break: a needle that starts with `/`, `\`, `file:` or a drive
 * letter and colon cannot start outside a JSON string (none of those occurs
 * there in valid JSON). Inside a string, a match that passed `startsPath` and
 * does not follow a backslash starts on an escape boundary: `/`, `\` or a
 * letter after a non-backslash is its own character or starts an escape, and
 * a letter inside `\uXXXX` follows `u` or a hex digit, a name character whose
 * escape check (`\b`, `\f`… or a colour code) needs a backslash or `[` that a
 * `\uXXXX` does not have there. The needle is JSON-escaped text, so from that
 * boundary it covers whole escapes and no closing quote; the rest of a Windows
 * path is `\\` escapes and characters other than `\` and `"`. The replacement
 * is JSON-escaped text too (and `\\` → `/` keeps it so). Replacing whole
 * escapes inside a string by whole escapes leaves valid JSON valid. Needles that
 * start otherwise (a `--map` of a relative path) and matches right after a
 * backslash (`\/home/…` is an escaped `/`) are the risky ones.
 */

export interface ByteVariant {
  needle: Buffer;
  replacement: Buffer;
  /** Convert the separators of the rest of the path to `/` (Windows source onto POSIX). */
  toPosix: boolean;
  /** JSON form: the needle cannot start outside a string (see above). */
  startsInString: boolean;
}

export interface ByteRewriterOptions {
  /** In the order the line regex tries them: longest first. */
  variants: ByteVariant[];
  form: TextForm;
  nameChar: RegExp;
  escapeBefore: RegExp;
  windowsNameChar: RegExp;
  /** The line rewrite, used for lines with a risky match and for the valid lines of text that is not all UTF-8. */
  line: (text: string) => string;
}

const asciiTables = new WeakMap<RegExp, Uint8Array>();
/** The largest output buffer a rewriter keeps between calls. */
const MAX_SCRATCH = 16 << 20;
const NEWLINE = 0x0a;
const BACKSLASH = 0x5c;
const DOT = 0x2e;
const SPACE = 0x20;
const SLASH = 0x2f;
const OPEN_BRACKET = 0x5b;
const SEMICOLON = 0x3b;
const ASCII_LETTER = asciiTable(/[A-Za-z]/);
const JSON_ESCAPE_LETTER = asciiTable(/[bfnrt]/);

/** Whether a needle cannot start outside a JSON string: `/`, `\`, `file:`, a drive letter and colon. */
export function startsInJsonString(needle: string): boolean {
  return /^(?:[/\\]|[A-Za-z]:|file:)/.test(needle);
}

/** Whether the byte fast path finds what the line regex finds for these needles (see above). */
export function bytesCanMatch(needle: string): boolean {
  return !needle.includes("\n") && Buffer.from(needle).toString() === needle;
}

/**
 * Text with bytes that are not UTF-8 (binary output pasted into a line), rewritten line by line:
 * a line that is valid UTF-8 through `line`, any other line kept byte for byte (decoding it would
 * turn each bad byte into U+FFFD, in lines with no path too; a path in such a line stays as it
 * was). What follows the last newline goes through `line` only if it is not empty. Returns
 * `bytes` itself when no line changes.
 */
export function rewriteUtf8Lines(bytes: Buffer, line: (text: string) => string): Buffer {
  const parts: Buffer[] = [];
  let changed = false;
  for (let start = 0; start < bytes.length; ) {
    const newline = bytes.indexOf(NEWLINE, start);
    const end = newline < 0 ? bytes.length : newline;
    const piece = bytes.subarray(start, end);
    let out = piece;
    if (isUtf8(piece)) {
      const text = piece.toString();
      const rewritten = line(text);
      if (rewritten !== text) {
        out = Buffer.from(rewritten);
        changed = true;
      }
    }
    parts.push(out);
    if (newline >= 0) parts.push(NEWLINE_BYTE);
    start = end + 1;
  }
  return changed ? Buffer.concat(parts) : bytes;
}

const NEWLINE_BYTE = Buffer.from("\n");

export function createByteRewriter(options: ByteRewriterOptions): (bytes: Buffer) => Buffer {
  const { variants, form, nameChar, escapeBefore, windowsNameChar, line } = options;
  const json = form === "json";
  const separatorLength = json ? 2 : 1;
  const asciiName = asciiTable(nameChar);
  const asciiWindowsName = asciiTable(windowsNameChar);
  const needles = variants.map((variant) => variant.needle);
  const replacements = variants.map((variant) => Uint8Array.from(variant.replacement));
  // One search per needle that no shorter needle starts: a project path is found through its home
  // directory (hits of the longer needle are checked byte by byte), halving the native searches.
  const keyOf = needles.map((needle) => {
    let key = -1;
    needles.forEach((other, j) => {
      if (other.length <= needle.length && needle.subarray(0, other.length).equals(other)) {
        if (key < 0 || other.length < needles[key]!.length) key = j;
      }
    });
    return key;
  });
  const keys = [...new Set(keyOf)];
  const slotOf = keyOf.map((key) => keys.indexOf(key));
  const keyLength = keyOf.map((key) => needles[key]!.length);

  let scratch: ByteSink | undefined;
  return (bytes: Buffer): Buffer => {
    if (!isUtf8(bytes)) return rewriteUtf8Lines(bytes, line);
    const end = bytes.length;
    // Copies from a plain Uint8Array view: Buffer#copy and Buffer#subarray cost ~2× per call.
    const raw = new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length);
    const charAt = (at: number) => bytes.toString("utf8", at, Math.min(end, at + utf8Length(bytes[at]!)));
    const isName = (at: number): boolean => {
      if (at >= end) return false;
      const byte = bytes[at]!;
      return byte < 0x80 ? asciiName[byte] === 1 : nameChar.test(charAt(at));
    };
    const isWindowsName = (at: number): boolean => {
      if (at >= end) return false;
      const byte = bytes[at]!;
      return byte < 0x80 ? asciiWindowsName[byte] === 1 : windowsNameChar.test(charAt(at));
    };
    const isSeparator = (at: number) =>
      bytes[at] === BACKSLASH && (separatorLength === 1 || bytes[at + 1] === BACKSLASH);
    const skipWindowsName = (at: number): number => {
      while (isWindowsName(at)) at += utf8Length(bytes[at]!);
      return at;
    };
    /** `(?!NAME|\.NAME)` after a needle. */
    const nameFollows = (at: number) => isName(at) || (bytes[at] === DOT && isName(at + 1));
    /** `startsPath` of remap.ts. */
    const startsPath = (at: number): boolean => {
      if (at === 0) return true;
      const byte = bytes[at - 1]!;
      if (byte === DOT) return false;
      let name: boolean;
      if (byte < 0x80) name = asciiName[byte] === 1;
      else {
        let lead = at - 1;
        while (lead > 0 && lead > at - 4 && (bytes[lead]! & 0xc0) === 0x80) lead--;
        // `line` looks at one UTF-16 unit: of a character beyond U+FFFF, a lone surrogate, never a name.
        name = bytes[lead]! < 0xf0 && nameChar.test(bytes.toString("utf8", lead, at));
      }
      if (!name || !mayEndEscape(at)) return !name;
      // The escape and colour-code patterns end in ASCII; 32 bytes hold what 32 characters hold of them.
      const window = Math.max(0, at - 32);
      if (json && bytes[at - 2] === BACKSLASH) {
        // `\n/home…` (a newline in tool output), most of the hits in a transcript: the pattern's
        // first branch, without the regex. An odd run of backslashes (to the window start) escapes it.
        let run = 1;
        while (at - 2 - run >= window && bytes[at - 2 - run] === BACKSLASH) run++;
        return run % 2 === 1;
      }
      return escapeBefore.test(bytes.toString("latin1", window, at));
    };
    /** What `escapeBefore` needs to end at `at`: `\` and one of `bfnrt` (JSON), or a colour code's `[`, digit or `;` and a letter. */
    const mayEndEscape = (at: number): boolean => {
      const last = bytes[at - 1]!;
      const before = at >= 2 ? bytes[at - 2]! : -1;
      if (json && before === BACKSLASH && JSON_ESCAPE_LETTER[last] === 1) return true;
      return (
        ASCII_LETTER[last] === 1 &&
        (before === OPEN_BRACKET || before === SEMICOLON || (before >= 0x30 && before <= 0x39))
      );
    };
    /** End of `((?:(?:SEP COMPONENT)*SEP(?=NAME))?)`: up to the separator before the last component. */
    const restEnd = (at: number): number => {
      let lastSeparator = -1;
      for (let pos = at; isSeparator(pos); ) {
        const start = pos + separatorLength;
        if (!isWindowsName(start)) break;
        let next = skipWindowsName(start);
        while (bytes[next] === SPACE && isWindowsName(next + 1)) next = skipWindowsName(next + 1);
        lastSeparator = pos;
        pos = next;
      }
      return lastSeparator < 0 ? at : lastSeparator + separatorLength;
    };

    // Next hit of each key needle at or after `from`; -1 once it has none left.
    const next = new Array<number>(keys.length).fill(-2);
    const occursAt = (i: number, at: number): boolean => {
      if (next[slotOf[i]!] !== at) return false;
      const needle = needles[i]!;
      for (let k = keyLength[i]!; k < needle.length; k++) if (bytes[at + k] !== needle[k]) return false;
      return true;
    };
    let out: ByteSink | undefined;
    let from = 0;
    let copied = 0;
    // The line of the last match, and where it starts in `out`, to redo it through `line` if needed.
    let lineStart = 0;
    let lineEnd = -1;
    let lineOut = 0;
    for (;;) {
      let at = -1;
      for (let slot = 0; slot < keys.length; slot++) {
        let hit = next[slot]!;
        if (hit !== -1 && hit < from) next[slot] = hit = bytes.indexOf(needles[keys[slot]!]!, from);
        if (hit >= 0 && (at < 0 || hit < at)) at = hit;
      }
      if (at < 0) break;
      let chosen = -1;
      for (let i = 0; i < needles.length; i++) {
        if (occursAt(i, at) && !nameFollows(at + needles[i]!.length)) {
          chosen = i;
          break;
        }
      }
      const variant = variants[chosen];
      if (!variant || !startsPath(at)) {
        from = at + 1;
        continue;
      }
      const needleEnd = at + variant.needle.length;
      const pathEnd = restEnd(needleEnd);
      if (!out) {
        out = scratch ?? new ByteSink(end + (end >> 3) + 1024);
        out.length = 0;
      }
      if (json) {
        if (at >= lineEnd) {
          lineStart = at === 0 ? 0 : bytes.lastIndexOf(NEWLINE, at - 1) + 1;
          lineEnd = bytes.indexOf(NEWLINE, pathEnd);
          if (lineEnd < 0) lineEnd = end;
          out.append(raw, copied, lineStart);
          copied = lineStart;
          lineOut = out.length;
        }
        if (!variant.startsInString || bytes[at - 1] === BACKSLASH) {
          // Risky: redo the whole line the checked way.
          out.length = lineOut;
          out.append(Buffer.from(line(bytes.toString("utf8", lineStart, lineEnd))));
          copied = from = lineEnd;
          continue;
        }
      }
      out.append(raw, copied, at);
      out.append(replacements[chosen]!);
      if (variant.toPosix) {
        for (let pos = needleEnd; pos < pathEnd; ) {
          if (isSeparator(pos)) {
            out.appendByte(SLASH);
            pos += separatorLength;
          } else out.appendByte(bytes[pos++]!);
        }
      } else out.append(raw, needleEnd, pathEnd);
      copied = from = pathEnd;
    }
    if (!out) return bytes;
    out.append(raw, copied, end);
    // Kept for the next call (fresh memory costs a page fault per 4 KiB), unless it grew large.
    scratch = out.capacity <= MAX_SCRATCH ? out : undefined;
    return out.bytes();
  };
}

/** A growable output buffer. */
class ByteSink {
  private buffer: Uint8Array;
  length = 0;

  constructor(capacity: number) {
    this.buffer = uninitialized(capacity);
  }

  append(source: Uint8Array, start = 0, end = source.length): void {
    const count = end - start;
    if (count <= 0) return;
    this.reserve(count);
    if (count < 48) {
      // Short pieces (a `"` between two paths): a loop beats the call overhead of a copy.
      for (let i = 0; i < count; i++) this.buffer[this.length + i] = source[start + i]!;
    } else this.buffer.set(source.subarray(start, end), this.length);
    this.length += count;
  }

  appendByte(byte: number): void {
    this.reserve(1);
    this.buffer[this.length++] = byte;
  }

  get capacity(): number {
    return this.buffer.length;
  }

  bytes(): Buffer {
    return Buffer.from(this.buffer.buffer, this.buffer.byteOffset, this.length);
  }

  private reserve(count: number): void {
    if (this.length + count <= this.buffer.length) return;
    const grown = uninitialized(Math.max(this.buffer.length * 2, this.length + count));
    grown.set(this.buffer.subarray(0, this.length));
    this.buffer = grown;
  }
}

function uninitialized(size: number): Uint8Array {
  const buffer = Buffer.allocUnsafe(size);
  return new Uint8Array(buffer.buffer, buffer.byteOffset, size);
}

/** 1 for each ASCII character the (one-character) pattern matches; made once per pattern (a restore makes a rewriter per session). */
function asciiTable(pattern: RegExp): Uint8Array {
  let table = asciiTables.get(pattern);
  if (table) return table;
  table = new Uint8Array(128);
  for (let code = 0; code < 128; code++) table[code] = pattern.test(String.fromCharCode(code)) ? 1 : 0;
  asciiTables.set(pattern, table);
  return table;
}

/** Bytes of the UTF-8 character that starts with `lead` (valid UTF-8). */
function utf8Length(lead: number): number {
  return lead < 0x80 ? 1 : lead < 0xe0 ? 2 : lead < 0xf0 ? 3 : 4;
}
