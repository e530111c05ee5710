import { readFileSync } from "node:fs";
import { rm } from "node:fs/promises";
import path from "node:path";
import { stageFileAtomic, writeFileAtomic } from "./claude/files.js";
import type { Settings } from "./config.js";
import type { UserKey } from "./crypto/keys.js";
import { CcbError, ExitCode } from "./errors.js";
import { MAX_DNS_BYTES, signPacket, type VerifiedPacket, verifyPayload } from "./pointer/packet.js";
import {
  forgetSlots,
  type OpenedSlot,
  type PointerPayload,
  type RecordSlots,
  readSlots,
  recordEntries,
  recordFits,
  supersedes,
} from "./pointer/record.js";
import { nextSeq, publishAll, publishFailures, resolveNewest } from "./pointer/resolver.js";
import type { PointerTransport, RelayPayload } from "./pointer/transport.js";

/**
 * Publishing the owner's record: the new slots first, then the slots of the
 * current record that are still live and not replaced, signed with a fresh
 * seq. The current record is the newer of the one this machine last published
 * and the one the caller resolved from the network (another machine of the
 * owner may have pushed since). When the 1000 bytes run out, tombstones go
 * first, then the oldest handoffs to other people, the owner's own last.
 */

export interface NewSlot {
  payload: PointerPayload;
  /** The sealed slot, or (for a size check) any bytes of the sealed length. */
  sealed: Uint8Array;
}

export interface PublishRecordOptions {
  settings: Settings;
  key: UserKey;
  /** Each replaces the current slots it supersedes (see record.ts `supersedes`). */
  slots: NewSlot[];
  /** The newest record resolved from the network, when the caller has one. */
  current?: VerifiedPacket | undefined;
  transports: PointerTransport[];
  /** Only check what fits; publish nothing. */
  dryRun: boolean;
  /**
   * Carry over the slots a newer ccbundle wrote (default). Revoke says false: it cannot tombstone
   * them, and leaving a handoff it cannot judge in the record would call the revoke done.
   */
  keepNewer?: boolean;
}

export interface PublishRecordReport {
  dnsBytes: number;
  summary: string;
  failures: string[];
  slots: number;
  /** Live slots left out for lack of room. */
  dropped: PointerPayload[];
  /** Slots a newer ccbundle wrote, left out for lack of room. */
  droppedNewer: number;
  /** Slots a newer ccbundle wrote, left out because the caller asked (keepNewer: false). */
  newerRemoved: number;
}

export async function publishRecord(options: PublishRecordOptions): Promise<PublishRecordReport> {
  const { key } = options;
  const now = Math.floor(Date.now() / 1000);
  const read = await currentSlots(options.settings.home, key, options.current);
  const current = read.opened;
  try {
    const gone = await pickedUp(current);
    const dead = (slot: OpenedSlot) => slot.payload.kind === "tombstone" || gone.has(slot);
    const kept: Keepable[] = [
      ...current
        .filter((slot) => !options.slots.some((fresh) => supersedes(fresh.payload, slot.payload)))
        .filter((slot) => slot.payload.expires === undefined || slot.payload.expires >= now)
        .map((slot) => ({
          sealed: slot.sealed,
          payload: slot.payload,
          rank: keepRank(slot, dead),
          created: slot.payload.created,
        })),
      // Slots a newer ccbundle of ours wrote go back as they are: this build cannot tell whether they
      // are live, and dropping them would erase what an upgraded machine published. Short of room,
      // they go after the live slots this build can read (revoke drops them: see keepNewer).
      ...(options.keepNewer === false ? [] : read.newer).map((sealed) => ({ sealed, rank: NEWER_RANK, created: 0 })),
    ].sort((a, b) => a.rank - b.rank || b.created - a.created);
    const fresh = options.slots.map((slot) => slot.sealed);
    let keep = kept.length;
    let fit = recordFits([...fresh, ...kept.map((slot) => slot.sealed)]);
    while (!fit.fits && keep > 0) {
      keep--;
      fit = recordFits([...fresh, ...kept.slice(0, keep).map((slot) => slot.sealed)]);
    }
    if (!fit.fits) {
      // Usage: only another command line fixes it (push checks before it uploads anything).
      throw new CcbError(
        `the record would be ${fit.size} bytes, over the ${MAX_DNS_BYTES}-byte limit of a DHT record`,
        ExitCode.usage,
        { hint: "use a shorter store URL, or fewer --to recipients (push to the rest in a second push)" },
      );
    }
    // What a user lost: tombstones and picked-up handoffs go without a word.
    const left = kept.slice(keep).filter((slot) => slot.rank !== DEAD_RANK);
    const dropped = left.flatMap((slot) => (slot.payload ? [slot.payload] : []));
    const droppedNewer = left.length - dropped.length;
    const slots = [...fresh, ...kept.slice(0, keep).map((slot) => slot.sealed)];
    const report = { dropped, droppedNewer, newerRemoved: options.keepNewer === false ? read.newer.length : 0 };
    if (options.dryRun) return { dnsBytes: fit.size, summary: "", failures: [], slots: slots.length, ...report };

    const seq = await nextSeq(options.settings.home, key.z32);
    const seed = key.exportSeed();
    let packet: RelayPayload;
    try {
      packet = signPacket(seed, recordEntries(slots), seq);
    } finally {
      seed.fill(0);
    }
    // The local copy of the record is written and fsynced while the record goes out, and put in
    // place (renamed) only once it was published somewhere: as before, but its fsync no longer
    // waits for the DHT's answers.
    const saving = stageLastPublished(options.settings.home, key.z32, packet);
    // Handled below, after the publish (a failure here must not surface before it, unhandled).
    saving.catch(() => undefined);
    let published: Awaited<ReturnType<typeof publishAll>>;
    try {
      published = await publishAll(options.transports, packet);
    } catch (err) {
      await saving.then((staged) => staged.abort()).catch(() => undefined);
      // Published nowhere, but what it names is done (a push's bundle is uploaded): kept for
      // `ccbundle republish`, which the error's hint names, so that it sends this record and
      // not the one before it.
      await writeFileAtomic(unpublishedRecordFile(options.settings.home, key.z32), packet.bytes, 0o600).catch(
        () => undefined,
      );
      throw err;
    }
    await (await saving).commit();
    await forgetUnpublished(options.settings.home, key.z32);
    return {
      dnsBytes: packet.dns.length,
      summary: published.summary,
      failures: publishFailures(published),
      slots: slots.length,
      ...report,
    };
  } finally {
    forgetSlots(current);
  }
}

/**
 * Keep first: the owner's own handoff, then other handoffs newest first, then slots a newer
 * ccbundle wrote (maybe live handoffs: this build cannot tell), then the backup snapshot slot (a
 * live handoff is someone's only way to a session; the snapshot slot only saves a new laptop a
 * --store, and the next `backup --publish` puts it back), then tombstones and handoffs a receiver
 * picked up (`dead`) newest first.
 */
function keepRank(slot: OpenedSlot, dead: (slot: OpenedSlot) => boolean): number {
  if (dead(slot)) return DEAD_RANK;
  if (slot.payload.kind === "snapshot") return 2;
  return slot.payload.slot === "self" ? 0 : 1;
}
const NEWER_RANK = 1.5;
const DEAD_RANK = 3;

/** A slot of the current record that may go into the next one. */
interface Keepable {
  sealed: Uint8Array;
  /** Undefined for a slot a newer ccbundle wrote. */
  payload?: PointerPayload;
  rank: number;
  created: number;
}

/**
 * --burn handoffs whose bundle is gone: a teammate or PIN holder picked them up, and only the
 * owner can sign their tombstone. One stat per such slot in the record's store, remembered for
 * the process (a push plans its record several times); a store out of reach says nothing.
 */
async function pickedUp(slots: OpenedSlot[]): Promise<Set<OpenedSlot>> {
  const gone = new Set<OpenedSlot>();
  await Promise.all(
    slots.map(async (slot) => {
      if (await blobPickedUp(slot.payload)) gone.add(slot);
    }),
  );
  return gone;
}

const pickedUpMemo = new Map<string, Promise<boolean>>();

/** A live --burn handoff whose bundle is no longer in its store (see pickedUp). */
export function blobPickedUp(payload: PointerPayload): Promise<boolean> {
  const blob = payload.blob;
  if (payload.kind !== "handoff" || !payload.burn || !blob?.store) return Promise.resolve(false);
  if (payload.expires !== undefined && payload.expires < Date.now() / 1000) return Promise.resolve(false);
  const id = `${blob.store}\n${blob.key}`;
  let answer = pickedUpMemo.get(id);
  if (!answer) {
    answer = (async () => {
      try {
        const { openStore } = await import("../storage-adapters/index.js");
        const store = await openStore(blob.store!);
        try {
          if ((await store.stat(blob.key)) !== undefined) return false;
          // A store folder missing or empty here (a NAS not mounted) says nothing about the blob.
          return (await store.explainEmpty?.()) === undefined;
        } finally {
          await store.close?.();
        }
      } catch {
        return false;
      }
    })();
    pickedUpMemo.set(id, answer);
  }
  return answer;
}

export function lastRecordFile(home: string, z32: string): string {
  return path.join(home, "state", `record-${z32}.bin`);
}

/** A record this machine signed but could not publish anywhere (see publishRecord). */
function unpublishedRecordFile(home: string, z32: string): string {
  return path.join(home, "state", `record-${z32}.unpublished.bin`);
}

/**
 * The record a push (or revoke) signed and could not publish anywhere, if it is still valid.
 * Published since, or superseded by a later record: undefined.
 */
function unpublishedRecord(home: string, key: UserKey): VerifiedPacket | undefined {
  try {
    return verifyPayload(key.publicKey, readFileSync(unpublishedRecordFile(home, key.z32)));
  } catch {
    return undefined;
  }
}

/**
 * The newest record this machine signed, published or not: a push that could publish nowhere
 * left its record, and republish sends it, revoke tombstones its handoff and the next push
 * builds on it (else that push's handoff was lost, or went out live after a revoke).
 */
export async function ownLatestRecord(home: string, key: UserKey): Promise<VerifiedPacket | undefined> {
  return newer(await lastPublished(home, key), unpublishedRecord(home, key));
}

/** A record went out: no earlier unpublished one is to be sent any more. */
export async function forgetUnpublished(home: string, z32: string): Promise<void> {
  await rm(unpublishedRecordFile(home, z32), { force: true }).catch(() => undefined);
}

/**
 * The record this machine last published for `key`, if any and still valid. A sync read (a
 * 1 KB file): push checks its slot fits before uploading, and each thread-pool round trip of
 * an async read let the DHT's start-up (module load, first lookups: ~40 ms) run first, so the
 * upload started that much later instead of overlapping it.
 */
export async function lastPublished(home: string, key: UserKey): Promise<VerifiedPacket | undefined> {
  try {
    return verifyPayload(key.publicKey, readFileSync(lastRecordFile(home, key.z32)));
  } catch {
    return undefined;
  }
}

/** The newer of two verified records (either may be missing). */
export function newer(a: VerifiedPacket | undefined, b: VerifiedPacket | undefined): VerifiedPacket | undefined {
  if (!a) return b;
  if (!b) return a;
  return b.timestamp > a.timestamp ? b : a;
}

async function currentSlots(home: string, key: UserKey, resolved: VerifiedPacket | undefined): Promise<RecordSlots> {
  const none = { opened: [], newer: [], newerForReader: 0 };
  const current = newer(await ownLatestRecord(home, key), resolved);
  // Only the owner's own record is carried over (its newer slots are re-signed as they are).
  if (!current || !Buffer.from(current.publicKey).equals(Buffer.from(key.publicKey))) return none;
  try {
    return await readSlots(current, key.z32, [key.ageIdentity()]);
  } catch {
    // A slot we cannot make sense of (damaged, another tool's) is not carried over.
    return none;
  }
}

/** A finished copy of the record beside its place (written, fsynced), for commit (rename) or abort. */
function stageLastPublished(home: string, z32: string, packet: RelayPayload) {
  return stageFileAtomic(lastRecordFile(home, z32), packet.bytes, 0o600);
}

export async function saveLastPublished(home: string, z32: string, packet: RelayPayload): Promise<void> {
  await writeFileAtomic(lastRecordFile(home, z32), packet.bytes, 0o600);
}

/** The newest record of ours on the network, or undefined (none yet, unreachable, or not trustworthy). */
export async function resolveCurrent(
  transports: PointerTransport[],
  key: UserKey,
  home: string,
): Promise<VerifiedPacket | undefined> {
  if (transports.length === 0) return undefined;
  try {
    return (await resolveNewest(transports, key.publicKey, { home })).payload;
  } catch {
    return undefined;
  }
}
