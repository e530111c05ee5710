import { createHash } from "node:crypto";
import { appendFileSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import type { PathMapping } from "../claude/remap.js";
import type { RestoreOutcome } from "../claude/restore.js";
import type { TargetChoice } from "../claude/target.js";
import { type FileIdentity, fileIdentity, sameFile } from "../file-identity.js";

/**
 * What `restore --all` put where, so running it again does not download what
 * is already here: the advice after a full disk, a Ctrl-C or a failed session
 * is "run the same command again", and without this that run fetched,
 * decrypted and compared every session once more (a no-op restore of 4,501
 * sessions downloaded all of them).
 *
 * One line per session restored, appended once its install is done: the
 * blob and the placement it was restored with (the key), and each of its
 * files as stat saw it right after. A later run skips a snapshot entry whose
 * key is here and whose files are all still as recorded: restoring it again
 * would write nothing (every file identical, or the local copy ahead and kept). Anything else (a file
 * touched, resumed, deleted, another --map) goes through the normal restore.
 *
 * A cache, not a record: it is not fsynced, a torn last line is ignored, and a
 * lost file only costs the next run its downloads. The prompt-history lines a
 * session adds to history.jsonl are not checked (that file changes all the time).
 */

/** Rewrite the file when it holds this many more lines than live entries (restores repeated over months). */
const COMPACT_SLACK = 1000;

export interface MemoSession {
  /**
   * What restoring it again would find: the incoming session (or its fork) here as it is, or
   * the local copy ahead of it (kept, as that restore kept it).
   */
  outcome: "identical" | "kept-local";
  sessionId: string;
  originalId: string;
  title: string | undefined;
  targetCwd: string;
  transcript: string;
  target: TargetChoice;
}

interface MemoLine {
  key: string;
  /** Absent on a line that forgets the key (a later restore of the same blob found the session changed). */
  session?: MemoSession;
  /** [path, ino, size, mtimeMs] of each file the session has here. */
  files: [string, number, number, number][];
}

/** The facts a restore --all of one snapshot entry depends on, besides the blob itself. */
export interface Placement {
  claudeDir: string;
  maps: PathMapping[];
  rewrite: boolean;
  /** --force replaces a diverged local copy that a run without it forked around. */
  force: boolean;
}

export class RestoreMemo {
  readonly #file: string;
  readonly #entries = new Map<string, MemoLine>();
  #lines = 0;
  /** The file ends in a line torn by a crash: the next line starts on a line of its own. */
  #torn = false;

  private constructor(file: string) {
    this.#file = file;
  }

  /** The memo of restores into `claudeDir`, under CCBUNDLE_HOME/state/restored/. */
  static open(home: string, claudeDir: string): RestoreMemo {
    const name = createHash("sha256").update(path.resolve(claudeDir)).digest("hex").slice(0, 20);
    const memo = new RestoreMemo(path.join(home, "state", "restored", `${name}.jsonl`));
    memo.#read();
    return memo;
  }

  static key(blobSha256: string, placement: Placement): string {
    const facts = [blobSha256, path.resolve(placement.claudeDir), placement.rewrite, placement.force, placement.maps];
    return createHash("sha256").update(JSON.stringify(facts)).digest("hex");
  }

  /** The session restored under `key`, if every one of its files is still exactly as that restore left it. */
  unchanged(key: string): MemoSession | undefined {
    const entry = this.#entries.get(key);
    if (!entry) return undefined;
    for (const [file, ino, size, mtimeMs] of entry.files) {
      const now = identityOf(file);
      if (!now || !sameFile(now, { ino, size, mtimeMs })) return undefined;
    }
    return entry.session;
  }

  /**
   * Remember a session just restored under `key`, with its files as they are now: restoring the
   * same blob onto them again would write nothing. Not when a file was kept because it differs
   * (a conflict): a later run with --force would replace it, and every run says so.
   */
  record(
    key: string,
    session: Omit<MemoSession, "outcome"> & { outcome: RestoreOutcome; conflicts: string[]; files: string[] },
  ): void {
    if (session.conflicts.length > 0) {
      this.#forget(key);
      return;
    }
    const files: MemoLine["files"] = [];
    for (const file of session.files) {
      const identity = identityOf(file);
      if (!identity) {
        this.#forget(key);
        return;
      }
      files.push([file, identity.ino, identity.size, identity.mtimeMs]);
    }
    const { sessionId, originalId, title, targetCwd, transcript, target } = session;
    const outcome = session.outcome === "kept-local" ? "kept-local" : "identical";
    this.#append({ key, session: { outcome, sessionId, originalId, title, targetCwd, transcript, target }, files });
  }

  /** Rewrite the file without the lines later ones replaced, once they are many. */
  compact(): void {
    if (this.#lines - this.#entries.size < COMPACT_SLACK) return;
    const text = [...this.#entries.values()].map((entry) => `${JSON.stringify(entry)}\n`).join("");
    try {
      // Whole lines only, written then renamed: a crash leaves the old file or the new one.
      const tmp = `${this.#file}.${process.pid}.tmp`;
      writeFileSync(tmp, text, { mode: 0o600 });
      renameSync(tmp, this.#file);
      this.#lines = this.#entries.size;
      this.#torn = false;
    } catch {
      // A cache: the next run compacts it.
    }
  }

  #forget(key: string): void {
    if (!this.#entries.has(key)) return;
    this.#entries.delete(key);
    // A line with no files is never a hit and replaces the earlier one when read back.
    this.#write({ key, files: [] });
  }

  #append(entry: MemoLine): void {
    this.#entries.set(entry.key, entry);
    this.#write(entry);
  }

  #write(entry: MemoLine): void {
    try {
      mkdirSync(path.dirname(this.#file), { recursive: true, mode: 0o700 });
      appendFileSync(this.#file, `${this.#torn ? "\n" : ""}${JSON.stringify(entry)}\n`, { mode: 0o600 });
      this.#torn = false;
      this.#lines++;
    } catch {
      // Not remembered: the next run downloads this session again, nothing worse.
    }
  }

  #read(): void {
    let text: string;
    try {
      text = readFileSync(this.#file, "utf8");
    } catch {
      // None yet (ENOENT), or unreadable: restore as if nothing was remembered.
      return;
    }
    this.#torn = text.length > 0 && !text.endsWith("\n");
    for (const line of text.split("\n")) {
      if (line === "") continue;
      this.#lines++;
      const entry = parseLine(line);
      if (!entry) continue;
      if (entry.files.length === 0) this.#entries.delete(entry.key);
      else this.#entries.set(entry.key, entry);
    }
  }
}

function identityOf(file: string): FileIdentity | undefined {
  try {
    const info = statSync(file);
    return info.isFile() ? fileIdentity(info) : undefined;
  } catch {
    return undefined;
  }
}

function parseLine(line: string): MemoLine | undefined {
  try {
    const value = JSON.parse(line) as Partial<MemoLine>;
    if (typeof value.key !== "string" || !Array.isArray(value.files)) return undefined;
    if (value.files.length > 0 && (typeof value.session !== "object" || value.session === null)) return undefined;
    const wellFormed = value.files.every(
      (file) =>
        Array.isArray(file) &&
        typeof file[0] === "string" &&
        typeof file[1] === "number" &&
        typeof file[2] === "number" &&
        typeof file[3] === "number",
    );
    return wellFormed ? (value as MemoLine) : undefined;
  } catch {
    // A line torn by a crash while it was appended.
    return undefined;
  }
}
