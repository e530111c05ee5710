import { randomBytes } from "node:crypto";
import { mkdir } from "node:fs/promises";
import path from "node:path";
import type { Readable } from "node:stream";
import { readBundle } from "./bundle/blob.js";
import type { Manifest } from "./bundle/manifest.js";
import { verifyManifestSignature } from "./bundle/signature.js";
import { describeGitDrift } from "./claude/git.js";
import type { PathMapping } from "./claude/remap.js";
import { type RestoreResult, removeStaging, restoreSession } from "./claude/restore.js";
import { otherCopiesWarning } from "./claude/session.js";
import { chooseTarget, mappingsFor, type TargetChoice } from "./claude/target.js";
import { homeDir, type Settings } from "./config.js";
import type { Identity } from "./crypto/age/index.js";
import { IntegrityError } from "./errors.js";

/**
 * The receiving half shared by pull, import and restore: decrypt and unpack a
 * blob into a staging folder inside the config dir (same filesystem, hidden
 * from Claude Code), check it, then move each session into place. If anything
 * fails before the move, the config dir is exactly as it was.
 */

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
}

export async function receiveBundle(options: ReceiveOptions): Promise<ReceiveResult> {
  const { settings } = options;
  await mkdir(settings.claudeDir, { recursive: true });
  const staging = path.join(settings.claudeDir, `.ccbundle-staging-${randomBytes(6).toString("hex")}`);
  await mkdir(staging, { mode: 0o700 });
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
    const sessions: ReceivedSession[] = [];
    for (const session of read.manifest.sessions) {
      const target = await chooseTarget(session, {
        project: options.project,
        cwd: options.cwd,
        maps: options.maps,
      });
      const mappings = mappingsFor({
        source: read.manifest.source,
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
      });
      const gitWarnings = await describeGitDrift(target.cwd, session.git);
      const copies = await otherCopiesWarning(settings.claudeDir, restored.transcript, restored.targetCwd);
      sessions.push({
        ...restored,
        title: session.title,
        target,
        gitWarnings,
        warnings: [...(target.warning ? [target.warning] : []), ...copies, ...gitWarnings],
      });
    }
    return { manifest: read.manifest, signer, sessions };
  } finally {
    await removeStaging(staging);
  }
}
