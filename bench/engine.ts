import { createWriteStream } from "node:fs";
import { pipeline } from "node:stream/promises";
import { bundleStream, HashCounter } from "../core/bundle/blob.js";
import { signedManifest } from "../core/bundle/build.js";
import type { ManifestSession } from "../core/bundle/manifest.js";
import type { PackFile } from "../core/bundle/pack.js";
import { sessionBundler } from "../core/bundle/worker-pool.js";
import { allSessions } from "../core/claude/session.js";
import { loadSettings } from "../core/config.js";
import { openIdentityBytes, readIdentityBytes } from "../core/crypto/identity-file.js";

/**
 * The bundle pipeline on a whole config dir, as one process, the way a
 * one-blob `backup --all` would run it: discover every session, scan and hash
 * its files (on the worker threads backup uses, one per core), then
 * tar → zstd → age → sha256 → file (zstd on its own threads). The output is a normal
 * multi-session bundle signed by the user, so `ccbundle import` restores it.
 *
 *     node dist/bench/engine.js <out-file>      (environment as for ccbundle; identity without passphrase)
 *
 * Git context is left out: it is per-project metadata (a `git` call per
 * project), not bundle throughput.
 */

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
const taken = new Set<string>();
let bytes = 0;
const bundler = sessionBundler();
// The threads start now, while this thread lists the sessions.
bundler.warm();
const refs = await allSessions(settings.claudeDir);
const collecting = refs.map((ref) => bundler.collect(settings.claudeDir, ref));
// Every collect is queued at once; errors surface in order below.
for (const pending of collecting) pending.catch(() => {});
for (const pending of collecting) {
  const session = await pending;
  // A bundle holds a path once: each session's prompt-history lines share one path (left out here), and two
  // sessions may name the same plan (the first one carries it).
  const own = session.files.filter((file) => file.path !== "claude/history.jsonl" && !taken.has(file.path));
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
}

// Ended in the background: the stream below needs no worker.
const closing = bundler.close();
const collected = { wall: (performance.now() - phase.start) / 1000, cpu: cpu() - phase.cpu };
const manifest = signedManifest({ claudeDir: settings.claudeDir, env: settings.env, key, sessions: entries });

const counter = new HashCounter();
await pipeline(
  bundleStream({
    manifestJson: Buffer.from(JSON.stringify(manifest)),
    files,
    recipients: [key.ageRecipient()],
    compression: settings.compression,
  }),
  counter,
  createWriteStream(out, { mode: 0o600 }),
);
await closing;
const total = { wall: (performance.now() - phase.start) / 1000, cpu: cpu() - phase.cpu };
process.stdout.write(
  `${JSON.stringify({ sessions: entries.length, bytes, blobBytes: counter.bytes, collected, total })}\n`,
);
