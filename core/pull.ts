import type { Readable } from "node:stream";
import { type BlobStore, EmptyStoreError, StoreMissingError } from "../storage-adapters/blob-store.js";
import { openStore } from "../storage-adapters/index.js";
import { countBytes, type ProgressListener } from "./backup/progress.js";
import { warmReader } from "./bundle/threaded-reader.js";
import type { PathMapping } from "./claude/remap.js";
import type { Settings } from "./config.js";
import { type Identity, X25519Identity } from "./crypto/age/index.js";
import { decodeZ32PublicKey, type UserKey } from "./crypto/keys.js";
import { PinIdentity } from "./crypto/pin.js";
import { isoTime } from "./duration.js";
import { CcbError, ExitCode, IntegrityError, NotFoundError } from "./errors.js";
import { forgetHandoffs } from "./handoff-ledger.js";
import { describeError } from "./pointer/abort.js";
import type { VerifiedPacket } from "./pointer/packet.js";
import {
  forgetSlots,
  hasPinSlot,
  type OpenedSlot,
  openSlots,
  type PointerPayload,
  readSlots,
  resealPayload,
  sealPayload,
} from "./pointer/record.js";
import { resolveNewest } from "./pointer/resolver.js";
import type { PointerTransport } from "./pointer/transport.js";
import { publishRecord } from "./publish.js";
import { type ReceiveOptions, type ReceiveResult, ReceiveRun, receiveBundle, type StagedBundle } from "./receive.js";

/**
 * `ccbundle pull`: resolve the publisher's record from every transport at once,
 * open the slot meant for us (with our key, or with a PIN), fetch the blob it
 * points at, verify and restore. The blob named by the first record to arrive
 * is fetched and staged while the other transports still answer; it is
 * installed only if that record is the newest (see EarlyStage). A burn-after-read handoff is then deleted:
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
  /** The download, in bytes of the blob. */
  onProgress?: ProgressListener | undefined;
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
  /** See ResolveOptions.onRecord. */
  onRecord?: (record: VerifiedPacket) => void;
}): Promise<ResolvedSlot> {
  const publicKey = decodeZ32PublicKey(options.publisher);
  const resolved = await resolveNewest(options.transports, publicKey, {
    home: options.settings.home,
    ...(options.onRecord ? { onRecord: options.onRecord } : {}),
  });
  const { opened, newer, newerForReader } = await readSlots(resolved.payload, options.publisher, options.identities);
  const slot = pickSlot(opened, options);
  if (!slot) {
    forgetSlots(opened);
    // A seal this reader opened around a payload of a newer format: that slot is theirs, and an
    // upgrade reads it. (A wrong PIN opens nothing, so its own message below still comes first.)
    if (newerForReader > 0) {
      throw new IntegrityError(
        `the record of ${options.publisher} holds a handoff for you that this ccbundle cannot read`,
        { hint: "it was written by a newer ccbundle: upgrade ccbundle (npm install -g ccbundle) and pull again" },
      );
    }
    if (options.byPin) {
      throw new IntegrityError(
        hasPinSlot(resolved.payload)
          ? "the PIN does not open the handoff in this record"
          : `the record of ${options.publisher} holds no PIN handoff`,
        { hint: "check the PIN with the sender (it is case-sensitive), or ask them to push again with --pin" },
      );
    }
    if (options.preferSelf && opened.some(isHandoffToOthers)) {
      // Nothing wrong with the record or the key: there is just no such handoff (4, not 5).
      throw new NotFoundError("your record holds no handoff to yourself, only handoffs to others", {
        hint: "push again without --to on your other machine; a handoff to others is theirs to pull (`ccbundle status` lists them)",
      });
    }
    // Slots sealed in a newer format may be anyone's: they get a mention, not the blame.
    const newerNote =
      newer.length > 0
        ? `; ${newer.length === 1 ? "one slot is" : `${newer.length} slots are`} in a newer ccbundle's format and may be for you (upgrade ccbundle to know)`
        : "";
    throw new IntegrityError(`the record of ${options.publisher} holds nothing for your key`, {
      hint: `ask the sender to push with --to <your key> (see \`ccbundle whoami\`), or pull with --pin; a handoff that was revoked, picked up or expired may have left the record${newerNote}`,
    });
  }
  return { slot, opened, record: resolved.payload, from: resolved.from };
}

/**
 * The slot a pull takes among those it could open, or undefined if none counts: a live handoff
 * before one revoked or expired (so an older live handoff is still reached), the newest first,
 * a backup snapshot (`backup --publish`) last. The owner's own pull takes only the handoff to
 * themselves: the others are for teammates, and pulling one (a --burn one above all) would take
 * it from them.
 */
function pickSlot(opened: OpenedSlot[], options: { preferSelf: boolean; byPin?: boolean }): OpenedSlot | undefined {
  return usableSlots(opened, options).sort((a, b) => rank(a) - rank(b) || b.payload.created - a.payload.created)[0];
}

function usableSlots(opened: OpenedSlot[], options: { preferSelf: boolean; byPin?: boolean }): OpenedSlot[] {
  const usable = options.byPin ? opened.filter((s) => s.seal.via === "pin") : opened;
  return options.preferSelf && !options.byPin ? usable.filter((s) => !isHandoffToOthers(s)) : [...usable];
}

const rank = (s: OpenedSlot) => (s.payload.kind === "snapshot" ? 2 : isLive(s.payload) ? 0 : 1);

/** Why a pull took an older handoff: the newest one for us that is no longer live, if newer. */
function passedOver(resolved: ResolvedSlot, options: { preferSelf: boolean; byPin?: boolean }): string | undefined {
  const taken = resolved.slot.payload;
  const dead = usableSlots(resolved.opened, options)
    // Made in the same second counts too: `created` is in whole seconds.
    .filter((s) => s !== resolved.slot && rank(s) === 1 && s.payload.created >= taken.created)
    .sort((a, b) => b.payload.created - a.payload.created)[0]?.payload;
  if (!dead) return undefined;
  const what = dead.kind !== "tombstone" ? "expired" : dead.burn ? "was picked up" : "was revoked";
  return `a newer handoff to you (${isoTime(dead.created)}) ${what}: this is the older one from ${isoTime(taken.created)}`;
}

function isHandoffToOthers(slot: OpenedSlot): boolean {
  return slot.payload.slot !== "self" && slot.payload.kind !== "snapshot";
}

/** The hint of a handoff that is gone: who pulls may be a teammate, or the owner on another machine. */
const WHO_PUSHES = "ask its sender (your own: push it again from the machine that has it)";
const PUSH_AGAIN = `the session has to be pushed again: ${WHO_PUSHES}`;
const PUSH_AGAIN_LONGER = `the session has to be pushed again, with a longer --ttl: ${WHO_PUSHES}`;

export function checkLive(payload: PointerPayload, now = Math.floor(Date.now() / 1000)): void {
  if (payload.kind === "tombstone") {
    throw new IntegrityError(
      payload.burn ? "this handoff was already picked up (burn after reading)" : "this handoff was revoked",
      {
        hint: PUSH_AGAIN,
      },
    );
  }
  if (payload.expires !== undefined && payload.expires < now) {
    throw new IntegrityError(`this handoff expired at ${isoTime(payload.expires)}`, {
      hint: PUSH_AGAIN_LONGER,
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
  const choice = { preferSelf: key?.z32 === options.publisher, byPin: pin !== undefined };
  let early: EarlyStage | undefined;
  let resolved: ResolvedSlot;
  try {
    resolved = await resolveSlot({
      settings,
      publisher: options.publisher,
      identities,
      transports: options.transports,
      ...choice,
      onRecord: (record) => {
        early ??= stageEarly(options, identities, choice, record);
      },
    });
  } catch (err) {
    if (early) await dropEarly(early);
    throw err;
  }
  let staged: EarlyStage | undefined;
  try {
    staged = early && (await earlyFor(early, resolved));
    if (early && !staged) await dropEarly(early);
    return await pullResolved(options, resolved, staged);
  } finally {
    // pullResolved closes it after the install; this covers a throw before that.
    if (staged) await closeEarly(staged);
    forgetSlots(resolved.opened);
    if (early) forgetSlots(early.opened);
  }
}

/**
 * The blob named by the first record to come in, fetched and staged while the other transports
 * are still being asked: the store's mirror answers in a millisecond, a DHT lookup takes up to
 * seconds. Installed only if that record turns out to be the newest (`earlyFor`); otherwise
 * dropped, staging folder and all (`dropEarly`). Staging writes nothing where Claude Code looks.
 */
interface EarlyStage {
  record: VerifiedPacket;
  run: ReceiveRun;
  opened: OpenedSlot[];
  blob: NonNullable<PointerPayload["blob"]> | undefined;
  fetched: OpenedBlob | undefined;
  abandoned: boolean;
  closed: boolean;
  /** Never rejects; undefined when that record offered nothing to stage. */
  staged: Promise<{ value: StagedBundle; receiving: ReceiveOptions } | { error: unknown } | undefined>;
}

function stageEarly(
  options: PullOptions,
  identities: Identity[],
  choice: { preferSelf: boolean; byPin: boolean },
  record: VerifiedPacket,
): EarlyStage {
  const early: EarlyStage = {
    record,
    run: new ReceiveRun(options.settings, { oneBundle: true }),
    opened: [],
    blob: undefined,
    fetched: undefined,
    abandoned: false,
    closed: false,
    staged: Promise.resolve(undefined),
  };
  early.staged = (async () => {
    early.opened = await openSlots(record, options.publisher, identities);
    const payload = pickSlot(early.opened, choice)?.payload;
    if (payload?.kind !== "handoff" || !payload.blob || !isLive(payload)) return undefined;
    const blob = payload.blob;
    early.fetched = await openBlob(blob, options.storeOverride, payload.burn === true);
    if (early.abandoned) return undefined;
    early.blob = blob;
    const receiving = receiveOptionsFor(options, blob, early.fetched.stream);
    return { value: await early.run.stage(receiving), receiving };
  })().catch((error: unknown) => ({ error }));
  return early;
}

/** The early stage, if the newest record is the one it started from and names the same blob. */
async function earlyFor(early: EarlyStage, resolved: ResolvedSlot): Promise<EarlyStage | undefined> {
  if (early.record.timestamp !== resolved.record.timestamp) return undefined;
  const outcome = await early.staged;
  const blob = resolved.slot.payload.blob;
  if (!outcome || !blob || early.blob?.key !== blob.key || early.blob.sha256 !== blob.sha256) return undefined;
  return early;
}

async function dropEarly(early: EarlyStage): Promise<void> {
  early.abandoned = true;
  early.fetched?.stream.destroy();
  const outcome = await early.staged;
  // A stream opened after the flag was looked at.
  if (outcome === undefined) early.fetched?.stream.destroy();
  await closeEarly(early).catch(() => undefined);
}

/** Release the early stage's run (its staging folder goes, its lock if taken) and store, once. */
async function closeEarly(early: EarlyStage): Promise<void> {
  if (early.closed) return;
  early.closed = true;
  try {
    await early.run.close();
  } finally {
    await early.fetched?.store?.close?.();
  }
}

function isLive(payload: PointerPayload): boolean {
  try {
    checkLive(payload);
    return true;
  } catch {
    return false;
  }
}

function receiveOptionsFor(
  options: PullOptions,
  blob: NonNullable<PointerPayload["blob"]>,
  stream: Readable,
): ReceiveOptions {
  const report = options.onProgress;
  return {
    settings: options.settings,
    blob: report
      ? countBytes(stream, (done) => report({ phase: "download", unit: "bytes", done, total: blob.size }))
      : stream,
    identities: [new X25519Identity(Buffer.from(blob.age, "base64url"))],
    acceptSigners: [options.publisher],
    ownKey: options.key?.z32,
    expect: {
      sha256: blob.sha256,
      size: blob.size,
      ifDamaged: PUSH_AGAIN,
    },
    project: options.project,
    cwd: options.cwd,
    maps: options.maps,
    rewrite: options.rewrite,
    force: options.force,
  };
}

async function pullResolved(options: PullOptions, resolved: ResolvedSlot, early?: EarlyStage): Promise<PullResult> {
  const { settings, key } = options;
  const payload = resolved.slot.payload;
  checkLive(payload);
  if (payload.kind !== "handoff" || !payload.blob) {
    throw new NotFoundError("the record points at a backup snapshot, not a handoff", {
      hint: "use `ccbundle restore --all` for backups",
    });
  }
  const blob = payload.blob;
  let result: ReceiveResult;
  let from: string | undefined;
  let overrideMissing: StoreMissingError | undefined;
  if (early) {
    // Fetched and staged while the record was still being resolved: install it.
    from = early.fetched?.from;
    overrideMissing = early.fetched?.overrideMissing;
    try {
      const outcome = (await early.staged)!;
      if ("error" in outcome) throw outcome.error;
      result = await early.run.install(outcome.value, outcome.receiving);
    } finally {
      await closeEarly(early);
    }
  } else {
    const opened = await openBlob(blob, options.storeOverride, payload.burn === true);
    from = opened.from;
    overrideMissing = opened.overrideMissing;
    try {
      result = await receiveBundle(receiveOptionsFor(options, blob, opened.stream));
    } finally {
      await opened.store?.close?.();
    }
  }

  const warnings: string[] = [];
  const older = passedOver(resolved, { preferSelf: key?.z32 === options.publisher, byPin: options.pin !== undefined });
  if (older) warnings.push(older);
  // A --store folder that is not there (a typo, a NAS not mounted) did not stop the pull: say so.
  if (overrideMissing) {
    warnings.push(`${overrideMissing.message}: the handoff came without it (check --store / CCBUNDLE_STORE)`);
  }
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
interface OpenedBlob {
  stream: Readable;
  store: BlobStore | undefined;
  from: string | undefined;
  /** The --store tried first, when its folder was not there at all. */
  overrideMissing: StoreMissingError | undefined;
}

async function openBlob(
  blob: NonNullable<PointerPayload["blob"]>,
  storeOverride: string | undefined,
  burn: boolean,
): Promise<OpenedBlob> {
  const sources = [storeOverride, blob.url ? LINK : undefined, blob.store].filter((s): s is string => !!s);
  let overrideMissing: StoreMissingError | undefined;
  /** The --store, when its folder is not there or empty: maybe the mistake to fix, so named first. */
  let overrideUnusable: StoreMissingError | EmptyStoreError | undefined;
  /** The record's store, when it is a folder that is not on this machine. */
  let recordStoreMissing: StoreMissingError | undefined;
  let gone: CcbError | undefined;
  /** A --store the user named that does not hold the bundle (and is not the record's store). */
  let notInOverride: string | undefined;
  let lastError: unknown;
  for (const source of sources) {
    let url = source;
    try {
      if (source === LINK) {
        const { fetchUrlStream } = await import("../storage-adapters/http.js");
        return { stream: await fetchUrlStream(blob.url!), store: undefined, from: undefined, overrideMissing };
      }
      const store = await openStore(source);
      url = store.url; // as the record writes it: /mnt/nas is file:///mnt/nas
      try {
        return { stream: await store.get(blob.key), store, from: source, overrideMissing };
      } catch (err) {
        await store.close?.();
        throw err;
      }
    } catch (err) {
      if (source === storeOverride && err instanceof StoreMissingError) overrideMissing = err;
      if (source === storeOverride && (err instanceof StoreMissingError || err instanceof EmptyStoreError)) {
        overrideUnusable = err;
      } else if (url === blob.store && err instanceof StoreMissingError) recordStoreMissing = err;
      // Only the record's own store (or its link) can tell that the bundle is gone: a --store
      // the user named may be another store, or this one mounted elsewhere (see below).
      // An empty store folder (EmptyStoreError) may be a NAS not mounted: no proof of anything.
      if (err instanceof NotFoundError && !(err instanceof EmptyStoreError)) {
        if (source === LINK || url === blob.store) gone ??= goneError(source === LINK ? "the store" : source, burn);
        else notInOverride ??= source;
      }
      lastError = err;
    }
  }
  if (gone) throw gone;
  const sameFolder = (err: unknown) =>
    (err instanceof StoreMissingError || err instanceof EmptyStoreError) && err.root === overrideUnusable?.root;
  if (overrideUnusable && lastError !== overrideUnusable && !sameFolder(lastError)) {
    // A mistyped or unmounted --store, and no other way to the bundle: both, the --store first.
    const other = blob.store ? `the record's store ${blob.store}` : "the record's link";
    throw new CcbError(
      `${overrideUnusable.message}, and ${other} cannot be reached from here (${describeError(lastError)})`,
      lastError instanceof CcbError ? lastError.exitCode : ExitCode.failure,
      {
        hint: `check --store (or CCBUNDLE_STORE): a typo, or a NAS not mounted here?${blob.store ? ` Else make ${blob.store} reachable` : ""}`,
        cause: lastError,
      },
    );
  }
  if (recordStoreMissing && lastError === recordStoreMissing && storeOverride === undefined) {
    // The sender's store is a folder this machine does not have: most often a push without
    // --store, to the folder ccbundle keeps on the sender's own machine. --store cannot fix that
    // from here unless the same folder is mounted here under another path.
    throw new CcbError(
      `the bundle is in store folder ${recordStoreMissing.root}, which is not on this machine`,
      ExitCode.failure,
      {
        hint: "if that folder is a NAS, mount it here and pass --store <where it is mounted>; else the sender must push again with --store <a NAS folder or s3://…> both machines reach (without --store, push keeps the bundle on its own machine)",
        cause: lastError,
      },
    );
  }
  if (notInOverride !== undefined) {
    // The record's store (tried last) could not be asked. Both facts, since only the user knows
    // whether their --store is that same store under another path (the bundle is gone) or not.
    // Exit as the record's store failed: 1 when it is not there or not answering (README: a
    // store folder that is not there is 1), 4 when it was looked in and found empty.
    throw new CcbError(
      `the bundle is not in ${notInOverride}, and the record's store ${blob.store} cannot be reached from here (${describeError(lastError)})`,
      lastError instanceof CcbError ? lastError.exitCode : ExitCode.failure,
      {
        hint: `if ${notInOverride} is that same store, the handoff was revoked, pruned or already picked up; else make ${blob.store} reachable, or pass --store naming a store that holds the bundle`,
        cause: lastError,
      },
    );
  }
  if (lastError instanceof CcbError) throw lastError;
  throw new CcbError("the bundle this record points at cannot be reached from here", ExitCode.failure, {
    hint: "pass --store <url> naming a store that holds it",
    cause: lastError,
  });
}

const LINK = "(presigned link)";

function goneError(where: string, burn: boolean): CcbError {
  // A burn-after-read bundle that is gone was picked up by whoever pulled first.
  return burn
    ? new IntegrityError("this handoff was already picked up (burn after reading): its bundle is gone", {
        hint: PUSH_AGAIN,
      })
    : new NotFoundError(`the bundle this handoff points at is gone from ${where}`, {
        hint: `it was revoked, pruned or already picked up; ${PUSH_AGAIN}`,
      });
}

/**
 * The store to delete a record's bundle through: the one the user gave (--store, CCBUNDLE_STORE)
 * when it is the record's own store. A record names its store without `profile=` (a name local to
 * one machine), so only the user's URL carries the credentials they chose; the record's URL would
 * use the default ones, which may be another user's, or none.
 */
export async function storeToDeleteFrom(
  recordStore: string | undefined,
  given: string | undefined,
): Promise<string | undefined> {
  if (!recordStore || !given) return recordStore ?? given;
  try {
    const store = await openStore(given);
    await store.close?.();
    return store.url === recordStore ? given : recordStore;
  } catch {
    return recordStore;
  }
}

/** Delete a handoff's blob from a store; true, or why not. */
export async function deleteBlob(
  storeUrl: string,
  objectKey: string,
  /** `false` when it is not there (a delete of a missing object succeeds, so it could not tell). */
  options: { onlyIfPresent?: boolean } = {},
): Promise<boolean | string> {
  try {
    const store = await openStore(storeUrl);
    try {
      if (options.onlyIfPresent && !(await store.stat(objectKey))) return false;
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
