import { createHash } from "node:crypto";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createDecryptStream, createEncryptStream, type Identity, type Recipient } from "../crypto/age/index.js";
import { CcbError } from "../errors.js";
import { BLOB_PIECE, encodeBlob } from "./blob-encoder.js";
import { type CompressOptions, createCompressor, zstdEncoder } from "./codec.js";
import type { BundleFile, Manifest } from "./manifest.js";
import { type PackFile, packBundle } from "./pack.js";
import { createThreadedTarReader } from "./threaded-reader.js";
import { type ManifestVerdict, type Rewriter, type StagingLayout, unpackTar } from "./unpack.js";

/**
 * A bundle blob is `age(zstd-or-gzip(tar))`. These two functions are the only
 * places the three layers are put together, so push, export and backup write
 * the same thing and pull, import and restore read it the same way.
 */

/** Counts bytes and hashes them as they pass: the blob's size and sha256 go into the record. */
export class HashCounter extends Transform {
  bytes = 0;
  private readonly hash = createHash("sha256");
  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: (err?: Error | null, data?: Buffer) => void) {
    this.bytes += chunk.length;
    this.hash.update(chunk);
    done(null, chunk);
  }
  digest(): string {
    return this.hash.digest("hex");
  }
}

export interface BundleWriteOptions {
  manifestJson: Buffer;
  files: PackFile[];
  recipients: Recipient[];
  compression: CompressOptions;
  /** Called with the running count of tar (plaintext) bytes: progress against the session's size. */
  onPlainBytes?: (bytes: number) => void;
}

/** The encrypted blob as a stream; pipe it to a store or a file. */
export function bundleStream(options: BundleWriteOptions): Readable {
  const zstd = zstdEncoder(options.compression);
  // zstd: one synchronous loop (blob-encoder.ts); gzip (no zstd here) goes through node:zlib's stream.
  if (zstd) return Readable.from(joined(encodeBlob(zstd, options)), { objectMode: false, highWaterMark: BLOB_PIECE });
  const tarStream = packBundle(options.manifestJson, options.files);
  const compressor = createCompressor(options.compression);
  const encryptor = createEncryptStream(options.recipients);
  tarStream.on("error", (err) => encryptor.destroy(err));
  if (options.onPlainBytes) {
    const report = options.onPlainBytes;
    let plain = 0;
    tarStream.on("data", (chunk: Buffer) => {
      plain += chunk.length;
      report(plain);
    });
  }
  compressor.on("error", (err) => encryptor.destroy(err));
  return tarStream.pipe(compressor).pipe(encryptor);
}

async function* joined(lists: AsyncIterable<Buffer[]>): AsyncGenerator<Buffer> {
  for await (const list of lists) yield list.length === 1 ? list[0]! : Buffer.concat(list);
}

export interface BundleReadOptions {
  identities: Identity[];
  stagingDir: string;
  /** Checks the manifest before any file is written (see UnpackOptions.onManifest). */
  onManifest?: (manifest: Manifest) => ManifestVerdict | Promise<ManifestVerdict>;
  /** Takes over each staged file's descriptor to fsync and close it (see unpackTar). */
  handOver?: (fd: number) => Promise<void>;
  layout?: StagingLayout;
  /** Rewrites a file's bytes on their way to staging (see unpackTar). */
  rewriterFor?: (file: BundleFile) => Promise<Rewriter | undefined>;
  /** Files that get a rewritten second copy after staging (see UnpackOptions.secondCopies). */
  secondCopies?: (bundlePath: string) => boolean;
}

/**
 * Decrypt, decompress and safely unpack a blob into `stagingDir`. Returns the
 * manifest and the blob's sha256/size as read, for the caller to compare with
 * what the record promised.
 */
export async function readBundle(
  blob: Readable,
  options: BundleReadOptions,
): Promise<{ manifest: Manifest; sha256: string; size: number }> {
  const counter = new HashCounter();
  const decryptor = createDecryptStream(options.identities);
  // Decompression, the tar and hashing on the reader thread, kept between blobs (in-process where
  // there is no worker script, as when running from the TypeScript sources).
  const decompressor = createThreadedTarReader();
  let pipeError: unknown;
  const piping = pipeline(blob, counter, decryptor, decompressor).catch((err: unknown) => {
    pipeError = err;
    decompressor.destroy(err as Error);
  });
  const unpackOptions = {
    ...(options.onManifest ? { onManifest: options.onManifest } : {}),
    ...(options.handOver ? { handOver: options.handOver } : {}),
    ...(options.layout ? { layout: options.layout } : {}),
    ...(options.rewriterFor ? { rewriterFor: options.rewriterFor } : {}),
    ...(options.secondCopies !== undefined ? { secondCopies: options.secondCopies } : {}),
    // The ratio check compares the tar bytes out with the blob bytes in (age adds ~0.03%).
    compressedBytes: () => counter.bytes,
  };
  try {
    const manifest = await unpackTar(decompressor, options.stagingDir, unpackOptions);
    await piping;
    if (pipeError) throw pipeError;
    return { manifest, sha256: counter.digest(), size: counter.bytes };
  } catch (err) {
    for (const stream of [blob, counter, decryptor, decompressor]) stream.destroy();
    await piping;
    // The first layer that failed says best what went wrong (wrong key beats "bad tar").
    throw pipeError instanceof CcbError ? pipeError : err;
  }
}
