import { spawn } from "node:child_process";
import { access, constants } from "node:fs/promises";
import path from "node:path";

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

/** Run claude with the terminal handed over; resolves with its exit code. */
export function runClaudeResume(
  claudeBin: string,
  sessionId: string,
  cwd: string,
  env: NodeJS.ProcessEnv,
): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(claudeBin, ["--resume", sessionId], { cwd, stdio: "inherit", env });
    child.on("error", reject);
    child.on("exit", (code, signal) => resolve(code ?? (signal ? 128 : 1)));
  });
}

export function shellQuote(text: string): string {
  return /^[\w./@%+=:,-]+$/.test(text) ? text : `'${text.replace(/'/g, `'\\''`)}'`;
}
