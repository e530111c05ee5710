import os from "node:os";
import { gitContext } from "../claude/git.js";
import { type CollectedSession, collectSession, exists, type SessionRef } from "../claude/session.js";
import type { UserKey } from "../crypto/keys.js";
import { TOOL_VERSION } from "../version.js";
import { BUNDLE_FORMAT, type GitContext, type Manifest, type ManifestSession, signableBytes } from "./manifest.js";
import type { PackFile } from "./pack.js";

/** Collect a session and write its signed manifest: everything a bundle needs before bytes flow. */
export interface PreparedBundle {
  manifest: Manifest;
  manifestJson: Buffer;
  files: PackFile[];
  session: CollectedSession;
  /** Bytes of session files (uncompressed). */
  bytes: number;
}

export async function prepareBundle(options: {
  claudeDir: string;
  ref: SessionRef;
  key: UserKey;
  env: NodeJS.ProcessEnv;
  /** Where git facts come from; backup passes a per-run cache (git runs up to 5 times per project). */
  git?: ((cwd: string) => Promise<GitContext | undefined>) | undefined;
}): Promise<PreparedBundle> {
  return signBundle({ ...options, session: await collectSession(options.claudeDir, options.ref) });
}

/** The signed manifest of a session collected already (backup collects in a worker thread). */
export async function signBundle(options: {
  claudeDir: string;
  session: CollectedSession;
  key: UserKey;
  env: NodeJS.ProcessEnv;
  git?: ((cwd: string) => Promise<GitContext | undefined>) | undefined;
}): Promise<PreparedBundle> {
  const { session } = options;
  const cwd = session.cwd ?? "";
  const git = cwd && (await exists(cwd)) ? await (options.git ?? gitContext)(cwd) : undefined;
  const entry: ManifestSession = {
    id: session.id,
    cwd: cwd || "/",
    folder: session.folder,
    files: session.files.map(({ path, size, sha256 }) => ({ path, size, sha256 })),
  };
  if (session.title) entry.title = session.title;
  if (session.gitBranch) entry.gitBranch = session.gitBranch;
  if (session.claudeVersion) entry.claudeVersion = session.claudeVersion;
  if (session.firstTimestamp) entry.firstTimestamp = session.firstTimestamp;
  if (session.lastTimestamp) entry.lastTimestamp = session.lastTimestamp;
  if (git) entry.git = git;
  const manifest = signedManifest({
    claudeDir: options.claudeDir,
    env: options.env,
    key: options.key,
    sessions: [entry],
  });
  return {
    manifest,
    manifestJson: Buffer.from(JSON.stringify(manifest, null, 2)),
    files: session.files,
    session,
    bytes: session.files.reduce((sum, file) => sum + file.size, 0),
  };
}

/** A manifest for `sessions` from this machine, signed by `key`. */
export function signedManifest(options: {
  claudeDir: string;
  env: NodeJS.ProcessEnv;
  key: UserKey;
  sessions: ManifestSession[];
}): Manifest {
  const manifest: Manifest = {
    format: BUNDLE_FORMAT,
    created: new Date().toISOString(),
    tool: { name: "ccbundle", version: TOOL_VERSION },
    source: {
      host: os.hostname(),
      user: safeUser(),
      platform: process.platform,
      home: options.env.HOME || os.homedir(),
      claudeDir: options.claudeDir,
    },
    publisher: options.key.z32,
    sessions: options.sessions,
  };
  manifest.signature = Buffer.from(options.key.sign(signableBytes(manifest))).toString("base64");
  return manifest;
}

function safeUser(): string {
  try {
    return os.userInfo().username;
  } catch {
    return "";
  }
}
