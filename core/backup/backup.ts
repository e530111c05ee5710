import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import os from "node:os";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import type { BlobStore } from "../../storage-adapters/blob-store.js";
import { HashCounter } from "../bundle/blob.js";
import { signBundle } from "../bundle/build.js";
import { canonicalJson, type GitContext, type Manifest, type ManifestSession } from "../bundle/manifest.js";
import { inProcess, type SessionBundler, sessionBundler } from "../bundle/worker-pool.js";
import { gitContext } from "../claude/git.js";
import { claudeLayout } from "../claude/paths.js";
import { allSessions, findSession, folderForProject, type SessionRef, sessionsInFolder } from "../claude/session.js";
import type { Settings } from "../config.js";
import type { Recipient } from "../crypto/age/index.js";
import type { UserKey } from "../crypto/keys.js";
import { CcbError, describeFailure, ExitCode, errnoCode, NotFoundError } from "../errors.js";
import { withLock } from "../lock.js";
import { randomId, storeLayout } from "../store-layout.js";
import { addFileStat, type Fingerprint, fingerprintSession, sameFingerprint, todoIndex } from "./fingerprint.js";
import { GitShell } from "./git-shell.js";
import { limiter, mapPool } from "./pool.js";
import type { ProgressListener } from "./progress.js";
import {
  backupRecipients,
  newestSnapshot,
  newSnapshot,
  putSnapshot,
  type Snapshot,
  type SnapshotSession,
  sealSnapshot,
  snapshotTime,
} from "./snapshot.js";
import { BackupStateFile, emptiedStore, machineId, type StateEntry } from "./state.js";
import { ANNOUNCED_WAIT_MS, announceSnapshotWrite, awaitAnnouncedWrites } from "./write-announcement.js";

/**
 * `ccbundle backup`: every session in scope becomes its own bundle in the
 * store, unless it is unchanged since its last backup (same stat fingerprint,
 * and its blob is in the last snapshot or still in the store): then it is not
 * read at all. Bundles upload a few at a time; each finished upload is
 * journaled at once. The snapshot that names them all is written last, so a
 * run killed half-way leaves the previous snapshot as it was and the next run
 * reuses what was uploaded.
 *
 * A snapshot lists every session this machine ever backed up (including ones
 * Claude Code's 30-day cleanup has since deleted here) plus the other
 * machines' sessions as the last snapshot had them.
 */

export interface BackupScope {
  /** One session (id or unique prefix): the SessionEnd hook. */
  sessionId?: string | undefined;
  /** Only this project directory's sessions. */
  project?: string | undefined;
  /** Only sessions written to within this many seconds. */
  sinceSeconds?: number | undefined;
}

export interface BackupOptions {
  settings: Settings;
  key: UserKey;
  store: BlobStore;
  scope: BackupScope;
  /** For --session lookups. */
  cwd: string;
  /** Bundles built and uploaded at once. Default 3. */
  concurrency?: number;
  /** How long to wait for another backup on this machine to finish. Default 60 s. */
  lockWaitMs?: number;
  onProgress?: ProgressListener;
}

export interface BackupFailure {
  session: string;
  project: string | undefined;
  message: string;
  hint: string | undefined;
  exitCode: ExitCode;
}

export interface UploadedSession {
  id: string;
  title: string | undefined;
  project: string;
  bytes: number;
  blobBytes: number;
}

export interface BackupResult {
  /** The snapshot that now lists every session: the one written, or the unchanged previous one. */
  snapshot: string | undefined;
  wroteSnapshot: boolean;
  parent: string | undefined;
  store: string;
  machine: string;
  sessions: {
    /** Sessions found here that were in scope. */
    scanned: number;
    uploaded: number;
    /** Unchanged since the last snapshot: not read. */
    unchanged: number;
    /** Unchanged, and uploaded by an earlier run that did not finish: reused. */
    resumed: number;
    failed: number;
    /** Sessions the snapshot lists (all machines, including ones no longer on disk here). */
    inSnapshot: number;
  };
  bytes: { read: number; uploaded: number };
  uploaded: UploadedSession[];
  failures: BackupFailure[];
  warnings: string[];
  durationMs: number;
}

const DEFAULT_CONCURRENCY = 3;
/** A newest snapshot dated this far after the clock is worth a word (clocks of two machines differ by less). */
const CLOCK_AHEAD_NOTED_MS = 3600_000;
/** Changed bytes from which worker threads encode (below, the main thread does: see backupWith). */
const WORKERS_FROM = 16 << 20;
/** Fingerprinting is stat calls only: many at once keeps the disk queue full. */
const SCAN_CONCURRENCY = 16;

export async function backupSessions(options: BackupOptions): Promise<BackupResult> {
  // Cron and the SessionEnd hook may fire together: one backup per machine at a time.
  return withLock(options.settings.home, "backup", () => backupLocked(options), {
    waitMs: options.lockWaitMs ?? 60_000,
  });
}

type Decision = { ref: SessionRef; stateKey: string; print: Fingerprint; status: "changed" | "unchanged" | "resumed" };

async function backupLocked(options: BackupOptions): Promise<BackupResult> {
  const started = performance.now();
  // Forked now, while the process is small: every git command of the run goes through it (git-shell.ts).
  const gitShell = new GitShell();
  try {
    return await backupWith(options, started, gitShell);
  } finally {
    gitShell.close();
  }
}

async function backupWith(options: BackupOptions, started: number, gitShell: GitShell): Promise<BackupResult> {
  const { settings, key, store } = options;
  const { claudeDir } = settings;
  const machine = await machineId(settings.home);
  const host = os.hostname();
  const recipients = backupRecipients(key, settings.backupRecipients);
  const recipientsId = createHash("sha256")
    .update(recipients.map((recipient) => String(recipient)).join("\n"))
    .digest("hex")
    .slice(0, 16);
  const warnings: string[] = [];

  const stateFile = await BackupStateFile.open(settings.home, key.z32, store.url);
  const state = stateFile.state;
  // A store that cannot take the blobs fails the run now, not after every session is encoded.
  // Before checkWritable, which makes the store's `.tmp` folder: then it is not empty any more.
  await refuseEmptiedStore(store, stateFile);
  await store.checkWritable?.();
  const base = await newestSnapshot(store, key, warnings);
  const baseBlobs = new Set(base?.sessions.map((session) => session.blob.key));
  // Our own entries in the last snapshot that this machine's state does not know
  // (state deleted): adopt them, so sessions gone from disk stay in the backup.
  for (const entry of base?.sessions ?? []) {
    const stateKey = stateKeyOf(entry.folder, entry.id);
    if (entry.machine === machine && !state.sessions[stateKey]) {
      state.sessions[stateKey] = { fingerprint: {}, slugs: [], recipients: "", entry };
    }
  }

  const refs = await sessionsInScope(settings, options.scope, options.cwd, Object.keys(state.sessions).length);
  const todos = todoIndex(claudeDir);
  // Reading, hashing, tar, zstd and age run on worker threads (one per core). They start once the
  // changed sessions found hold WORKERS_FROM bytes, so their start-up overlaps the rest of the scan.
  // Below that (the hourly or SessionEnd backup of a session or two) this thread does the work:
  // starting the threads (~70 ms each, loading their modules) cost more than encoding a few MB.
  let bundler: SessionBundler | undefined;
  let changedBytes = 0;
  const changedFound = (print: Fingerprint) => {
    changedBytes += printBytes(print);
    if (changedBytes < WORKERS_FROM) return;
    bundler ??= sessionBundler();
    bundler.warm();
  };
  let scanned = 0;
  const scan = await mapPool(refs, SCAN_CONCURRENCY, async (ref): Promise<Decision> => {
    const stateKey = stateKeyOf(ref.folder, ref.id);
    const previous = state.sessions[stateKey];
    const print = fingerprintSession(claudeDir, ref, previous?.slugs ?? [], todos);
    options.onProgress?.({ phase: "scan", unit: "sessions", done: ++scanned, total: refs.length });
    if (previous && previous.recipients === recipientsId && sameFingerprint(previous.fingerprint, print)) {
      const blob = previous.entry.blob;
      if (baseBlobs.has(blob.key)) return { ref, stateKey, print, status: "unchanged" };
      // Not in the last snapshot: uploaded by a run that was cut short, or dropped by another
      // machine's snapshot. Reuse it if the store still has all of it.
      const stored = await store.stat(blob.key);
      if (stored?.size === blob.size) return { ref, stateKey, print, status: "resumed" };
    }
    changedFound(print);
    return { ref, stateKey, print, status: "changed" };
  });
  const failed = scan.find((result) => result.status === "rejected");
  if (failed) {
    await bundler?.close();
    throw failed.reason;
  }
  const decisions = scan.map((result) => (result as PromiseFulfilledResult<Decision>).value);

  const changed = decisions.filter((decision) => decision.status === "changed");
  const plainTotal = changed.reduce((sum, decision) => sum + printBytes(decision.print), 0);
  const inFlight = new Map<string, number>();
  let plainDone = 0;
  const report = () =>
    options.onProgress?.({
      phase: "upload",
      unit: "bytes",
      done: plainDone + [...inFlight.values()].reduce((a, b) => a + b, 0),
      total: plainTotal,
    });
  // Sessions of one project share its git facts: ask git once per project per run.
  const gitCache = new Map<string, Promise<GitContext | undefined>>();
  const git = (cwd: string) => {
    if (!gitCache.has(cwd)) gitCache.set(cwd, gitContext(cwd, gitShell.run));
    return gitCache.get(cwd)!;
  };
  const uploadLimit = options.concurrency ?? DEFAULT_CONCURRENCY;
  // Sessions are collected and signed ahead of the uploads (git runs here, between worker jobs), so a
  // worker finds its next job waiting; at most `uploadLimit` blobs are encoded and uploaded at once.
  const ahead = uploadLimit + 2 * (bundler?.threads ?? 1);
  const uploads = limiter(uploadLimit);
  // The first upload the store refuses (full, gone, no permission) stops the run, as restic
  // does: encoding the other sessions for the same refusal would take minutes and print one
  // line per session. Uploads that finished are in the state journal; the next run reuses them.
  let storeFailure: StoreRefused | undefined;
  const uploadResults = await mapPool(changed, ahead, async (decision) => {
    if (storeFailure) throw storeFailure;
    try {
      return await uploadSession({
        bundler: bundler ?? inProcess(),
        uploads,
        settings,
        git,
        key,
        store,
        decision,
        recipients,
        recipientsId,
        machine,
        host,
        stateFile,
        onPlainBytes: (bytes) => {
          inFlight.set(decision.stateKey, bytes);
          report();
        },
        storeRefused: () => storeFailure,
        inLastSnapshot: (blobKey) => baseBlobs.has(blobKey),
      });
    } catch (err) {
      if (err instanceof StoreRefused) storeFailure ??= err;
      throw err;
    } finally {
      inFlight.delete(decision.stateKey);
      plainDone += printBytes(decision.print);
      report();
    }
  }).finally(() => Promise.all([bundler?.close(), stateFile.closeJournal()]));
  if (storeFailure) throw storeFailure.error;

  const uploaded: UploadedSession[] = [];
  const failures: BackupFailure[] = [];
  // Entries that are current after this run: unchanged, resumed or just uploaded.
  const current = new Set(decisions.filter((d) => d.status !== "changed").map((d) => d.stateKey));
  let same = 0;
  uploadResults.forEach((result, index) => {
    const decision = changed[index]!;
    if (result.status === "fulfilled") {
      if (result.value === "same") same++;
      else uploaded.push(result.value);
      current.add(decision.stateKey);
      return;
    }
    // Deleted while we read it (Claude Code's cleanup, /clear): gone, not failed; an
    // earlier backup of it stays in the snapshot.
    if (errnoCode(result.reason) === "ENOENT" && !existsSync(decision.ref.transcript)) return;
    // No whole line yet (a session just started, an empty file left behind): nothing to back up,
    // and no failure that would make every cron run exit 3; it is backed up once it has lines.
    if ((result.reason as Error | undefined)?.name === "EmptySessionError") return;
    failures.push({
      session: decision.ref.id,
      project: state.sessions[decision.stateKey]?.entry.project,
      ...describeFailure(result.reason),
    });
  });

  // Entries this run did not refresh (out of scope, gone from disk, failed) stay as they
  // were, as long as their blob is still there.
  const gone: string[] = [];
  for (const [stateKey, saved] of Object.entries(state.sessions)) {
    if (current.has(stateKey) || baseBlobs.has(saved.entry.blob.key)) continue;
    const stored = await store.stat(saved.entry.blob.key);
    if (stored?.size !== saved.entry.blob.size) {
      stateFile.forget(stateKey);
      gone.push(saved.entry.id);
    }
  }
  // Not necessarily by this run (the hook's `backup --session` uploads one session): by the next
  // backup that includes them. After a prune --forget-machine elsewhere that can be every session
  // here: one line, not one per session.
  const again = "uploaded again by the next backup that includes it, while the session is still here";
  if (gone.length > 3) {
    warnings.push(
      `the backups of ${gone.length} sessions are gone from the store (a prune elsewhere?); each is ${again}`,
    );
  } else {
    for (const id of gone) warnings.push(`the backup of session ${id} is gone from the store; it is ${again}`);
  }

  const ours = Object.values(state.sessions).map((saved) => saved.entry);
  const written = await writeMergedSnapshot({ store, key, recipients, machine, host, ours, base, warnings });
  const { sessions, wroteSnapshot } = written;
  const snapshotId = written.id;
  const parent = written.parent;
  // Blobs a snapshot names are tracked through it from now on; what is left are
  // uploads no snapshot will ever name (superseded in a run that was cut short).
  const named = new Set(sessions.map((session) => session.blob.key));
  state.uploaded = state.uploaded.filter((blobKey) => !named.has(blobKey));
  await stateFile.save();

  const counts = (status: Decision["status"]) => decisions.filter((decision) => decision.status === status).length;
  return {
    snapshot: snapshotId,
    wroteSnapshot,
    parent: wroteSnapshot ? parent?.id : parent?.parent,
    store: store.url,
    machine,
    sessions: {
      scanned: refs.length,
      uploaded: uploaded.length,
      unchanged: counts("unchanged") + same,
      resumed: counts("resumed"),
      failed: failures.length,
      inSnapshot: sessions.length,
    },
    bytes: {
      read: uploaded.reduce((sum, session) => sum + session.bytes, 0),
      uploaded: uploaded.reduce((sum, session) => sum + session.blobBytes, 0),
    },
    uploaded,
    failures,
    warnings,
    durationMs: Math.round(performance.now() - started),
  };
}

/**
 * An upload the store refused, as opposed to a session that could not be read:
 * the store would refuse the rest too, so the run stops (see backupWith).
 */
class StoreRefused {
  constructor(readonly error: unknown) {}
}

async function uploadSession(options: {
  bundler: SessionBundler;
  uploads: <R>(task: () => Promise<R>) => Promise<R>;
  settings: Settings;
  key: UserKey;
  store: BlobStore;
  decision: Decision;
  recipients: Recipient[];
  recipientsId: string;
  machine: string;
  host: string;
  stateFile: BackupStateFile;
  git: (cwd: string) => Promise<GitContext | undefined>;
  onPlainBytes: (bytes: number) => void;
  /** The first upload the store refused in this run, if any. */
  storeRefused: () => StoreRefused | undefined;
  /** Whether the last snapshot names this blob (then the store has it). */
  inLastSnapshot: (blobKey: string) => boolean;
}): Promise<UploadedSession | "same"> {
  const { settings, store, decision } = options;
  // The fingerprint was taken before this read: if Claude Code writes meanwhile, the
  // next run sees a newer stat and backs the session up again (whole lines only now).
  const prepared = await signBundle({
    claudeDir: settings.claudeDir,
    session: await options.bundler.collect(settings.claudeDir, decision.ref),
    key: options.key,
    env: settings.env,
    git: options.git,
  });
  const session = prepared.manifest.sessions[0]!;
  // Stat said changed, the bytes may not be (a `touch`, a copy that kept the content, an editor
  // saving the same file): the blob of the last backup is still this session, word for word.
  const content = contentDigest(prepared.manifest.source, session);
  const previous = options.stateFile.state.sessions[decision.stateKey];
  if (
    previous?.content === content &&
    previous.recipients === options.recipientsId &&
    (options.inLastSnapshot(previous.entry.blob.key) ||
      (await store.stat(previous.entry.blob.key).catch(() => undefined))?.size === previous.entry.blob.size)
  ) {
    await options.stateFile.record(decision.stateKey, { ...previous, fingerprint: decision.print });
    return "same";
  }
  const blobKey = storeLayout.blob(randomId());
  const counter = new HashCounter();
  await options.uploads(async () => {
    // Collected while the store still took uploads; it has refused one since: stop here.
    const refused = options.storeRefused();
    if (refused) throw refused;
    const blob = options.bundler.encode({
      manifestJson: prepared.manifestJson,
      files: prepared.files,
      recipients: options.recipients.map((recipient) => String(recipient)),
      compression: settings.compression,
      onPlainBytes: options.onPlainBytes,
    });
    // pipe() does not forward errors; without this a failed read would stall the upload.
    let readFailed = false;
    blob.on("error", (err) => {
      readFailed = true;
      counter.destroy(err);
    });
    // A store that refuses before reading (its folder is missing) reports through put's
    // rejection; an error the stream meets after that (the workers closing) must not be an
    // unhandled 'error' event that crashes the run with a stack trace instead of the hint.
    counter.on("error", () => undefined);
    try {
      await store.put(blobKey, blob.pipe(counter));
    } catch (err) {
      blob.destroy();
      throw readFailed ? err : new StoreRefused(err);
    }
    const stored = await store.stat(blobKey);
    if (stored?.size !== counter.bytes) {
      throw new StoreRefused(
        new CcbError(`the store kept ${stored?.size ?? 0} of ${counter.bytes} bytes of a bundle`, 1, {
          hint: "check the store and run the backup again",
        }),
      );
    }
  });
  const slugs = prepared.files
    .map((file) => /^claude\/plans\/([\w.-]+)\.md$/.exec(file.path)?.[1])
    .filter((slug): slug is string => slug !== undefined);
  // Plans first named by this read were not in the fingerprint taken before it.
  const print = { ...decision.print };
  for (const slug of slugs) addFileStat(print, settings.claudeDir, `plans/${slug}.md`);
  const entry: SnapshotSession = {
    id: session.id,
    machine: options.machine,
    host: options.host,
    project: session.cwd,
    folder: session.folder,
    ...(session.title ? { title: session.title } : {}),
    ...(session.firstTimestamp ? { first: session.firstTimestamp } : {}),
    ...(session.lastTimestamp ? { last: session.lastTimestamp } : {}),
    modified: Math.round(decision.ref.modified),
    files: session.files.length,
    bytes: prepared.bytes,
    blob: { key: blobKey, size: counter.bytes, sha256: counter.digest() },
    backedUp: new Date().toISOString(),
  };
  const saved: StateEntry = { fingerprint: print, slugs, recipients: options.recipientsId, entry, content };
  await options.stateFile.record(decision.stateKey, saved);
  return {
    id: session.id,
    title: session.title,
    project: session.cwd,
    bytes: prepared.bytes,
    blobBytes: counter.bytes,
  };
}

/**
 * The new snapshot: this machine's entries, and every other machine's as the newest snapshot has
 * them. Two machines backing up into one store at once each built on the same parent, and the
 * later snapshot (the newest, the one `list` and `restore` read) lacked the other's new session;
 * a prune meanwhile could delete its blob. So each round announces the write, reads the newest
 * just before writing, and after writing waits for the writes other machines announced meanwhile
 * (write-announcement.ts says why that is enough), then reads the newest again: when it lacks
 * our entries (another machine's snapshot sorts after ours), one more round merges them. Each
 * round needs another backup finishing in the same seconds, so there are a few at most.
 */
async function writeMergedSnapshot(options: {
  store: BlobStore;
  key: UserKey;
  recipients: Recipient[];
  machine: string;
  host: string;
  ours: SnapshotSession[];
  base: Snapshot | undefined;
  warnings: string[];
}): Promise<{
  id: string | undefined;
  parent: Snapshot | undefined;
  sessions: SnapshotSession[];
  wroteSnapshot: boolean;
}> {
  const { store, key, machine, ours } = options;
  const merged = (parent: Snapshot | undefined) =>
    [...(parent?.sessions ?? []).filter((entry) => entry.machine !== machine), ...ours].sort(
      (a, b) => b.modified - a.modified,
    );
  let parent = options.base;
  let sessions = merged(parent);
  if (parent && sameEntries(parent.sessions, sessions))
    return { id: parent.id, parent, sessions, wroteSnapshot: false };
  // Skip warnings were given for the first read; the later reads see the same snapshots.
  let written: Snapshot | undefined;
  let builtOn: Snapshot | undefined;
  const newest = () => newestSnapshot(store, key, [], [parent, written]);
  /** The newest snapshot holds our entries: what this run wrote (if it wrote), else that one. */
  const done = (holder: Snapshot) =>
    written
      ? { id: written.id, parent: builtOn, sessions, wroteSnapshot: true }
      : { id: holder.id, parent: holder, sessions, wroteSnapshot: false };
  // A store that takes no announcements says so once, not once per round.
  const noted = new Set<string>();
  const note = (said: string[]) => {
    for (const warning of said) {
      if (noted.has(warning)) continue;
      noted.add(warning);
      options.warnings.push(warning);
    }
  };
  for (let round = 0; round < MERGE_ROUNDS; round++) {
    // Machines released by the same withdrawal would meet again in the next round: spread them.
    if (round > 0) await sleep(Math.random() * 100 * 2 ** round);
    const said: string[] = [];
    // Announced before the read it builds on (see write-announcement.ts).
    const announcement = await announceSnapshotWrite(store, key.z32, machine, said);
    try {
      const latest = await newest();
      const readAt = performance.now();
      if (latest && latest.id !== parent?.id) {
        parent = latest;
        sessions = merged(parent);
      }
      if (parent && sameEntries(parent.sessions, sessions)) return done(parent);
      const now = new Date();
      if (!written && parent && snapshotTime(parent.id) - now.getTime() > CLOCK_AHEAD_NOTED_MS) {
        options.warnings.push(
          `the newest snapshot ${parent.id} is dated after this machine's clock (${now.toISOString()}): a clock was ahead when it was made; this one is named after it, so that it counts as the newest`,
        );
      }
      // After a snapshot this run wrote already, too (ids sort by time; see newSnapshotId).
      const next = newSnapshot({ key, machine, host: options.host, parent, sessions, now, after: written?.id });
      const sealed = await sealSnapshot(next, key, options.recipients);
      // The machine slept since its read (a laptop lid): others stopped waiting for it, and what
      // it read may be old. Read again instead of writing over what landed meanwhile.
      if (performance.now() - readAt > STALE_READ_MS) continue;
      announcement.writing();
      await putSnapshot(store, key, next, sealed);
      written = next;
      builtOn = parent;
    } finally {
      // Before waiting for the others: two machines would otherwise wait on each other.
      await announcement.withdraw(said);
      note(said);
    }
    const unfinished = await awaitAnnouncedWrites(store, key.z32, machine, {
      storeNow: announcement.storeNow,
      warnings: said,
    });
    note(said);
    if (unfinished.length > 0) {
      options.warnings.push(
        `another machine announced a snapshot write and has not finished it in ${ANNOUNCED_WAIT_MS / 1000} s; if its backup was killed, that is harmless, else the newest snapshot may lack this machine's latest sessions until its next backup`,
      );
    }
    const latest = await newest();
    if (!latest || latest.id === written.id) return done(written);
    // Another machine's snapshot sorts after ours: it may lack what we just wrote. Merge again
    // (the next round reads the newest once more, after announcing).
    if (sameEntries(latest.sessions, merged(latest))) return done(latest);
  }
  options.warnings.push(
    "other machines kept writing snapshots while this one wrote its own: the newest may lack this machine's latest sessions until its next backup",
  );
  return { id: written?.id, parent, sessions, wroteSnapshot: written !== undefined };
}

/** More time than this between reading the newest and writing on it: the machine slept; read again. */
const STALE_READ_MS = 15_000;

/** Rounds of writeMergedSnapshot before it gives up (each needs another machine's backup in the same seconds). */
const MERGE_ROUNDS = 8;

/**
 * This machine has backed up to this store, and it now holds nothing at all: a NAS mount point
 * with nothing mounted, most likely. A full backup into the bare folder would carry on unseen
 * until the disk under the mount point fills, and the real store would fall behind.
 */
async function refuseEmptiedStore(store: BlobStore, stateFile: BackupStateFile): Promise<void> {
  // Missing, too: checkWritable's `mkdir -p` hint would make the bare mount point for the backup.
  const emptied = await emptiedStore(store, () => stateFile.usedBefore);
  if (!emptied) return;
  throw new CcbError(emptied.message, ExitCode.failure, {
    hint: `mount the NAS, or check --store; to start a new backup in that ${emptied.empty ? "empty folder" : "place"}, delete ${stateFile.path}`,
  });
}

async function sessionsInScope(
  settings: Settings,
  scope: BackupScope,
  cwd: string,
  known: number,
): Promise<SessionRef[]> {
  const { claudeDir } = settings;
  if (scope.sessionId) return [await findSession(claudeDir, cwd, scope.sessionId)];
  let refs: SessionRef[];
  if (scope.project) {
    refs = await sessionsInFolder(claudeDir, await folderForProject(scope.project));
    if (refs.length === 0) {
      throw new NotFoundError(`no Claude Code session for ${scope.project}`, {
        hint: `check the directory, or CLAUDE_CONFIG_DIR (looked in ${claudeDir})`,
      });
    }
  } else {
    refs = await allSessions(claudeDir);
    // With sessions in earlier snapshots an empty scan is normal (Claude Code deleted old ones; the
    // snapshot keeps them), but not without a projects folder at all: that is a config dir Claude
    // Code never used, typically a cron job whose environment lacks CLAUDE_CONFIG_DIR. Backing up
    // "nothing changed" there would go on silently for as long as the job runs.
    if (refs.length === 0 && (known === 0 || !existsSync(claudeLayout(claudeDir).projects))) {
      throw new NotFoundError(`no Claude Code sessions in ${claudeDir}`, {
        hint: "set CLAUDE_CONFIG_DIR to the config dir Claude Code uses (default ~/.claude)",
      });
    }
  }
  if (scope.sinceSeconds !== undefined) {
    const since = Date.now() - scope.sinceSeconds * 1000;
    refs = refs.filter((ref) => ref.modified >= since);
  }
  return refs;
}

export function stateKeyOf(folder: string, id: string): string {
  return `${folder}/${id}`;
}

function printBytes(print: Fingerprint): number {
  let sum = 0;
  for (const value of Object.values(print)) sum += Number(value.slice(0, value.indexOf(":")));
  return sum;
}

function sameEntries(a: SnapshotSession[], b: SnapshotSession[]): boolean {
  if (a.length !== b.length) return false;
  const key = (entry: SnapshotSession) => `${entry.machine}/${entry.folder}/${entry.id}/${entry.blob.key}`;
  const left = new Set(a.map(key));
  return b.every((entry) => left.has(key(entry)));
}

/**
 * What a session's blob holds, as far as a later restore can tell: the manifest's session (every
 * file's path, size and sha256; cwd, title, git facts) and where it came from. Equal digests,
 * equal blobs but for the manifest's time and signature.
 */
function contentDigest(source: Manifest["source"], session: ManifestSession): string {
  return createHash("sha256").update(canonicalJson({ source, session })).digest("hex");
}
