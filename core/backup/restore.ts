import path from "node:path";
import type { Readable } from "node:stream";
import type { BlobStore } from "../../storage-adapters/blob-store.js";
import { claudeLayout } from "../claude/paths.js";
import type { PathMapping } from "../claude/remap.js";
import type { RecoveredStaging } from "../claude/staging.js";
import { type TargetChoice, wholeRestoreTarget } from "../claude/target.js";
import { homeDir, type Settings } from "../config.js";
import type { UserKey } from "../crypto/keys.js";
import { describeFailure, type ExitCode, IntegrityError, isNoSpace, NotFoundError, UsageError } from "../errors.js";
import { type ReceivedSession, type ReceiveOptions, ReceiveRun, type StagedBundle } from "../receive.js";
import { remembered } from "../remembered.js";
import { filterEntries, lastActivity, machineMatcher } from "./filter.js";
import { countBytes, type ProgressListener } from "./progress.js";
import { type MemoSession, RestoreMemo } from "./restore-memo.js";
import {
  noOlderStandsIn,
  pickSnapshotId,
  readSnapshot,
  type Snapshot,
  type SnapshotSession,
  snapshotIdsToRead,
} from "./snapshot.js";

/**
 * `ccbundle restore`: sessions from a backup snapshot, with pull's conflict
 * and remapping rules (receiveBundle). One session (`<id-prefix>`) lands where
 * pull would put it; `--all` keeps each session's own project path, moved by
 * any `--map` prefix, so one `--map /Users/bob=/home/bob` puts every project
 * of a Mac in place on a Linux laptop. Each blob is checked against the hash
 * the signed snapshot recorded and must be signed by the owner.
 */

/**
 * `--all` (with `project`: only that project's sessions, or below it) or one
 * session by id prefix (with `project`: restore into it, as pull --project).
 */
export type RestoreSelection = (
  | { all: true; project?: string | undefined }
  | { all: false; prefix: string; project?: string | undefined }
) & {
  /** Only the sessions this machine backed up (its host name or machine id prefix; see machineMatcher). */
  machine?: string | undefined;
};

export interface RestoreOptions {
  settings: Settings;
  key: UserKey;
  store: BlobStore;
  snapshot?: string | undefined;
  select: RestoreSelection;
  cwd: string;
  maps: PathMapping[];
  rewrite: boolean;
  force: boolean;
  onProgress?: ProgressListener;
  /** After each session is settled (restored, skipped or failed): how many of how many are restored. */
  onRestored?: (restored: number, of: number) => void;
}

export interface RestoredSession extends ReceivedSession {
  host: string;
  backedUp: string;
  /** restore --all: restored from this very backup by an earlier run and unchanged since, so not downloaded. */
  alreadyRestored?: boolean;
}

export interface RestoreFailure {
  session: string;
  project: string;
  message: string;
  hint: string | undefined;
  exitCode: ExitCode;
}

export interface RestoreResult {
  store: string;
  snapshot: string;
  restored: RestoredSession[];
  failures: RestoreFailure[];
  /** Installs of killed earlier runs that this one finished first (ReceiveResult.recovered). */
  recovered: RecoveredStaging[];
  /** Sessions not tried because the disk was full (restore --all stops at the first such failure). */
  notAttempted: number;
  /** Newer snapshots passed over because they are damaged (see snapshotToRestore). */
  warnings: string[];
}

/**
 * The snapshot named by --snapshot, else the newest one that opens: a newer one that is damaged
 * (a bad disk, a half-synced copy, someone who may write the store) is passed over with a
 * warning, as backup does, since on a new laptop the previous snapshot is worth far more than an
 * error. Not passed over: one a newer ccbundle wrote (upgrade instead), and one the key cannot
 * open (another identity opens none of them).
 */
async function snapshotToRestore(
  store: BlobStore,
  key: UserKey,
  wanted: string | undefined,
  warnings: string[],
): Promise<{ id: string; snapshot: Snapshot }> {
  const none = new NotFoundError(`no backup snapshots in ${store.url}`, {
    hint: "run `ccbundle backup` first, or pass --store naming the store it wrote to",
  });
  if (wanted !== undefined && wanted !== "latest") {
    const id = await pickSnapshotId(store, key.z32, wanted);
    if (!id) throw none;
    return { id, snapshot: await readSnapshot(store, key, id) };
  }
  let newest: unknown;
  for (const id of await snapshotIdsToRead(store, key.z32)) {
    try {
      return { id, snapshot: await readSnapshot(store, key, id) };
    } catch (err) {
      if (!(err instanceof IntegrityError) || noOlderStandsIn(err)) throw err;
      newest ??= err;
      warnings.push(`passed over snapshot ${id}: ${err.message}`);
    }
  }
  throw newest ?? none;
}

export async function restoreBackup(options: RestoreOptions): Promise<RestoreResult> {
  const { settings, key, store, select } = options;
  const warnings: string[] = [];
  const { id: snapshotId, snapshot } = await snapshotToRestore(store, key, options.snapshot, warnings);
  let picked: ReturnType<typeof pickOne> | undefined;
  try {
    picked = select.all ? undefined : pickOne(snapshot.sessions, select.prefix, select.machine);
  } catch (err) {
    // Not in the snapshot that opened: it may be in a newer one that did not, which the user
    // must hear of instead of "no session" (the warnings only come with a result).
    if (!(err instanceof NotFoundError) || !err.message.startsWith("no session ") || warnings.length === 0) throw err;
    throw new NotFoundError(`${err.message} ${snapshotId}, the newest that opens (${warnings.join("; ")})`, {
      hint: "it may be in the damaged snapshot, which no one can restore from; `ccbundle list` shows the snapshots, and the machine that backed it up can back it up again",
    });
  }
  let entries = select.all
    ? (await filterEntries(snapshot.sessions, { project: select.project, machine: select.machine }, options.maps)).sort(
        (a, b) => a.modified - b.modified,
      )
    : [picked!.entry];
  if (entries.length === 0) {
    throw new NotFoundError(`snapshot ${snapshotId} has no sessions${select.project ? ` of ${select.project}` : ""}`, {
      hint: "`ccbundle list` shows what it holds",
    });
  }

  const restored: RestoredSession[] = [];
  // A run again after a full disk, a Ctrl-C or a failure: what an earlier one restored from these
  // very blobs, and nobody touched since, is not downloaded again (see restore-memo.ts).
  const memo = select.all
    ? RestoreMemo.open(settings.home, settings.claudeDir, claudeLayout(settings.claudeDir).history)
    : undefined;
  const placement = {
    claudeDir: settings.claudeDir,
    home: homeDir(settings.env),
    maps: options.maps,
    rewrite: options.rewrite,
    force: options.force,
  };
  // Each entry's memo key, worked out once: looked up now, recorded after its install.
  const memoKeys = new Map(memo ? entries.map((entry) => [entry, RestoreMemo.key(entry.blob.sha256, placement)]) : []);
  const of = entries.length;
  const order = entries.map((entry) => entry.id);
  if (memo) {
    const targets = new Map<string, TargetChoice>();
    const fetch: SnapshotSession[] = [];
    for (const entry of entries) {
      const before = memo.unchanged(memoKeys.get(entry)!);
      const target =
        before &&
        remembered(targets, entry.project, () =>
          wholeRestoreTarget({ cwd: entry.project, folder: entry.folder }, options.maps),
        );
      // Still where this run would put it (a directory created or cloned since moves it).
      if (before && target?.cwd === before.target.cwd && target.warning === before.target.warning) {
        restored.push(alreadyRestored(before, entry));
      } else fetch.push(entry);
    }
    entries = fetch;
  }
  options.onRestored?.(restored.length, of);

  const total = entries.reduce((sum, entry) => sum + entry.blob.size, 0);
  let downloaded = 0;
  const failures: RestoreFailure[] = [];
  const recovered: RecoveredStaging[] = [];
  let notAttempted = 0;
  // One identity for the run: making its key objects is ~1 ms, and restore --all opens hundreds of blobs.
  const identity = key.ageIdentity();
  const receive = (entry: SnapshotSession, blob: Readable): ReceiveOptions => ({
    settings,
    blob,
    identities: [identity],
    acceptSigners: [key.z32],
    ownKey: key.z32,
    expect: {
      sha256: entry.blob.sha256,
      size: entry.blob.size,
      ifDamaged: "restore it from another snapshot (`ccbundle list` shows them), or back it up again",
    },
    project: select.all ? undefined : select.project,
    keepOriginalPaths: select.all,
    cwd: options.cwd,
    maps: options.maps,
    rewrite: options.rewrite,
    force: options.force,
  });
  // One session is one bundle, as for pull: its transcripts are rewritten on their way into staging
  // (written once: a 440 MB transcript needed twice its size free the other way).
  const run = new ReceiveRun(settings, { oneBundle: !select.all });
  const stageEntry = async (entry: SnapshotSession): Promise<{ staged: StagedBundle; receiving: ReceiveOptions }> => {
    let seen = 0;
    const blob = countBytes(await openBackupBlob(store, entry), (bytes) => {
      downloaded += bytes - seen;
      seen = bytes;
      options.onProgress?.({ phase: "download", unit: "bytes", done: downloaded, total });
    });
    const receiving = receive(entry, blob);
    try {
      return { staged: await run.stage(receiving), receiving };
    } finally {
      downloaded += entry.blob.size - seen;
      seen = entry.blob.size;
    }
  };
  try {
    // Installs go one at a time, in order: restores share history.jsonl and may land in the same
    // project folder. The next blob is downloaded, decrypted and unpacked meanwhile.
    // (None when an earlier run restored every one of them.)
    let next = entries.length > 0 ? outcome(stageEntry(entries[0]!)) : undefined;
    for (const [index, entry] of entries.entries()) {
      const staged = (await next)!;
      if (index + 1 < entries.length) next = outcome(stageEntry(entries[index + 1]!));
      try {
        if ("error" in staged) throw staged.error;
        const result = await run.install(staged.value.staged, staged.value.receiving);
        recovered.push(...result.recovered);
        const note = picked && otherCopiesNote(picked.entry, picked.others, snapshot.sessions);
        for (const session of result.sessions) {
          const warnings = note ? [...session.warnings, note] : session.warnings;
          restored.push({ ...session, warnings, host: entry.host, backedUp: entry.backedUp });
        }
        // Backup blobs hold one session each; a blob of several is not remembered.
        if (memo && result.sessions.length === 1) remember(memo, memoKeys.get(entry)!, result.sessions[0]!);
      } catch (err) {
        if (!select.all) throw err;
        failures.push({
          session: entry.id,
          project: entry.project,
          ...describeFailure(err),
        });
        // A full disk fails every session after it too, each after a download: stop here.
        if (isNoSpace(err)) {
          notAttempted = entries.length - index - 1;
          await next;
          break;
        }
      }
      options.onProgress?.({ phase: "download", unit: "bytes", done: downloaded, total });
      options.onRestored?.(restored.length, of);
    }
  } finally {
    await run.close();
    memo?.compact(new Set(memoKeys.values()));
  }
  // In the snapshot's order (oldest first), whether an earlier run restored them or this one did.
  const place = new Map(order.map((id, index) => [id, index]));
  restored.sort((a, b) => (place.get(a.originalId) ?? 0) - (place.get(b.originalId) ?? 0));
  return { store: store.url, snapshot: snapshotId, restored, failures, recovered, notAttempted, warnings };
}

/** Note a session just restored in the memo; the memo never fails a restore. */
function remember(memo: RestoreMemo, key: string, session: ReceivedSession): void {
  // A fork: the local original beside it is what made it a fork, and must stay as it is too.
  const original = path.join(path.dirname(session.transcript), `${session.originalId}.jsonl`);
  const files = session.sessionId === session.originalId ? session.files : [...session.files, original];
  try {
    memo.record(key, session, files);
  } catch {
    // Not remembered: the next run downloads it again.
  }
}

/** A session an earlier run restored from the same blob, unchanged since: what a restore would report. */
function alreadyRestored(session: MemoSession, entry: SnapshotSession): RestoredSession {
  return {
    ...session,
    filesWritten: 0,
    filesKept: entry.files,
    conflicts: [],
    saved: [],
    backupDir: undefined,
    files: [],
    gitWarnings: [],
    warnings: session.target.warning ? [session.target.warning] : [],
    host: entry.host,
    backedUp: entry.backedUp,
    alreadyRestored: true,
  };
}

/** A promise's result or error as a value, so one staged ahead never rejects unobserved. */
function outcome<T>(promise: Promise<T>): Promise<{ value: T } | { error: unknown }> {
  return promise.then(
    (value) => ({ value }),
    (error: unknown) => ({ error }),
  );
}

async function openBackupBlob(store: BlobStore, entry: SnapshotSession): Promise<Readable> {
  try {
    return await store.get(entry.blob.key);
  } catch (err) {
    if (!(err instanceof NotFoundError)) throw err;
    throw new NotFoundError(`the backup of session ${entry.id} is gone from ${store.url}`, {
      hint: "restore it from an older snapshot (--snapshot; `ccbundle list` shows them)",
    });
  }
}

/**
 * The session a prefix names: the copy `machine` backed up, else the newest copy when several
 * machines backed it up (a session handed from the desktop to the laptop, both backing up).
 * `others` says which other copies there are, for a warning: the user may want one of those.
 */
function pickOne(
  entries: SnapshotSession[],
  prefix: string,
  machine: string | undefined,
): { entry: SnapshotSession; others: SnapshotSession[] } {
  if (!/^[0-9a-fA-F-]{4,36}$/.test(prefix)) {
    throw new UsageError(`not a session id: ${prefix}`, {
      hint: "session ids look like 1b2c3d4e-…: give at least 4 of their hex digits; `ccbundle list` shows them",
    });
  }
  const matches = entries.filter((entry) => entry.id.startsWith(prefix.toLowerCase()));
  const ids = new Set(matches.map((entry) => entry.id));
  if (ids.size === 0) {
    throw new NotFoundError(`no session ${prefix} in the snapshot`, { hint: "`ccbundle list` shows what it holds" });
  }
  if (ids.size > 1) {
    throw new UsageError(`session prefix ${prefix} matches ${ids.size} sessions`, { hint: "give more characters" });
  }
  const fromMachine = machine === undefined ? undefined : machineMatcher(entries, machine);
  const candidates = fromMachine ? matches.filter(fromMachine) : matches;
  if (candidates.length === 0) {
    throw new NotFoundError(`machine ${machine} did not back up session ${prefix}`, {
      hint: `it was backed up by ${[...new Set(matches.map((entry) => entry.host))].join(", ")}; leave out --machine or name one of those`,
    });
  }
  const [entry, ...rest] = candidates.sort((a, b) => lastActivity(b) - lastActivity(a));
  return { entry: entry!, others: fromMachine ? [] : rest.filter((other) => other.machine !== entry!.machine) };
}

/** The warning for a session that other machines backed up too (restore <prefix> picked the newest copy). */
function otherCopiesNote(
  entry: SnapshotSession,
  others: SnapshotSession[],
  all: SnapshotSession[],
): string | undefined {
  if (others.length === 0) return undefined;
  const names = others.map((other) => `${other.host} (last active ${describeTime(lastActivity(other))})`);
  return `restored ${entry.host}'s copy, the newest; ${names.join(" and ")} backed up this session too: \`--machine ${machineName(others[0]!, all)}\` restores that copy instead`;
}

/** What `--machine` takes for the machine that backed up `entry`: its host name, unless another machine shares it. */
function machineName(entry: SnapshotSession, all: SnapshotSession[]): string {
  const host = entry.host.toLowerCase();
  const shared = all.some((other) => other.host.toLowerCase() === host && other.machine !== entry.machine);
  return shared ? entry.machine.slice(0, 8) : entry.host;
}

function describeTime(time: number): string {
  return Number.isNaN(time)
    ? "at an unknown time"
    : `${new Date(time).toISOString().slice(0, 16).replace("T", " ")} UTC`;
}
