/**
 * Ctrl-C (or SIGTERM from systemd, SIGHUP from a closed terminal) during an S3
 * multipart upload.
 *
 * Node's default is to die at once, which leaves the parts already sent in the
 * bucket: invisible, but stored (and billed on AWS) until a lifecycle rule
 * clears them. While an upload is in flight we take over those signals: fail
 * the uploads (lib-storage then sends AbortMultipartUpload, as on any other
 * failure, once the parts it is sending are done), wait ABORT_WAIT_MS at most
 * for that, then die by the same signal, so the shell sees what it expects
 * (exit 130 or 143). Best effort: on a slow uplink the parts in flight may take
 * longer, and then the lifecycle rule is what clears them. A second signal
 * while we wait ends the process at once.
 */

import { CcbError } from "../core/errors.js";

interface Interruptible {
  /** Stop the upload; its abort follows. */
  fail(err: Error): void;
  /** Settles when the upload has finished failing (its abort sent or given up). */
  settled: Promise<void>;
}

/** How long the aborts may take before the process dies anyway. */
const ABORT_WAIT_MS = 3000;
const SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP"] as const;

const uploads = new Set<Interruptible>();
let interrupted: NodeJS.Signals | undefined;

/** Track an upload until `settled`; signals are ours only while one is tracked. */
export function interruptible(upload: Interruptible): void {
  if (interrupted) {
    upload.fail(interruptedBy(interrupted));
    return;
  }
  if (uploads.size === 0) for (const signal of SIGNALS) process.on(signal, onSignal);
  uploads.add(upload);
  void upload.settled.finally(() => {
    uploads.delete(upload);
    if (uploads.size === 0 && !interrupted) for (const signal of SIGNALS) process.off(signal, onSignal);
  });
}

/** Fail every tracked upload and wait (up to ABORT_WAIT_MS) for their aborts. */
async function interruptUploads(signal: NodeJS.Signals): Promise<void> {
  interrupted = signal;
  const pending = [...uploads];
  for (const upload of pending) upload.fail(interruptedBy(signal));
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    Promise.allSettled(pending.map((upload) => upload.settled)),
    new Promise((resolve) => {
      timer = setTimeout(resolve, ABORT_WAIT_MS);
    }),
  ]);
  clearTimeout(timer);
}

function interruptedBy(signal: NodeJS.Signals): CcbError {
  return new CcbError(`upload interrupted (${signal})`);
}

function onSignal(signal: NodeJS.Signals): void {
  for (const name of SIGNALS) process.off(name, onSignal);
  // A second Ctrl-C finds no handler of ours and ends the process the default way.
  void interruptUploads(signal).finally(() => process.kill(process.pid, signal));
}
