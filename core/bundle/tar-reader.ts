import { createHash, type Hash } from "node:crypto";
import { BLOCK, paddingSize } from "./tar-header.js";

/**
 * A synchronous tar reader: fed the tar bytes in pieces of any size, it turns
 * them into entry events, and hashes each regular file's data as it goes by.
 *
 * Written here rather than taken from tar-stream because its extract (streamx,
 * a stream per entry, an async iterator hop per chunk) cost a pull ~40 ms of
 * main thread on a 50 MB session, and because a synchronous reader can run on
 * the decompression thread (threaded-reader.ts), which then does the
 * hashing too. It reads ustar, pax (`path`, `size`) and GNU long names, which
 * covers what ccbundle (tar-header.ts), tar-stream and GNU tar write.
 * It decides nothing about what an entry may be: unpack.ts does, from the
 * events. What it refuses is tar that cannot be read: a bad header checksum,
 * a size that is not a number, a malformed pax record, data cut short, or
 * anything but zeros after the end of the archive.
 */

/** What an entry is; unpack.ts accepts only "file". */
export type TarEntryType =
  | "file"
  | "link"
  | "symlink"
  | "character-device"
  | "block-device"
  | "directory"
  | "fifo"
  | "contiguous-file"
  | "unknown";

export type TarEvent =
  | { type: "entry"; name: string; size: number; entryType: TarEntryType }
  /** A piece of the current entry's data: a view of the bytes pushed (no copy). */
  | { type: "data"; bytes: Buffer }
  /** The current entry's data is complete; `sha256` (hex) of its bytes for a regular file. */
  | { type: "end"; sha256: string | undefined };

/** The events read from some tar bytes, and how many bytes those were (for decompression limits). */
export interface TarBatch {
  events: TarEvent[];
  bytes: number;
  /**
   * Call once every event was handled and none of the batch's data is kept (copy what must
   * outlive it): the memory goes back to the reader thread for its next output, and the views
   * here become empty. Batches read in-process have none.
   */
  release?: () => void;
}

/** Read a tar stream in-process: one batch per chunk. */
export async function* readTar(tar: AsyncIterable<Buffer>): AsyncGenerator<TarBatch> {
  const reader = new TarReader();
  for await (const chunk of tar) {
    const events: TarEvent[] = [];
    reader.push(chunk, events);
    yield { events, bytes: chunk.length };
  }
  reader.end();
}

/** Extended headers (pax, GNU long names) larger than this are not names and sizes. */
const MAX_META_BYTES = 1 << 20;

const TYPES: Record<string, TarEntryType> = {
  "0": "file",
  "\0": "file",
  "1": "link",
  "2": "symlink",
  "3": "character-device",
  "4": "block-device",
  "5": "directory",
  "6": "fifo",
  "7": "contiguous-file",
};

export class TarReadError extends Error {}

type State =
  | { at: "header" }
  /** Data of a regular entry: `left` bytes to hand on, then `padding`. */
  | { at: "data"; left: number; padding: number; hash: Hash | undefined }
  /** Data of a pax or GNU long-name header, gathered whole. */
  | { at: "meta"; kind: "x" | "g" | "L"; left: number; padding: number; parts: Buffer[] }
  | { at: "padding"; left: number }
  | { at: "ended" };

export class TarReader {
  #state: State = { at: "header" };
  /** Bytes of a header block split across pushes. */
  #partial: Buffer | undefined;
  /** What the next entry's pax header or GNU long-name entry said. */
  #next: { path?: string; size?: number } = {};

  /** Read `chunk`, appending what it held to `out`. Data events are views of `chunk`. */
  push(chunk: Buffer, out: TarEvent[]): void {
    let at = 0;
    while (at < chunk.length) {
      const state = this.#state;
      switch (state.at) {
        case "header": {
          let block: Buffer;
          if (this.#partial || chunk.length - at < BLOCK) {
            const have = this.#partial?.length ?? 0;
            const take = Math.min(BLOCK - have, chunk.length - at);
            this.#partial = this.#partial
              ? Buffer.concat([this.#partial, chunk.subarray(at, at + take)])
              : Buffer.from(chunk.subarray(at, at + take));
            at += take;
            if (this.#partial.length < BLOCK) return;
            block = this.#partial;
            this.#partial = undefined;
          } else {
            block = chunk.subarray(at, at + BLOCK);
            at += BLOCK;
          }
          this.#header(block, out);
          break;
        }
        case "data": {
          const take = Math.min(state.left, chunk.length - at);
          if (take > 0) {
            const bytes = chunk.subarray(at, at + take);
            state.hash?.update(bytes);
            out.push({ type: "data", bytes });
            state.left -= take;
            at += take;
          }
          if (state.left === 0) {
            out.push({ type: "end", sha256: state.hash?.digest("hex") });
            this.#skip(state.padding);
          }
          break;
        }
        case "meta": {
          const take = Math.min(state.left, chunk.length - at);
          state.parts.push(Buffer.from(chunk.subarray(at, at + take)));
          state.left -= take;
          at += take;
          if (state.left === 0) {
            this.#meta(state.kind, Buffer.concat(state.parts));
            this.#skip(state.padding);
          }
          break;
        }
        case "padding": {
          const take = Math.min(state.left, chunk.length - at);
          state.left -= take;
          at += take;
          if (state.left === 0) this.#state = { at: "header" };
          break;
        }
        case "ended": {
          // GNU tar pads archives to whole records with zeros; anything else is not ours to ignore.
          for (; at < chunk.length; at++) {
            if (chunk[at] !== 0) throw new TarReadError("data after the end of the archive");
          }
          break;
        }
      }
    }
  }

  /** Past an entry's data: its padding, then the next header. */
  #skip(padding: number): void {
    this.#state = padding > 0 ? { at: "padding", left: padding } : { at: "header" };
  }

  /** The tar bytes are all in: refuse an archive cut short. */
  end(): void {
    const state = this.#state.at;
    if (this.#partial || state === "data" || state === "meta" || state === "padding") {
      throw new TarReadError("unexpected end of data");
    }
  }

  #header(block: Buffer, out: TarEvent[]): void {
    if (isZeros(block)) {
      // One zero block ends the entries; whatever follows must be zeros too (see "ended").
      this.#state = { at: "ended" };
      return;
    }
    if (!checksumMatches(block)) throw new TarReadError("invalid tar header (bad checksum)");
    const flag = String.fromCharCode(block[156]!);
    const ownSize = readNumber(block, 124, 12);
    if (flag === "x" || flag === "g" || flag === "L") {
      if (ownSize > MAX_META_BYTES) throw new TarReadError("extended header too large");
      if (ownSize === 0) this.#meta(flag, Buffer.alloc(0));
      else this.#state = { at: "meta", kind: flag, left: ownSize, padding: paddingSize(ownSize), parts: [] };
      return;
    }
    if (flag === "K") throw new TarReadError("GNU long link names are not supported");
    const entryType = TYPES[flag] ?? "unknown";
    const name = this.#next.path ?? headerName(block);
    const size = this.#next.size ?? ownSize;
    this.#next = {};
    out.push({ type: "entry", name, size, entryType });
    // Only regular files carry data we hand on; a link's or a device's size field is ignored.
    const hasData = entryType === "file" || entryType === "contiguous-file" || entryType === "unknown";
    const dataSize = hasData ? size : 0;
    const hash = entryType === "file" ? createHash("sha256") : undefined;
    if (dataSize === 0) {
      out.push({ type: "end", sha256: hash?.digest("hex") });
      this.#skip(0);
    } else this.#state = { at: "data", left: dataSize, padding: paddingSize(dataSize), hash };
  }

  #meta(kind: "x" | "g" | "L", body: Buffer): void {
    if (kind === "L") {
      const end = body.indexOf(0);
      this.#next.path = body.toString("utf8", 0, end < 0 ? body.length : end);
      return;
    }
    const records = parsePax(body);
    // A global header applies to every later entry; ccbundle never writes one, so only its form is checked.
    if (kind === "g") return;
    const path = records.get("path");
    if (path !== undefined) this.#next.path = path;
    const size = records.get("size");
    if (size !== undefined) {
      if (!/^[0-9]{1,16}$/.test(size) || !Number.isSafeInteger(Number(size))) {
        throw new TarReadError("invalid pax size");
      }
      this.#next.size = Number(size);
    }
  }
}

/** "<length> <key>=<value>\n" records, the length counting the whole record. */
function parsePax(body: Buffer): Map<string, string> {
  const records = new Map<string, string>();
  let at = 0;
  while (at < body.length) {
    // Some writers pad the body with NULs.
    if (body[at] === 0) break;
    const space = body.indexOf(0x20, at);
    const length = space > at && space - at <= 8 ? Number(body.toString("latin1", at, space)) : Number.NaN;
    if (!Number.isSafeInteger(length) || length <= space - at + 1 || at + length > body.length) {
      throw new TarReadError("invalid pax record");
    }
    const record = body.toString("utf8", space + 1, at + length);
    const equals = record.indexOf("=");
    if (equals <= 0 || !record.endsWith("\n")) throw new TarReadError("invalid pax record");
    records.set(record.slice(0, equals), record.slice(equals + 1, -1));
    at += length;
  }
  return records;
}

function headerName(block: Buffer): string {
  const name = field(block, 0, 100);
  // ustar (and GNU's "ustar  ") keep the leading part of a long name in the prefix field.
  const ustar = block.toString("latin1", 257, 262) === "ustar";
  const prefix = ustar && block[345] !== 0 ? field(block, 345, 155) : "";
  return prefix ? `${prefix}/${name}` : name;
}

/** A NUL-terminated UTF-8 string in a field. */
function field(block: Buffer, offset: number, width: number): string {
  const end = block.indexOf(0, offset);
  return block.toString("utf8", offset, end < 0 || end > offset + width ? offset + width : end);
}

/** An octal number field, or GNU's base-256 form (high bit set) for large values. */
function readNumber(block: Buffer, offset: number, width: number): number {
  if (block[offset]! & 0x80) {
    if (block[offset] !== 0x80) throw new TarReadError("invalid tar header (negative size)");
    let value = 0;
    for (let i = offset + 1; i < offset + width; i++) value = value * 256 + block[i]!;
    if (!Number.isSafeInteger(value)) throw new TarReadError("invalid tar header (size too large)");
    return value;
  }
  const text = octalText(block, offset, width);
  if (text === "") return 0;
  if (!/^[0-7]+$/.test(text)) throw new TarReadError("invalid tar header (size is not a number)");
  return Number.parseInt(text, 8);
}

/** An octal field's digits, without the spaces and NULs writers put around them. */
function octalText(block: Buffer, offset: number, width: number): string {
  return block
    .toString("latin1", offset, offset + width)
    .replace(/[\0 ]+$/, "")
    .replace(/^ +/, "");
}

/** The checksum field holds the sum of the header's bytes, counting itself as eight spaces (signed, for old tars). */
function checksumMatches(block: Buffer): boolean {
  const stored = octalText(block, 148, 8);
  if (!/^[0-7]{1,7}$/.test(stored)) return false;
  const expected = Number.parseInt(stored, 8);
  let unsigned = 8 * 0x20;
  let signed = 8 * 0x20;
  for (let i = 0; i < BLOCK; i++) {
    if (i >= 148 && i < 156) continue;
    const byte = block[i]!;
    unsigned += byte;
    signed += byte > 127 ? byte - 256 : byte;
  }
  return expected === unsigned || expected === signed;
}

function isZeros(block: Buffer): boolean {
  for (let i = 0; i < BLOCK; i++) if (block[i] !== 0) return false;
  return true;
}
