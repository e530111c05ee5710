import type { Readable } from "node:stream";
import type { BlobStore } from "../storage-adapters/blob-store.js";
import { openStore } from "../storage-adapters/index.js";
import { warmReader } from "./bundle/threaded-reader.js";
import type { PathMapping } from "./claude/remap.js";
import type { Settings } from "./config.js";
import { type Identity, X25519Identity } from "./crypto/age/index.js";
import { decodeZ32PublicKey, type UserKey } from "./crypto/keys.js";
import { PinIdentity } from "./crypto/pin.js";
import { CcbError, IntegrityError, NotFoundError } from "./errors.js";
import { forgetHandoffs } from "./handoff-ledger.js";
import type { VerifiedPacket } from "./pointer/packet.js";
import {
  forgetSlots,
  hasPinSlot,
  type OpenedSlot,
  openSlots,
  type PointerPayload,
  resealPayload,
  sealPayload,
} from "./pointer/record.js";
import { resolveNewest } from "./pointer/resolver.js";
import type { PointerTransport } from "./pointer/transport.js";
import { publishRecord } from "./publish.js";
import { type ReceiveResult, receiveBundle } from "./receive.js";

/**
 * `ccbundle pull`: resolve the publisher's record from every transport at once,
 * open the slot meant for us (with our key, or with a PIN), fetch the blob it
 * points at, verify and restore. A burn-after-read handoff is then deleted:
 * the blob by whoever can reach the store, the slot (replaced by a signed
 * tombstone its readers can open) only by the owner, who alone can sign.
 */

export interface PullOptions {
  settings: Settings;
  /** Our identity; undefined for a PIN-only receiver. */
  key: UserKey | undefined;
  /** --pin: the PIN as bytes (the caller zeroes them afterwards). */
  pin?: Uint8Array | undefined;
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
  /** "record": blob deleted and tombstone published; "blob": blob deleted only; false: not a burn handoff. */
  burned: "record" | "blob" | false;
  warnings: string[];
}

export interface ResolvedSlot {
  slot: OpenedSlot;
  /** Every slot we could open (the caller zeroes their keys with forgetSlots). */
  opened: OpenedSlot[];
  record: VerifiedPacket;
  from: string[];
}

export async function resolveSlot(options: {
  settings: Settings;
  publisher: string;
  identities: Identity[];
  transports: PointerTransport[];
  preferSelf: boolean;
  /** Only slots opened with a PIN count. */
  byPin?: boolean;
}): Promise<ResolvedSlot> {
  const publicKey = decodeZ32PublicKey(options.publisher);
  const resolved = await resolveNewest(options.transports, publicKey, { home: options.settings.home });
  const opened = await openSlots(resolved.payload, options.publisher, options.identities);
  const usable = options.byPin ? opened.filter((s) => s.seal.via === "pin") : opened;
  if (usable.length === 0) {
    forgetSlots(opened);
    if (options.byPin) {
      throw new IntegrityError(
        hasPinSlot(resolved.payload)
          ? "the PIN does not open the handoff in this record"
          : `the record of ${options.publisher} holds no PIN handoff`,
        { hint: "check the PIN with the sender (it is case-sensitive), or ask them to push again with --pin" },
      );
    }
    throw new IntegrityError(`the record of ${options.publisher} holds nothing for your key`, {
      hint: "ask the sender to push with --to <your key> (see `ccbundle whoami`), or pull with --pin; a handoff that was revoked, picked up or expired may have left the record",
    });
  }
  // A backup snapshot slot (`backup --publish`) is no handoff: any handoff comes before it.
  const isSnapshot = (s: OpenedSlot) => Number(s.payload.kind === "snapshot");
  const ordered = [...usable].sort((a, b) => isSnapshot(a) - isSnapshot(b) || b.payload.created - a.payload.created);
  const slot = (options.preferSelf && ordered.find((s) => s.payload.slot === "self")) || ordered[0]!;
  return { slot, opened, record: resolved.payload, from: resolved.from };
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
  // The blob's reader thread (zstd, tar, sha256) starts while the record is resolved.
  warmReader();
  const pin = options.pin ? new PinIdentity(options.pin) : undefined;
  const identities: Identity[] = [
    ...(pin ? [pin] : []),
    ...(key ? [key.ageIdentity()] : []),
    ...(options.extraIdentities ?? []),
  ];
  const resolved = await resolveSlot({
    settings,
    publisher: options.publisher,
    identities,
    transports: options.transports,
    preferSelf: key?.z32 === options.publisher,
    byPin: pin !== undefined,
  });
  try {
    return await pullResolved(options, resolved);
  } finally {
    forgetSlots(resolved.opened);
  }
}

async function pullResolved(options: PullOptions, resolved: ResolvedSlot): Promise<PullResult> {
  const { settings, key } = options;
  const payload = resolved.slot.payload;
  checkLive(payload);
  if (payload.kind !== "handoff" || !payload.blob) {
    throw new NotFoundError("the record points at a backup snapshot, not a handoff", {
      hint: "use `ccbundle restore --all` for backups",
    });
  }
  const blob = payload.blob;
  const { stream, store, from } = await openBlob(blob, options.storeOverride, payload.burn === true);
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

  const warnings: string[] = [];
  let burned: PullResult["burned"] = false;
  if (payload.burn) {
    const owner = key && key.z32 === options.publisher ? key : undefined;
    // Read by its link: the record's store may still take a delete, if this machine has access.
    const storeUrl = from ?? blob.store;
    const deleted = storeUrl ? await deleteBlob(storeUrl, blob.key) : "the record names no store, only a link";
    if (deleted !== true) {
      warnings.push(
        `could not delete the picked-up bundle (${deleted}): it can be pulled again until it expires or the sender revokes it`,
      );
    }
    if (owner) {
      await publishTombstone({
        settings,
        key: owner,
        slot: resolved.slot,
        burn: true,
        transports: options.transports,
        current: resolved.record,
      });
      await forgetHandoffs(settings.home, owner.z32, [blob.key]);
      burned = "record";
    } else {
      // Only the sender can sign a tombstone; with the bundle gone, a second pull fails all the same.
      burned = deleted === true ? "blob" : false;
    }
  }
  return { ...result, payload, resolvedFrom: resolved.from, burned, warnings };
}

/**
 * Open the blob: from --store if given, else by the presigned link the record
 * carries (it needs no credentials, and a receiver without any would otherwise
 * wait on the AWS credential chain), else from the record's store. Whatever
 * opens it, the bytes are checked against the record's hash.
 */
async function openBlob(
  blob: NonNullable<PointerPayload["blob"]>,
  storeOverride: string | undefined,
  burn: boolean,
): Promise<{ stream: Readable; store: BlobStore | undefined; from: string | undefined }> {
  const sources = [storeOverride, blob.url ? LINK : undefined, blob.store].filter((s): s is string => !!s);
  let gone: CcbError | undefined;
  let lastError: unknown;
  for (const source of sources) {
    try {
      if (source === LINK) {
        const { fetchUrlStream } = await import("../storage-adapters/http.js");
        return { stream: await fetchUrlStream(blob.url!), store: undefined, from: undefined };
      }
      const store = await openStore(source);
      try {
        return { stream: await store.get(blob.key), store, from: source };
      } catch (err) {
        await store.close?.();
        throw err;
      }
    } catch (err) {
      if (err instanceof NotFoundError) gone ??= goneError(source === LINK ? "the store" : source, burn);
      lastError = err;
    }
  }
  if (gone) throw gone;
  if (lastError instanceof CcbError) throw lastError;
  throw new NotFoundError("the bundle this record points at cannot be reached from here", {
    hint: "pass --store <url> naming a store that holds it",
    cause: lastError,
  });
}

const LINK = "(presigned link)";

function goneError(where: string, burn: boolean): CcbError {
  // A burn-after-read bundle that is gone was picked up by whoever pulled first.
  return burn
    ? new IntegrityError("this handoff was already picked up (burn after read): its bundle is gone", {
        hint: "ask the sender to push again",
      })
    : new NotFoundError(`the bundle this handoff points at is gone from ${where}`, {
        hint: "it was revoked, pruned or already picked up; ask the sender to push again",
      });
}

/** Delete a handoff's blob from a store; true, or why not. */
export async function deleteBlob(storeUrl: string, objectKey: string): Promise<true | string> {
  try {
    const store = await openStore(storeUrl);
    try {
      await store.delete(objectKey);
      return true;
    } finally {
      await store.close?.();
    }
  } catch (err) {
    return err instanceof Error ? (err.message.split("\n")[0] ?? "failed") : String(err);
  }
}

/**
 * Replace a slot with a signed tombstone that the same readers can open (the
 * seal is reused under its next epoch), so they are told "revoked" or
 * "already picked up" rather than nothing.
 */
export async function publishTombstone(options: {
  settings: Settings;
  key: UserKey;
  slot: OpenedSlot;
  burn: boolean;
  transports: PointerTransport[];
  current?: VerifiedPacket | undefined;
}) {
  const tombstone = tombstoneFor(options.key, options.slot.payload, options.burn);
  const sealed = resealPayload(options.slot, tombstone) ?? (await sealPayload(tombstone, [options.key.ageRecipient()]));
  return publishRecord({
    settings: options.settings,
    key: options.key,
    slots: [{ payload: tombstone, sealed }],
    current: options.current,
    transports: options.transports,
    dryRun: false,
  });
}

export function tombstoneFor(key: UserKey, payload: PointerPayload, burn: boolean): PointerPayload {
  return {
    v: 1,
    pub: key.z32,
    slot: payload.slot,
    kind: "tombstone",
    created: Math.floor(Date.now() / 1000),
    ...(burn ? { burn: true } : {}),
    ...(payload.expires !== undefined ? { expires: payload.expires } : {}),
  };
}
