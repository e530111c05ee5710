import { randomBytes } from "node:crypto";
import { readFile, stat } from "node:fs/promises";
import path from "node:path";
import { writeFileAtomic } from "../claude/files.js";
import { CcbError, errnoCode, IntegrityError } from "../errors.js";
import { decrypt, encrypt, ScryptIdentity, ScryptRecipient } from "./age/index.js";
import { UserKey } from "./keys.js";

/**
 * The identity file in CCBUNDLE_HOME: one ed25519 seed per user. At rest it is
 * an age file encrypted with a passphrase (scrypt), so stock `age -d` opens it
 * too; with `--no-passphrase` it is plain text, mode 0600, for unattended use.
 * `identity.pub` beside it holds the public key so `whoami` never needs the
 * passphrase.
 */

const SEED_PREFIX = "CCBUNDLE-SECRET-KEY:";
const AGE_MAGIC = "age-encryption.org/v1\n";
/** scrypt work factor for the identity at rest: ~1 s here, 256 MiB. */
const SCRYPT_LOG_N = 18;

export function identityPaths(home: string) {
  return { secret: path.join(home, "identity"), public: path.join(home, "identity.pub") };
}

export function encodeIdentityText(key: UserKey): string {
  return [
    "# ccbundle identity: an ed25519 key. Keep this file secret.",
    `# public key: ${key.z32}`,
    `${SEED_PREFIX}${Buffer.from(key.exportSeed()).toString("base64url")}`,
    "",
  ].join("\n");
}

export function decodeIdentityText(text: string): UserKey {
  const line = text.split(/\r?\n/).find((l) => l.startsWith(SEED_PREFIX));
  const seed = line ? Buffer.from(line.slice(SEED_PREFIX.length).trim(), "base64url") : undefined;
  if (seed?.length !== 32) {
    throw new IntegrityError("the identity file is not a ccbundle identity", {
      hint: "export it again from the other machine with `ccbundle key export`",
    });
  }
  const key = UserKey.fromSeed(seed);
  seed.fill(0);
  return key;
}

export function isEncryptedIdentity(bytes: Uint8Array): boolean {
  return Buffer.from(bytes.subarray(0, AGE_MAGIC.length)).toString("latin1") === AGE_MAGIC;
}

/** The bytes of an identity file: encrypted when a passphrase is given. */
export async function identityFileBytes(key: UserKey, passphrase: string | undefined): Promise<Uint8Array> {
  const text = Buffer.from(encodeIdentityText(key));
  if (passphrase === undefined) return text;
  // JS strings cannot be wiped; the bytes derived from them can.
  const secret = Buffer.from(passphrase, "utf8");
  try {
    return await encrypt(text, [new ScryptRecipient(secret, SCRYPT_LOG_N)]);
  } finally {
    text.fill(0);
    secret.fill(0);
  }
}

/** Open identity-file bytes; `getPassphrase` is asked only if the file is encrypted. */
export async function openIdentityBytes(
  bytes: Uint8Array,
  getPassphrase: () => Promise<string>,
  where: string,
): Promise<{ key: UserKey; encrypted: boolean }> {
  if (!isEncryptedIdentity(bytes))
    return { key: decodeIdentityText(Buffer.from(bytes).toString("utf8")), encrypted: false };
  const secret = Buffer.from(await getPassphrase(), "utf8");
  let plain: Uint8Array;
  try {
    plain = await decrypt(bytes, [new ScryptIdentity(secret)]);
  } catch (err) {
    throw new IntegrityError(`wrong passphrase for ${where}`, {
      hint: "check CCBUNDLE_PASSPHRASE / --passphrase-file, or type it again",
      cause: err,
    });
  } finally {
    secret.fill(0);
  }
  try {
    return { key: decodeIdentityText(Buffer.from(plain).toString("utf8")), encrypted: true };
  } finally {
    plain.fill(0);
  }
}

export async function saveIdentity(home: string, key: UserKey, passphrase: string | undefined): Promise<void> {
  const paths = identityPaths(home);
  await writeFileAtomic(paths.secret, await identityFileBytes(key, passphrase), 0o600);
  await writeFileAtomic(paths.public, `${key.z32}\n${key.ageRecipient().toString()}\n`, 0o644);
}

/** Save raw identity-file bytes (key import) exactly as given. */
export async function saveIdentityBytes(home: string, bytes: Uint8Array, key: UserKey): Promise<void> {
  const paths = identityPaths(home);
  await writeFileAtomic(paths.secret, bytes, 0o600);
  await writeFileAtomic(paths.public, `${key.z32}\n${key.ageRecipient().toString()}\n`, 0o644);
}

export async function hasIdentity(home: string): Promise<boolean> {
  return (await stat(identityPaths(home).secret).catch(() => undefined)) !== undefined;
}

/** No identity in CCBUNDLE_HOME: the commands that need one say how to get one. */
export class NoIdentityError extends CcbError {
  constructor(
    home: string,
    hint = "run `ccbundle init`, or `ccbundle key import <file>` with the key from your other machine",
  ) {
    super(`no ccbundle identity in ${home}`, 1, { hint });
    this.name = "NoIdentityError";
  }
}

/** Read the identity file, refusing one that others can read. */
export async function readIdentityBytes(home: string): Promise<Uint8Array> {
  const file = identityPaths(home).secret;
  let info: import("node:fs").Stats;
  try {
    info = await stat(file);
  } catch (err) {
    if (errnoCode(err) === "ENOENT") throw new NoIdentityError(home);
    throw err;
  }
  if (process.platform !== "win32" && (info.mode & 0o077) !== 0) {
    throw new CcbError(`identity file ${file} is readable by other users`, 1, {
      hint: `run: chmod 600 ${file}`,
    });
  }
  return readFile(file);
}

/** The public key without touching the secret (no passphrase needed). */
export async function readPublicKey(home: string): Promise<string | undefined> {
  try {
    const first = (await readFile(identityPaths(home).public, "utf8")).split("\n")[0]?.trim();
    return first && first.length === 52 ? first : undefined;
  } catch {
    return undefined;
  }
}

export function newIdentity(): UserKey {
  return UserKey.fromSeed(randomBytes(32));
}

/**
 * Copy the identity about to be replaced to `identity.<time>.bak` beside it, never over an earlier
 * copy: a second `init --force` overwrote the only copy of the first key. Returns the copy's path.
 */
export async function keepOldIdentity(home: string): Promise<string> {
  const bytes = await readIdentityBytes(home);
  const stamp = new Date().toISOString().replace(/[:.]/g, "-");
  for (let n = 0; ; n++) {
    const file = `${identityPaths(home).secret}.${stamp}${n ? `-${n}` : ""}.bak`;
    try {
      await writeFileAtomic(file, bytes, 0o600, { exclusive: true });
      return file;
    } catch (err) {
      if (errnoCode(err) !== "EEXIST" || n >= 100) throw err;
    }
  }
}
