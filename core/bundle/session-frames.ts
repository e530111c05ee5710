import { type CollectedSession, collectSession, type SessionRef } from "../claude/session.js";
import { type CompressOptions, zstdEncoder } from "./codec.js";
import { fileEntries, READ_SIZE } from "./pack.js";

/**
 * Several sessions collected and their tar entries compressed into one zstd
 * frame, on a bundle worker thread: bench/engine.ts makes one blob of a whole
 * config dir this way. Its manifest (the tar's first entry) needs every file's
 * hash, so one zstd stream could only start once every session was scanned;
 * as separate frames, compression runs on every core while the scan goes on,
 * and each file is compressed right after it was hashed, while the page cache
 * and the CPU caches still hold it. The main thread puts the manifest's frame
 * first and seals the frames in order (blob-encoder.ts sealFrames).
 */

export interface FrameJob {
  claudeDir: string;
  refs: SessionRef[];
  compression: CompressOptions;
  /** The tar headers' mtime (the same in every frame of a blob). */
  mtime: number;
  /** Bundle paths to leave out of the frame (a multi-session bundle lists them once, elsewhere). */
  leaveOut: string[];
  /**
   * Bundle paths under this prefix are collected but not packed: files two sessions may share
   * (plans), which the caller packs itself once it knows which session carries them.
   */
  apart?: string | undefined;
}

export interface FramedSessions {
  sessions: CollectedSession[];
  /** Per session, the bundle paths whose entries the frame holds, in order (a path is packed once per frame). */
  packed: string[][];
  /** One zstd frame, in pieces. */
  frame: Buffer[];
}

export async function frameSessions(job: FrameJob): Promise<FramedSessions> {
  // One frame on this thread: the parallelism is one job per worker thread.
  const encoder = zstdEncoder({ ...job.compression, workers: 0 });
  if (!encoder) throw new Error("compressed frames need zstd");
  const frame: Buffer[] = [];
  // The encoder emits views of its own buffer: copy (each copy owns its memory, so it can be transferred).
  const emit = (bytes: Buffer) => frame.push(Buffer.from(bytes));
  const readBuffer = Buffer.allocUnsafe(READ_SIZE);
  const leaveOut = new Set(job.leaveOut);
  const sessions: CollectedSession[] = [];
  const packed: string[][] = [];
  try {
    for (const ref of job.refs) {
      const session = await collectSession(job.claudeDir, ref);
      const own = session.files.filter(
        (file) => !leaveOut.has(file.path) && !(job.apart !== undefined && file.path.startsWith(job.apart)),
      );
      for (const file of own) leaveOut.add(file.path);
      for (const chunk of fileEntries(own, job.mtime, readBuffer)) encoder.write(chunk, emit);
      sessions.push(session);
      packed.push(own.map((file) => file.path));
    }
    encoder.end(emit);
    return { sessions, packed, frame };
  } finally {
    encoder.destroy();
  }
}
