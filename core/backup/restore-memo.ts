import { createHash } from "node:crypto";
import { appendFileSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import type { PathMapping } from "../claude/remap.js";
import type { RestoreOutcome } from "../claude/restore.js";
import type { TargetChoice } from "../claude/target.js";

/**
 * What `restore --all` put where, so running it again does not download what
 * is already here: the advice after a full disk, a Ctrl-C or a failed session
 * is "run the same command again", and without this that run fetched,
 * decrypted and compared every session once more (a no-op restore of 4,501
 * sessions downloaded all of them).
 *
 * One line per session restored, appended once its install is done: the
 * blob and the placement it was restored with (the key), and each of its
 * files as stat saw it right after (inode, size, mtime and ctime: a tool that
 * puts an edited file's mtime back cannot put its ctime back). A later run
 * skips a snapshot entry whose key is here, whose files are all still as
 * recorded and whose target directory is still the one chosen then (it may
 * have been created or cloned since): restoring it again would write nothing
 * (every file identical, or the local copy ahead and kept). history.jsonl,
 * which every restore appends the session's prompt lines to, must be the
 * same file, at least as long. Anything else (a file touched, resumed,
 * deleted, another --map) goes through the normal restore.
 *
 * A cache, not a record: it is not fsynced, a torn last line is ignored, and a
 * lost file only costs the next run its downloads. A failure to read or write
 * it never fails a restore.
 */

/**
 * Part of every key: a build that places or rewrites sessions differently does not trust an older
 * one's lines. 2: sessions with no cwd of their own were all placed in the first one's folder.
 */
const MEMO_VERSION = 2;
/** Rewrite the file once this many of its lines are replaced or superseded (restores repeated over months). */
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

/** A file as stat saw it: [path relative to the config dir, ino, size, mtimeMs, ctimeMs]. */
type Seen = [string, number, number, number, number];

interface MemoLine {
  key: string;
  /** Absent on a line that forgets the key (a later restore of the same blob found the session changed). */
  session?: MemoSession;
  files: Seen[];
  /** history.jsonl's inode and size right after. */
  history?: [number, number] | undefined;
}

/** The facts a restore --all of one snapshot entry depends on, besides the blob itself. */
export interface Placement {
  claudeDir: string;
  /** This machine's home: the old home → this home rewrite depends on it. */
  home: string;
  maps: PathMapping[];
  rewrite: boolean;
  /** --force replaces a diverged local copy that a run without it forked around. */
  force: boolean;
}

export class RestoreMemo {
  readonly #file: string;
  readonly #claudeDir: string;
  readonly #history: string;
  readonly #entries = new Map<string, MemoLine>();
  #lines = 0;
  /** The file ends in a line torn by a crash: the next line starts on a line of its own. */
  #torn = false;

  private constructor(file: string, claudeDir: string, history: string) {
    this.#file = file;
    this.#claudeDir = claudeDir;
    this.#history = history;
  }

  /** The memo of restores into `claudeDir` (whose prompt history is `history`), under CCBUNDLE_HOME/state/restored/. */
  static open(home: string, claudeDir: string, history: string): RestoreMemo {
    const resolved = path.resolve(claudeDir);
    const name = createHash("sha256").update(resolved).digest("hex").slice(0, 20);
    const memo = new RestoreMemo(path.join(home, "state", "restored", `${name}.jsonl`), resolved, history);
    memo.#read();
    return memo;
  }

  static key(blobSha256: string, placement: Placement): string {
    const { claudeDir, home, rewrite, force, maps } = placement;
    const facts = [MEMO_VERSION, blobSha256, path.resolve(claudeDir), home, rewrite, force, maps];
    return createHash("sha256").update(JSON.stringify(facts)).digest("hex");
  }

  /** The session restored under `key`, if every one of its files is still exactly as that restore left it. */
  unchanged(key: string): MemoSession | undefined {
    const entry = this.#entries.get(key);
    if (!entry?.session) return undefined;
    for (const [rel, ...then] of entry.files) {
      const now = this.#seen(rel);
      if (!now || now.some((value, i) => value !== then[i])) return undefined;
    }
    if (entry.history) {
      const now = this.#seen(this.#relative(this.#history));
      if (!now || now[0] !== entry.history[0] || now[1] < entry.history[1]) return undefined;
    }
    return entry.session;
  }

  /**
   * Remember a session just restored under `key`, with `files` (its own, and for a fork the
   * local original beside it) as they are now: restoring the same blob onto them again would
   * write nothing. Not when a file was kept because it differs (a conflict): a later run with
   * --force would replace it, and every run says so.
   */
  record(
    key: string,
    session: Omit<MemoSession, "outcome"> & { outcome: RestoreOutcome; conflicts: string[] },
    files: string[],
  ): void {
    if (session.conflicts.length > 0) {
      this.#forget(key);
      return;
    }
    const seen: Seen[] = [];
    for (const file of files) {
      const rel = this.#relative(file);
      const identity = this.#seen(rel);
      if (!identity) {
        this.#forget(key);
        return;
      }
      seen.push([rel, ...identity]);
    }
    const history = this.#seen(this.#relative(this.#history));
    const { sessionId, originalId, title, targetCwd, transcript, target } = session;
    const outcome = session.outcome === "kept-local" ? "kept-local" : "identical";
    this.#write({
      key,
      session: { outcome, sessionId, originalId, title, targetCwd, transcript, target },
      files: seen,
      history: history ? [history[0], history[1]] : undefined,
    });
  }

  /**
   * Forget what newer backups superseded, and rewrite the file once many of its lines are dead.
   * `current`: the keys of the snapshot entries this run looked at. A remembered blob that is not
   * among them, for a transcript that one of them restored, is an older backup of that session:
   * it is dropped. (Not by transcript alone: two machines' copies of one session can both be in a
   * snapshot and land on the same transcript, and each must stay.)
   */
  compact(current: ReadonlySet<string>): void {
    const transcripts = new Set<string>();
    for (const key of current) {
      const transcript = this.#entries.get(key)?.session?.transcript;
      if (transcript !== undefined) transcripts.add(transcript);
    }
    for (const [key, entry] of this.#entries) {
      if (!current.has(key) && entry.session && transcripts.has(entry.session.transcript)) this.#entries.delete(key);
    }
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
    // A line with no session is never a hit and replaces the earlier one when read back.
    if (this.#entries.has(key)) this.#write({ key, files: [] });
  }

  #write(entry: MemoLine): void {
    this.#take(entry);
    try {
      mkdirSync(path.dirname(this.#file), { recursive: true, mode: 0o700 });
      appendFileSync(this.#file, `${this.#torn ? "\n" : ""}${JSON.stringify(entry)}\n`, { mode: 0o600 });
      this.#torn = false;
      this.#lines++;
    } catch {
      // Not remembered: the next run downloads this session again, nothing worse.
    }
  }

  /** A line read or written: it replaces the key's earlier one. */
  #take(entry: MemoLine): void {
    if (entry.session) this.#entries.set(entry.key, entry);
    else this.#entries.delete(entry.key);
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
      if (entry) this.#take(entry);
    }
  }

  #relative(file: string): string {
    const rel = path.relative(this.#claudeDir, file);
    return rel.startsWith("..") || path.isAbsolute(rel) ? file : rel;
  }

  /** [ino, size, mtimeMs, ctimeMs] of a regular file (relative to the config dir, or absolute). */
  #seen(file: string): [number, number, number, number] | undefined {
    try {
      const info = statSync(path.resolve(this.#claudeDir, file));
      return info.isFile() ? [info.ino, info.size, info.mtimeMs, info.ctimeMs] : undefined;
    } catch {
      return undefined;
    }
  }
}

function parseLine(line: string): MemoLine | undefined {
  try {
    const value = JSON.parse(line) as Partial<MemoLine>;
    if (typeof value.key !== "string" || !Array.isArray(value.files)) return undefined;
    if (value.session !== undefined && (typeof value.session !== "object" || value.session === null)) return undefined;
    const wellFormed = value.files.every(
      (file) =>
        Array.isArray(file) &&
        file.length === 5 &&
        typeof file[0] === "string" &&
        file.slice(1).every((n) => typeof n === "number"),
    );
    return wellFormed ? (value as MemoLine) : undefined;
  } catch {
    // A line torn by a crash while it was appended.
    return undefined;
  }
}
