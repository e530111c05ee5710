import { rmSync } from "node:fs";
import { CcbError } from "./errors.js";

/**
 * Ctrl-C (or SIGTERM from systemd, SIGHUP from a closed terminal) in the
 * middle of a command. Dying at once is safe: every step is written to survive
 * a `kill -9`. But it leaves what only a later command clears: decrypted
 * staging files in the config dir (hundreds of MB after a big pull), an
 * upload's temp file in a store folder, the parts of an S3 multipart upload
 * (invisible, but stored and billed until a lifecycle rule clears them).
 *
 * So while some work has such leftovers it registers a cleanup here, and
 * signals are ours only while one is registered (else Node's default, dying,
 * applies). A signal runs every cleanup; the synchronous ones are done at
 * once, those that return a promise (an S3 abort) get ABORT_WAIT_MS at most.
 * Then the process ends by the same signal, so the shell sees an interrupted
 * command (exit 130 or 143; a loop in a script stops). A second signal while
 * we wait finds no handler of ours and ends the process the default way.
 */

/** Synchronous, or returning a promise of the work it started (waited for, within limits). */
type Cleanup = () => unknown;

/** How long cleanups that return a promise may take before the process dies anyway. */
const ABORT_WAIT_MS = 3000;
const SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP"] as const;

const cleanups = new Set<Cleanup>();
/** Run after the others have finished (or timed out): a lock, which the others work under. */
const lastCleanups = new Set<Cleanup>();
let interrupted: NodeJS.Signals | undefined;
/** Set while claude runs in the foreground: its Ctrl-C is its own (see suspendInterrupts). */
let suspended = 0;

/** Run each cleanup once; the promises of those that return one. */
function runAll(set: Set<Cleanup>): Promise<unknown>[] {
  const pending: Promise<unknown>[] = [];
  for (const cleanup of set) {
    try {
      const result = cleanup();
      if (result instanceof Promise) pending.push(result);
    } catch {
      // Best effort: what is left, a later command clears as it would after a kill -9.
    }
  }
  set.clear();
  return pending;
}

function onSignal(signal: NodeJS.Signals): void {
  if (suspended > 0) return;
  interrupted = signal;
  for (const name of SIGNALS) process.off(name, onSignal);
  const pending = runAll(cleanups);
  process.stderr.write("\nccbundle: interrupted\n");
  const end = () => {
    runAll(lastCleanups);
    // Used as a library by a program with a handler of its own: that handler decides what a
    // signal does (and this module is ready for the next run).
    if (process.listenerCount(signal) > 0) {
      interrupted = undefined;
      return;
    }
    process.kill(process.pid, signal);
  };
  if (pending.length === 0) {
    end();
    return;
  }
  let timer: NodeJS.Timeout | undefined;
  void Promise.race([
    Promise.allSettled(pending),
    new Promise((resolve) => {
      timer = setTimeout(resolve, ABORT_WAIT_MS);
    }),
  ]).finally(() => {
    clearTimeout(timer);
    end();
  });
}

/** The signal that is ending this process, if one is: work about to start should not. */
export function interruptedBy(): NodeJS.Signals | undefined {
  return interrupted;
}

/** How an upload that a signal stopped (or kept from starting) fails, in any store. */
export function interruptedUpload(signal: NodeJS.Signals): CcbError {
  return new CcbError(`upload interrupted (${signal})`);
}

/**
 * Run `cleanup` if a signal ends the process before the returned function is called; with `last`,
 * after every other cleanup has finished.
 */
export function onInterrupt(cleanup: Cleanup, options: { last?: boolean } = {}): () => void {
  const set = options.last ? lastCleanups : cleanups;
  if (registered() === 0 && !interrupted) for (const signal of SIGNALS) process.on(signal, onSignal);
  set.add(cleanup);
  return () => {
    if (!set.delete(cleanup) || registered() > 0 || interrupted) return;
    for (const signal of SIGNALS) process.off(signal, onSignal);
  };
}

function registered(): number {
  return cleanups.size + lastCleanups.size;
}

/** Remove `target` (a file, or a folder and all in it) on interrupt; see onInterrupt. */
export function removeOnInterrupt(target: string): () => void {
  return onInterrupt(() => rmSync(target, { recursive: true, force: true }));
}

/**
 * Until the returned function is called, signals run no cleanup and end nothing: for
 * `claude --resume`, which gets the terminal's Ctrl-C itself (core/claude/resume.ts). Nothing
 * should be registered by then; this makes sure a leftover registration cannot end ccbundle
 * under a claude that is still running.
 */
export function suspendInterrupts(): () => void {
  suspended++;
  let resumed = false;
  return () => {
    if (!resumed) suspended--;
    resumed = true;
  };
}
