import { createRequire } from "node:module";
import { Transform, type TransformCallback } from "node:stream";
import zlib from "node:zlib";
import { IntegrityError } from "../errors.js";

/**
 * Compression for bundles: zstd (native, via zstd-napi) by default, gzip as the
 * fallback a stock `tar xz` can read. Decompression detects the codec from the
 * magic bytes, so old gzip bundles stay readable.
 */

export type Codec = "zstd" | "gzip";

export interface CompressOptions {
  codec: Codec;
  level: number;
  /** zstd worker threads; 0 = compress on the calling thread. */
  workers?: number;
}

type ZstdModule = typeof import("zstd-napi");
let zstdModule: ZstdModule | null | undefined;

/** zstd-napi is a native addon; if it failed to build on this machine we fall back to gzip. */
export function loadZstd(): ZstdModule | null {
  if (zstdModule === undefined) {
    try {
      zstdModule = createRequire(import.meta.url)("zstd-napi") as ZstdModule;
    } catch {
      zstdModule = null;
    }
  }
  return zstdModule;
}

export function effectiveCodec(wanted: Codec): Codec {
  return wanted === "zstd" && !loadZstd() ? "gzip" : wanted;
}

export function createCompressor(options: CompressOptions): Transform {
  const codec = effectiveCodec(options.codec);
  if (codec === "zstd") {
    const zstd = loadZstd()!;
    return new zstd.CompressStream({
      compressionLevel: options.level,
      ...(options.workers ? { nbWorkers: options.workers } : {}),
    });
  }
  return zlib.createGzip({ level: Math.min(9, Math.max(1, options.level)) });
}

const ZSTD_MAGIC = [0x28, 0xb5, 0x2f, 0xfd];
const GZIP_MAGIC = [0x1f, 0x8b];

/**
 * A decompressor that picks zstd or gzip from the first bytes, and fails with
 * an IntegrityError once more than `maxOutputBytes` come out (decompression bombs).
 *
 * It is a plain Transform around the real decoder: each input chunk is handed
 * to the decoder and our callback waits for the decoder's, so the decoder's
 * output is pushed before we accept more input and Node's Transform
 * backpressure still holds. (Duplex.from(async generator) looked simpler but
 * hangs when destroyed while waiting for input.)
 */
export function createDecompressor(maxOutputBytes = Number.POSITIVE_INFINITY): Transform {
  return new DetectingDecompressor(maxOutputBytes);
}

class DetectingDecompressor extends Transform {
  private decoder: Transform | undefined;
  private head = Buffer.alloc(0);
  private produced = 0;
  private failure: Error | undefined;

  constructor(private readonly maxOutputBytes: number) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    if (!this.decoder) {
      this.head = Buffer.concat([this.head, chunk]);
      if (this.head.length < 4) {
        callback();
        return;
      }
      try {
        this.start(pick(this.head));
      } catch (err) {
        callback(err as Error);
        return;
      }
      chunk = this.head;
      this.head = Buffer.alloc(0);
    }
    this.decoder!.write(chunk, (err) => callback(this.failure ?? err ?? undefined));
  }

  override _flush(callback: TransformCallback): void {
    if (!this.decoder) {
      if (this.head.length === 0) {
        callback();
        return;
      }
      try {
        this.start(pick(this.head));
      } catch (err) {
        callback(err as Error);
        return;
      }
      this.decoder!.write(this.head);
    }
    const decoder = this.decoder!;
    decoder.once("end", () => callback(this.failure));
    decoder.once("error", () => callback(this.failure));
    decoder.end();
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.decoder?.destroy();
    callback(err);
  }

  private start(decoder: Transform): void {
    this.decoder = decoder;
    decoder.on("data", (data: Buffer) => {
      this.produced += data.length;
      if (this.produced > this.maxOutputBytes) {
        this.failure ??= new IntegrityError("bundle decompresses to more bytes than its manifest allows");
        decoder.destroy();
        return;
      }
      this.push(data);
    });
    decoder.on("error", (err) => {
      this.failure ??= new IntegrityError(`bundle is not valid compressed data (${err.message})`, {
        hint: "the bundle is damaged or truncated",
      });
      this.destroy(this.failure);
    });
  }
}

function pick(head: Buffer): Transform {
  if (ZSTD_MAGIC.every((byte, i) => head[i] === byte)) {
    const zstd = loadZstd();
    if (!zstd) {
      throw new IntegrityError("this bundle is zstd-compressed but zstd support failed to load here", {
        hint: "reinstall ccbundle so its zstd-napi addon builds (needs a C compiler), or ask for a gzip bundle",
      });
    }
    return new zstd.DecompressStream();
  }
  if (GZIP_MAGIC.every((byte, i) => head[i] === byte)) return zlib.createGunzip();
  throw new IntegrityError("bundle is neither zstd nor gzip compressed", {
    hint: "the file is not a ccbundle bundle, or it is damaged",
  });
}
