/** Small helpers the transports share: abort-aware waiting and one-line reasons. */

/** The reason a signal was aborted with when a transport's own time ran out. */
export class TimeoutReason extends Error {
  constructor(readonly ms: number) {
    super(`timed out after ${formatSeconds(ms)}`);
    this.name = "TimeoutReason";
  }
}

/** A signal that aborts with a TimeoutReason after `ms` (the timer does not keep the process alive). */
export function timeoutSignal(ms: number): AbortSignal {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new TimeoutReason(ms)), ms);
  timer.unref();
  return controller.signal;
}

/** Settle with `promise`, or reject with the signal's reason as soon as it aborts. */
export function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    promise.catch(() => {});
    return Promise.reject(reasonOf(signal));
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => {
      promise.catch(() => {});
      reject(reasonOf(signal));
    };
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(err);
      },
    );
  });
}

function reasonOf(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  if (reason instanceof Error) return reason;
  return new Error("aborted");
}

/** A one-line reason for a failure: the message, with a timeout or errno named plainly. */
export function describeError(err: unknown): string {
  if (err instanceof TimeoutReason) return err.message;
  if (err instanceof Error) {
    if (err.name === "TimeoutError") return "timed out";
    if (err.name === "AbortError") return "aborted";
    const cause = (err as { cause?: unknown }).cause;
    // fetch() wraps the socket error: "fetch failed" + cause ECONNREFUSED.
    if (err.message === "fetch failed" && cause instanceof Error) {
      const code = (cause as { code?: unknown }).code;
      return typeof code === "string" ? `unreachable (${code})` : `unreachable (${cause.message})`;
    }
    return firstLine(err.message);
  }
  return firstLine(String(err));
}

export function firstLine(text: string, max = 200): string {
  const line = text.split("\n", 1)[0]?.trim() ?? "";
  return line.length > max ? `${line.slice(0, max)}…` : line;
}

export function formatSeconds(ms: number): string {
  const seconds = ms / 1000;
  return `${Number.isInteger(seconds) ? seconds : seconds.toFixed(1)} s`;
}
