import { closeSync, fsync } from "node:fs";

/**
 * Staged files made durable in the background, before the install journal
 * that names them is written (a power cut must not leave the journal pointing
 * at files whose bytes never reached the disk).
 *
 * Files are written with sync calls as the tar stream delivers them; each
 * fsync then runs on the libuv threadpool while the main thread goes on
 * decompressing and hashing the next entries, instead of one fsync (205 µs
 * each, 2456 on the bench corpus) blocking every file's install in turn.
 * `settle()` is the barrier the journal waits for.
 */

/** fsyncs in flight at once: the threadpool has 4 threads. */
const RUNNING = 4;
/** Files handed over but not yet synced, each holding its descriptor open: bounded, so descriptors do not pile up. */
const QUEUED = 64;

export class FsyncQueue {
  #running = 0;
  readonly #waiting: number[] = [];
  #failure: unknown;
  readonly #idle: (() => void)[] = [];
  readonly #room: (() => void)[] = [];

  /**
   * Take ownership of `fd` (a file just written): fsync it, then close it.
   * Resolves at once while there is room, else once the queue has drained a little.
   */
  async add(fd: number): Promise<void> {
    this.#waiting.push(fd);
    this.#pump();
    while (this.#waiting.length + this.#running > QUEUED)
      await new Promise<void>((resolve) => this.#room.push(resolve));
  }

  /** Resolves once every queued file is on disk; rejects with the first failure. */
  async settle(): Promise<void> {
    while (this.#running > 0 || this.#waiting.length > 0)
      await new Promise<void>((resolve) => this.#idle.push(resolve));
    if (this.#failure !== undefined) throw this.#failure;
  }

  #pump(): void {
    while (this.#running < RUNNING && this.#waiting.length > 0) {
      const fd = this.#waiting.shift()!;
      this.#running++;
      fsync(fd, (syncError) => {
        // Closing a synced file is quick: a second threadpool round trip per file (2456 on the
        // bench corpus) cost more main-thread time in wake-ups than the close itself.
        let closeError: unknown;
        try {
          closeSync(fd);
        } catch (err) {
          closeError = err;
        }
        this.#failure ??= syncError ?? closeError ?? undefined;
        this.#running--;
        this.#pump();
        for (const wake of this.#room.splice(0)) wake();
        if (this.#running === 0 && this.#waiting.length === 0) for (const wake of this.#idle.splice(0)) wake();
      });
    }
  }
}
