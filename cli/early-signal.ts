import { writeSync } from "node:fs";
import { constants } from "node:os";

/**
 * `--json` promises one document on stdout, also when Ctrl-C or SIGTERM ends the command
 * (cli/output.ts `interrupted`). main registers that at its start, but loading the bundle before
 * it takes 0.1-0.4 s, and a supervisor's timeout in that window left stdout empty. So the `ccbundle`
 * bin (scripts/bundle-cli.mjs) catches signals from its first line, and main takes over (release)
 * when its own handling begins. The two copies of this module (the bin's and the bundle's) meet
 * through a process-wide symbol.
 */

const KEY = Symbol.for("ccbundle.earlySignalHandler");
const SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP"] as const;

type Holder = { [KEY]?: (signal: NodeJS.Signals) => void };

/** With `--json` among `args`: a signal before main's own handling prints the interrupted document and ends the process by that signal. */
export function catchEarlySignals(args: string[] = process.argv.slice(2)): void {
  if (!args.some((arg) => arg === "--json" || arg === "--json=true")) return;
  const handler = (signal: NodeJS.Signals) => {
    releaseEarlySignals();
    const exitCode = 128 + (constants.signals[signal] ?? 0);
    try {
      writeSync(
        1,
        `${JSON.stringify({ ok: false, error: { message: `interrupted (${signal})`, exitCode } }, null, 2)}\n`,
      );
    } catch {
      // stdout is gone: nobody to tell.
    }
    // By the same signal, as main's handling ends (the shell sees 130 or 143).
    process.kill(process.pid, signal);
  };
  for (const signal of SIGNALS) process.on(signal, handler);
  (process as Holder)[KEY] = handler;
}

/** main's own signal handling starts: the early one goes (else a signal would print two documents). */
export function releaseEarlySignals(): void {
  const handler = (process as Holder)[KEY];
  if (!handler) return;
  for (const signal of SIGNALS) process.off(signal, handler);
  delete (process as Holder)[KEY];
}
