import { randomBytes } from "node:crypto";
import os from "node:os";
import type { BlobStore } from "../storage-adapters/blob-store.js";

/** S3 presigned URLs live at most 7 days (SigV4). */
const MAX_PRESIGN_SECONDS = 7 * 24 * 3600;

import { bundleStream, HashCounter } from "./bundle/blob.js";
import { prepareBundle } from "./bundle/build.js";
import { findSession } from "./claude/session.js";
import type { Settings } from "./config.js";
import { type Recipient, X25519Identity } from "./crypto/age/index.js";
import type { UserKey } from "./crypto/keys.js";
import { CcbError } from "./errors.js";
import { withLock } from "./lock.js";
import type { BlobPointer, PointerPayload } from "./pointer/record.js";
import type { PointerTransport } from "./pointer/transport.js";
import { publishRecord } from "./publish.js";
import { randomId, storeLayout } from "./store-layout.js";

/**
 * `ccbundle push`: pack the session, encrypt it to a fresh blob key (and to
 * the owner and any --to recipients), upload it, then publish a signed record
 * that points at it. Order matters: the record goes out only after the blob is
 * completely stored, so a record never points at a half-written blob.
 */

export interface PushOptions {
  settings: Settings;
  key: UserKey;
  projectDir: string;
  sessionId?: string | undefined;
  store: BlobStore;
  transports: PointerTransport[];
  /** Extra recipients (--to) for the blob; their record slots are issue-6 work. */
  recipients?: Recipient[];
  ttlSeconds: number;
  burn: boolean;
  onProgress?: (phase: string, done: number, total?: number) => void;
}

export interface PushResult {
  sessionId: string;
  title: string | undefined;
  cwd: string;
  files: number;
  bytes: number;
  blobBytes: number;
  blobKey: string;
  store: string;
  expires: number;
  recordBytes: number;
  publishedTo: string;
  publishFailures: string[];
  presigned: boolean;
  warnings: string[];
}

export async function pushSession(options: PushOptions): Promise<PushResult> {
  // Two pushes at once would race on the record's seq and the carried-over slots.
  return withLock(options.settings.home, "push", () => pushLocked(options), { waitMs: 30_000 });
}

async function pushLocked(options: PushOptions): Promise<PushResult> {
  const { settings, key } = options;
  const ref = await findSession(settings.claudeDir, options.projectDir, options.sessionId);
  const prepared = await prepareBundle({ claudeDir: settings.claudeDir, ref, key, env: settings.env });
  const session = prepared.manifest.sessions[0]!;

  // A fresh key per blob: the record carries it, so whoever can open the record can open the blob.
  const blobSecret = randomBytes(32);
  const blobIdentity = new X25519Identity(blobSecret);
  const blobId = randomId();
  const objectKey = storeLayout.blob(blobId);
  const now = Math.floor(Date.now() / 1000);
  const expires = now + options.ttlSeconds;
  const pointerFor = (size: number, sha256: string, url?: string): BlobPointer => ({
    store: options.store.url,
    key: objectKey,
    ...(url ? { url } : {}),
    size,
    sha256,
    age: blobSecret.toString("base64url"),
  });
  const payloadFor = (blob: BlobPointer): PointerPayload => ({
    v: 1,
    pub: key.z32,
    slot: "self",
    kind: "handoff",
    created: now,
    expires,
    ...(options.burn ? { burn: true } : {}),
    host: os.hostname(),
    session: { id: session.id, ...(session.title ? { title: session.title } : {}) },
    blob,
  });

  // A presigned GET lets a receiver without store credentials fetch the blob;
  // it can be made before the upload and lives as long as the handoff.
  const warnings: string[] = [];
  let url: string | undefined;
  if (options.store.presignGet) {
    url = await options.store.presignGet(objectKey, Math.min(options.ttlSeconds, MAX_PRESIGN_SECONDS));
  }
  // Check the record fits before a single byte is uploaded: same fields, worst-case numbers.
  const worstCase = (withUrl: string | undefined) =>
    publishRecord({
      settings,
      key,
      payload: payloadFor(pointerFor(Number.MAX_SAFE_INTEGER, "0".repeat(64), withUrl)),
      recipients: options.recipients,
      transports: [],
      dryRun: true,
    });
  if (url) {
    try {
      await worstCase(url);
    } catch {
      url = undefined;
      warnings.push(
        "the store's presigned download link does not fit in the 1000-byte record; receivers need read access to the store (see README: MinIO in a homelab)",
      );
    }
  }
  await worstCase(url);

  const counter = new HashCounter();
  const recipients: Recipient[] = [blobIdentity.recipient(), key.ageRecipient(), ...(options.recipients ?? [])];
  const stream = bundleStream({
    manifestJson: prepared.manifestJson,
    files: prepared.files,
    recipients,
    compression: settings.compression,
  }).pipe(counter);
  await options.store.put(objectKey, stream, {
    onProgress: (done) => options.onProgress?.("upload", done),
  });
  const sha256 = counter.digest();
  const stored = await options.store.stat(objectKey);
  if (!stored || stored.size !== counter.bytes) {
    throw new CcbError(`the store kept ${stored?.size ?? 0} of ${counter.bytes} bytes of the bundle`, 1, {
      hint: "check the store and push again",
    });
  }

  const report = await publishRecord({
    settings,
    key,
    payload: payloadFor(pointerFor(counter.bytes, sha256, url)),
    recipients: options.recipients,
    transports: options.transports,
    dryRun: false,
  });
  return {
    sessionId: session.id,
    title: session.title,
    cwd: session.cwd,
    files: session.files.length,
    bytes: prepared.bytes,
    blobBytes: counter.bytes,
    blobKey: objectKey,
    store: options.store.url,
    expires,
    recordBytes: report.dnsBytes,
    publishedTo: report.summary,
    publishFailures: report.failures,
    presigned: url !== undefined,
    warnings,
  };
}
