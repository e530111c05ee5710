/**
 * The age payload: STREAM over ChaCha20-Poly1305 (c2sp.org/age, "Payload"),
 * and the Node Transforms that put header and payload together.
 *
 *     nonce       = 16 random bytes, right after the header
 *     payload key = HKDF-SHA-256(ikm = file key, salt = nonce, info = "payload")
 *     chunk i     = ChaCha20-Poly1305(payload key, 11-byte big-endian i || last flag, 64 KiB of plaintext)
 *
 * The last-chunk flag is what makes truncation detectable, so both directions
 * must know which chunk is last:
 *  - sealing holds back the newest (up to 64 KiB) plaintext until more input
 *    or the end arrives; a final chunk may be full-size, and may be empty
 *    only when the whole payload is;
 *  - opening decrypts a full-size chunk as soon as it is complete, first as a
 *    non-final chunk and, if that fails, as a final one (as the reference
 *    implementation does). Data after a final chunk, a missing final chunk, a
 *    short or empty non-first final chunk are all rejected.
 * Plaintext is released only after its chunk's tag verified; node's
 * decipher.update() returns unauthenticated bytes, which stay private until
 * final() succeeds.
 *
 * Throughput notes: one cipher object per 64 KiB chunk (node:crypto has no
 * way to re-key an AEAD context); input is used in place (subarray) except
 * for the partial chunk carried between writes; output Buffers are pushed as
 * node:crypto returns them, without joining (see pushAll).
 */

import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { Transform, type TransformCallback, type TransformOptions } from "node:stream";
import { ArmorDecoder, looksArmored } from "./armor.js";
import { headerError, payloadError } from "./errors.js";
import { findHeaderEnd, parseHeader } from "./format.js";
import { openHeader, sealHeader } from "./header.js";
import type { Identity, Recipient } from "./index.js";
import { generateFileKey, hkdf, TAG_SIZE } from "./primitives.js";

export const CHUNK_SIZE = 64 * 1024;
export const ENCRYPTED_CHUNK_SIZE = CHUNK_SIZE + TAG_SIZE;
export const NONCE_SIZE = 16;
/** Refuse headers longer than this while streaming (a valid one is ~100 bytes per recipient). */
export const MAX_HEADER_SIZE = 1024 * 1024;
const AEAD = "chacha20-poly1305";
const MAX_WHITESPACE = 1024;
const VERSION_PREFIX = Buffer.from("age-encryption.org/", "latin1");

function asBuffer(b: Uint8Array): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

/** The 12-byte STREAM nonce: big-endian chunk counter, then the last-chunk flag. */
class ChunkNonce {
  readonly bytes = Buffer.alloc(12);
  #counter = 0;

  get counter(): number {
    return this.#counter;
  }

  flag(last: boolean): Buffer {
    this.bytes[11] = last ? 1 : 0;
    return this.bytes;
  }

  advance(): void {
    // The spec's counter has 11 bytes; 48 bits (16 EiB of payload) is as far
    // as a JS number written with writeUIntBE goes, and far beyond any file.
    this.#counter++;
    this.bytes.writeUIntBE(this.#counter, 5, 6);
  }
}

function payloadKey(fileKey: Uint8Array, nonce: Uint8Array): Buffer {
  if (nonce.length !== NONCE_SIZE) throw new Error("age: the payload nonce must be 16 bytes");
  return hkdf(fileKey, nonce, "payload");
}

/** Encrypts a payload incrementally. Output goes to `out` as cipher text and tag Buffers. */
export class PayloadSealer {
  readonly #key: Buffer;
  readonly #nonce = new ChunkNonce();
  readonly #hold = Buffer.allocUnsafe(CHUNK_SIZE);
  #held = 0;
  #ended = false;

  constructor(fileKey: Uint8Array, nonce: Uint8Array) {
    this.#key = payloadKey(fileKey, nonce);
  }

  write(data: Uint8Array, out: Buffer[]): void {
    if (this.#ended) throw new Error("age: write after end");
    const src = asBuffer(data);
    const n = src.length;
    if (n === 0) return;
    let off = 0;
    if (this.#held > 0) {
      off = Math.min(CHUNK_SIZE - this.#held, n);
      src.copy(this.#hold, this.#held, 0, off);
      this.#held += off;
      // Even a full hold may be the final chunk: seal it only once we know
      // more plaintext follows.
      if (off === n) return;
      this.#seal(this.#hold, false, out);
      this.#held = 0;
    }
    for (; n - off > CHUNK_SIZE; off += CHUNK_SIZE) this.#seal(src.subarray(off, off + CHUNK_SIZE), false, out);
    // Copy the tail: the caller may reuse its buffer once write() returns.
    src.copy(this.#hold, 0, off, n);
    this.#held = n - off;
  }

  end(out: Buffer[]): void {
    if (this.#ended) throw new Error("age: end after end");
    this.#ended = true;
    // Non-empty unless the whole payload is empty, which is the one case an
    // empty final chunk is allowed.
    this.#seal(this.#hold.subarray(0, this.#held), true, out);
    this.destroy();
  }

  /** Zero the payload key and held plaintext (best effort: JS may have copied them). */
  destroy(): void {
    this.#key.fill(0);
    this.#hold.fill(0);
    this.#held = 0;
  }

  #seal(plaintext: Buffer, last: boolean, out: Buffer[]): void {
    const c = createCipheriv(AEAD, this.#key, this.#nonce.flag(last), { authTagLength: TAG_SIZE });
    out.push(c.update(plaintext));
    c.final();
    out.push(c.getAuthTag());
    this.#nonce.advance();
  }
}

/** Decrypts a payload incrementally; authenticated plaintext goes to `out`. */
export class PayloadOpener {
  readonly #key: Buffer;
  readonly #nonce = new ChunkNonce();
  readonly #hold = Buffer.allocUnsafe(ENCRYPTED_CHUNK_SIZE);
  #held = 0;
  #done = false;

  constructor(fileKey: Uint8Array, nonce: Uint8Array) {
    this.#key = payloadKey(fileKey, nonce);
  }

  write(data: Uint8Array, out: Buffer[]): void {
    const src = asBuffer(data);
    const n = src.length;
    if (n === 0) return;
    if (this.#done) throw payloadError("trailing data after the end of the encrypted file");
    let off = 0;
    if (this.#held > 0) {
      off = Math.min(ENCRYPTED_CHUNK_SIZE - this.#held, n);
      src.copy(this.#hold, this.#held, 0, off);
      this.#held += off;
      if (this.#held < ENCRYPTED_CHUNK_SIZE) return;
      this.#held = 0;
      this.#openFull(this.#hold, out);
    }
    for (; n - off >= ENCRYPTED_CHUNK_SIZE; off += ENCRYPTED_CHUNK_SIZE) {
      if (this.#done) throw payloadError("trailing data after the end of the encrypted file");
      this.#openFull(src.subarray(off, off + ENCRYPTED_CHUNK_SIZE), out);
    }
    if (off < n) {
      if (this.#done) throw payloadError("trailing data after the end of the encrypted file");
      src.copy(this.#hold, 0, off, n);
      this.#held = n - off;
    }
  }

  end(out: Buffer[]): void {
    if (this.#done) {
      this.destroy();
      return;
    }
    const held = this.#held;
    if (held === 0) {
      throw payloadError(this.#nonce.counter === 0 ? "the payload has no chunks" : "the file is truncated");
    }
    if (held < TAG_SIZE) throw payloadError("the final chunk is truncated");
    // An empty final chunk is valid only as the sole chunk of an empty payload.
    if (held === TAG_SIZE && this.#nonce.counter > 0) throw payloadError("the final chunk is empty");
    const plaintext = this.#open(this.#hold.subarray(0, held), true);
    if (plaintext === undefined) {
      throw payloadError(`chunk ${this.#nonce.counter} failed authentication (damaged, truncated or altered)`);
    }
    out.push(plaintext);
    this.#done = true;
    this.destroy();
  }

  destroy(): void {
    this.#key.fill(0);
    this.#hold.fill(0);
    this.#held = 0;
  }

  #openFull(chunk: Buffer, out: Buffer[]): void {
    let plaintext = this.#open(chunk, false);
    if (plaintext === undefined) {
      // A full-size chunk may be the final one.
      plaintext = this.#open(chunk, true);
      if (plaintext === undefined) {
        throw payloadError(`chunk ${this.#nonce.counter} failed authentication (damaged, truncated or altered)`);
      }
      this.#done = true;
    }
    out.push(plaintext);
    this.#nonce.advance();
  }

  #open(chunk: Buffer, last: boolean): Buffer | undefined {
    const d = createDecipheriv(AEAD, this.#key, this.#nonce.flag(last), { authTagLength: TAG_SIZE });
    d.setAuthTag(chunk.subarray(chunk.length - TAG_SIZE));
    const plaintext = d.update(chunk.subarray(0, chunk.length - TAG_SIZE));
    try {
      d.final();
    } catch {
      return undefined;
    }
    return plaintext;
  }
}

/**
 * Push what one write produced, as the Buffers node:crypto returned. Joining
 * them into one Buffer per write costs a copy into a fresh (page-faulting)
 * allocation and measured about 40% slower at 1 MiB writes
 * (bench/age-micro.mjs: ~590 vs ~1300 MiB/s); consumers that write to files
 * or sockets batch small chunks with writev anyway.
 */
function pushAll(stream: Transform, out: Buffer[]): void {
  for (const b of out) stream.push(b);
}

function toError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

const DEFAULT_BUFFERING: TransformOptions = {
  writableHighWaterMark: 1024 * 1024,
  readableHighWaterMark: 1024 * 1024,
};

class EncryptStream extends Transform {
  readonly #recipients: readonly Recipient[];
  #sealer: PayloadSealer | undefined;

  constructor(recipients: readonly Recipient[]) {
    super(DEFAULT_BUFFERING);
    this.#recipients = [...recipients];
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    const sealer = this.#sealer;
    if (sealer !== undefined) {
      const out: Buffer[] = [];
      try {
        sealer.write(chunk, out);
      } catch (err) {
        callback(toError(err));
        return;
      }
      pushAll(this, out);
      callback();
      return;
    }
    this.#start().then((out) => {
      try {
        this.#sealer?.write(chunk, out);
      } catch (err) {
        callback(toError(err));
        return;
      }
      pushAll(this, out);
      callback();
    }, callback);
  }

  override _flush(callback: TransformCallback): void {
    const go = async () => {
      const out = this.#sealer === undefined ? await this.#start() : [];
      this.#sealer?.end(out);
      pushAll(this, out);
    };
    go().then(() => callback(), callback);
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.#sealer?.destroy();
    callback(err);
  }

  async #start(): Promise<Buffer[]> {
    const fileKey = generateFileKey();
    try {
      const header = await sealHeader(this.#recipients, fileKey);
      const nonce = randomBytes(NONCE_SIZE);
      this.#sealer = new PayloadSealer(fileKey, nonce);
      return [header, nonce];
    } finally {
      fileKey.fill(0);
    }
  }
}

export interface DecryptStreamOptions {
  /**
   * Whether the input is ASCII-armored. "auto" (the default) decides from the
   * first non-whitespace byte: armor starts with "-----", a binary age file
   * with "age-encryption.org/".
   */
  armor?: boolean | "auto";
}

class DecryptStream extends Transform {
  readonly #identities: readonly Identity[];
  #mode: "sniff" | "armor" | "binary";
  #sniffed: Buffer | undefined;
  #armor: ArmorDecoder | undefined;
  /** Header bytes collected so far (grown by doubling), until the payload opener exists. */
  #head: Buffer | undefined;
  #headLength = 0;
  #scanned = 0;
  #headerEnd = -1;
  #opener: PayloadOpener | undefined;

  constructor(identities: readonly Identity[], options: DecryptStreamOptions = {}) {
    super(DEFAULT_BUFFERING);
    this.#identities = [...identities];
    const armor = options.armor ?? "auto";
    this.#mode = armor === "auto" ? "sniff" : armor ? "armor" : "binary";
    if (this.#mode === "armor") this.#armor = new ArmorDecoder();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    const out: Buffer[] = [];
    const opener = this.#opener;
    if (opener !== undefined && this.#mode === "binary") {
      // Hot path: synchronous, no promise per write.
      try {
        opener.write(chunk, out);
      } catch (err) {
        this.#fail(out, err, callback);
        return;
      }
      pushAll(this, out);
      callback();
      return;
    }
    this.#input(chunk, out, false).then(
      () => {
        pushAll(this, out);
        callback();
      },
      (err) => this.#fail(out, err, callback),
    );
  }

  override _flush(callback: TransformCallback): void {
    const out: Buffer[] = [];
    this.#input(Buffer.alloc(0), out, true).then(
      () => {
        pushAll(this, out);
        callback();
      },
      (err) => this.#fail(out, err, callback),
    );
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.#opener?.destroy();
    callback(err);
  }

  /**
   * Release the plaintext that authenticated before the failure, then fail.
   * The error is delivered on the next tick so a flowing consumer sees that
   * plaintext before the stream is destroyed (the spec's test vectors check
   * exactly what was released).
   */
  #fail(out: Buffer[], err: unknown, callback: TransformCallback): void {
    pushAll(this, out);
    process.nextTick(callback, toError(err));
  }

  async #input(chunk: Buffer, out: Buffer[], final: boolean): Promise<void> {
    if (this.#mode === "sniff") {
      const seen = this.#sniffed === undefined ? chunk : Buffer.concat([this.#sniffed, chunk]);
      const armored = looksArmored(seen);
      if (armored === undefined && !final && seen.length <= MAX_WHITESPACE) {
        this.#sniffed = seen;
        return;
      }
      this.#sniffed = undefined;
      this.#mode = armored === true ? "armor" : "binary";
      if (armored === true) this.#armor = new ArmorDecoder();
      chunk = seen;
    }
    if (this.#armor !== undefined) {
      const decoded = this.#armor.write(chunk);
      if (final) decoded.push(...this.#armor.end());
      for (const b of decoded) await this.#binary(b, out);
    } else {
      await this.#binary(chunk, out);
    }
    if (final) await this.#binaryEnd(out);
  }

  async #binary(data: Buffer, out: Buffer[]): Promise<void> {
    if (this.#opener !== undefined) return this.#opener.write(data, out);
    if (data.length === 0) return;
    // Common case: the first write holds the whole header and nonce; use it in place.
    if (this.#headLength === 0) {
      this.#checkPrefix(data);
      const end = findHeaderEnd(data);
      if (end >= 0 && data.length >= end + NONCE_SIZE) return this.#startPayload(data, out);
    }
    this.#append(data);
    const head = (this.#head as Buffer).subarray(0, this.#headLength);
    this.#checkPrefix(head);
    if (this.#headerEnd < 0) {
      this.#headerEnd = findHeaderEnd(head, this.#scanned);
      this.#scanned = head.length;
      if (this.#headerEnd < 0) {
        if (head.length > MAX_HEADER_SIZE) throw headerError("the header is longer than 1 MiB");
        return;
      }
    }
    // The header is complete; the payload nonce may still be arriving.
    if (head.length >= this.#headerEnd + NONCE_SIZE) return this.#startPayload(head, out);
  }

  async #binaryEnd(out: Buffer[]): Promise<void> {
    if (this.#opener === undefined) {
      if (this.#headLength === 0) throw headerError("the file is empty");
      await this.#startPayload((this.#head as Buffer).subarray(0, this.#headLength), out);
    }
    this.#opener?.end(out);
  }

  /** Fail fast on input that is not age at all, instead of buffering up to the header limit. */
  #checkPrefix(b: Buffer): void {
    const n = Math.min(b.length, VERSION_PREFIX.length);
    if (!b.subarray(0, n).equals(VERSION_PREFIX.subarray(0, n))) {
      throw headerError("this is not an age encrypted file");
    }
  }

  #append(data: Buffer): void {
    const need = this.#headLength + data.length;
    if (this.#head === undefined || need > this.#head.length) {
      const grown = Buffer.allocUnsafe(Math.max(need, 2 * (this.#head?.length ?? 0), 4096));
      this.#head?.copy(grown, 0, 0, this.#headLength);
      this.#head = grown;
    }
    data.copy(this.#head, this.#headLength);
    this.#headLength = need;
  }

  /** Parse and open the header in `bytes`, then decrypt whatever payload follows it. */
  async #startPayload(bytes: Buffer, out: Buffer[]): Promise<void> {
    const header = parseHeader(bytes);
    const fileKey = await openHeader(header, this.#identities);
    try {
      if (bytes.length < header.length + NONCE_SIZE) throw headerError("the payload nonce is missing or truncated");
      this.#opener = new PayloadOpener(fileKey, bytes.subarray(header.length, header.length + NONCE_SIZE));
    } finally {
      fileKey.fill(0);
    }
    this.#head = undefined;
    this.#headLength = 0;
    this.#opener.write(bytes.subarray(header.length + NONCE_SIZE), out);
  }
}

/** Plaintext in, age file (binary) out, encrypted to every recipient. */
export function createEncryptStream(recipients: readonly Recipient[]): Transform {
  return new EncryptStream(recipients);
}

/**
 * Age file in, plaintext out. Fails with an AgeError (an IntegrityError) whose
 * `failure` says which stage refused the input; plaintext already emitted
 * before a payload failure was authenticated, but the file as a whole was not.
 */
export function createDecryptStream(identities: readonly Identity[], options: DecryptStreamOptions = {}): Transform {
  return new DecryptStream(identities, options);
}
