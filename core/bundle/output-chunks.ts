/**
 * Decompressed output buffers, each emitted whole. The reader thread fills again those the main
 * thread hands back (TarBatch.release); nothing else reuses one.
 */
export const PLAIN_CHUNK = 256 * 1024;

/**
 * Where a zstd decoder (the addon's, codec.ts, or the JavaScript one, zstd-js.ts) puts what it
 * decodes: buffers from `allocate`, each emitted once and then let go, so that each is the only
 * view of its own memory and the reader thread can move it to the main thread without a copy.
 */
export class OutputChunks {
  #out: Buffer;
  #filled = 0;

  constructor(
    /** Takes a filled buffer; false means the caller's output limit is passed. */
    private readonly emit: (data: Buffer) => boolean,
    private readonly allocate: () => Buffer = () => Buffer.allocUnsafe(PLAIN_CHUNK),
  ) {
    this.#out = allocate();
  }

  /** The part of the current buffer not filled yet, to decode into (then `advance`). */
  get free(): Buffer {
    return this.#out.subarray(this.#filled);
  }

  get full(): boolean {
    return this.#filled === this.#out.length;
  }

  /** `bytes` more of `free` were written. */
  advance(bytes: number): void {
    this.#filled += bytes;
  }

  /** Copy `bytes` in, emitting each buffer as it fills. */
  append(bytes: Uint8Array): void {
    for (let at = 0; at < bytes.length; ) {
      if (this.full) this.flush();
      const copied = Math.min(bytes.length - at, this.#out.length - this.#filled);
      this.#out.set(bytes.subarray(at, at + copied), this.#filled);
      this.#filled += copied;
      at += copied;
    }
  }

  /** Emit what is filled, if anything, and go on in a fresh buffer. */
  flush(): void {
    if (this.#filled === 0) return;
    const data = this.#out.subarray(0, this.#filled);
    this.#out = this.allocate();
    this.#filled = 0;
    if (!this.emit(data)) throw new Error("output limit");
  }
}
