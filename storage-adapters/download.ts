import { Transform } from "node:stream";
import { CcbError } from "../core/errors.js";

/**
 * The pass-through every network download goes through: reports progress, and
 * fails at the end if fewer (or more) bytes came than the server announced —
 * a connection closed early can look like a clean end, and a short object must
 * never be handed on.
 */
export function countedDownload(
  expected: number | undefined,
  onProgress: ((bytesDone: number) => void) | undefined,
  what: string,
): Transform {
  let done = 0;
  return new Transform({
    highWaterMark: 1024 * 1024,
    transform(chunk: Buffer, _encoding, cb) {
      done += chunk.length;
      onProgress?.(done);
      cb(null, chunk);
    },
    flush(cb) {
      if (expected !== undefined && done !== expected) {
        cb(new CcbError(`${what} stopped after ${done} of ${expected} bytes`, 1, { hint: "retry; check the network" }));
        return;
      }
      cb();
    },
  });
}
