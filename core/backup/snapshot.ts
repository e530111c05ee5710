import { randomBytes } from "node:crypto";
import { gunzipSync, gzipSync } from "node:zlib";
import type { BlobStore } from "../../storage-adapters/blob-store.js";
import { canonicalJson } from "../bundle/manifest.js";
import { isSessionId } from "../claude/paths.js";
import { AgeError } from "../crypto/age/errors.js";
import { decrypt, encrypt, type Identity, type Recipient } from "../crypto/age/index.js";
import { decodeZ32PublicKey, parseRecipient, type UserKey, verifyEd25519 } from "../crypto/keys.js";
import { IntegrityError, NotFoundError, UsageError } from "../errors.js";
import { storeLayout } from "../store-layout.js";

/**
 * A backup snapshot: the signed list of every backed-up session and the blob
 * that holds it, stored as `snapshots/<z32>/<id>` = age(gzip(JSON)). It is
 * written last, after every blob it names is in the store, so the newest
 * snapshot is always complete. It is encrypted to the owner (and any backup
 * recipients) and signed by the owner inside the encryption: anyone who can
 * write the store could encrypt a forged list to the owner's public key, but
 * not sign it.
 *
 * Ids are `YYYYMMDDTHHMMSSmmmZ-<random>`: they sort by time and say nothing
 * about sessions, hosts or paths (DESIGN.md "Store layout").
 */

export const SNAPSHOT_FORMAT = "ccbundle-snapshot/1";
const SIGNING_CONTEXT = "ccbundle-snapshot-v1\n";
const ID_PATTERN = /^(\d{8}T\d{9}Z)-[a-z2-7]{6}$/;
const BLOB_KEY_PATTERN = new RegExp(`^${storeLayout.blobsPrefix.replace(/[/.]/g, "\\$&")}[a-z2-7]{16,64}$`);

/** One backed-up session: which machine it came from, what it is, and where its bundle is. */
export interface SnapshotSession {
  /** Claude Code's session id. */
  id: string;
  /** The backing-up machine's random id (stable per CCBUNDLE_HOME); two machines may share a host name. */
  machine: string;
  host: string;
  /** The directory the session ran in, on that machine. */
  project: string;
  /** Its project folder name under `projects/`. */
  folder: string;
  title?: string;
  /** First and last line timestamps (ISO), when the transcript has them. */
  first?: string;
  last?: string;
  /** Transcript mtime (ms) when it was read. */
  modified: number;
  files: number;
  /** Uncompressed bytes of the session's files. */
  bytes: number;
  blob: { key: string; size: number; sha256: string };
  /** When this blob was made (ISO). */
  backedUp: string;
}

export interface Snapshot {
  format: typeof SNAPSHOT_FORMAT;
  id: string;
  created: string;
  /** z32 key of the owner, who signed it. */
  publisher: string;
  /** The machine that wrote it. */
  machine: string;
  host: string;
  /** The snapshot this one was built on, if any. */
  parent?: string;
  sessions: SnapshotSession[];
  /** base64 ed25519 signature over the canonical JSON without this field. */
  signature?: string;
}

/**
 * A new snapshot id, after `parent` (the newest snapshot, which this one is built on) even when
 * the clock says otherwise: "newest" is the last id in sort order, and a snapshot made while a
 * clock was ahead (a VM's clock, a laptop's dead RTC) would otherwise hide every later one from
 * `restore` and the next backup until real time passed it.
 */
export function newSnapshotId(now = new Date(), parent?: string): string {
  const after = parent === undefined ? Number.NaN : snapshotTime(parent);
  const time = after >= now.getTime() ? new Date(after + 1) : now;
  const stamp = time.toISOString().replace(/[-:.]/g, "");
  return `${stamp}-${randomBase32(6)}`;
}

/**
 * The snapshot this machine writes now: `sessions`, signed as `key`'s (by sealSnapshot), built on
 * `parent` (the newest, which its id follows; see newSnapshotId).
 */
export function newSnapshot(options: {
  key: UserKey;
  machine: string;
  host: string;
  parent: Snapshot | undefined;
  sessions: SnapshotSession[];
  now: Date;
  /** An id the new one must follow too (one this run wrote already). */
  after?: string | undefined;
}): Snapshot {
  const { parent, now } = options;
  const after = [parent?.id, options.after]
    .filter((id): id is string => id !== undefined)
    .sort()
    .at(-1);
  return {
    format: SNAPSHOT_FORMAT,
    id: newSnapshotId(now, after),
    created: now.toISOString(),
    publisher: options.key.z32,
    machine: options.machine,
    host: options.host,
    ...(parent ? { parent: parent.id } : {}),
    sessions: options.sessions,
  };
}

/** Who snapshots and backup bundles are encrypted to: the owner, and each `backupRecipients` of config.json. */
export function backupRecipients(key: UserKey, configured: string[]): Recipient[] {
  return [key.ageRecipient(), ...configured.map(parseRecipient)];
}

export function isSnapshotId(id: string): boolean {
  return ID_PATTERN.test(id);
}

/** The time in a snapshot id (ms). */
export function snapshotTime(id: string): number {
  const stamp = ID_PATTERN.exec(id)?.[1];
  if (!stamp) return Number.NaN;
  const iso = `${stamp.slice(0, 4)}-${stamp.slice(4, 6)}-${stamp.slice(6, 8)}T${stamp.slice(9, 11)}:${stamp.slice(11, 13)}:${stamp.slice(13, 15)}.${stamp.slice(15, 18)}Z`;
  return Date.parse(iso);
}

function signable(snapshot: Snapshot): Buffer {
  const { signature: _signature, ...rest } = snapshot;
  return Buffer.from(`${SIGNING_CONTEXT}${canonicalJson(rest)}`);
}

/** Sign, compress and encrypt a snapshot: the bytes to store. */
export async function sealSnapshot(snapshot: Snapshot, key: UserKey, recipients: Recipient[]): Promise<Uint8Array> {
  const { signature: _old, ...unsigned } = snapshot;
  const signature = Buffer.from(key.sign(signable(unsigned))).toString("base64");
  return encrypt(gzipSync(JSON.stringify({ ...unsigned, signature })), recipients);
}

/** Decrypt, decompress, validate and verify a stored snapshot of `owner`. */
export async function openSnapshot(
  bytes: Uint8Array,
  expected: { id: string; owner: string },
  identities: Identity[],
): Promise<Snapshot> {
  let json: string;
  try {
    json = gunzipSync(await decrypt(bytes, identities)).toString("utf8");
  } catch (err) {
    if (err instanceof AgeError && err.failure !== "no-match") {
      // Encrypted to this key, but its bytes changed since (a bad disk, a sync tool, a truncated
      // copy): not a matter of identities.
      throw new IntegrityError(`snapshot ${expected.id} is damaged (${err.message})`, {
        hint: "restore from an older one: `ccbundle list` shows the snapshots; pass --snapshot <id>",
        cause: err,
      });
    }
    if (err instanceof IntegrityError) {
      throw new IntegrityError(`snapshot ${expected.id} cannot be opened with your key`, {
        hint: "it was made with another identity; use the identity that made the backups",
        cause: err,
      });
    }
    throw bad(expected.id, "not gzip");
  }
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch {
    throw bad(expected.id, "not JSON");
  }
  const snapshot = validate(value, expected.id);
  if (snapshot.publisher !== expected.owner) throw bad(expected.id, "made for another key");
  const signature = Buffer.from(snapshot.signature ?? "", "base64");
  if (!verifyEd25519(decodeZ32PublicKey(snapshot.publisher), signable(snapshot), signature)) {
    throw new IntegrityError(`snapshot ${expected.id} is not signed by your key`, {
      hint: "someone with write access to the store replaced it; do not trust it, restore from another snapshot (--snapshot)",
    });
  }
  return snapshot;
}

function validate(value: unknown, id: string): Snapshot {
  const s = value as Snapshot;
  if (typeof s !== "object" || s === null || Array.isArray(s)) throw bad(id, "not an object");
  if (s.format !== SNAPSHOT_FORMAT) {
    const version = /^ccbundle-snapshot\/(\d{1,4})$/.exec(String(s.format))?.[1];
    if (version !== undefined && Number(version) > 1) {
      throw new NewerFormatError(`snapshot ${id} was written by a newer ccbundle (${s.format})`, {
        hint: "upgrade ccbundle on this machine (npm install -g ccbundle)",
      });
    }
    throw new IntegrityError(`snapshot ${id} has an unknown format`, { hint: "upgrade ccbundle" });
  }
  if (s.id !== id) throw bad(id, "its id does not match its name");
  for (const field of ["created", "publisher", "machine", "host"] as const) {
    if (typeof s[field] !== "string") throw bad(id, `no ${field}`);
  }
  if (!Array.isArray(s.sessions)) throw bad(id, "no session list");
  for (const entry of s.sessions) {
    if (typeof entry !== "object" || entry === null) throw bad(id, "bad session entry");
    if (!isSessionId(entry.id)) throw bad(id, "bad session id");
    for (const field of ["machine", "host", "project", "folder", "backedUp"] as const) {
      if (typeof entry[field] !== "string" || entry[field].length > 4096) throw bad(id, `bad ${field}`);
    }
    for (const field of ["title", "first", "last"] as const) {
      if (entry[field] !== undefined && (typeof entry[field] !== "string" || entry[field].length > 4096)) {
        throw bad(id, `bad ${field}`);
      }
    }
    for (const field of ["modified", "files", "bytes"] as const) {
      if (!Number.isFinite(entry[field]) || entry[field] < 0) throw bad(id, `bad ${field}`);
    }
    const blob = entry.blob;
    if (typeof blob !== "object" || blob === null || !BLOB_KEY_PATTERN.test(blob.key)) throw bad(id, "bad blob key");
    if (!Number.isSafeInteger(blob.size) || blob.size < 0 || !/^[0-9a-f]{64}$/.test(blob.sha256)) {
      throw bad(id, "bad blob size or hash");
    }
  }
  return s;
}

function bad(id: string, what: string): IntegrityError {
  return new IntegrityError(`snapshot ${id} is damaged (${what})`, {
    hint: "restore from another snapshot (--snapshot); `ccbundle list` shows them",
  });
}

/** Snapshot ids of `owner` in the store, newest first. */
export async function listSnapshotIds(store: BlobStore, owner: string): Promise<string[]> {
  const prefix = storeLayout.snapshotDir(owner);
  const ids: string[] = [];
  for await (const object of store.list(prefix)) {
    const id = object.key.slice(prefix.length);
    if (isSnapshotId(id)) ids.push(id);
  }
  return ids.sort().reverse();
}

export async function readSnapshot(store: BlobStore, key: UserKey, id: string, extra: Identity[] = []) {
  const bytes = await store.getBytes(storeLayout.snapshot(key.z32, id)).catch((err: unknown) => {
    if (err instanceof NotFoundError) {
      throw new NotFoundError(`no snapshot ${id} in ${store.url}`, { hint: "`ccbundle list` shows the snapshots" });
    }
    throw err;
  });
  return openSnapshot(bytes, { id, owner: key.z32 }, [key.ageIdentity(), ...extra]);
}

export async function writeSnapshot(
  store: BlobStore,
  key: UserKey,
  snapshot: Snapshot,
  recipients: Recipient[],
): Promise<number> {
  return putSnapshot(store, key, snapshot, await sealSnapshot(snapshot, key, recipients));
}

/** Store a snapshot sealSnapshot sealed. */
export async function putSnapshot(store: BlobStore, key: UserKey, snapshot: Snapshot, sealed: Uint8Array) {
  await store.put(storeLayout.snapshot(key.z32, snapshot.id), sealed, { size: sealed.length });
  return sealed.length;
}

/**
 * listSnapshotIds for the commands that read what backup wrote (list, restore, prune): when there
 * are none, the store's own explanation if it has one (an empty NAS mount point) instead of none.
 */
export async function snapshotIdsToRead(store: BlobStore, owner: string): Promise<string[]> {
  const ids = await listSnapshotIds(store, owner);
  if (ids.length === 0) {
    const why = await store.explainEmpty?.();
    if (why) throw why;
  }
  return ids;
}

/**
 * Resolve `--snapshot` (an id or a unique prefix of one) or, without it, the
 * newest snapshot. Returns undefined when the store holds none.
 */
export async function pickSnapshotId(
  store: BlobStore,
  owner: string,
  wanted: string | undefined,
  /** The ids snapshotIdsToRead gave, when the caller has them already (no second listing). */
  listed?: string[],
): Promise<string | undefined> {
  const ids = listed ?? (await snapshotIdsToRead(store, owner));
  if (!wanted) return ids[0];
  if (wanted === "latest") return ids[0];
  const matches = ids.filter((id) => id.startsWith(wanted));
  if (matches.length === 1) return matches[0];
  if (matches.length === 0) {
    throw new NotFoundError(`no snapshot ${wanted} in ${store.url}`, { hint: "`ccbundle list` shows the snapshots" });
  }
  throw new UsageError(`snapshot prefix ${wanted} matches ${matches.length} snapshots`, {
    hint: "give more characters",
  });
}

function randomBase32(length: number): string {
  const alphabet = "abcdefghijklmnopqrstuvwxyz234567";
  return [...randomBytes(length)].map((byte) => alphabet[byte & 31]).join("");
}

/**
 * A snapshot a later ccbundle wrote. Backup stops on it instead of passing over it as damaged:
 * a snapshot built on an older one would sort as the newest and leave out what the newer
 * version recorded, and cron would never say so.
 */
export class NewerFormatError extends IntegrityError {}

/**
 * A snapshot no older one may stand in for when it cannot be opened: one a newer ccbundle wrote
 * (upgrade instead), or one this key cannot open at all (another identity opens none of them).
 * Any other failure (damage) lets list and restore pass over it to the newest that opens.
 */
export function noOlderStandsIn(err: unknown): boolean {
  if (err instanceof NewerFormatError) return true;
  return err instanceof IntegrityError && err.cause instanceof AgeError && err.cause.failure === "no-match";
}

/**
 * The newest snapshot that opens and verifies; damaged ones are skipped with a warning, newer ones
 * stop it. A snapshot in `inHand` (read or written by this run) is not downloaded again: one id
 * names the same bytes for good, and a backup that writes a snapshot looks for the newest three
 * times (a GET, a decryption and a signature check each, per cron run on S3).
 */
export async function newestSnapshot(
  store: BlobStore,
  key: UserKey,
  warnings: string[],
  inHand: readonly (Snapshot | undefined)[] = [],
): Promise<Snapshot | undefined> {
  for (const id of await listSnapshotIds(store, key.z32)) {
    const known = inHand.find((snapshot) => snapshot?.id === id);
    if (known) return known;
    try {
      return await readSnapshot(store, key, id);
    } catch (err) {
      if (!(err instanceof IntegrityError) || err instanceof NewerFormatError) throw err;
      warnings.push(`skipped snapshot ${id}: ${err.message}`);
    }
  }
  return undefined;
}
