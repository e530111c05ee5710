import path from "node:path";
import { pipeline } from "node:stream";
import type { BlobStore } from "../storage-adapters/blob-store.js";
import type { ProgressListener } from "./backup/progress.js";
import { emptiedStore } from "./backup/state.js";
import { bundleStream, HashCounter } from "./bundle/blob.js";
import { prepareBundle } from "./bundle/build.js";
import { findSession } from "./claude/session.js";
import type { Settings } from "./config.js";
import { type Recipient, X25519Identity, type X25519Recipient } from "./crypto/age/index.js";
import type { UserKey } from "./crypto/keys.js";
import { PinRecipient } from "./crypto/pin.js";
import { blobSecretFor, slotFileKey } from "./crypto/slot-seal.js";
import { isoTime } from "./duration.js";
import { CcbError, ExitCode, UsageError } from "./errors.js";
import { addHandoff, readLedger, recipientNames } from "./handoff-ledger.js";
import { withLock } from "./lock.js";
import type { VerifiedPacket } from "./pointer/packet.js";
import {
  type BlobPointer,
  describeSlot,
  type PointerPayload,
  recipientSlotId,
  sealedSize,
  sealPayload,
  slotFor,
} from "./pointer/record.js";
import type { PointerTransport } from "./pointer/transport.js";
import { type NewSlot, publishRecord, resolveCurrent } from "./publish.js";
import { randomId, storeLayout } from "./store-layout.js";

/** S3 presigned URLs live at most 7 days (SigV4). */
const MAX_PRESIGN_SECONDS = 7 * 24 * 3600;
/** Titles are cut to this many UTF-8 bytes in the record (the bundle keeps the whole title). */
const MAX_TITLE_BYTES = 32;

/**
 * `ccbundle push`: pack the session, encrypt it to a fresh blob key (and to
 * the owner and any --to recipients), upload it, then publish a signed record
 * that points at it. Order matters: the record goes out only after the blob is
 * completely stored, so a record never points at a half-written blob.
 *
 * Modes: to yourself (slot "self"), to people (--to: slot "to:<ids>", sealed
 * for them and the owner), by PIN (--pin: slot "pin", sealed for the PIN and
 * the owner). A new slot replaces the slot it supersedes and leaves the others.
 */

export interface PushOptions {
  settings: Settings;
  key: UserKey;
  projectDir: string;
  sessionId?: string | undefined;
  store: BlobStore;
  transports: PointerTransport[];
  /** --to: people who can read the handoff besides the owner, with the names the user gave them. */
  recipients?: Array<{ recipient: X25519Recipient; name: string }>;
  /** --pin: the PIN as bytes (the caller zeroes them afterwards). */
  pin?: Uint8Array | undefined;
  ttlSeconds: number;
  burn: boolean;
  /** Packing and uploading, in bytes of the session's files (the blob's size is known only at its end). */
  onProgress?: ProgressListener | undefined;
}

export type PushMode = "self" | "shared" | "pin";

export interface PushResult {
  sessionId: string;
  title: string | undefined;
  cwd: string;
  files: number;
  bytes: number;
  blobBytes: number;
  blobKey: string;
  store: string;
  mode: PushMode;
  slot: string;
  expires: number;
  recordBytes: number;
  slotBytes: number;
  slots: number;
  publishedTo: string;
  publishFailures: string[];
  presigned: boolean;
  /** Older slots left out of the record for lack of room. */
  dropped: string[];
  warnings: string[];
}

export async function pushSession(options: PushOptions): Promise<PushResult> {
  // Two pushes at once would race on the record's seq and the carried-over slots.
  return withLock(options.settings.home, "push", () => pushLocked(options), { waitMs: 30_000 });
}

/**
 * A fresh key per blob, derived from the file key of the slot that will point
 * at it: whoever can open the slot can open the blob, and the slot need not
 * carry the blob key. Both are zeroed however the push ends.
 */
async function pushLocked(options: PushOptions): Promise<PushResult> {
  const fileKey = slotFileKey();
  const blobSecret = blobSecretFor(fileKey);
  try {
    return await pushWithKeys(options, fileKey, blobSecret);
  } finally {
    fileKey.fill(0);
    blobSecret.fill(0);
  }
}

async function pushWithKeys(options: PushOptions, fileKey: Buffer, blobSecret: Buffer): Promise<PushResult> {
  const { settings, key } = options;
  // Each reader once; the owner reads every slot anyway.
  const seen = new Set([Buffer.from(key.ageRecipient().publicKey).toString("hex")]);
  const people = (options.recipients ?? []).filter((p) => {
    const id = Buffer.from(p.recipient.publicKey).toString("hex");
    if (seen.has(id)) return false;
    seen.add(id);
    return true;
  });
  if (options.pin && people.length > 0) {
    throw new UsageError("a handoff is either --to people or by --pin, not both", {
      hint: "push twice: once with --to, once with --pin",
    });
  }
  // Another machine of ours may have pushed since this one last did: carry its slots over too.
  // Resolved while the bundle is packed and uploaded.
  const currentRecord = resolveCurrent(options.transports, key, settings.home);

  const ref = await findSession(settings.claudeDir, options.projectDir, options.sessionId);
  await refuseEmptiedStore(options.store, settings.home, key.z32);
  await options.store.checkWritable?.();
  const prepared = await prepareBundle({
    claudeDir: settings.claudeDir,
    ref,
    key,
    env: settings.env,
    compress: settings.compression,
  });
  const session = prepared.manifest.sessions[0]!;

  const mode: PushMode = options.pin ? "pin" : people.length > 0 ? "shared" : "self";
  const slot = options.pin
    ? "pin"
    : slotFor(
        key.publicKey,
        people.map((p) => p.recipient),
      );
  const slotRecipients: Recipient[] = [
    key.ageRecipient(),
    ...people.map((p) => p.recipient),
    ...(options.pin ? [new PinRecipient(options.pin)] : []),
  ];

  const blobIdentity = new X25519Identity(blobSecret);
  const objectKey = storeLayout.blob(randomId());
  const now = Math.floor(Date.now() / 1000);
  const expires = now + options.ttlSeconds;
  const payloadFor = (size: number, sha256: string, url: string | undefined, withTitle = true): PointerPayload => {
    const blob: BlobPointer = {
      store: options.store.url,
      key: objectKey,
      ...(url ? { url } : {}),
      size,
      sha256,
      age: blobSecret.toString("base64url"),
    };
    const title = session.title && withTitle ? cutUtf8(session.title, MAX_TITLE_BYTES) : undefined;
    return {
      v: 1,
      pub: key.z32,
      slot,
      kind: "handoff",
      created: now,
      expires,
      ...(options.burn ? { burn: true } : {}),
      session: { id: session.id, ...(title ? { title } : {}) },
      blob,
    };
  };
  const sizeOnly = (payload: PointerPayload): NewSlot => ({
    payload,
    sealed: Buffer.alloc(sealedSize(payload, slotRecipients, { omitBlobKey: true })),
  });
  const plan = (payload: PointerPayload, current: VerifiedPacket | undefined) =>
    publishRecord({ settings, key, slots: [sizeOnly(payload)], current, transports: [], dryRun: true });

  // A presigned GET lets a receiver without store credentials fetch the blob;
  // it can be made before the upload and lives as long as the handoff.
  const warnings: string[] = [];
  let url: string | undefined;
  if (options.store.presignGet) {
    url = await options.store.presignGet(objectKey, Math.min(options.ttlSeconds, MAX_PRESIGN_SECONDS));
  }
  // Check the new slot fits before a single byte is uploaded: same fields, worst-case numbers.
  const worstCase = (withUrl: string | undefined) => payloadFor(Number.MAX_SAFE_INTEGER, "0".repeat(64), withUrl);
  if (url) {
    try {
      await plan(worstCase(url), undefined);
    } catch {
      url = undefined;
      warnings.push(
        "the store's presigned download link does not fit in the 1000-byte record; receivers need read access to the store (see README: MinIO in a homelab)",
      );
    }
  }
  await plan(worstCase(url), undefined);

  const counter = new HashCounter();
  const blobRecipients: Recipient[] = [blobIdentity.recipient(), key.ageRecipient(), ...people.map((p) => p.recipient)];
  const blob = bundleStream({
    manifestJson: prepared.manifestJson,
    files: prepared.files,
    recipients: blobRecipients,
    compression: settings.compression,
    onPlainBytes: (done) => options.onProgress?.({ phase: "upload", unit: "bytes", done, total: prepared.bytes }),
  });
  // pipeline, not pipe: a file Claude Code rewrote while it was packed must fail the upload (one
  // line, the temp file removed). pipe() passed no error on, and one raised before the store began
  // to read crashed the process; now it destroys `counter`, and the store's read of it fails.
  const stream = pipeline(blob, counter, () => undefined);
  await options.store.put(objectKey, stream);
  const sha256 = counter.digest();
  const stored = await options.store.stat(objectKey);
  if (!stored || stored.size !== counter.bytes) {
    throw new CcbError(`the store kept ${stored?.size ?? 0} of ${counter.bytes} bytes of the bundle`, 1, {
      hint: "check the store and push again",
    });
  }

  // Fit the new slot beside as many live slots as possible. Left out first: the title (status
  // shows the session id instead); then, to yourself, the presigned link (your other machine can
  // read the store itself). To someone else the link stays, even if it fits only alone.
  const current = await currentRecord;
  const variants = (url && mode === "self" ? [url, undefined] : [url]).flatMap((withUrl) =>
    [true, false].map((withTitle) => ({ withUrl, withTitle })),
  );
  let best: { withUrl: string | undefined; withTitle: boolean; dropped: number } | undefined;
  for (const variant of variants) {
    const { dropped } = await plan(payloadFor(counter.bytes, sha256, variant.withUrl, variant.withTitle), current);
    if (!best || dropped.length < best.dropped) best = { ...variant, dropped: dropped.length };
    if (dropped.length === 0) break;
  }
  if (url && best!.withUrl === undefined) {
    warnings.push(
      "left the presigned download link out of the record to keep your other handoffs in it: the machine that pulls needs read access to the store",
    );
  } else if (url && best!.dropped > 0) {
    warnings.push("the presigned download link takes hundreds of the record's 1000 bytes: it fits only alone");
  }
  url = best!.withUrl;

  const payload = payloadFor(counter.bytes, sha256, url, best!.withTitle);
  const sealed = await sealPayload(payload, slotRecipients, fileKey);
  blobIdentity.destroy();
  const named = people
    .map((p) => ({ id: recipientSlotId(key.publicKey, p.recipient), name: p.name }))
    .sort((a, b) => a.id.localeCompare(b.id));
  // The ledger entry is written while the record goes out (its write and fsync came after the
  // publish, ~15 ms of every push). The blob is stored either way: should the publish fail, the
  // entry still lets `prune --expired` delete that blob once it expires.
  const [report] = await Promise.all([
    publishRecord({
      settings,
      key,
      slots: [{ payload, sealed }],
      current,
      transports: options.transports,
      dryRun: false,
    }),
    addHandoff(settings.home, key.z32, {
      slot,
      store: options.store.url,
      key: objectKey,
      created: now,
      expires,
      ...(named.length > 0 ? { recipients: named.map((p) => p.name) } : {}),
    }),
  ]);
  const names = await recipientNames(settings.home, key.z32);
  if (report.droppedNewer > 0) {
    warnings.push(
      `no room left in the 1000-byte record for ${report.droppedNewer === 1 ? "a slot" : `${report.droppedNewer} slots`} a newer ccbundle wrote (on another machine of yours): left out; upgrade ccbundle there and push again if it was a handoff`,
    );
  }
  for (const dropped of report.dropped) {
    warnings.push(
      dropped.kind === "snapshot"
        ? "no room left in the 1000-byte record for the pointer to your backups: it was left out until the next `ccbundle backup --publish` after these handoffs expire"
        : `no room left in the 1000-byte record for your older handoff ${describeSlot(dropped.slot, names)} from ${isoTime(dropped.created)}: it was left out`,
    );
  }
  return {
    sessionId: session.id,
    title: session.title,
    cwd: session.cwd,
    files: session.files.length,
    bytes: prepared.bytes,
    blobBytes: counter.bytes,
    blobKey: objectKey,
    store: options.store.url,
    mode,
    slot,
    expires,
    recordBytes: report.dnsBytes,
    slotBytes: sealed.length,
    slots: report.slots,
    publishedTo: report.summary,
    publishFailures: report.failures,
    presigned: url !== undefined,
    dropped: report.dropped.map((p) => p.slot),
    warnings,
  };
}

function cutUtf8(text: string, maxBytes: number): string {
  if (Buffer.byteLength(text) <= maxBytes) return text;
  let out = "";
  for (const char of text) {
    if (Buffer.byteLength(`${out}${char}…`) > maxBytes) break;
    out += char;
  }
  return `${out}…`;
}

/**
 * A store folder with nothing at all in it that this machine pushed to before: a NAS mount point
 * with nothing mounted, most likely. The bundle would land on the disk under the mount point,
 * where the other machine never looks, and the push would say it worked (backup refuses the same).
 * Before checkWritable, which makes the store's `.tmp` folder.
 */
async function refuseEmptiedStore(store: BlobStore, home: string, z32: string): Promise<void> {
  const pushedBefore = async () => (await readLedger(home, z32)).some((entry) => entry.store === store.url);
  const emptied = await emptiedStore(store, pushedBefore, "pushed to");
  if (!emptied?.empty) return;
  throw new CcbError(emptied.message, ExitCode.failure, {
    hint: `mount the NAS, or check --store; if you emptied it on purpose: mkdir -p ${path.join(emptied.root ?? "<store>", "ccbundle", "v1", "blobs")} and push again`,
  });
}
