import { type Readable, Transform } from "node:stream";

/**
 * Progress of a long phase, for the CLI to draw (bars on a terminal, nothing
 * in cron). `done` and `total` are in `unit`; `total` may grow while a phase
 * runs (a session's size is known only once it is read).
 */
export interface ProgressEvent {
  phase: "scan" | "upload" | "download";
  unit: "sessions" | "bytes";
  done: number;
  total: number;
}

export type ProgressListener = (event: ProgressEvent) => void;

/**
 * `source`, counting its bytes as they flow through. (Not a store's own onProgress: a data
 * listener on the store's stream would start it flowing before the reader is attached.)
 */
export function countBytes(source: Readable, report: (bytes: number) => void): Readable {
  let bytes = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      bytes += chunk.length;
      report(bytes);
      done(null, chunk);
    },
  });
  source.on("error", (err) => counter.destroy(err));
  // pipe() only unpipes when the reader gives up: close the store's stream (its connection) too.
  counter.once("close", () => {
    if (!source.destroyed && !source.readableEnded) source.destroy();
  });
  return source.pipe(counter);
}
