import { createHash, randomBytes } from "node:crypto";
import { closeSync, mkdirSync, openSync, writeSync } from "node:fs";
import { readdir, readFile, rm } from "node:fs/promises";
import path from "node:path";
import { type BlobStore, EmptyStoreError, StoreMissingError } from "../../storage-adapters/blob-store.js";
import { writeFileAtomic } from "../claude/files.js";
import { CcbError, errnoCode, withPath } from "../errors.js";
import type { SnapshotSession } from "./snapshot.js";

/**
 * What this machine remembers between backups, per (identity, store):
 * for each session, the stat fingerprint of its files when they were read and
 * the blob that holds them, so an unchanged session is never read again.
 *
 * `state/backup/<hash>.json` is rewritten at the end of a run; during a run,
 * every finished upload is appended at once to `<hash>.journal`, one JSON line,
 * so a run killed half-way loses no upload: the next run replays the journal
 * and reuses those blobs. A torn last line (power loss) is ignored; the worst
 * it costs is one re-upload.
 */

export interface StateEntry {
  /** Bundle-relative path → `size:mtimeMs` of every file of the session when it was read. */
  fingerprint: Record<string, string>;
  /** Plan slugs the transcript named, so plans can be stat'ed without reading the transcript. */
  slugs: string[];
  /** Which recipients the blob is encrypted to: adding a backup recipient re-uploads everything. */
  recipients: string;
  entry: SnapshotSession;
  /**
   * sha256 of what the blob holds (backup.ts contentDigest): a session whose files were touched
   * but not changed keeps its blob. Missing in states written before it.
   */
  content?: string;
}

export interface BackupState {
  version: 1;
  store: string;
  publisher: string;
  /** By session id. */
  sessions: Record<string, StateEntry>;
  /** Blobs this machine uploaded that no snapshot may name yet: prune candidates once past the grace period. */
  uploaded: string[];
}

/** Whether this machine remembers backing up to `store` (by any identity): a store it knows, emptied or gone. */
export async function backedUpBefore(home: string, store: string): Promise<boolean> {
  const dir = path.join(home, "state", "backup");
  const names = await readdir(dir).catch(() => [] as string[]);
  for (const name of names.filter((n) => n.endsWith(".json"))) {
    const state = await readJson(path.join(dir, name)).catch(() => undefined);
    if (state?.store === store && usedState(state)) return true;
  }
  return false;
}

/**
 * The store's folder is empty or missing though this machine has backed up to it: most likely a NAS
 * that is not mounted here. Backup refuses it and doctor says so; `usedBefore` is asked first (a
 * machine that never backed up there needs no look at the store).
 */
export async function emptiedStore(
  store: BlobStore,
  usedBefore: () => boolean | Promise<boolean>,
  /** What this machine did there before, for the message. */
  did = "backed up to",
): Promise<{ message: string; empty: boolean; root?: string } | undefined> {
  if (!(await usedBefore())) return undefined;
  const why = await store.explainEmpty?.();
  if (!(why instanceof EmptyStoreError || why instanceof StoreMissingError)) return undefined;
  return {
    message: `${why.message}, but this machine has ${did} it before`,
    empty: why instanceof EmptyStoreError,
    ...(why instanceof EmptyStoreError ? { root: why.root } : {}),
  };
}

function usedState(state: BackupState): boolean {
  return Object.keys(state.sessions).length > 0 || state.uploaded.length > 0;
}

export class BackupStateFile {
  private constructor(
    private readonly file: string,
    private readonly journal: string,
    readonly state: BackupState,
  ) {}

  /** Anything was backed up to this store from here before (sessions remembered, or uploads). */
  get usedBefore(): boolean {
    return usedState(this.state);
  }

  static async open(home: string, publisher: string, store: string): Promise<BackupStateFile> {
    const name = createHash("sha256").update(`${publisher}\n${store}`).digest("hex").slice(0, 20);
    const dir = path.join(home, "state", "backup");
    const file = path.join(dir, `${name}.json`);
    const journal = path.join(dir, `${name}.journal`);
    const state = (await readJson(file)) ?? { version: 1, store, publisher, sessions: {}, uploaded: [] };
    const opened = new BackupStateFile(file, journal, state);
    for (const line of await readLines(journal)) {
      try {
        const { id, ...entry } = JSON.parse(line) as StateEntry & { id: string };
        opened.apply(id, entry);
      } catch {
        // A torn line from a crash: that upload is simply done again.
      }
    }
    return opened;
  }

  /** Where the state lives (named in hints: deleting it makes the next backup start afresh). */
  get path(): string {
    return this.file;
  }

  /** The journal's descriptor, opened for appending on the first record of the run and kept open until save(). */
  #journalFd: number | undefined;

  /**
   * Remember a finished upload, durably, before doing anything else: one
   * O_APPEND write of one whole line, which the next run reads even if this
   * one is killed right after (no fsync: a power loss costs a re-upload).
   * The file stays open for the run, and the write is synchronous: an append
   * of a few hundred bytes to the page cache takes microseconds, and backup
   * records hundreds of uploads (each was a thread-pool round trip, and an
   * open/write/close per line three).
   */
  async record(id: string, entry: StateEntry): Promise<void> {
    if (this.#journalFd === undefined) {
      mkdirSync(path.dirname(this.journal), { recursive: true, mode: 0o700 });
      this.#journalFd = openSync(this.journal, "a", 0o600);
    }
    const line = Buffer.from(`${JSON.stringify({ id, ...entry })}\n`);
    // One write call per line: O_APPEND keeps lines whole; loop only if the kernel took part of it.
    try {
      for (let done = 0; done < line.length; ) {
        done += writeSync(this.#journalFd, line, done, line.length - done);
      }
    } catch (err) {
      throw withPath(err, this.journal);
    }
    this.apply(id, entry);
  }

  forget(id: string): void {
    delete this.state.sessions[id];
  }

  /** Close the journal after the last record (save() does too); a later record opens it again. */
  async closeJournal(): Promise<void> {
    const fd = this.#journalFd;
    this.#journalFd = undefined;
    if (fd === undefined) return;
    try {
      closeSync(fd);
    } catch {
      // Closing a descriptor we only appended to: nothing to recover.
    }
  }

  /** Write the whole state and drop the journal (replaying it again would change nothing). */
  async save(): Promise<void> {
    await this.closeJournal();
    await writeFileAtomic(this.file, `${JSON.stringify(this.state)}\n`, 0o600);
    await rm(this.journal, { force: true });
  }

  private apply(id: string, entry: StateEntry): void {
    this.state.sessions[id] = entry;
    if (!this.state.uploaded.includes(entry.entry.blob.key)) this.state.uploaded.push(entry.entry.blob.key);
  }
}

/** A random id for this machine (per CCBUNDLE_HOME), created on first use. */
export async function machineId(home: string): Promise<string> {
  const file = path.join(home, "state", "machine-id");
  try {
    const id = (await readFile(file, "utf8")).trim();
    if (/^[a-f0-9]{16}$/.test(id)) return id;
  } catch (err) {
    if (errnoCode(err) !== "ENOENT") throw err;
  }
  const id = randomBytes(8).toString("hex");
  await writeFileAtomic(file, `${id}\n`, 0o600);
  return id;
}

async function readJson(file: string): Promise<BackupState | undefined> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    if (errnoCode(err) === "ENOENT") return undefined;
    throw err;
  }
  let state: BackupState;
  try {
    state = JSON.parse(text) as BackupState;
  } catch (err) {
    throw new CcbError(`backup state ${file} is damaged`, 1, {
      hint: "delete it: the next backup reads every session once more and reuses nothing",
      cause: err,
    });
  }
  // Deleting it would not be the advice for a file a later ccbundle wrote on this machine.
  if (typeof state?.version === "number" && state.version > 1) {
    throw new CcbError(`backup state ${file} was written by a newer ccbundle`, 1, {
      hint: "upgrade ccbundle on this machine (npm install -g ccbundle)",
    });
  }
  try {
    if (state.version !== 1 || typeof state.sessions !== "object" || !Array.isArray(state.uploaded)) {
      throw new Error("unexpected shape");
    }
    return state;
  } catch (err) {
    throw new CcbError(`backup state ${file} is damaged`, 1, {
      hint: "delete it: the next backup reads every session once more and reuses nothing",
      cause: err,
    });
  }
}

async function readLines(file: string): Promise<string[]> {
  try {
    return (await readFile(file, "utf8")).split("\n").filter((line) => line.length > 0);
  } catch (err) {
    if (errnoCode(err) === "ENOENT") return [];
    throw err;
  }
}
