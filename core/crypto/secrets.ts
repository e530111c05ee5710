import { openSync, readFileSync, readSync } from "node:fs";
import tty from "node:tty";
import { CcbError, errnoCode, UsageError } from "../errors.js";

/**
 * Where passphrases and PINs come from. Never argv (it shows in `ps`): an
 * environment variable, a file, an inherited file descriptor, or a prompt on
 * the terminal. A script with none of these gets an error with a hint, never
 * a prompt that hangs a cron job.
 */

/** The environment variables a secret may come from. */
export const PASSPHRASE_ENV = "CCBUNDLE_PASSPHRASE";
export const PIN_ENV = "CCBUNDLE_PIN";

/**
 * `env` for a process we start (claude --resume, git): without our secrets. Claude Code's Bash
 * tool, its hooks and a repository's git config (core.fsmonitor runs a command) would all
 * inherit them, and whatever the model prints lands in the transcript that is pushed next.
 */
export function withoutSecrets(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const { [PASSPHRASE_ENV]: _passphrase, [PIN_ENV]: _pin, ...rest } = env;
  return rest;
}

export interface SecretSource {
  /** Name of the environment variable, e.g. CCBUNDLE_PASSPHRASE. */
  envVar: string;
  file?: string | undefined;
  fd?: number | undefined;
  env: NodeJS.ProcessEnv;
  /** The label for prompts and errors: "passphrase" or "PIN". */
  label: string;
  /** Flag names for hints, e.g. "--passphrase-file". */
  fileFlag: string;
  fdFlag?: string;
}

/** Read a secret; undefined when no source is set and no terminal is there to ask. */
export async function readSecret(
  source: SecretSource,
  prompt?: { message: string; confirm?: boolean },
): Promise<string | undefined> {
  if (source.file !== undefined) return clean(readFromFile(source.file, source), source);
  if (source.fd !== undefined) return clean(readFromFd(source.fd, source), source);
  const fromEnv = source.env[source.envVar];
  if (fromEnv === "") {
    // `CCBUNDLE_PASSPHRASE=$UNSET`: a mistake, not "ask me" (and in cron, not "there is no terminal").
    throw new UsageError(`${source.envVar} is set but empty`, {
      hint: `put the ${source.label} in it, or unset it${prompt ? " to be asked for it" : ""}`,
    });
  }
  if (fromEnv !== undefined) return fromEnv;
  if (!prompt || !process.stderr.isTTY) return undefined;
  const input = terminalInput();
  if (!input) return undefined;
  try {
    return await promptTwice(input, source, prompt);
  } finally {
    if (input !== process.stdin) input.destroy();
  }
}

/**
 * Where a prompt reads from: stdin when it is the terminal, else the terminal itself
 * (`/dev/tty`): `ccbundle key import - < me.key` and `ccbundle import - < bundle.ccb` have
 * their data on stdin and the user at the keyboard. No terminal (cron, plain ssh): undefined.
 */
function terminalInput(): tty.ReadStream | undefined {
  if (process.stdin.isTTY) return process.stdin;
  if (process.platform === "win32") return undefined;
  try {
    return new tty.ReadStream(openSync("/dev/tty", "r"));
  } catch {
    return undefined;
  }
}

async function promptTwice(
  input: tty.ReadStream,
  source: SecretSource,
  prompt: { message: string; confirm?: boolean },
): Promise<string> {
  const first = await promptHidden(prompt.message, input);
  if (prompt.confirm) {
    const second = await promptHidden(`Repeat the ${source.label}: `, input);
    if (first !== second) throw new UsageError(`the ${source.label}s did not match`, { hint: "run the command again" });
  }
  return first;
}

/** Like readSecret, but a missing secret is an error saying how to give one. */
export async function requireSecret(
  source: SecretSource,
  prompt: { message: string; confirm?: boolean },
): Promise<string> {
  const secret = await readSecret(source, prompt);
  if (secret === undefined || secret === "") {
    throw new UsageError(`a ${source.label} is needed and there is no terminal to ask for it`, {
      hint: `set ${source.envVar}, or pass ${source.fileFlag} <file>${source.fdFlag ? ` or ${source.fdFlag} <n>` : ""}`,
    });
  }
  return secret;
}

function readFromFile(file: string, source: SecretSource): string {
  try {
    return readFileSync(file, "utf8");
  } catch (err) {
    const code = errnoCode(err);
    // A path that names nothing (or a folder) is a mistake in the command, like a bad flag.
    if (code === "ENOENT" || code === "EISDIR" || code === "ENOTDIR") {
      throw new UsageError(
        `${source.fileFlag} ${file}: ${code === "EISDIR" ? "a folder, not a file" : "no such file"}`,
        {
          hint: `give the file that holds the ${source.label} (one line)`,
        },
      );
    }
    throw new CcbError(`cannot read the ${source.label} file ${file}${code ? ` (${code})` : ""}`, 1, {
      hint: `check ${source.fileFlag}`,
      cause: err,
    });
  }
}

function readFromFd(fd: number, source: SecretSource): string {
  const chunks: Buffer[] = [];
  const buffer = Buffer.alloc(4096);
  try {
    for (;;) {
      const n = readSync(fd, buffer, 0, buffer.length, null);
      if (n === 0) break;
      chunks.push(Buffer.from(buffer.subarray(0, n)));
      if (buffer.subarray(0, n).includes(0x0a)) break;
    }
  } catch (err) {
    // A descriptor the shell did not open names nothing, like a missing --passphrase-file: the
    // command's mistake. (EINVAL: the number is one of Node's own descriptors, not a file.)
    if (errnoCode(err) === "EBADF" || errnoCode(err) === "EINVAL") {
      throw new UsageError(`${source.fdFlag ?? "file descriptor"} ${fd}: not a file descriptor opened for ccbundle`, {
        hint: `open it in the shell that runs ccbundle (e.g. ${source.fdFlag ?? "--passphrase-fd"} 3 3<file)`,
      });
    }
    throw new CcbError(`cannot read the ${source.label} from file descriptor ${fd}`, 1, {
      hint: `check ${source.fdFlag ?? "the descriptor"}`,
      cause: err,
    });
  } finally {
    buffer.fill(0);
  }
  return Buffer.concat(chunks).toString("utf8");
}

/** Only the first line counts; a trailing newline from `echo` or an editor is not part of it. */
function clean(text: string, source: SecretSource): string {
  const line = text.split(/\r?\n/)[0] ?? "";
  if (line.length === 0)
    throw new UsageError(`the ${source.label} given is empty`, { hint: `check ${source.fileFlag}` });
  return line;
}

/** Prompt on the controlling terminal with echo off. */
function promptHidden(message: string, stdin: tty.ReadStream): Promise<string> {
  return new Promise((resolve) => {
    // Echo off before the prompt shows: what is typed the instant it appears must not be echoed.
    stdin.setRawMode?.(true);
    process.stderr.write(message);
    stdin.resume();
    let value = "";
    const onData = (data: Buffer) => {
      for (const char of data.toString("utf8")) {
        if (char === "\r" || char === "\n") {
          finish();
          resolve(value);
          return;
        }
        if (char === "\u0003") {
          // Raw mode made Ctrl-C a character: end as Ctrl-C ends a command (exit 130, and the
          // cleanups of core/interrupt.ts), not as a usage error (exit 2).
          finish();
          value = "";
          process.kill(process.pid, "SIGINT");
          // A handler of ours (core/interrupt.ts; with --json it is always there) runs on a later
          // turn of the event loop: keep the loop alive until it ends the process, or the loop
          // drains first and the run ends as "stopped before it finished".
          setTimeout(() => undefined, 10_000);
          return;
        }
        if (char === "\u007f" || char === "\b") value = value.slice(0, -1);
        else value += char;
      }
    };
    const finish = () => {
      stdin.off("data", onData);
      stdin.setRawMode?.(false);
      stdin.pause();
      process.stderr.write("\n");
    };
    stdin.on("data", onData);
  });
}
