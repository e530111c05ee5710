import { randomBytes } from "node:crypto";
import {
  accessSync,
  closeSync,
  constants,
  createWriteStream,
  type Dirent,
  fstatSync,
  ftruncateSync,
  lstatSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  type Stats,
} from "node:fs";
import { type FileHandle, mkdir, open, readFile, rm, unlink } from "node:fs/promises";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import { errnoCode } from "../errors.js";
import { backupFile, type Comparison, compareFiles, installFile, writeFileAtomic, writeFully } from "./files.js";

/**
 * The commit phase of a restore, made safe against `kill -9` and against
 * Claude Code writing the same files.
 *
 * A restore first prepares every file in the staging folder (verified,
 * remapped, forked) and backs up what `--force` will replace. Then it writes
 * a journal into the staging folder listing the moves still to do, and only
 * then renames the staged files into the config dir, one by one, transcript
 * last. If the process dies in between, the next receiving command finds the
 * journal of a dead owner and replays it: each step is idempotent (a staged
 * file that is gone was already moved; history lines already present are not
 * appended again), so the session ends up fully restored.
 *
 * Every step looks at its target again right before the rename, because
 * Claude Code may have appended to it since the restore compared it: a target
 * that is no longer a prefix of the incoming file is kept. If it still grows
 * in the instant between that look and the rename, the replaced file's last
 * state is copied from the still-open old inode into the backup folder, so
 * no line is ever lost.
 */

export interface InstallStep {
  /** The staged file, relative to the staging folder. */
  source: string;
  /** Where it goes: absolute path in the config dir. */
  target: string;
  /** "file": rename into place; "history": append the lines `history.jsonl` does not have yet. */
  kind: "file" | "history";
  /** Replace a diverged local file (after a backup) instead of keeping it. */
  replace: boolean;
  /** Size and mtime of the target when it was backed up in the prepare phase. */
  backedUp?: { size: number; mtimeMs: number } | undefined;
}

export interface Journal {
  version: 1;
  claudeDir: string;
  /** Where replaced files are copied first (CCBUNDLE_HOME/backups/<stamp>). */
  backupDir: string;
  steps: InstallStep[];
}

export type StepResult = "written" | "kept" | "conflict" | "already-done";

export interface StepReport {
  step: InstallStep;
  result: StepResult;
  /** Set when a local file changed during the rename and its last state was saved here. */
  savedTo?: string | undefined;
}

const JOURNAL_PREFIX = "journal-";

export function journalPath(stagingDir: string, name: string): string {
  return path.join(stagingDir, `${JOURNAL_PREFIX}${name}.json`);
}

/**
 * Journals left in a staging folder, oldest first by name order: at its top
 * (one bundle) or in its `bundle-<n>` subfolders (a run of several, restore --all).
 * A journal's steps are relative to the folder that holds it.
 */
export async function pendingJournals(stagingDir: string): Promise<string[]> {
  return findJournals(stagingDir);
}

/** Whether pendingJournals would find any, asked synchronously (an interrupt handler); true if in doubt. */
export function hasPendingJournal(stagingDir: string): boolean {
  try {
    return findJournals(stagingDir).length > 0;
  } catch {
    return true;
  }
}

/** pendingJournals' search, synchronous (two small listings) so an interrupt handler can ask too. */
function findJournals(stagingDir: string): string[] {
  const found: string[] = [];
  for (const entry of listDir(stagingDir)) {
    if (isJournal(entry.name)) found.push(path.join(stagingDir, entry.name));
    else if (entry.isDirectory() && BUNDLE_FOLDER.test(entry.name)) {
      const sub = path.join(stagingDir, entry.name);
      for (const inner of listDir(sub)) if (isJournal(inner.name)) found.push(path.join(sub, inner.name));
    }
  }
  return found.sort();
}

/** A staging subfolder holding one bundle of a multi-bundle run (core/receive.ts). */
const BUNDLE_FOLDER = /^bundle-\d+$/;

function isJournal(name: string): boolean {
  return name.startsWith(JOURNAL_PREFIX) && name.endsWith(".json");
}

function listDir(dir: string): Dirent[] {
  try {
    return readdirSync(dir, { withFileTypes: true });
  } catch (err) {
    if (errnoCode(err) === "ENOENT" || errnoCode(err) === "ENOTDIR") return [];
    throw err;
  }
}

/** Called before each step with its index (progress; tests use it to kill the process at a chosen step). */
export type StepHook = (index: number, total: number) => void;

/**
 * What one receiving run learnt about the config dir across its journals (restore --all commits
 * one per blob into the same few folders and the same history.jsonl).
 */
export class InstallCache {
  /**
   * Target folders made or found: a recursive mkdir of an existing folder still costs a few
   * syscalls each time. installFile makes a folder again if one was removed meanwhile.
   */
  readonly dirs = new Set<string>();
  /** history.jsonl's lines as this run last read or wrote them, trusted while the file's identity and size hold. */
  readonly history = new Map<string, HistorySnapshot>();
  /** Folders (and history files) this run found writable before a commit (checkWritable). */
  readonly writable = new Set<string>();
}

/** How a commit runs its steps. */
export interface StepContext {
  cache?: InstallCache | undefined;
  /**
   * The journal comes from a killed run (the default), so some steps may be done already.
   * false: a fresh commit, whose staged files were all just prepared; a step then looks
   * for its source again only when a move fails with ENOENT.
   */
  replay?: boolean | undefined;
  /**
   * When given, the files a commit uses up (staged history lines, then the journal itself) are
   * removed in the background, their promises collected here: the caller settles them before
   * it removes the staging folder. On this bench disk (ext4 mounted with `discard`, no journal)
   * an unlink that frees blocks waits for the discard, 0.4–0.7 ms each, two per blob of a
   * restore --all, while the main thread could stage the next blob. A run killed before they
   * finish leaves a journal whose steps are all done: the next run replays it as a no-op.
   */
  removals?: Promise<unknown>[] | undefined;
}

/**
 * Write the journal, then apply its steps in order; the journal is removed once all are done.
 * Every staged file it names must already be on disk (fsynced): the journal is what a
 * replay after a power cut trusts.
 */
export async function commitJournal(
  file: string,
  journal: Journal,
  stagingDir: string,
  options: StepContext & { onStep?: StepHook | undefined } = {},
): Promise<StepReport[]> {
  const cache = options.cache ?? new InstallCache();
  const context: StepContext = { ...options, cache };
  if (options.replay === false) checkWritable(journal, cache.writable);
  // The staging folder exists (the staged files are in it): no mkdir.
  await writeFileAtomic(file, JSON.stringify(journal), 0o600, { parentExists: true });
  if (options.replay === false) await makeTargetDirs(journal, cache.dirs);
  const reports: StepReport[] = [];
  for (const [index, step] of journal.steps.entries()) {
    options.onStep?.(index, journal.steps.length);
    reports.push(await applyStep(step, stagingDir, journal, context));
  }
  await remove(file, context);
  return reports;
}

/**
 * The folders a commit's moves need, made before the moves, on the threadpool, one level of
 * depth at a time and each level at once (so no two calls race for a folder): making ~1000
 * folders cost restore --all 0.6 s of main thread in installFile's sync mkdirs (an inode
 * allocation each), during which the next blob could not be staged. Only after the journal is
 * written: a failure before it leaves the config dir exactly as it was.
 */
async function makeTargetDirs(journal: Journal, known: Set<string>): Promise<void> {
  const root = path.resolve(journal.claudeDir);
  const wanted = new Set<string>();
  for (const step of journal.steps) {
    if (step.kind !== "file") continue;
    for (let dir = path.dirname(step.target); !known.has(dir) && !wanted.has(dir); dir = path.dirname(dir)) {
      // Outside the config dir (never, for steps this run wrote) or at its top: leave it to installFile.
      if (dir === root || !dir.startsWith(`${root}${path.sep}`)) break;
      wanted.add(dir);
    }
  }
  const byDepth = new Map<number, string[]>();
  for (const dir of wanted) {
    const depth = dir.split(path.sep).length;
    const level = byDepth.get(depth);
    if (level) level.push(dir);
    else byDepth.set(depth, [dir]);
  }
  for (const depth of [...byDepth.keys()].sort((a, b) => a - b)) {
    await Promise.all(
      byDepth.get(depth)!.map((dir) =>
        mkdir(dir).catch((err: unknown) => {
          if (errnoCode(err) !== "EEXIST") throw err;
        }),
      ),
    );
    for (const dir of byDepth.get(depth)!) known.add(dir);
  }
}

/**
 * Before a fresh journal is written: every folder its moves go into (or, for one not made yet,
 * the nearest folder above it that exists) and history.jsonl must be writable. Else the journal
 * would be committed and the first move fail, and every later receive would replay it and fail
 * the same way: one root-owned project folder (a `sudo claude`) blocked every pull. Refused here,
 * nothing was changed, and the error names the folder. (As root, access() says yes to all but a
 * read-only file system, and root's moves succeed.)
 */
function checkWritable(journal: Journal, known: Set<string>): void {
  const root = path.resolve(journal.claudeDir);
  for (const step of journal.steps) {
    // A file that is there already may be kept as it is (the same, or ahead of the incoming one),
    // which writes nothing: a re-pull into a folder we cannot write still says "kept". One that
    // must be replaced meets the permission at its rename, as before this check.
    if (step.kind === "file" && existsSync(step.target)) continue;
    const checks = step.kind === "history" ? [step.target, path.dirname(step.target)] : [path.dirname(step.target)];
    for (const wanted of checks) {
      // A folder not made yet: the one above it that exists must take the new folder. Every
      // level walked is remembered (one not made yet will be made by us, so we may write in it).
      const walked: string[] = [];
      for (let target = wanted; !known.has(target); ) {
        walked.push(target);
        try {
          accessSync(target, constants.W_OK | (target === wanted && step.kind === "history" ? 0 : constants.X_OK));
          break;
        } catch (err) {
          const above = path.dirname(target);
          if (errnoCode(err) !== "ENOENT" || above === target || !target.startsWith(root)) throw err;
          target = above;
        }
      }
      for (const dir of walked) known.add(dir);
    }
  }
}

/** Finish the journal a dead process left behind. Returns what was done; a bad journal is dropped. */
export async function replayJournal(file: string, stagingDir: string): Promise<StepReport[]> {
  let journal: Journal;
  try {
    journal = JSON.parse(await readFile(file, "utf8")) as Journal;
  } catch {
    // Written atomically, so unreadable means it never was complete: nothing was moved under it.
    await rm(file, { force: true });
    return [];
  }
  if (journal.version !== 1 || !Array.isArray(journal.steps)) {
    await rm(file, { force: true });
    return [];
  }
  return commitJournal(file, journal, stagingDir, { replay: true });
}

/**
 * One guarded, idempotent move (or history merge) into the config dir.
 * The common case, a target that does not exist, is all sync calls (see installFile).
 * A staged file that is gone was moved already (a replay; or two steps naming one file).
 */
export async function applyStep(
  step: InstallStep,
  stagingDir: string,
  journal: Journal,
  context: StepContext = {},
): Promise<StepReport> {
  const { cache = new InstallCache(), replay = true } = context;
  const source = path.join(stagingDir, step.source);
  const done: StepReport = { step, result: "already-done" };
  if (replay && !existsSync(source)) return done;
  if (step.kind === "history") {
    if (!(await mergeHistory(step.target, source, cache.history))) return done;
    await remove(source, context);
    return { step, result: "written" };
  }
  if (!existsSync(step.target)) {
    try {
      installFile(source, step.target, cache.dirs);
    } catch (err) {
      if (errnoCode(err) === "ENOENT" && !existsSync(source)) return done;
      throw err;
    }
    return { step, result: "written" };
  }
  if (!existsSync(source)) return done;
  // Claude Code may have the target open: compare it through one handle, kept open across the rename.
  const local = await openIfExists(step.target);
  try {
    const seen = local ? await local.stat() : undefined;
    const relation: Comparison | "absent" = local ? await compareFiles(local, source) : "absent";
    if (relation === "identical" || relation === "incoming-prefix") {
      await remove(source, context);
      return { step, result: "kept" };
    }
    if (relation === "diverged") {
      if (!step.replace) return { step, result: "conflict" };
      const unchanged = step.backedUp?.size === seen?.size && step.backedUp?.mtimeMs === seen?.mtimeMs;
      if (!unchanged) await backupFile(step.target, journal.backupDir, relativeTo(journal.claudeDir, step.target));
    }
    installFile(source, step.target, cache.dirs);
    let savedTo: string | undefined;
    if (local && seen && (await local.stat()).size !== seen.size) {
      // The old file grew after we compared it (Claude Code appended): keep its last state.
      savedTo = path.join(journal.backupDir, `${relativeTo(journal.claudeDir, step.target)}.${stamp()}`);
      await saveHandle(local, savedTo);
    }
    return { step, result: "written", savedTo };
  } finally {
    await local?.close();
  }
}

/** history.jsonl as a run last saw it: its lines, and the identity and size they belong to. */
export interface HistorySnapshot {
  dev: number;
  ino: number;
  size: number;
  mtimeMs: number;
  lines: Set<string>;
  endsWithNewline: boolean;
}

/**
 * Append the incoming prompt-history lines that `history.jsonl` does not have.
 * Idempotent (lines already there are skipped), one write with O_APPEND (so
 * Claude Code's own appends interleave by whole writes), and cut back to the
 * old length if the write fails half-way (disk full): no torn line is left.
 * False when the incoming file is gone (merged and removed already).
 *
 * `cache` keeps the file's lines across calls: restore --all merges 300 sessions' lines in turn,
 * and each call read the whole, growing file again through a second open (600 opens, a quadratic
 * read). It is trusted only while the file is the same inode with the size and mtime this run
 * left it at; anything else (Claude Code appended, or replaced the file) reads it again.
 * Sync calls: one small file in the page cache, opened once per call.
 */
export async function mergeHistory(
  historyFile: string,
  incomingFile: string,
  cache?: Map<string, HistorySnapshot>,
): Promise<boolean> {
  let incomingText: string;
  try {
    incomingText = readFileSync(incomingFile, "utf8");
  } catch (err) {
    if (errnoCode(err) === "ENOENT") return false;
    throw err;
  }
  const incoming = incomingText.split("\n").filter((line) => line.length > 0);
  const fd = openSync(historyFile, "a+", 0o600);
  try {
    const before = fstatSync(fd);
    let known = cache?.get(historyFile);
    if (!known || !sameSnapshot(known, before)) {
      const { text: existing, bytes } = readWhole(fd, before.size);
      known = {
        ...identity(before),
        size: bytes,
        lines: new Set(existing.split("\n")),
        endsWithNewline: existing.length === 0 || existing.endsWith("\n"),
      };
    }
    cache?.delete(historyFile);
    const fresh = [...new Set(incoming)].filter((line) => !known.lines.has(line));
    if (fresh.length === 0) {
      cache?.set(historyFile, known);
      return true;
    }
    const bytes = Buffer.from(`${known.endsWithNewline ? "" : "\n"}${fresh.join("\n")}\n`);
    try {
      writeFully(fd, bytes);
    } catch (err) {
      try {
        ftruncateSync(fd, before.size);
      } catch {
        // The write's error is the one to report.
      }
      throw err;
    }
    const after = fstatSync(fd);
    // Someone else wrote in between: our view is incomplete, read it again next time.
    if (cache && after.size === known.size + bytes.length && after.ino === known.ino) {
      for (const line of fresh) known.lines.add(line);
      cache.set(historyFile, { ...identity(after), size: after.size, lines: known.lines, endsWithNewline: true });
    }
    return true;
  } finally {
    closeSync(fd);
  }
}

function identity(info: Stats): { dev: number; ino: number; mtimeMs: number } {
  return { dev: info.dev, ino: info.ino, mtimeMs: info.mtimeMs };
}

function sameSnapshot(known: HistorySnapshot, info: Stats): boolean {
  return known.dev === info.dev && known.ino === info.ino && known.size === info.size && known.mtimeMs === info.mtimeMs;
}

/** The whole file through `fd` from offset 0 (it may have grown past `sizeHint` since the fstat). */
function readWhole(fd: number, sizeHint: number): { text: string; bytes: number } {
  let buffer = Buffer.allocUnsafe(Math.max(sizeHint, 4096));
  let filled = 0;
  for (;;) {
    if (filled === buffer.length) {
      const grown = Buffer.allocUnsafe(buffer.length * 2);
      buffer.copy(grown, 0, 0, filled);
      buffer = grown;
    }
    const read = readSync(fd, buffer, filled, buffer.length - filled, filled);
    if (read === 0) return { text: buffer.toString("utf8", 0, filled), bytes: filled };
    filled += read;
  }
}

/** Remove a file that may already be gone (an unlink, without rmSync's lstat first); see StepContext.removals. */
async function remove(file: string, context: StepContext): Promise<void> {
  const removal = unlink(file).catch((err: unknown) => {
    if (errnoCode(err) !== "ENOENT") throw err;
  });
  if (!context.removals) return removal;
  removal.catch(() => undefined); // Settled by the caller; never an unhandled rejection meanwhile.
  context.removals.push(removal);
}

async function openIfExists(file: string): Promise<FileHandle | undefined> {
  try {
    return await open(file, "r");
  } catch (err) {
    if (errnoCode(err) === "ENOENT") return undefined;
    throw err;
  }
}

async function saveHandle(handle: FileHandle, target: string): Promise<void> {
  await mkdir(path.dirname(target), { recursive: true, mode: 0o700 });
  await pipeline(
    handle.createReadStream({ start: 0, autoClose: false }),
    createWriteStream(target, { flags: "wx", mode: 0o600 }),
  );
}

/** lstat, not stat: a dangling symlink at the target exists (the rename replaces the link, as before). */
function existsSync(file: string): boolean {
  try {
    lstatSync(file);
    return true;
  } catch (err) {
    if (errnoCode(err) === "ENOENT") return false;
    throw err;
  }
}

function relativeTo(root: string, file: string): string {
  return path.relative(root, file);
}

function stamp(): string {
  return `${Date.now()}-${randomBytes(2).toString("hex")}`;
}
