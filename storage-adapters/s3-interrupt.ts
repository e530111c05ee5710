/**
 * Ctrl-C (or SIGTERM, SIGHUP) during an S3 multipart upload: without this the
 * parts already sent stay in the bucket, invisible but stored (and billed on
 * AWS) until a lifecycle rule clears them. While an upload is in flight it is
 * registered with core/interrupt.ts: a signal fails it (lib-storage then sends
 * AbortMultipartUpload, as on any other failure, once the parts it is sending
 * are done), and the process waits a few seconds at most for that before it
 * dies by the signal. Best effort: on a slow uplink the parts in flight may
 * take longer, and then the lifecycle rule is what clears them.
 */

import { interruptedBy, interruptedUpload, onInterrupt } from "../core/interrupt.js";

interface Interruptible {
  /** Stop the upload; its abort follows. */
  fail(err: Error): void;
  /** Settles when the upload has finished failing (its abort sent or given up). */
  settled: Promise<void>;
}

/** Track an upload until `settled`; one that starts while the process is being interrupted fails at once. */
export function interruptible(upload: Interruptible): void {
  const already = interruptedBy();
  if (already) {
    upload.fail(interruptedUpload(already));
    return;
  }
  const forget = onInterrupt(() => {
    upload.fail(interruptedUpload(interruptedBy() ?? "SIGINT"));
    return upload.settled;
  });
  void upload.settled.finally(forget);
}
