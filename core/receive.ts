import type { Readable } from "node:stream";
import { readBundle } from "./bundle/blob.js";
import type { Manifest } from "./bundle/manifest.js";
import { verifyManifestSignature } from "./bundle/signature.js";
import { describeGitDrift } from "./claude/git.js";
import { pendingJournals, type StepHook } from "./claude/install-journal.js";
import type { PathMapping } from "./claude/remap.js";
import { type RestoreResult, restoreSession } from "./claude/restore.js";
import { otherCopiesWarning } from "./claude/session.js";
import { createStaging, type RecoveredStaging, recoverStaging, removeStaging } from "./claude/staging.js";
import { chooseTarget, mappingsFor, type TargetChoice } from "./claude/target.js";
import { homeDir, type Settings } from "./config.js";
import type { Identity } from "./crypto/age/index.js";
import { CcbError, errnoCode, IntegrityError } from "./errors.js";
import { withLock } from "./lock.js";

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
  /** What the record promised about the blob, checked after reading. */
  expect?: { sha256: string; size: number } | undefined;
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
  const { settings } = options;
  const staging = await createStaging(settings.claudeDir).catch((err: unknown) => {
    throw describeFsError(err, settings.claudeDir);
  });
  try {
    let signer = "";
    const read = await readBundle(options.blob, {
      identities: options.identities,
      stagingDir: staging,
      onManifest: (manifest) => {
        signer = verifyManifestSignature(manifest);
        if (options.acceptSigners.length > 0 && !options.acceptSigners.includes(signer)) {
          throw new IntegrityError(`bundle is signed by ${signer}, not by the expected key`, {
            hint: "the bundle does not come from who you think; pass --from <z32> to accept another signer",
          });
        }
      },
    });
    if (options.expect && (read.sha256 !== options.expect.sha256 || read.size !== options.expect.size)) {
      throw new IntegrityError("the blob does not match the hash in the record", {
        hint: "the stored bundle was replaced or damaged; ask the sender to push again",
      });
    }
    // One install phase at a time on this machine; finish what killed runs left first.
    return await withLock(
      settings.home,
      "restore",
      async () => {
        const recovered = await recoverStaging(settings.claudeDir);
        const sessions: ReceivedSession[] = [];
        for (const session of read.manifest.sessions)
          sessions.push(await installSession(options, session, staging, read.manifest));
        return { manifest: read.manifest, signer, sessions, recovered };
      },
      { waitMs: INSTALL_LOCK_WAIT_MS },
    );
  } catch (err) {
    throw describeFsError(err, settings.claudeDir, (await pendingJournals(staging).catch(() => [])).length > 0);
  } finally {
    // A journal still here means the install phase stopped half-way: keep it for the next run to finish.
    if ((await pendingJournals(staging).catch(() => [])).length === 0) await removeStaging(staging);
  }
}

async function installSession(
  options: ReceiveOptions,
  session: Manifest["sessions"][number],
  staging: string,
  manifest: Manifest,
): Promise<ReceivedSession> {
  const { settings } = options;
  const target = await chooseTarget(session, {
    project: options.project,
    cwd: options.cwd,
    maps: options.maps,
    keepOriginalPaths: options.keepOriginalPaths,
  });
  const mappings = mappingsFor({
    // restore --all keeps a session at its original path unless --map moved it: then no
    // other path may move either (the old home → this home rewrite is off).
    source:
      options.keepOriginalPaths && target.reason !== "mapped" ? { ...manifest.source, home: "" } : manifest.source,
    session,
    target,
    targetHome: homeDir(settings.env),
    targetClaudeDir: settings.claudeDir,
    maps: options.maps,
  });
  const restored = await restoreSession({
    claudeDir: settings.claudeDir,
    home: settings.home,
    stagedRoot: staging,
    session,
    targetCwd: target.cwd,
    mappings,
    rewrite: options.rewrite,
    force: options.force,
    onInstallStep: options.onInstallStep,
  });
  const gitWarnings = await describeGitDrift(target.cwd, session.git);
  const copies = await otherCopiesWarning(settings.claudeDir, restored.transcript, restored.targetCwd);
  return {
    ...restored,
    title: session.title,
    target,
    gitWarnings,
    warnings: [...(target.warning ? [target.warning] : []), ...copies, ...gitWarnings],
  };
}

/** Disk full and permission errors as one line that says what to do (they are not bugs). */
function describeFsError(err: unknown, claudeDir: string, interrupted = false): unknown {
  if (err instanceof CcbError) return err;
  const code = errnoCode(err);
  const then = interrupted
    ? "the restore stopped half-way; run the command again once fixed and it finishes it"
    : "nothing was changed";
  if (code === "ENOSPC" || code === "EDQUOT") {
    const where = (err as { path?: unknown }).path;
    return new CcbError(
      `no space left on the disk while restoring (writing ${typeof where === "string" ? where : claudeDir})`,
      1,
      {
        hint: `free some space; ${then}`,
        cause: err,
      },
    );
  }
  if (code === "EACCES" || code === "EPERM" || code === "EROFS") {
    return new CcbError(`cannot write in ${claudeDir} (${code})`, 1, {
      hint: `check the permissions of the Claude Code config dir (CLAUDE_CONFIG_DIR); ${then}`,
      cause: err,
    });
  }
  return err;
}
