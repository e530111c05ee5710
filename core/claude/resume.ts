import { spawn } from "node:child_process";
import { access, constants } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { withoutSecrets } from "../crypto/secrets.js";
import { CcbError } from "../errors.js";
import { suspendInterrupts } from "../interrupt.js";

/** Handing the terminal to `claude --resume <id>` in the project directory. */

export function resumeCommandLine(sessionId: string, cwd: string): string {
  return `cd ${shellQuote(cwd)} && claude --resume ${sessionId}`;
}

export async function findOnPath(command: string, env: NodeJS.ProcessEnv): Promise<string | undefined> {
  for (const dir of (env.PATH ?? "").split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, command);
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

/**
 * Run claude with the terminal handed over; resolves with its exit code (128 +
 * the signal number if a signal ended it). While claude runs, Ctrl-C and
 * Ctrl-\ reach every process of the terminal's foreground group, us included:
 * claude handles them itself (Ctrl-C interrupts a turn), so we ignore them, as
 * system(3) does, instead of dying and handing the terminal back to the shell
 * under a claude that is still running. SIGTERM and SIGHUP are passed on.
 */
export function runClaudeResume(
  claudeBin: string,
  sessionId: string,
  cwd: string,
  env: NodeJS.ProcessEnv,
): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(claudeBin, ["--resume", sessionId], { cwd, stdio: "inherit", env: withoutSecrets(env) });
    const ignore = () => {};
    const forward = (signal: NodeJS.Signals) => child.kill(signal);
    const handlers: [NodeJS.Signals, (signal: NodeJS.Signals) => void][] = [
      ["SIGINT", ignore],
      ["SIGQUIT", ignore],
      ["SIGTERM", forward],
      ["SIGHUP", forward],
    ];
    for (const [signal, handler] of handlers) process.on(signal, handler);
    const resumeInterrupts = suspendInterrupts();
    const release = () => {
      for (const [signal, handler] of handlers) process.off(signal, handler);
      resumeInterrupts();
    };
    child.on("error", (err) => {
      release();
      reject(
        new CcbError(
          `could not start ${claudeBin} in ${cwd}: ${(err as NodeJS.ErrnoException).code ?? err.message}`,
          1,
          {
            hint: `run it yourself: ${resumeCommandLine(sessionId, cwd)}`,
            cause: err,
          },
        ),
      );
    });
    child.on("exit", (code, signal) => {
      release();
      resolve(code ?? (signal ? 128 + (os.constants.signals[signal] ?? 0) : 1));
    });
  });
}

export function shellQuote(text: string): string {
  return /^[\w./@%+=:,-]+$/.test(text) ? text : `'${text.replace(/'/g, `'\\''`)}'`;
}
