import { statSync } from "node:fs";
import os from "node:os";
import { gitContext } from "../claude/git.js";
import { type CollectedSession, collectSession, exists, type SessionRef } from "../claude/session.js";
import { leadingCwd } from "../claude/transcript.js";
import type { UserKey } from "../crypto/keys.js";
import { TOOL_VERSION } from "../version.js";
import { type CompressOptions, zstdEncoder } from "./codec.js";
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
  /** Compress the transcript as it is read, with these settings (push: see TranscriptCompressor). */
  compress?: CompressOptions | undefined;
}): Promise<PreparedBundle> {
  // git runs while the transcript is read (its processes on another core): the cwd is found
  // in the transcript's first lines, and the answer is used only if the read finds the same cwd.
  const early = leadingCwd(options.ref.transcript);
  const askGit = options.git ?? gitContext;
  const earlyGit = early !== undefined && isDirectory(early) ? askGit(early) : undefined;
  earlyGit?.catch(() => undefined);
  const compressor = options.compress && transcriptCompressor(options.ref.transcript, options.compress);
  let session: CollectedSession;
  try {
    session = await collectSession(options.claudeDir, options.ref, compressor?.write);
  } catch (err) {
    compressor?.abandon();
    throw err;
  }
  if (compressor) {
    const compressed = compressor.finish();
    session.files = session.files.map((file) =>
      file.source === options.ref.transcript ? { ...file, compressed } : file,
    );
  }
  const git = (cwd: string) => (earlyGit && cwd === early ? earlyGit : askGit(cwd));
  return signBundle({ ...options, session, git });
}

/** Transcripts up to this size are compressed while they are scanned (held compressed: ~1/5 of it). */
const COMPRESS_WHILE_SCANNING_MAX = 64 << 20;

/**
 * zstd frames of a transcript's hashed bytes, made while the scan reads them: the scan (read,
 * sha256, line scan: ~100 ms for 50 MB) no longer has to finish before compression starts, and
 * the bytes are not read a second time. The blob encoder puts the frames where the transcript's
 * data goes in the tar (the manifest, which needs the scan's hash, still comes first). Only
 * for zstd and transcripts up to COMPRESS_WHILE_SCANNING_MAX, so memory stays bounded.
 */
interface TranscriptCompressor {
  write: (whole: Buffer) => void;
  finish: () => Buffer[];
  abandon: () => void;
}

function transcriptCompressor(transcript: string, options: CompressOptions): TranscriptCompressor | undefined {
  let size: number;
  try {
    size = statSync(transcript).size;
  } catch {
    return undefined;
  }
  if (size > COMPRESS_WHILE_SCANNING_MAX) return undefined;
  const encoder = zstdEncoder(options);
  if (!encoder) return undefined;
  const frames: Buffer[] = [];
  // The encoder hands over views of its own buffer.
  const keep = (bytes: Buffer) => frames.push(Buffer.from(bytes));
  return {
    write: (whole) => encoder.write(whole, keep),
    finish: () => {
      encoder.end(keep);
      return frames;
    },
    abandon: () => encoder.destroy(),
  };
}

function isDirectory(dir: string): boolean {
  try {
    return statSync(dir).isDirectory();
  } catch {
    return false;
  }
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
