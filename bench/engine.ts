import { createWriteStream } from "node:fs";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { bundleStream, HashCounter } from "../core/bundle/blob.js";
import { sealFrames } from "../core/bundle/blob-encoder.js";
import { signedManifest } from "../core/bundle/build.js";
import { effectiveCodec, zstdEncoder } from "../core/bundle/codec.js";
import { MANIFEST_NAME, type ManifestSession } from "../core/bundle/manifest.js";
import { fileEntries, type PackFile, READ_SIZE, tarEntry, tarTime } from "../core/bundle/pack.js";
import type { FramedSessions } from "../core/bundle/session-frames.js";
import { END_OF_ARCHIVE } from "../core/bundle/tar-header.js";
import { sessionBundler } from "../core/bundle/worker-pool.js";
import type { CollectedSession, SessionRef } from "../core/claude/session.js";
import { allSessions } from "../core/claude/session.js";
import { loadSettings } from "../core/config.js";
import { openIdentityBytes, readIdentityBytes } from "../core/crypto/identity-file.js";

/**
 * The bundle pipeline on a whole config dir, as one process, the way a
 * one-blob `backup --all` would run it: discover every session; on the
 * worker threads backup uses (one per core), scan and hash each session's
 * files and compress their tar entries, a few sessions (~8 MiB) per zstd
 * frame (core/bundle/session-frames.ts); then the signed manifest's entry as
 * the first frame, and the frames in order → age → sha256 → file. The output
 * is a normal multi-session bundle signed by the user (a zstd stream of
 * several frames, which the decompressor reads in order), so
 * `ccbundle import` restores it. Without zstd (gzip): one stream, after the scan.
 *
 *     node dist/bench/engine.js <out-file>      (environment as for ccbundle; identity without passphrase)
 *
 * Git context is left out: it is per-project metadata (a `git` call per
 * project), not bundle throughput.
 */

/** Sessions per frame job: about this many transcript bytes (zstd -3 on 8 MiB frames: 2 % larger than one frame). */
const FRAME_BYTES = 8 << 20;
/** Prompt-history lines are per session under one path: left out of a multi-session bundle. */
const HISTORY = "claude/history.jsonl";
/**
 * Two sessions may name the same plan, and the bundle carries it once (with the first session). Plans
 * are small (1 MB of the bench's 303): the workers leave them out of their frames and each job's
 * plans follow its frame in a small frame made here, so a plan shared across jobs is never packed
 * twice. The tar then lists a job's plans after its sessions' other files, not in manifest order
 * (unpack takes entries in any order: each must be listed, once).
 */
const PLANS = "claude/plans/";

const out = process.argv[2];
if (!out) throw new Error("usage: engine.js <out-file>");
const settings = loadSettings();
const { key } = await openIdentityBytes(await readIdentityBytes(settings.home), async () => "", "bench identity");

const cpu = () => {
  const used = process.cpuUsage();
  return (used.user + used.system) / 1e6;
};
const phase = { start: performance.now(), cpu: cpu() };
const entries: ManifestSession[] = [];
const files: PackFile[] = [];
/** A bundle holds a path once: two sessions may name the same plan (the first one carries it). */
const taken = new Set<string>();
let bytes = 0;
const bundler = sessionBundler();
bundler.warm();
const refs = await allSessions(settings.claudeDir);
const framed = effectiveCodec(settings.compression.codec) === "zstd";
const mtime = tarTime();

/** The sessions' entries and files, first come first: a path already taken is left out of a later session. */
function add(session: CollectedSession): PackFile[] {
  const own = session.files.filter((file) => file.path !== HISTORY && !taken.has(file.path));
  for (const file of own) taken.add(file.path);
  entries.push({
    id: session.id,
    cwd: session.cwd ?? "/",
    folder: session.folder,
    files: own.map(({ path, size, sha256 }) => ({ path, size, sha256 })),
    ...(session.title ? { title: session.title } : {}),
  });
  files.push(...own);
  bytes += own.reduce((sum, file) => sum + file.size, 0);
  return own;
}

const frames: Buffer[] = [];
if (framed) {
  const jobs: SessionRef[][] = [];
  let size = Number.POSITIVE_INFINITY;
  for (const ref of refs) {
    if (size >= FRAME_BYTES) {
      jobs.push([]);
      size = 0;
    }
    jobs.at(-1)!.push(ref);
    size += ref.size;
  }
  const compression = settings.compression;
  const pending = jobs.map((job) =>
    bundler.frame({ claudeDir: settings.claudeDir, refs: job, compression, mtime, leaveOut: [HISTORY], apart: PLANS }),
  );
  // Every job is queued at once; errors surface in order below.
  for (const job of pending) job.catch(() => {});
  for (const job of pending) frames.push(...framesOf(await job));
} else {
  const collecting = refs.map((ref) => bundler.collect(settings.claudeDir, ref));
  for (const pending of collecting) pending.catch(() => {});
  for (const pending of collecting) add(await pending);
}

/**
 * A job's frame as the worker made it, then its sessions' plans (those no earlier session carries).
 * Should a frame hold a path an earlier job took after all, the job's entries are compressed again
 * here, without it.
 */
function framesOf(result: FramedSessions): Buffer[] {
  const owns = result.sessions.map(add);
  const framed = owns.map((own) => own.filter((file) => !file.path.startsWith(PLANS)));
  const plans = owns.flatMap((own) => own.filter((file) => file.path.startsWith(PLANS)));
  const same = framed.every(
    (own, i) => own.length === result.packed[i]!.length && own.every((file, j) => file.path === result.packed[i]![j]),
  );
  const frame = same ? result.frame : compress(fileEntries(framed.flat(), mtime, Buffer.allocUnsafe(READ_SIZE)));
  if (plans.length === 0) return frame;
  return [...frame, ...compress(fileEntries(plans, mtime, Buffer.allocUnsafe(READ_SIZE)))];
}

function compress(chunks: Iterable<Buffer>): Buffer[] {
  const encoder = zstdEncoder({ ...settings.compression, workers: 0 })!;
  const frame: Buffer[] = [];
  const emit = (bytes: Buffer) => frame.push(Buffer.from(bytes));
  for (const chunk of chunks) encoder.write(chunk, emit);
  encoder.end(emit);
  return frame;
}

await bundler.close();
const collected = { wall: (performance.now() - phase.start) / 1000, cpu: cpu() - phase.cpu };
const manifest = signedManifest({ claudeDir: settings.claudeDir, env: settings.env, key, sessions: entries });
const manifestJson = Buffer.from(JSON.stringify(manifest));

const counter = new HashCounter();
await pipeline(
  framed
    ? Readable.from(joined(sealFrames([key.ageRecipient()], allFrames())))
    : bundleStream({ manifestJson, files, recipients: [key.ageRecipient()], compression: settings.compression }),
  counter,
  createWriteStream(out, { mode: 0o600 }),
);

/** The manifest's entry, the sessions' frames, the end of the archive: the tar of bundleStream, in frames. */
function* allFrames(): Generator<Buffer> {
  yield* compress([tarEntry(MANIFEST_NAME, manifestJson, mtime)]);
  yield* frames;
  yield* compress([END_OF_ARCHIVE]);
}

async function* joined(lists: AsyncIterable<Buffer[]>): AsyncGenerator<Buffer> {
  for await (const list of lists) yield list.length === 1 ? list[0]! : Buffer.concat(list);
}

const total = { wall: (performance.now() - phase.start) / 1000, cpu: cpu() - phase.cpu };
process.stdout.write(
  `${JSON.stringify({ sessions: entries.length, bytes, blobBytes: counter.bytes, collected, total })}\n`,
);
