import type { Readable } from "node:stream";
import type { BlobStore } from "../storage-adapters/blob-store.js";
import { openStore } from "../storage-adapters/index.js";
import type { PathMapping } from "./claude/remap.js";
import type { Settings } from "./config.js";
import { type Identity, X25519Identity } from "./crypto/age/index.js";
import { decodeZ32PublicKey, type UserKey } from "./crypto/keys.js";
import { CcbError, IntegrityError, NotFoundError } from "./errors.js";
import { type OpenedSlot, openSlots, type PointerPayload } from "./pointer/record.js";
import { resolveNewest } from "./pointer/resolver.js";
import type { PointerTransport } from "./pointer/transport.js";
import { publishRecord } from "./publish.js";
import { type ReceiveResult, receiveBundle } from "./receive.js";

/**
 * `ccbundle pull`: resolve the publisher's record from every transport at once,
 * open the slot meant for us, fetch the blob it points at, verify and restore.
 */

export interface PullOptions {
  settings: Settings;
  /** Our identity; undefined for a PIN-only receiver. */
  key: UserKey | undefined;
  /** The publisher's z32 key (default: our own). */
  publisher: string;
  transports: PointerTransport[];
  /** --store: where to look for the blob if the record's store is not reachable from here. */
  storeOverride?: string | undefined;
  extraIdentities?: Identity[];
  project?: string | undefined;
  cwd: string;
  maps: PathMapping[];
  rewrite: boolean;
  force: boolean;
}

export interface PullResult extends ReceiveResult {
  payload: PointerPayload;
  resolvedFrom: string[];
  burned: boolean;
}

export async function resolveSlot(options: {
  settings: Settings;
  publisher: string;
  identities: Identity[];
  transports: PointerTransport[];
  preferSelf: boolean;
}): Promise<{ slot: OpenedSlot; from: string[] }> {
  const publicKey = decodeZ32PublicKey(options.publisher);
  const resolved = await resolveNewest(options.transports, publicKey, { home: options.settings.home });
  const slots = await openSlots(resolved.payload, options.publisher, options.identities);
  if (slots.length === 0) {
    throw new IntegrityError(`the record of ${options.publisher} holds nothing for your key`, {
      hint: "ask the sender to push with --to <your key> (see `ccbundle whoami`), or pull with --pin",
    });
  }
  const ordered = [...slots].sort((a, b) => b.payload.created - a.payload.created);
  const slot = (options.preferSelf && ordered.find((s) => s.payload.slot === "self")) || ordered[0]!;
  return { slot, from: resolved.from };
}

export function checkLive(payload: PointerPayload, now = Math.floor(Date.now() / 1000)): void {
  if (payload.kind === "tombstone") {
    throw new IntegrityError(
      payload.burn ? "this handoff was already picked up (burn after read)" : "this handoff was revoked",
      { hint: "ask the sender to push again" },
    );
  }
  if (payload.expires !== undefined && payload.expires < now) {
    throw new IntegrityError(`this handoff expired at ${new Date(payload.expires * 1000).toISOString()}`, {
      hint: "ask the sender to push again (or to use a longer --ttl)",
    });
  }
}

export async function pullSession(options: PullOptions): Promise<PullResult> {
  const { settings, key } = options;
  const identities: Identity[] = [...(key ? [key.ageIdentity()] : []), ...(options.extraIdentities ?? [])];
  const { slot, from } = await resolveSlot({
    settings,
    publisher: options.publisher,
    identities,
    transports: options.transports,
    preferSelf: key?.z32 === options.publisher,
  });
  const payload = slot.payload;
  checkLive(payload);
  if (payload.kind !== "handoff" || !payload.blob) {
    throw new NotFoundError("the record points at a backup snapshot, not a handoff", {
      hint: "use `ccbundle restore --all` for backups",
    });
  }
  const blob = payload.blob;
  const { stream, store } = await openBlob(blob, options.storeOverride);
  let result: ReceiveResult;
  try {
    result = await receiveBundle({
      settings,
      blob: stream,
      identities: [new X25519Identity(Buffer.from(blob.age, "base64url"))],
      acceptSigners: [options.publisher],
      expect: { sha256: blob.sha256, size: blob.size },
      project: options.project,
      cwd: options.cwd,
      maps: options.maps,
      rewrite: options.rewrite,
      force: options.force,
    });
  } finally {
    await store?.close?.();
  }

  let burned = false;
  if (payload.burn && key && key.z32 === options.publisher) {
    await burnHandoff({ settings, key, payload, transports: options.transports, storeOverride: options.storeOverride });
    burned = true;
  }
  return { ...result, payload, resolvedFrom: from, burned };
}

/** Open the blob: by presigned URL if the record has one, else from its store (or --store). */
async function openBlob(
  blob: NonNullable<PointerPayload["blob"]>,
  storeOverride: string | undefined,
): Promise<{ stream: Readable; store: BlobStore | undefined }> {
  const candidates = [storeOverride, blob.store].filter((url): url is string => !!url);
  let lastError: unknown;
  for (const url of candidates) {
    try {
      const store = await openStore(url);
      return { stream: await store.get(blob.key), store };
    } catch (err) {
      lastError =
        err instanceof NotFoundError
          ? new NotFoundError(`the bundle this handoff points at is gone from ${url}`, {
              hint: "it was revoked, pruned or already picked up; ask the sender to push again",
            })
          : err;
    }
  }
  if (blob.url) {
    const { fetchUrlStream } = await import("../storage-adapters/http.js");
    return { stream: await fetchUrlStream(blob.url), store: undefined };
  }
  if (lastError instanceof CcbError) throw lastError;
  throw new NotFoundError("the bundle this record points at cannot be reached from here", {
    hint: "pass --store <url> naming a store that holds it",
    cause: lastError,
  });
}

/** After a burn-after-read pickup: delete the blob and replace the slot with a signed tombstone. */
export async function burnHandoff(options: {
  settings: Settings;
  key: UserKey;
  payload: PointerPayload;
  transports: PointerTransport[];
  storeOverride?: string | undefined;
}): Promise<void> {
  const { payload } = options;
  const storeUrl = options.storeOverride ?? payload.blob?.store;
  if (storeUrl && payload.blob) {
    const store = await openStore(storeUrl);
    try {
      await store.delete(payload.blob.key);
    } finally {
      await store.close?.();
    }
  }
  const tombstone: PointerPayload = {
    v: 1,
    pub: options.key.z32,
    slot: payload.slot,
    kind: "tombstone",
    created: Math.floor(Date.now() / 1000),
    ...(payload.burn ? { burn: true } : {}),
    ...(payload.expires !== undefined ? { expires: payload.expires } : {}),
  };
  await publishRecord({
    settings: options.settings,
    key: options.key,
    payload: tombstone,
    transports: options.transports,
    dryRun: false,
  });
}
