import { randomBytes } from "node:crypto";
import { READ_CHUNK, scratch } from "../claude/scratch.js";
import { PayloadSealer, type Recipient, sealHeader } from "../crypto/age/index.js";
import { generateFileKey } from "../crypto/age/primitives.js";
import { NONCE_SIZE } from "../crypto/age/stream.js";
import type { ZstdEncoder } from "./codec.js";
import { type PackFile, tarParts } from "./pack.js";

/**
 * A zstd bundle blob, `age(zstd(tar))`, made in one synchronous loop: read a
 * file chunk into one reused buffer → zstd → age STREAM seal, the output
 * gathered into ~1 MiB pieces. No streams between the layers: per ~1 MB
 * session blob, three Transforms and their buffering cost more than the
 * work (and, on worker threads, left 30-40 MB of dead read buffers per
 * thread waiting for the GC). Output comes as lists of the Buffers node:crypto
 * returned (each owns its memory), so a worker can transfer them to the main
 * thread instead of copying them and leaving garbage behind. The bytes are the same as createEncryptStream
 * over createCompressor over packBundle would write: a header, a nonce, then
 * the sealed 64 KiB chunks of the tar's zstd frames (one, or three around a file
 * whose frames were made earlier: see PackFile.compressed).
 */

export interface BlobEncodeOptions {
  manifestJson: Buffer;
  files: PackFile[];
  recipients: readonly Recipient[];
  onPlainBytes?: ((bytes: number) => void) | undefined;
}

/** Output is handed on in lists of at least this many bytes (the last may be smaller). */
export const BLOB_PIECE = 1 << 20;
/**
 * Input bytes after which the loop lets the event loop run even if no output
 * is ready (high levels compress slowly; on the main thread a push also
 * answers DHT queries).
 */
const INPUT_PER_TURN = 4 << 20;

export async function* encodeBlob(encoder: ZstdEncoder, options: BlobEncodeOptions): AsyncGenerator<Buffer[]> {
  let pieces: Buffer[] = [];
  let pieceBytes = 0;
  const take = (bytes: Buffer) => {
    pieces.push(bytes);
    pieceBytes += bytes.length;
  };
  const piece = () => {
    const out = pieces;
    pieces = [];
    pieceBytes = 0;
    return out;
  };
  let sealer: PayloadSealer | undefined;
  try {
    const fileKey = generateFileKey();
    try {
      take(await sealHeader(options.recipients, fileKey));
      const nonce = randomBytes(NONCE_SIZE);
      take(nonce);
      sealer = new PayloadSealer(fileKey, nonce);
    } finally {
      fileKey.fill(0);
    }
    const sealed: Buffer[] = [];
    // The encoder hands over views of its own buffer: the sealer copies what it keeps.
    const seal = (compressed: Buffer) => {
      sealer!.write(compressed, sealed);
      for (const bytes of sealed) take(bytes);
      sealed.length = 0;
    };
    // The thread's scratch buffer: each chunk read into it is compressed before the loop yields.
    const readBuffer = scratch(READ_CHUNK);
    let plain = 0;
    let sinceTurn = 0;
    for (const chunk of tarParts(options.manifestJson, options.files, readBuffer, true)) {
      if (Buffer.isBuffer(chunk)) {
        encoder.write(chunk, seal);
      } else {
        // Frames compressed earlier: end the frame so far, and they follow it (zstd frames concatenate).
        encoder.endFrame(seal);
        for (const frame of chunk.frames) seal(frame);
      }
      const bytes = Buffer.isBuffer(chunk) ? chunk.length : chunk.size;
      plain += bytes;
      sinceTurn += bytes;
      options.onPlainBytes?.(plain);
      if (pieceBytes >= BLOB_PIECE) {
        sinceTurn = 0;
        yield piece();
      } else if (sinceTurn >= INPUT_PER_TURN) {
        sinceTurn = 0;
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
    }
    encoder.end(seal);
    sealer.end(sealed);
    for (const bytes of sealed) take(bytes);
    sealer = undefined;
    if (pieceBytes > 0) yield piece();
  } finally {
    // Ended early (an error, or the reader went away): drop the frame and the key material.
    sealer?.destroy();
    encoder.destroy();
  }
}
