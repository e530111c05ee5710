import { mkdir, realpath } from "node:fs/promises";
import path from "node:path";
import type { Readable } from "node:stream";
import { readBundle } from "./bundle/blob.js";
import type { BundleFile, GitContext, Manifest, ManifestSession } from "./bundle/manifest.js";
import { verifyManifestSignature } from "./bundle/signature.js";
import { type Rewriter, stagedPath } from "./bundle/unpack.js";
import { chunkRewriter } from "./claude/files.js";
import { FsyncQueue } from "./claude/fsync-queue.js";
import { describeGitDrift } from "./claude/git.js";
import { GitMemo } from "./claude/git-memo.js";
import {
  commitJournal,
  hasPendingJournal,
  InstallCache,
  journalPath,
  pendingJournals,
  type StepHook,
} from "./claude/install-journal.js";
import { createRemapper, type PathMapping, type Remapper, rewriteFormFor, type TextForm } from "./claude/remap.js";
import { newBackupDir, type PreparedRestore, prepareRestore, type RestoreResult } from "./claude/restore.js";
import { shellQuote } from "./claude/resume.js";
import { otherCopiesWarning } from "./claude/session.js";
import {
  createStaging,
  type RecoveredStaging,
  recoverStaging,
  removeDeadStaging,
  removeStaging,
  removeStagingNow,
} from "./claude/staging.js";
import { chooseTarget, mappingsFor, type TargetChoice } from "./claude/target.js";
import { TranscriptIndex } from "./claude/transcript-index.js";
import { homeDir, type Settings } from "./config.js";
import { AgeError, type Identity } from "./crypto/age/index.js";
import { CcbError, errnoCode, IntegrityError } from "./errors.js";
import { onInterrupt } from "./interrupt.js";
import { acquireLock } from "./lock.js";
import { remembered } from "./remembered.js";

/**
 * The receiving half shared by pull, import and restore: decrypt and unpack a
 * blob into a staging folder inside the config dir (same filesystem, hidden
 * from Claude Code), check it, then move each session into place. If anything
 * fails before the move, the config dir is exactly as it was; if the process
 * dies during the move, the next receiving command finishes it from the
 * install journal (core/claude/install-journal.ts).
 */

/** How long a restore waits for another one on this machine to finish its install phase. */
const INSTALL_LOCK_WAIT_MS = 120_000;

export interface ReceiveOptions {
  settings: Settings;
  blob: Readable;
  identities: Identity[];
  /** Signers accepted for the manifest; empty = any valid signature (caller decides). */
  acceptSigners: string[];
  /**
   * The user's own key (z32), when known: a bundle it signed is bounded by its signed sizes alone,
   * with no decompression-ratio guard (see UnpackOptions.onManifest). Bundles signed by anyone
   * else, a teammate or a PIN handoff's sender included, keep the guard.
   */
  ownKey?: string | undefined;
  /**
   * What the record (or snapshot) promised about the blob, checked after reading; `ifDamaged` is
   * the hint when the stored blob turns out damaged or replaced (decrypting fails, or the hash).
   */
  expect?: { sha256: string; size: number; ifDamaged: string } | undefined;
  project?: string | undefined;
  cwd: string;
  maps: PathMapping[];
  rewrite: boolean;
  force: boolean;
  /** restore --all: keep each session's own path (mapped), never the current dir. */
  keepOriginalPaths?: boolean;
  /** Called before each move into the config dir (progress; crash tests). */
  onInstallStep?: StepHook | undefined;
}

export interface ReceivedSession extends RestoreResult {
  title: string | undefined;
  target: TargetChoice;
  gitWarnings: string[];
  /** Everything to tell the user about this session, in order: where it landed, other copies, git. */
  warnings: string[];
}

export interface ReceiveResult {
  manifest: Manifest;
  signer: string;
  sessions: ReceivedSession[];
  /** Interrupted restores of earlier, killed runs that were finished (or cleaned up) first. */
  recovered: RecoveredStaging[];
}

export async function receiveBundle(options: ReceiveOptions): Promise<ReceiveResult> {
  const run = new ReceiveRun(options.settings, { oneBundle: true });
  try {
    return await run.install(await run.stage(options), options);
  } finally {
    await run.close();
  }
}

/** A blob decrypted, verified and unpacked into its staging folder, not yet installed. */
export interface StagedBundle {
  dir: string;
  manifest: Manifest;
  signer: string;
  /** The staged files' fsyncs, still running in the background. */
  durable: FsyncQueue;
  /** Bundle paths whose staged file is rewritten already, with its session's mappings (see stage). */
  rewritten: ReadonlySet<string>;
}

/**
 * One receiving command: one staging folder, the install lock taken once (at
 * the first install, after the first blob was staged), killed runs recovered
 * once, and facts remembered across its bundles (target folders made, git
 * drift per checkout, history.jsonl's lines). `restore --all` stages blob N+1 while blob N installs;
 * each blob gets its own subfolder (`bundle-<n>`, its journal inside) so a
 * failed one can be dropped or finished on its own. Per session this saved
 * what each `receiveBundle` used to repeat: a staging folder with an fsynced
 * owner file, the lock, a scan for abandoned staging, and six git calls.
 */
export class ReceiveRun {
  readonly #settings: Settings;
  readonly #oneBundle: boolean;
  #root: Promise<string> | undefined;
  #bundles = 0;
  #lock: Promise<{ release: () => Promise<void>; recovered: RecoveredStaging[] }> | undefined;
  #recoveredReported = false;
  readonly #installed = new InstallCache();
  readonly #git = new GitMemo();
  readonly #realPaths = new Map<string, Promise<string>>();
  readonly #gitDrift = new Map<string, Promise<string[]>>();
  /** Staging files and folders being removed in the background (StepContext.removals), settled by close(). */
  readonly #cleanups: Promise<unknown>[] = [];
  readonly #targets = new Map<string, Promise<TargetChoice>>();
  readonly #transcripts: TranscriptIndex;
  /** Journals being written now: an interrupt must not remove the staging folder under them. */
  #committing = 0;
  /** Unregisters the interrupt cleanup of the staging folder (see core/interrupt.ts). */
  #forgetStaging: (() => void) | undefined;

  constructor(settings: Settings, options: { oneBundle: boolean }) {
    this.#settings = settings;
    this.#oneBundle = options.oneBundle;
    this.#transcripts = new TranscriptIndex(settings.claudeDir);
  }

  /** Decrypt, verify and unpack one blob. If anything fails here the config dir is as it was. */
  async stage(options: ReceiveOptions): Promise<StagedBundle> {
    const { claudeDir } = this.#settings;
    this.#root ??= removeDeadStaging(claudeDir)
      .catch(() => undefined)
      .then(() => createStaging(claudeDir))
      .then((root) => {
        // Ctrl-C before any install began: the decrypted files go at once, not at the next receive.
        this.#forgetStaging = onInterrupt(() => {
          if (this.#committing === 0 && !hasPendingJournal(root)) removeStagingNow(root);
        });
        return root;
      });
    const root = await this.#root.catch((err: unknown) => {
      throw describeFsError(err, claudeDir);
    });
    const dir = this.#oneBundle ? root : path.join(root, `bundle-${++this.#bundles}`);
    const durable = new FsyncQueue();
    try {
      if (dir !== root) await mkdir(dir, { mode: 0o700 });
      let signer = "";
      const rewritten = new Set<string>();
      let rewriterFor: ((file: BundleFile) => Promise<Rewriter | undefined>) | undefined;
      // restore --all rewrites after staging, a second copy of each text file, unless nothing moves.
      let rewritesAfter = false;
      const read = await readBundle(options.blob, {
        identities: options.identities,
        stagingDir: dir,
        onManifest: (manifest) => {
          signer = verifyManifestSignature(manifest);
          if (options.acceptSigners.length > 0 && !options.acceptSigners.includes(signer)) {
            throw new IntegrityError(`bundle is signed by ${signer}, not by the expected key`, {
              hint: "the bundle does not come from who you think; pass --from <z32> to accept another signer",
            });
          }
          if (this.#oneBundle) rewriterFor = this.#stagingRewriters(manifest, options, rewritten);
          else {
            rewritesAfter =
              options.rewrite &&
              (options.maps.length > 0 ||
                manifest.source.claudeDir !== this.#settings.claudeDir ||
                manifest.source.home !== homeDir(options.settings.env));
          }
          // Signed by the user's own key: the sizes it signed bound the bundle from here on, however
          // well it compresses (their own repetitive session must restore).
          return options.ownKey !== undefined && signer === options.ownKey ? "signer-accepted" : undefined;
        },
        rewriterFor: (file) => rewriterFor?.(file) ?? Promise.resolve(undefined),
        handOver: (fd) => durable.add(fd),
        layout: "flat",
        // One-bundle runs rewrite on the way into staging (#stagingRewriters); restore --all after.
        secondCopies: (file) => rewritesAfter && rewriteFormFor(file) !== undefined,
      });
      if (options.expect && (read.sha256 !== options.expect.sha256 || read.size !== options.expect.size)) {
        throw new IntegrityError("the stored bundle does not match the hash it was published with", {
          hint: `it was damaged or replaced in the store; ${options.expect.ifDamaged}`,
        });
      }
      return { dir, manifest: read.manifest, signer, durable, rewritten };
    } catch (err) {
      await durable.settle().catch(() => undefined);
      if (dir !== root) await removeStaging(dir);
      // A blob from a store that does not decrypt: the age error speaks of "the file" and "a fresh
      // copy", which is wording for `import`; here the store's copy is what is damaged.
      if (options.expect && err instanceof AgeError && err.failure !== "no-match") {
        throw new IntegrityError(`the stored bundle is damaged or was replaced (${err.message})`, {
          hint: options.expect.ifDamaged,
          cause: err,
        });
      }
      throw describeFsError(err, claudeDir);
    }
  }

  /**
   * Path remapping while unpacking: each text file that prepareRestore would rewrite into a
   * second staged copy is rewritten on its way to staging instead, so its bytes are written
   * once (a 50 MB transcript was written, read back, written again and fsynced twice: ~150 ms
   * of a pull). Same target choice (the run remembers it), same mappings and remapper, same
   * rewrite of line-aligned bytes as remapFile; `rewritten` tells prepareRestore which files
   * are done. One-bundle runs only (pull, import): restore --all stages a blob while the last
   * installs and keeps choosing targets after each install. Whatever cannot be decided here
   * (a target choice that fails, a path listed by two sessions) is left to prepareRestore,
   * which remaps it as before (and reports the failure).
   */
  #stagingRewriters(
    manifest: Manifest,
    options: ReceiveOptions,
    rewritten: Set<string>,
  ): (file: BundleFile) => Promise<Rewriter | undefined> {
    if (!options.rewrite) return () => Promise.resolve(undefined);
    const sessionOf = new Map<string, ManifestSession | undefined>();
    for (const session of manifest.sessions) {
      for (const file of session.files) sessionOf.set(file.path, sessionOf.has(file.path) ? undefined : session);
    }
    const remappers = new Map<ManifestSession, Promise<Record<TextForm, Remapper> | undefined>>();
    return async (file) => {
      const form = rewriteFormFor(file.path);
      const session = sessionOf.get(file.path);
      if (!form || !session) return undefined;
      const made = remembered(remappers, session, () =>
        this.#chooseTarget(session, manifest, options).then(
          (target) => {
            // Asked now, its git processes run while the bundle unpacks (forked from a smaller
            // process, too); install reads the run's cached answer. Its errors are install's to report.
            this.#describeGitDrift(target.cwd, session.git).catch(() => undefined);
            const mappings = this.#mappingsFor(session, manifest, target, options);
            return { json: createRemapper(mappings, "json"), text: createRemapper(mappings, "text") };
          },
          () => undefined,
        ),
      );
      const remapper = (await made)?.[form];
      if (!remapper || remapper.identity) return undefined;
      rewritten.add(file.path);
      return chunkRewriter(remapper);
    };
  }

  /** The path rewrites for a session landing at `target` (prepareRestore applies them unless --no-rewrite). */
  #mappingsFor(session: ManifestSession, manifest: Manifest, target: TargetChoice, options: ReceiveOptions) {
    return mappingsFor({
      // restore --all keeps a session at its original path unless --map moved it: then no
      // other path may move either (the old home → this home rewrite is off).
      source:
        options.keepOriginalPaths && target.reason !== "mapped" ? { ...manifest.source, home: "" } : manifest.source,
      session,
      target,
      targetHome: homeDir(options.settings.env),
      targetClaudeDir: options.settings.claudeDir,
      maps: options.maps,
    });
  }

  /** Move a staged bundle's sessions into place, one install phase at a time on this machine. */
  async install(staged: StagedBundle, options: ReceiveOptions): Promise<ReceiveResult> {
    const { claudeDir } = this.#settings;
    let interrupted = false;
    const removals: Promise<unknown>[] = [];
    try {
      const { recovered } = await this.#installLock();
      const sessions = await this.#installSessions(options, staged, removals);
      const reported = this.#recoveredReported ? [] : recovered;
      this.#recoveredReported = true;
      return { manifest: staged.manifest, signer: staged.signer, sessions, recovered: reported };
    } catch (err) {
      interrupted = (await pendingJournals(staged.dir).catch(() => [])).length > 0;
      throw describeFsError(err, claudeDir, interrupted ? HALF_WAY : undefined);
    } finally {
      // A journal still here means the install phase stopped half-way: keep it for the next run to finish.
      // (After a success there is none, or it is being removed: the folder goes once that is done.)
      const settled = Promise.allSettled(removals);
      this.#cleanups.push(
        this.#oneBundle || interrupted ? settled : settled.then(() => removeStaging(staged.dir)).catch(() => undefined),
      );
    }
  }

  /** Release the lock; remove the staging folder unless an install stopped half-way in it. */
  async close(): Promise<void> {
    await Promise.allSettled(this.#cleanups);
    const lock = await this.#lock?.catch(() => undefined);
    await lock?.release();
    try {
      const root = await this.#root?.catch(() => undefined);
      if (root && (await pendingJournals(root).catch(() => [])).length === 0) await removeStaging(root);
    } finally {
      this.#forgetStaging?.();
    }
  }

  /** The install lock, taken once per run; killed runs' staging is finished first. */
  #installLock(): Promise<{ release: () => Promise<void>; recovered: RecoveredStaging[] }> {
    this.#lock ??= (async () => {
      const release = await acquireLock(this.#settings.home, "restore", { waitMs: INSTALL_LOCK_WAIT_MS });
      try {
        return { release, recovered: await recoverStaging(this.#settings.claudeDir) };
      } catch (err) {
        await release();
        throw describeRecoveryError(err, this.#settings.claudeDir);
      }
    })();
    const lock = this.#lock;
    // A failed attempt (recovery hit a full disk) is tried again by the next install.
    lock.catch(() => {
      if (this.#lock === lock) this.#lock = undefined;
    });
    return lock;
  }

  /**
   * Every session of the bundle prepared first (decided, remapped, backups made), then one
   * journal for all of their moves: a journal costs an fsync, and a 300-session import
   * wrote 300 of them in turn (1.5 s). Each session's own moves keep their order, its
   * transcript last, so Claude Code sees no session before its other files are in place.
   */
  async #installSessions(
    options: ReceiveOptions,
    staged: StagedBundle,
    removals: Promise<unknown>[],
  ): Promise<ReceivedSession[]> {
    const { settings } = options;
    const manifest = staged.manifest;
    const backupDir = newBackupDir(settings.home);
    const prepared: { session: ManifestSession; target: TargetChoice; restore: PreparedRestore }[] = [];
    for (const session of manifest.sessions) {
      const target = await this.#chooseTarget(session, manifest, options);
      const targetReal = await this.#realPath(target.cwd);
      const mappings = this.#mappingsFor(session, manifest, target, options);
      const restore = await prepareRestore({
        claudeDir: settings.claudeDir,
        stagedRoot: staged.dir,
        stagedPath: (bundlePath) => stagedPath(staged.dir, bundlePath, "flat"),
        session,
        targetReal,
        targetFolder: target.folder,
        mappings,
        rewrite: options.rewrite,
        force: options.force,
        durable: staged.durable,
        rewritten: staged.rewritten,
        backupDir,
      });
      prepared.push({ session, target, restore });
    }
    // Commit: staged files on disk, then the journal, then the renames.
    await staged.durable.settle();
    this.#committing++;
    const reports = await commitJournal(
      journalPath(staged.dir, prepared[0]?.restore.sessionId ?? "empty"),
      { version: 1, claudeDir: settings.claudeDir, backupDir, steps: prepared.flatMap((p) => p.restore.steps) },
      staged.dir,
      { onStep: options.onInstallStep, cache: this.#installed, replay: false, removals },
    ).finally(() => this.#committing--);
    const sessions: ReceivedSession[] = [];
    let taken = 0;
    for (const { session, target, restore } of prepared) {
      const restored = restore.finish(reports.slice(taken, taken + restore.steps.length));
      taken += restore.steps.length;
      await this.#transcripts.add(restored.transcript);
      const gitWarnings = await this.#describeGitDrift(target.cwd, session.git);
      const copies = await otherCopiesWarning(
        settings.claudeDir,
        restored.transcript,
        restored.targetCwd,
        await this.#transcripts.foldersWith(restored.transcript),
      );
      sessions.push({
        ...restored,
        title: session.title,
        target,
        gitWarnings,
        warnings: [...(target.warning ? [target.warning] : []), ...copies, ...gitWarnings],
      });
    }
    return sessions;
  }

  /**
   * Where a session lands, decided once per original path and git context in a run: the
   * answer depends only on those, the options and the checkouts here, and each costs up to
   * seven git processes when the session has a remote.
   */
  #chooseTarget(session: ManifestSession, manifest: Manifest, options: ReceiveOptions): Promise<TargetChoice> {
    const choice = {
      project: options.project,
      cwd: options.cwd,
      maps: options.maps,
      keepOriginalPaths: options.keepOriginalPaths,
      homes: { source: manifest.source.home, target: homeDir(options.settings.env) },
    };
    // The folder too: sessions whose transcript never said its cwd share "/" and go to their own folders.
    const key = JSON.stringify([session.cwd, session.folder, session.git ?? null, choice]);
    return remembered(this.#targets, key, () => {
      const target = chooseTarget(session, choice, this.#git);
      // A refusal (--project is not a directory) is asked again, not remembered.
      target.catch(() => this.#targets.delete(key));
      return target;
    });
  }

  /**
   * A target folder's real path, once per folder in a run (prepareRestore names the project
   * folder after it): 300 sessions of 20 projects asked the threadpool 300 times, a readlink
   * per path component each.
   */
  #realPath(cwd: string): Promise<string> {
    // A directory that is no path here (a Windows one, kept as restore --all filed it) stays as it is.
    return remembered(this.#realPaths, cwd, () =>
      realpath(cwd).catch(() => (path.isAbsolute(cwd) ? path.resolve(cwd) : cwd)),
    );
  }

  /**
   * Git drift, asked once per checkout and source state in a run: sessions of one project share
   * both, and each answer costs up to eight git processes (9 s of spawning for 300 sessions).
   */
  #describeGitDrift(cwd: string, source: GitContext | undefined): Promise<string[]> {
    const key = `${cwd}\0${JSON.stringify(source ?? null)}`;
    return remembered(this.#gitDrift, key, () => describeGitDrift(cwd, source, this.#git));
  }
}

/** What a failed install means for the config dir, in its hint. */
const HALF_WAY = "the restore stopped half-way; run the command again once fixed and it finishes it";

/**
 * Finishing a restore that an earlier run left half-way failed: say that it is that restore, not
 * this one, that cannot go on (this run changed nothing), and how to let it finish.
 */
function describeRecoveryError(err: unknown, claudeDir: string): unknown {
  const after = "then run the command again: it finishes that restore first (nothing was changed by this one)";
  const described = describeFsError(err, claudeDir, after);
  if (!(described instanceof CcbError) || described.exitCode !== 1) return err;
  // An error that was ours already keeps its hint, and gets the way on after it.
  const hint = described === err ? [described.hint, after].filter(Boolean).join("; ") : described.hint;
  return new CcbError(`an earlier restore stopped half-way and cannot be finished: ${described.message}`, 1, {
    hint,
    cause: err,
  });
}

/** Disk full and permission errors as one line that says what to do (they are not bugs); `then` ends the hint. */
function describeFsError(err: unknown, claudeDir: string, then = "nothing was changed"): unknown {
  if (err instanceof CcbError) return err;
  const code = errnoCode(err);
  if (code === "ENOSPC" || code === "EDQUOT") {
    const where = (err as { path?: unknown }).path;
    // Its cause keeps the errno code: restore --all stops on it (isNoSpace).
    return new CcbError(
      `no space left on the disk while restoring (writing ${typeof where === "string" ? where : claudeDir})`,
      1,
      { hint: `free some space; ${then}`, cause: err },
    );
  }
  if (code === "EACCES" || code === "EPERM" || code === "EROFS") {
    const where = (err as { path?: unknown }).path;
    const inside = typeof where === "string" && where.startsWith(claudeDir) ? where : claudeDir;
    const fix =
      code === "EROFS"
        ? "the file system is read-only"
        : `check its owner and permissions (ls -ld ${shellQuote(inside)}; a \`sudo claude\` leaves folders only root can write: sudo chown -R "$USER" ${shellQuote(claudeDir)})`;
    return new CcbError(`cannot write in ${inside} (${code})`, 1, { hint: `${fix}; ${then}`, cause: err });
  }
  return err;
}
