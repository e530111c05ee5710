import { createRequire } from "node:module";
import type * as Fzstd from "fzstd";
import { OutputChunks } from "./output-chunks.js";

/**
 * zstd decoding in plain JavaScript (fzstd), for a machine where the zstd-napi addon did not
 * build. Such a machine writes gzip bundles (codec.ts), but it must still open the zstd bundles
 * everyone else sends it and the backups its other machines wrote: without this, a teammate
 * whose install had no C compiler could pull nothing.
 *
 * It is a fallback, not the fast path: ~85 MB/s on the bench corpus against ~750 MB/s for the
 * addon (2026-11-22, this machine), on the calling thread. fzstd does not check zstd's optional
 * content checksum; nothing relies on it: age authenticates every chunk of the ciphertext and
 * each file is checked against the sha256 its signed manifest records.
 *
 * FrameWalker reads the frame and block headers ahead of fzstd, so that a frame asking for a
 * window larger than the addon would accept is refused before fzstd allocates it.
 */

/** The largest window a frame may ask for: 128 MiB, libzstd's own default limit for decoding. */
export const MAX_WINDOW = 2 ** 27;

/** fzstd, loaded on first use: only a machine without the addon ever needs it. */
let fzstd: typeof Fzstd | undefined;

export class JsZstdDecoder {
  readonly #decoder: Fzstd.Decompress;
  readonly #frames = new FrameWalker();
  readonly #out: OutputChunks;

  /**
   * `emit` and `allocate` as for ZstdDecoder (codec.ts): fzstd's block-sized pieces are gathered
   * into whole buffers, emitted at the end of each write.
   */
  constructor(emit: (data: Buffer) => boolean, allocate?: () => Buffer) {
    fzstd ??= createRequire(import.meta.url)("fzstd") as typeof Fzstd;
    this.#out = new OutputChunks(emit, allocate);
    this.#decoder = new fzstd.Decompress((block) => this.#out.append(block));
  }

  write(input: Buffer): void {
    this.#frames.walk(input);
    // fzstd keeps the tail of a chunk it could not decode yet; the caller may reuse its buffer.
    this.#decoder.push(Uint8Array.prototype.slice.call(input));
    this.#out.flush();
  }

  /**
   * Throws when the data ends in the middle of a frame. May emit: fzstd holds back a last frame
   * shorter than 18 bytes until it knows the data ended.
   */
  end(): void {
    this.#decoder.push(new Uint8Array(0), true);
    this.#out.flush();
  }

  release(): void {
    // Nothing native to give back.
  }
}

const ZSTD_FRAME = 0xfd2fb528;
/** Skippable frames: 0x184D2A50 to 0x184D2A5F, then a 4-byte length and that many bytes. */
const SKIPPABLE_MASK = 0xfffffff0;
const SKIPPABLE_FRAME = 0x184d2a50;
const RESERVED_BLOCK = 3;
const RLE_BLOCK = 1;

/**
 * Follows the frame structure (RFC 8878: frame headers, block headers, checksums) without
 * decoding: it copies at most one header at a time and passes over block bodies.
 */
export class FrameWalker {
  readonly #header = Buffer.alloc(18);
  #have = 0;
  #skip = 0;
  #inFrame = false;
  #checksum = false;

  walk(input: Uint8Array): void {
    let at = 0;
    while (at < input.length) {
      if (this.#skip > 0) {
        const passed = Math.min(this.#skip, input.length - at);
        this.#skip -= passed;
        at += passed;
        continue;
      }
      const need = this.#needed();
      if (this.#have === need) {
        this.#parse();
        this.#have = 0;
        continue;
      }
      const copied = Math.min(need - this.#have, input.length - at);
      this.#header.set(input.subarray(at, at + copied), this.#have);
      this.#have += copied;
      at += copied;
    }
    // A header completed by the last byte is parsed now, so its window is checked before fzstd sees it.
    if (this.#skip === 0 && this.#have > 0 && this.#have === this.#needed()) {
      this.#parse();
      this.#have = 0;
    }
  }

  /** How many header bytes the header being read has, as far as the bytes so far tell. */
  #needed(): number {
    if (this.#inFrame) return 3;
    if (this.#have < 4) return 4;
    const magic = this.#header.readUInt32LE(0);
    if ((magic & SKIPPABLE_MASK) >>> 0 === SKIPPABLE_FRAME) return 8;
    if (magic !== ZSTD_FRAME) throw new Error("invalid zstd data (no frame starts here)");
    if (this.#have < 5) return 5;
    const descriptor = this.#header[4]!;
    const singleSegment = (descriptor & 0x20) !== 0;
    const dictionaryBytes = [0, 1, 2, 4][descriptor & 3]!;
    const fcsFlag = descriptor >> 6;
    const contentSizeBytes = fcsFlag === 0 ? (singleSegment ? 1 : 0) : [0, 2, 4, 8][fcsFlag]!;
    return 5 + (singleSegment ? 0 : 1) + dictionaryBytes + contentSizeBytes;
  }

  #parse(): void {
    const header = this.#header;
    if (this.#inFrame) {
      const value = header[0]! | (header[1]! << 8) | (header[2]! << 16);
      const type = (value >> 1) & 3;
      if (type === RESERVED_BLOCK) throw new Error("invalid zstd data (reserved block type)");
      this.#skip = type === RLE_BLOCK ? 1 : value >>> 3;
      if (value & 1) {
        this.#skip += this.#checksum ? 4 : 0;
        this.#inFrame = false;
      }
      return;
    }
    const magic = header.readUInt32LE(0);
    if ((magic & SKIPPABLE_MASK) >>> 0 === SKIPPABLE_FRAME) {
      this.#skip = header.readUInt32LE(4);
      return;
    }
    const window = this.#window();
    if (window > MAX_WINDOW) {
      throw new Error(
        `a zstd frame asks for a ${Math.ceil(window / 2 ** 20)} MiB window, more than the 128 MiB allowed`,
      );
    }
    this.#checksum = (header[4]! & 4) !== 0;
    this.#inFrame = true;
  }

  /** The frame's window size: the window descriptor, or for a single-segment frame its content size. */
  #window(): number {
    const header = this.#header;
    const descriptor = header[4]!;
    if ((descriptor & 0x20) === 0) {
      const exponent = header[5]! >> 3;
      const mantissa = header[5]! & 7;
      const base = 2 ** (10 + exponent);
      return base + (base / 8) * mantissa;
    }
    const at = 5 + [0, 1, 2, 4][descriptor & 3]!;
    switch (descriptor >> 6) {
      case 0:
        return header[at]!;
      case 1:
        return header.readUInt16LE(at) + 256;
      case 2:
        return header.readUInt32LE(at);
      default:
        return Number(header.readBigUInt64LE(at));
    }
  }
}
