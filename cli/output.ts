import { writeSync } from "node:fs";
import { constants } from "node:os";
import { type CcbError, ExitCode, fileSystemError, isCcbError } from "../core/errors.js";

/**
 * `ccbundle list | head -1`: the reader went away after the lines it wanted. That is no failure of
 * the command, which finishes as it would have (a backup still writes its snapshot); what it
 * prints from then on goes nowhere. Without a listener Node turns EPIPE into a crash with a stack
 * trace. Called once, at start-up.
 */
export function tolerateClosedStdout(stdout: NodeJS.WriteStream = process.stdout): void {
  stdout.on("error", (err: NodeJS.ErrnoException) => {
    if (err.code !== "EPIPE" && err.code !== "ERR_STREAM_DESTROYED") throw err;
  });
}

type InterruptDetail = () => { hint?: string; [field: string]: unknown };

/**
 * One stdout per process, and the Output of cli/main.ts is not the one a command's Context
 * prints its result with: whether --json's one document is written is kept here, for both.
 */
const stdoutState: { documentWritten: boolean; interruptDetail: InterruptDetail | undefined } = {
  documentWritten: false,
  interruptDetail: undefined,
};

/**
 * All printing goes through here. Human output goes to stdout; warnings and
 * progress to stderr; with --json, stdout carries exactly one JSON document.
 * Secrets never reach this module: callers pass only public facts.
 */
export class Output {
  constructor(
    readonly json: boolean,
    readonly quiet: boolean,
    private readonly stdout: NodeJS.WriteStream = process.stdout,
    private readonly stderr: NodeJS.WriteStream = process.stderr,
  ) {}

  /** Progress bars redraw lines with cursor moves: only on a terminal that has them (not TERM=dumb, Emacs' shell). */
  get interactive(): boolean {
    return !this.json && !this.quiet && !!this.stderr.isTTY && process.env.TERM !== "dumb";
  }

  /** A line of the human-readable result. */
  line(text = ""): void {
    if (!this.json && !this.quiet) this.stdout.write(`${text}\n`);
  }

  /** A result line that --quiet still prints (e.g. a key for scripts). */
  essential(text: string): void {
    if (!this.json) this.stdout.write(`${text}\n`);
  }

  warn(text: string): void {
    if (!this.quiet || this.json) this.stderr.write(`warning: ${text}\n`);
  }

  progress(text: string): void {
    if (this.interactive) this.stderr.write(`${text}\n`);
  }

  result(document: unknown): void {
    if (this.json) this.stdout.write(`${JSON.stringify(document, null, 2)}\n`);
    stdoutState.documentWritten = true;
  }

  /**
   * What the command can say about itself if a signal ends it now (restore --all: how many
   * sessions are in): fields of the --json document, and a hint.
   */
  set interruptDetail(detail: InterruptDetail | undefined) {
    stdoutState.interruptDetail = detail;
  }

  /**
   * A signal is ending the process (core/interrupt.ts runs this last): with --json, the one
   * document is still owed, or a script reading it gets nothing it can parse. Written with a
   * synchronous write, since the process is killed right after.
   */
  interrupted(signal: NodeJS.Signals | undefined): void {
    if (!this.json || stdoutState.documentWritten || signal === undefined) return;
    stdoutState.documentWritten = true;
    const { hint, ...fields } = stdoutState.interruptDetail?.() ?? {};
    const exitCode = 128 + (constants.signals[signal] ?? 0);
    const document = { ok: false, ...fields, error: { message: `interrupted (${signal})`, hint, exitCode } };
    try {
      writeSync(1, `${JSON.stringify(document, null, 2)}\n`);
    } catch {
      // stdout is gone: nobody to tell.
    }
  }

  /** Print an error and return the exit code to use. */
  failure(err: unknown): number {
    const known: CcbError | undefined = isCcbError(err) ? err : fileSystemError(err);
    const message = known ? known.message : `unexpected error: ${err instanceof Error ? err.message : String(err)}`;
    const code = known ? known.exitCode : ExitCode.failure;
    if (this.json && !stdoutState.documentWritten) {
      this.stdout.write(
        `${JSON.stringify({ ok: false, error: { message, hint: known?.hint, exitCode: code } }, null, 2)}\n`,
      );
    }
    stdoutState.documentWritten = true;
    this.stderr.write(`ccbundle: ${message}\n`);
    if (known?.hint) this.stderr.write(`hint: ${known.hint}\n`);
    if (!known && process.env.CCBUNDLE_DEBUG && err instanceof Error) this.stderr.write(`${err.stack}\n`);
    if (!known && !process.env.CCBUNDLE_DEBUG)
      this.stderr.write("hint: this is a bug in ccbundle; rerun with CCBUNDLE_DEBUG=1 and report it\n");
    return code;
  }
}

/** "1 session", "3 sessions": a count with its noun. */
export function count(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? "" : "s"}`;
}
