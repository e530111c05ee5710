/**
 * Typed errors. Every failure a user can meet is a CcbError carrying the exit
 * code DESIGN.md promises and a one-line hint; the CLI prints `ccbundle: <message>`
 * and `hint: <hint>` and exits with `exitCode`. Anything else that escapes is a bug.
 */

export const ExitCode = {
  ok: 0,
  failure: 1,
  usage: 2,
  partial: 3,
  notFound: 4,
  integrity: 5,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

export interface CcbErrorOptions {
  hint?: string;
  cause?: unknown;
}

export class CcbError extends Error {
  readonly exitCode: ExitCode;
  readonly hint: string | undefined;

  constructor(message: string, exitCode: ExitCode = ExitCode.failure, options: CcbErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "CcbError";
    this.exitCode = exitCode;
    this.hint = options.hint;
  }
}

/** Bad flags or arguments (exit 2). */
export class UsageError extends CcbError {
  constructor(message: string, options: CcbErrorOptions = {}) {
    super(message, ExitCode.usage, options);
    this.name = "UsageError";
  }
}

/** No record, no session, no object (exit 4). */
export class NotFoundError extends CcbError {
  constructor(message: string, options: CcbErrorOptions = {}) {
    super(message, ExitCode.notFound, options);
    this.name = "NotFoundError";
  }
}

/** Bad signature, tampered data, wrong key, expired or burned record (exit 5). */
export class IntegrityError extends CcbError {
  constructor(message: string, options: CcbErrorOptions = {}) {
    super(message, ExitCode.integrity, options);
    this.name = "IntegrityError";
  }
}

export function isCcbError(err: unknown): err is CcbError {
  return err instanceof CcbError;
}

/**
 * Whether `err`, or an error it wraps (its `cause`), is a write that found the disk or the quota
 * full: a restore of many sessions stops there, the rest would fail too.
 */
export function isNoSpace(err: unknown): boolean {
  for (let at = err, depth = 0; at !== undefined && at !== null && depth < 8; depth++) {
    const code = errnoCode(at);
    if (code === "ENOSPC" || code === "EDQUOT") return true;
    at = (at as { cause?: unknown }).cause;
  }
  return false;
}

/** The errno code of a Node system error, if it is one. */
export function errnoCode(err: unknown): string | undefined {
  if (typeof err === "object" && err !== null && "code" in err) {
    const code = (err as { code: unknown }).code;
    return typeof code === "string" ? code : undefined;
  }
  return undefined;
}

/**
 * A file system error nothing closer to it explained (a config folder made read-only, a full
 * disk): one line naming the path, instead of "unexpected error … this is a bug". Undefined
 * for anything else.
 */
export function fileSystemError(err: unknown): CcbError | undefined {
  const code = errnoCode(err);
  const where = (err as { path?: unknown } | null)?.path;
  if (!code) return undefined;
  // A write to an open descriptor fails without a path; a full disk is still a full disk.
  if (typeof where !== "string" && !PATHLESS.has(code)) return undefined;
  const known: Record<string, [string, string]> = {
    EACCES: ["permission denied", "check who owns it and its permissions (ls -ld), or point ccbundle elsewhere"],
    EPERM: ["operation not permitted", "check who owns it and its permissions (ls -ld), or point ccbundle elsewhere"],
    EROFS: ["the file system is read-only", "point ccbundle at a writable folder"],
    ENOSPC: ["no space left on the device", "free some space and run it again"],
    EDQUOT: ["disk quota exceeded", "free some space and run it again"],
    EISDIR: ["is a folder, not a file", "give the path of a file"],
    ENOTDIR: ["a part of the path is a file, not a folder", "check the path"],
    EMFILE: ["too many open files", "raise the limit (ulimit -n) and run it again"],
  };
  const found = known[code];
  if (!found) return undefined;
  const what = typeof where === "string" ? `${where}: ${found[0]}` : found[0];
  return new CcbError(`${what} (${code})`, ExitCode.failure, { hint: found[1], cause: err });
}

/** Conditions of the whole file system or process, which say what to do even without a path. */
const PATHLESS = new Set(["ENOSPC", "EDQUOT", "EROFS", "EMFILE"]);

/**
 * `err` with `file` as its path if it has none: writes to an open descriptor fail without
 * one, and "no space left" reads better with the file it was writing.
 */
export function withPath(err: unknown, file: string): unknown {
  if (errnoCode(err) && typeof (err as { path?: unknown }).path !== "string") {
    (err as { path?: string }).path = file;
  }
  return err;
}

/** A failure as one line, its hint and exit code: for reports that list many (backup, restore). */
export function describeFailure(err: unknown): { message: string; hint: string | undefined; exitCode: ExitCode } {
  const known = isCcbError(err) ? err : fileSystemError(err);
  if (known) return { message: known.message, hint: known.hint, exitCode: known.exitCode };
  return {
    message: `unexpected error: ${err instanceof Error ? err.message : String(err)}`,
    hint: undefined,
    exitCode: ExitCode.failure,
  };
}
