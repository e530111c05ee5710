import { createRequire } from "node:module";
import { Duplex, pipeline, Readable, type Transform } from "node:stream";
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
 */
export function createDecompressor(maxOutputBytes = Number.POSITIVE_INFINITY): Duplex {
  return Duplex.from(async function* (source: AsyncIterable<Buffer>) {
    const input = source[Symbol.asyncIterator]();
    let head = Buffer.alloc(0);
    while (head.length < 4) {
      const next = await input.next();
      if (next.done) break;
      head = Buffer.concat([head, next.value]);
    }
    if (head.length === 0) return;
    const decoder = pick(head);
    const rest = Readable.from(
      (async function* () {
        yield head;
        for (;;) {
          const next = await input.next();
          if (next.done) return;
          yield next.value;
        }
      })(),
    );
    const output = pipeline(rest, decoder, (err) => {
      if (err) output.destroy(err);
    });
    let produced = 0;
    try {
      for await (const chunk of output as AsyncIterable<Buffer>) {
        produced += chunk.length;
        if (produced > maxOutputBytes) {
          throw new IntegrityError("bundle decompresses to more bytes than its manifest allows");
        }
        yield chunk;
      }
    } catch (err) {
      if (err instanceof IntegrityError) throw err;
      throw new IntegrityError(`bundle is not valid compressed data: ${(err as Error).message}`, {
        hint: "the bundle is damaged or truncated",
      });
    } finally {
      output.destroy();
    }
  });
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
