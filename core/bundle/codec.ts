import { createRequire } from "node:module";
import os from "node:os";
import { Transform, type TransformCallback } from "node:stream";
import type * as ZstdBinding from "zstd-napi/binding.js";
import { IntegrityError } from "../errors.js";
import { OutputChunks } from "./output-chunks.js";
import { JsZstdDecoder } from "./zstd-js.js";

/**
 * Compression for bundles: zstd (native, via zstd-napi) by default, gzip as the
 * fallback a stock `tar xz` can read. Decompression detects the codec from the
 * magic bytes, so old gzip bundles stay readable.
 *
 * We drive zstd-napi's low-level binding (ZSTD_compressStream2 /
 * ZSTD_decompressStream) instead of its CompressStream/DecompressStream: those
 * allocate a fresh output buffer after every call, and with zstd's worker
 * threads on (nbWorkers) the size hint they allocate by is a whole job, so
 * level 3 on two workers measured 166 MB/s through them against 550 MB/s here
 * with one reused output buffer (bench/stages.ts). zstd's own threads compress
 * in the background, so the main thread stays free for reading, tar, hashing
 * and age while both cores compress. (`backup` instead encodes each session on
 * its own worker thread with nbWorkers=0: a ~1 MB session is a single zstd job,
 * and waiting for it at the frame's end made compression serial.)
 */

export type Codec = "zstd" | "gzip";

export interface CompressOptions {
  codec: Codec;
  level: number;
  /** zstd worker threads; 0 = compress on the calling thread; undefined = one per core (up to 4). */
  workers?: number | undefined;
}

/** zstd levels users may pick (1 fast … 19 small; 20-22 need huge windows and are refused). */
export const ZSTD_LEVELS = { min: 1, max: 19 } as const;
export const GZIP_LEVELS = { min: 1, max: 9 } as const;

type Binding = typeof ZstdBinding;
let binding: Binding | null | undefined;

/**
 * zstd-napi is a native addon; if it failed to build on this machine we write
 * gzip instead (and say so in `ccbundle doctor`), and read zstd with the slower
 * JavaScript decoder (zstd-js.ts).
 */
export function loadZstd(): Binding | null {
  if (binding === undefined) {
    try {
      binding = createRequire(import.meta.url)("zstd-napi/binding") as Binding;
    } catch {
      binding = null;
    }
  }
  return binding;
}

/**
 * node:zlib, loaded on first use: only gzip bundles need it, and importing it at start-up cost
 * every command ~3 ms (push and pull are two processes of a handoff).
 */
let zlibModule: typeof import("node:zlib") | undefined;
function gzipModule(): typeof import("node:zlib") {
  zlibModule ??= createRequire(import.meta.url)("node:zlib") as typeof import("node:zlib");
  return zlibModule;
}

export function effectiveCodec(wanted: Codec): Codec {
  return wanted === "zstd" && !loadZstd() ? "gzip" : wanted;
}

/** zstd worker threads when the caller did not say: every core, at most 4 (a backup should not eat a server). */
export function defaultWorkers(): number {
  return Math.min(4, Math.max(1, os.availableParallelism()));
}

export function createCompressor(options: CompressOptions): Transform {
  const encoder = zstdEncoder(options);
  if (encoder) return new ZstdCompressor(encoder);
  return gzipModule().createGzip({ level: clamp(options.level, GZIP_LEVELS.min, GZIP_LEVELS.max) });
}

/** A synchronous zstd encoder for `options`, or undefined when they ask for gzip (or zstd failed to load). */
export function zstdEncoder(options: CompressOptions): ZstdEncoder | undefined {
  if (effectiveCodec(options.codec) !== "zstd") return undefined;
  const level = clamp(options.level, ZSTD_LEVELS.min, ZSTD_LEVELS.max);
  return new ZstdEncoder(loadZstd()!, level, options.workers ?? defaultWorkers());
}

function clamp(value: number, min: number, max: number): number {
  return Math.min(max, Math.max(min, Math.round(value)));
}

/** Compressed output is collected into this much before it is handed on. */
const COMPRESSED_CHUNK = 256 * 1024;

export { PLAIN_CHUNK } from "./output-chunks.js";

const EMPTY: Buffer = Buffer.alloc(0);

/**
 * Compression contexts are kept for reuse: a multi-threaded context owns its
 * worker threads and job buffers, and `backup --all` writes one blob after
 * another. A context goes back to the pool only after its frame ended cleanly.
 */
const idleContexts = new Map<string, ZstdBinding.CCtx[]>();

function takeContext(zstd: Binding, level: number, workers: number): ZstdBinding.CCtx {
  const reused = idleContexts.get(`${level}/${workers}`)?.pop();
  if (reused) return reused;
  const cctx = new zstd.CCtx();
  cctx.setParameter(zstd.CParameter.compressionLevel, level);
  if (workers > 0) cctx.setParameter(zstd.CParameter.nbWorkers, workers);
  return cctx;
}

function returnContext(level: number, workers: number, cctx: ZstdBinding.CCtx): void {
  const key = `${level}/${workers}`;
  const idle = idleContexts.get(key) ?? [];
  if (idle.length < 2) idle.push(cctx);
  idleContexts.set(key, idle);
}

/** Receives compressed bytes: a view of the encoder's buffer, valid only until it returns. */
export type Emit = (bytes: Buffer) => void;

/**
 * One zstd frame, written synchronously: the core of ZstdCompressor, and what
 * the blob encoder (blob.ts) calls directly, with no stream between tar, zstd
 * and age. Input is never retained once write() returns (zstd copies what it
 * keeps), so callers may reuse their read buffer.
 */
export class ZstdEncoder {
  #cctx: ZstdBinding.CCtx | undefined;
  readonly #out = Buffer.allocUnsafe(COMPRESSED_CHUNK);
  #filled = 0;

  constructor(
    private readonly zstd: Binding,
    private readonly level: number,
    private readonly workers: number,
  ) {
    this.#cctx = takeContext(zstd, level, workers);
  }

  /** Compressed bytes buffered and not yet emitted. */
  get buffered(): number {
    return this.#filled;
  }

  write(input: Buffer, emit: Emit): void {
    this.#run(input, this.zstd.EndDirective.continue, emit);
  }

  /** Emit what is buffered now (if anything). */
  flush(emit: Emit): void {
    if (this.#filled === 0) return;
    const filled = this.#filled;
    this.#filled = 0;
    emit(this.#out.subarray(0, filled));
  }

  /** End the frame and emit the rest; a write after this starts the next frame. */
  endFrame(emit: Emit): void {
    this.#run(EMPTY, this.zstd.EndDirective.end, emit);
    this.flush(emit);
  }

  /** End the frame and emit the rest; the context goes back to the pool. */
  end(emit: Emit): void {
    this.endFrame(emit);
    const cctx = this.#cctx;
    this.#cctx = undefined;
    if (cctx) returnContext(this.level, this.workers, cctx);
  }

  /** Abandon the frame. A context left mid-frame is not reused: reset it and let the GC free it. */
  destroy(): void {
    this.#cctx?.reset(this.zstd.ResetDirective.sessionOnly);
    this.#cctx = undefined;
  }

  #run(input: Buffer, op: ZstdBinding.EndDirective, emit: Emit): void {
    const cctx = this.#cctx;
    if (!cctx) throw new Error("zstd: write after end");
    for (;;) {
      const [remaining, produced, consumed] = cctx.compressStream2(this.#out.subarray(this.#filled), input, op);
      this.#filled += produced;
      input = input.subarray(consumed);
      if (this.#filled === this.#out.length) this.flush(emit);
      const done = op === this.zstd.EndDirective.continue ? input.length === 0 : remaining === 0;
      if (done) return;
    }
  }
}

class ZstdCompressor extends Transform {
  // Copy out the (small, compressed) bytes: the encoder keeps writing into the same buffer.
  readonly #push: Emit = (bytes) => this.push(Buffer.from(bytes));

  constructor(private readonly encoder: ZstdEncoder) {
    super({ writableHighWaterMark: 1 << 20, readableHighWaterMark: 1 << 20 });
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    try {
      this.encoder.write(chunk, this.#push);
      // Keep bytes moving even when the input is small (progress, and the next stage's overlap).
      if (this.encoder.buffered >= COMPRESSED_CHUNK / 4) this.encoder.flush(this.#push);
    } catch (err) {
      callback(err as Error);
      return;
    }
    callback();
  }

  override _flush(callback: TransformCallback): void {
    try {
      this.encoder.end(this.#push);
    } catch (err) {
      callback(err as Error);
      return;
    }
    callback();
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.encoder.destroy();
    callback(err);
  }
}

/** What a decompressor (in-process, gzip or on its thread) says of bytes it cannot decode. */
export function notCompressedData(detail: string): IntegrityError {
  return new IntegrityError(`bundle is not valid compressed data (${detail})`, {
    hint: "the bundle is damaged or truncated",
  });
}

export const ZSTD_MAGIC = [0x28, 0xb5, 0x2f, 0xfd];
const GZIP_MAGIC = [0x1f, 0x8b];

/**
 * A decompressor that picks zstd or gzip from the first bytes, and fails with
 * an IntegrityError once more than `maxOutputBytes` come out (decompression bombs).
 *
 * zstd runs synchronously inside our own _transform (one stream hop, output
 * pushed in 256 KiB buffers). gzip goes through node:zlib's Transform: each
 * input chunk is handed to it and our callback waits for its, so its output is
 * pushed before we accept more input and backpressure still holds.
 * (Duplex.from(async generator) looked simpler but hangs when destroyed while
 * waiting for input.)
 */
export function createDecompressor(maxOutputBytes = Number.POSITIVE_INFINITY): Transform {
  return new DetectingDecompressor(maxOutputBytes);
}

class DetectingDecompressor extends Transform {
  private zstd: ZstdDecoder | JsZstdDecoder | undefined;
  private gunzip: Transform | undefined;
  private head: Buffer = EMPTY;
  private produced = 0;
  private failure: Error | undefined;

  constructor(private readonly maxOutputBytes: number) {
    super({ writableHighWaterMark: 1 << 20, readableHighWaterMark: 1 << 20 });
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    if (!this.zstd && !this.gunzip) {
      this.head = this.head.length > 0 ? Buffer.concat([this.head, chunk]) : chunk;
      if (this.head.length < 4) {
        callback();
        return;
      }
      try {
        chunk = this.takeHead();
      } catch (err) {
        callback(err as Error);
        return;
      }
    }
    this.feed(chunk, callback);
  }

  override _flush(callback: TransformCallback): void {
    if (!this.zstd && !this.gunzip) {
      if (this.head.length === 0) {
        callback();
        return;
      }
      let head: Buffer;
      try {
        head = this.takeHead();
      } catch (err) {
        callback(err as Error);
        return;
      }
      this.feed(head, (err) => (err ? callback(err) : this._flush(callback)));
      return;
    }
    if (this.zstd) {
      try {
        this.zstd.end();
      } catch (err) {
        callback(this.zstdError(err));
        return;
      } finally {
        this.zstd.release();
      }
      callback(this.failure);
      return;
    }
    const gunzip = this.gunzip!;
    gunzip.once("end", () => callback(this.failure));
    gunzip.once("error", () => callback(this.failure));
    gunzip.end();
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.gunzip?.destroy();
    this.zstd?.release();
    callback(err);
  }

  private feed(chunk: Buffer, callback: TransformCallback): void {
    if (this.zstd) {
      try {
        this.zstd.write(chunk);
      } catch (err) {
        callback(this.zstdError(err));
        return;
      }
      callback(this.failure);
      return;
    }
    this.gunzip!.write(chunk, (err) => callback(this.failure ?? err ?? undefined));
  }

  private output(data: Buffer): boolean {
    this.produced += data.length;
    if (this.produced > this.maxOutputBytes) {
      this.failure ??= new IntegrityError("bundle decompresses to more bytes than its manifest allows");
      return false;
    }
    this.push(data);
    return true;
  }

  private zstdError(err: unknown): Error {
    return this.failure ?? notCompressedData((err as Error).message);
  }

  /** Pick the codec by the bytes held so far, and hand them over to be fed (throws for an unknown codec). */
  private takeHead(): Buffer {
    this.start(this.head);
    const head = this.head;
    this.head = EMPTY;
    return head;
  }

  private start(head: Buffer): void {
    if (ZSTD_MAGIC.every((byte, i) => head[i] === byte)) {
      const zstd = loadZstd();
      const emit = (data: Buffer) => this.output(data);
      // Without the addon, a slower decoder in JavaScript: this machine writes gzip, but reads what others send.
      this.zstd = zstd ? new ZstdDecoder(zstd, emit) : new JsZstdDecoder(emit);
      return;
    }
    if (GZIP_MAGIC.every((byte, i) => head[i] === byte)) {
      const gunzip = gzipModule().createGunzip();
      this.gunzip = gunzip;
      gunzip.on("data", (data: Buffer) => {
        if (!this.output(data)) gunzip.destroy();
      });
      gunzip.on("error", (err) => {
        this.failure ??= notCompressedData(err.message);
        this.destroy(this.failure);
      });
      return;
    }
    throw new IntegrityError("bundle is neither zstd nor gzip compressed", {
      hint: "the file is not a ccbundle bundle, or it is damaged",
    });
  }
}

/**
 * Decompression contexts done with, for the next blob on the same thread: a context allocates its
 * window (megabytes) on its first frame, and `restore --all` opens one blob after another. A fresh
 * context per blob grew the process by ~0.3 MB per blob (RSS 80 -> 182 MB over 300 blobs: the
 * freed windows stay in the C heap) and faulted in fresh pages for each.
 */
const idleDecoders: ZstdBinding.DCtx[] = [];
const MAX_IDLE_DECODERS = 2;

/**
 * Synchronous streaming zstd decoding; frames may follow each other (parallel or appended frames).
 * Each buffer it emits is the only view of its own memory (a fresh buffer follows every flush):
 * the decompression worker hands them to the main thread without a copy.
 */
export class ZstdDecoder {
  #dctx: ZstdBinding.DCtx | undefined;
  readonly #out: OutputChunks;
  /** ZSTD_decompressStream's last hint: 0 means the last frame ended exactly here. */
  #inFrame = false;

  constructor(
    private readonly zstd: Binding,
    emit: (data: Buffer) => boolean,
    /** Where output buffers come from (the reader thread reuses those the main thread is done with). */
    allocate?: () => Buffer,
  ) {
    this.#dctx = idleDecoders.pop() ?? new zstd.DCtx();
    this.#out = new OutputChunks(emit, allocate);
  }

  /**
   * Done with this decoder, whatever state it is in: its context is reset (a frame cut short is
   * forgotten) and kept for the next decoder on this thread.
   */
  release(): void {
    const dctx = this.#dctx;
    this.#dctx = undefined;
    if (!dctx || idleDecoders.length >= MAX_IDLE_DECODERS) return;
    dctx.reset(this.zstd.ResetDirective.sessionOnly);
    idleDecoders.push(dctx);
  }

  write(input: Buffer): void {
    const out = this.#out;
    while (input.length > 0 || out.full) {
      if (out.full) out.flush();
      if (!this.#dctx) throw new Error("zstd: write after release");
      const [remaining, produced, consumed] = this.#dctx.decompressStream(out.free, input);
      out.advance(produced);
      input = input.subarray(consumed);
      // Only a call that moved bytes says where the frame is. A frame that ends exactly as the output
      // buffer fills is followed by one more call, to drain (below), with no input: zstd then answers
      // the size of the next frame's header, which is no frame at all. Taken as "in a frame", it
      // refused every bundle whose tar is a multiple of 256 KiB (about 1 session in 500).
      if (consumed > 0 || produced > 0) this.#inFrame = remaining !== 0;
      // Output full: loop again to drain what zstd still holds even if input is used up.
      if (consumed === 0 && produced === 0 && !out.full) break;
    }
    out.flush();
  }

  end(): void {
    if (this.#inFrame) throw new Error("the data ends in the middle of a zstd frame");
  }
}
