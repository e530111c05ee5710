import { existsSync } from "node:fs";
import os from "node:os";
import { Readable } from "node:stream";
import { fileURLToPath } from "node:url";
import v8 from "node:v8";
import { Worker } from "node:worker_threads";
import { type CollectedSession, collectSession, type SessionRef } from "../claude/session.js";
import { parseRecipient } from "../crypto/keys.js";
import { bundleStream } from "./blob.js";
import type { CompressOptions } from "./codec.js";
import type { PackFile } from "./pack.js";
import { asBuffer, type FromWorker, fromFailure, type ToWorker, WINDOW } from "./worker-protocol.js";

/** Set on globalThis once this process changed V8 flags (see cli/code-cache.ts). */
export const V8_FLAGS_CHANGED = Symbol.for("ccbundle.v8FlagsChanged");

/**
 * Collects sessions and encodes their blobs on worker threads, one per core
 * (at most 4), for `backup`: it writes hundreds of ~1 MB blobs, and on one
 * thread their reads, hashes, tar, zstd and age ran one after another while
 * the other core idled (bench: 5.3 s for 300 sessions against 1.0 s for
 * `tar | zstd | age`). The main thread keeps what needs it: git, signing
 * (the private key stays here), uploads and the state journal.
 *
 * `inProcess()` does the same on the calling thread: where worker threads are
 * not available (running from TypeScript sources, as the tests do).
 */
export interface SessionBundler {
  /** Threads that collect and encode (1 for in-process). */
  readonly threads: number;
  collect(claudeDir: string, ref: SessionRef): Promise<CollectedSession>;
  /** The blob, `age(zstd(tar))`, byte for byte what bundleStream writes. */
  encode(options: EncodeOptions): Readable;
  /** Start the threads now (their start-up then overlaps what the caller does before the first job). */
  warm(): void;
  close(): Promise<void>;
}

export interface EncodeOptions {
  manifestJson: Buffer;
  files: PackFile[];
  /** X25519 age recipients as strings (`age1…`, what String(X25519Recipient) gives). */
  recipients: string[];
  compression: CompressOptions;
  onPlainBytes?: ((bytes: number) => void) | undefined;
}

const WORKER_FILE = new URL("./worker.js", import.meta.url);

/** Worker threads when this build has them, else the calling thread. */
export function sessionBundler(threads = Math.min(4, os.availableParallelism())): SessionBundler {
  if (threads < 1 || !existsSync(fileURLToPath(WORKER_FILE))) return inProcess();
  return new WorkerPool(threads);
}

export function inProcess(): SessionBundler {
  return {
    threads: 1,
    collect: collectSession,
    encode: (options) =>
      bundleStream({ ...options, recipients: options.recipients.map((recipient) => parseRecipient(recipient)) }),
    warm: () => {},
    close: async () => {},
  };
}

interface Job {
  message: ToWorker;
  /** Handles the job's replies; true once the job is over (the worker is free). */
  reply(message: FromWorker): boolean;
  fail(err: Error): void;
  /** Called when a worker takes the job. */
  started?(worker: Worker): void;
}

interface Slot {
  worker: Worker;
  job: Job | undefined;
}

/** V8 majors 11-13 (Node 20.10 to 24) have `--turbofan`. */
const KNOWN_TURBOFAN_FLAG = /^1[123]\./;
let jitLimited = false;

class WorkerPool implements SessionBundler {
  readonly #slots: Slot[] = [];
  readonly #queue: Job[] = [];
  #nextId = 1;
  #closed = false;

  constructor(readonly threads: number) {
    // No TurboFan from here on, in this process and the threads it starts: what they run is glue
    // around native work (reads, sha256, zstd, chacha), and optimizing it in three isolates cost more
    // than it saved. Bench, backup --all of 300 sessions: ~0.3-0.5 s less CPU (the background compile
    // threads had ~0.6 s), peak RSS -22 MB. Ignition and Sparkplug still run; set once per process.
    // Only on the V8 versions known to have the flag (Node 20-24): an unknown one is printed to
    // stderr by V8 itself, in the middle of the user's output.
    if (!jitLimited && KNOWN_TURBOFAN_FLAG.test(process.versions.v8)) {
      v8.setFlagsFromString("--no-turbofan");
      // V8 stamps code-cache data with its flags: data made from now on would be refused by every
      // normal run (cli/code-cache.ts reads this and writes nothing).
      (globalThis as Record<symbol, unknown>)[V8_FLAGS_CHANGED] = true;
    }
    jitLimited = true;
  }

  collect(claudeDir: string, ref: SessionRef): Promise<CollectedSession> {
    return new Promise((resolve, reject) => {
      this.#submit({
        message: { type: "collect", id: this.#nextId++, claudeDir, ref },
        reply: (message) => {
          if (message.type === "collected") resolve(restoreContent(message.session));
          else if (message.type === "failed") reject(fromFailure(message.failure));
          return true;
        },
        fail: reject,
      });
    });
  }

  encode(options: EncodeOptions): Readable {
    const id = this.#nextId++;
    let worker: Worker | undefined;
    let over = false;
    /**
     * Chunks taken but not yet credited. Credits go in batches of half the window: most blobs
     * are one chunk and end without a credit message at all (300 fewer posts per backup). The
     * worker stops at WINDOW uncredited chunks, so by then at least half a window has come in
     * here and is credited as soon as the stream takes it: no stall.
     */
    let owed = 0;
    let full = false;
    const credit = () => {
      if (full || owed < WINDOW / 2) return;
      worker?.postMessage({ type: "credit", id, chunks: owed } satisfies ToWorker);
      owed = 0;
    };
    const stream = new Readable({
      read() {
        full = false;
        credit();
      },
      destroy(err, callback) {
        if (!over) worker?.postMessage({ type: "cancel", id } satisfies ToWorker);
        over = true;
        callback(err);
      },
    });
    this.#submit({
      message: {
        type: "encode",
        id,
        manifestJson: options.manifestJson,
        files: options.files,
        recipients: options.recipients,
        compression: options.compression,
      },
      reply: (message) => {
        if (message.type === "chunk") {
          if (over) {
            // Destroyed before or while the worker encoded it: stop the worker (it waits for credit).
            worker?.postMessage({ type: "cancel", id } satisfies ToWorker);
            return false;
          }
          options.onPlainBytes?.(message.plain);
          // One Buffer per message (~1 MiB): the store then writes (and hashes) big chunks, not
          // 64 KiB ciphertexts and 16-byte tags one by one. The parts die here, where GC is frequent.
          const parts = message.data.map((data) => Buffer.from(data));
          owed++;
          full = !stream.push(parts.length === 1 ? parts[0] : Buffer.concat(parts));
          credit();
          return false;
        }
        if (!over) {
          over = true;
          if (message.type === "done") stream.push(null);
          else if (message.type === "failed") stream.destroy(fromFailure(message.failure));
        }
        return true;
      },
      fail: (err) => {
        over = true;
        stream.destroy(err);
      },
      started: (taken) => {
        worker = taken;
      },
    });
    return stream;
  }

  warm(): void {
    while (!this.#closed && this.#slots.length < this.threads) this.#spawn();
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const job of this.#queue.splice(0)) job.fail(new Error("bundle workers closed"));
    await Promise.all(this.#slots.map((slot) => slot.worker.terminate()));
    this.#slots.length = 0;
  }

  #submit(job: Job): void {
    if (this.#closed) {
      job.fail(new Error("bundle workers closed"));
      return;
    }
    // Encodes go before collects: they finish sessions (and free upload slots); collects start new ones.
    const firstCollect = this.#queue.findIndex((queued) => queued.message.type === "collect");
    if (job.message.type === "encode" && firstCollect >= 0) this.#queue.splice(firstCollect, 0, job);
    else this.#queue.push(job);
    this.#pump();
  }

  #pump(): void {
    while (this.#queue.length > 0) {
      let slot = this.#slots.find((candidate) => candidate.job === undefined);
      if (!slot && this.#slots.length < this.threads) slot = this.#spawn();
      if (!slot) return;
      const job = this.#queue.shift()!;
      slot.job = job;
      job.started?.(slot.worker);
      slot.worker.postMessage(job.message);
    }
  }

  #spawn(): Slot {
    // A small young generation: a worker's JS heap stays small, and the default (up to 48 MB)
    // let dead read and cipher buffers pile up between GCs (bench peak RSS 225 MB, 185 MB with 4).
    const worker = new Worker(WORKER_FILE, { resourceLimits: { maxYoungGenerationSizeMb: 4 } });
    const slot: Slot = { worker, job: undefined };
    worker.on("message", (message: FromWorker) => {
      const job = slot.job;
      if (!job || job.message.id !== message.id) return;
      if (job.reply(message)) {
        slot.job = undefined;
        this.#pump();
      }
    });
    // A worker that dies (a bug, out of memory) fails its job; the others go on, on a fresh worker.
    const lost = (err: Error) => {
      const index = this.#slots.indexOf(slot);
      if (index < 0) return;
      this.#slots.splice(index, 1);
      const job = slot.job;
      slot.job = undefined;
      job?.fail(err);
      if (!this.#closed) this.#pump();
    };
    worker.on("error", lost);
    worker.on("exit", (code) => lost(new Error(`a bundle worker stopped (exit code ${code})`)));
    this.#slots.push(slot);
    return slot;
  }
}

/** Synthesized files (history lines) arrive as Uint8Array: pack.ts wants Buffers. */
function restoreContent(session: CollectedSession): CollectedSession {
  for (const file of session.files) if (file.content) file.content = asBuffer(file.content);
  return session;
}
