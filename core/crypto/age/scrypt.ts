/**
 * The native scrypt (passphrase) recipient type (c2sp.org/age, "The scrypt
 * recipient type").
 *
 *     -> scrypt <base64 16-byte salt> <log2 N>
 *     wrap key = scrypt(N, r = 8, p = 1, dkLen = 32,
 *                       S = "age-encryption.org/v1/scrypt" || salt, P = passphrase)
 *
 * An scrypt stanza must be the only stanza in its header: a passphrase file
 * implies that whoever knew the passphrase wrote it, which stops being true
 * once a public-key recipient could have added content. Both directions
 * enforce this (see header.ts for the file-level check as well).
 *
 * The derivation runs on libuv's thread pool (async node:crypto scrypt), so
 * it does not block the event loop for the ~1 s that log N = 18 costs.
 */

import { randomBytes, scrypt } from "node:crypto";
import { UsageError } from "../../errors.js";
import { headerError } from "./errors.js";
import { b64decode, b64encode, type Stanza } from "./format.js";
import type { Identity, Recipient } from "./index.js";
import { FILE_KEY_SIZE, openFileKey, sealFileKey, TAG_SIZE } from "./primitives.js";

const SALT_LABEL = "age-encryption.org/v1/scrypt";
const SALT_SIZE = 16;
const WORK_FACTOR = /^[1-9][0-9]*$/;
const R = 8;

function deriveWrapKey(passphrase: Uint8Array, salt: Uint8Array, logN: number): Promise<Buffer> {
  const N = 2 ** logN;
  const fullSalt = Buffer.concat([Buffer.from(SALT_LABEL, "latin1"), salt]);
  return new Promise((resolve, reject) => {
    // scrypt needs about 128 * N * r bytes; node's default cap is 32 MiB,
    // which log N = 18 already exceeds. The cap is set from the (already
    // bounded) work factor, with headroom.
    scrypt(passphrase, fullSalt, 32, { N, r: R, p: 1, maxmem: 256 * N * R }, (err, key) =>
      err ? reject(err) : resolve(key),
    );
  });
}

export class ScryptRecipient implements Recipient {
  // Held by reference: the caller owns the passphrase buffer and may zero it
  // once encryption is done.
  readonly #passphrase: Uint8Array;
  readonly #logN: number;

  constructor(passphrase: Uint8Array, logN = 18) {
    if (passphrase.length === 0) throw new UsageError("the passphrase is empty", { hint: "choose a passphrase" });
    if (!Number.isInteger(logN) || logN < 1 || logN > 30) {
      throw new UsageError("the scrypt work factor must be an integer between 1 and 30");
    }
    this.#passphrase = passphrase;
    this.#logN = logN;
  }

  async wrapFileKey(fileKey: Uint8Array): Promise<Stanza[]> {
    const salt = randomBytes(SALT_SIZE);
    const wrapKey = await deriveWrapKey(this.#passphrase, salt, this.#logN);
    const body = sealFileKey(wrapKey, fileKey);
    wrapKey.fill(0);
    return [{ type: "scrypt", args: [b64encode(salt), String(this.#logN)], body }];
  }
}

export class ScryptIdentity implements Identity {
  readonly #passphrase: Uint8Array;
  readonly #maxLogN: number;

  /**
   * @param maxLogN the highest work factor accepted. A file's header picks
   * the cost of opening it; without a cap a hostile file could ask for
   * terabytes of memory. 22 is about 4 GiB and tens of seconds.
   */
  constructor(passphrase: Uint8Array, maxLogN = 22) {
    this.#passphrase = passphrase;
    this.#maxLogN = maxLogN;
  }

  async unwrapFileKey(stanzas: Stanza[]): Promise<Uint8Array | undefined> {
    for (const s of stanzas) {
      if (s.type !== "scrypt") continue;
      if (stanzas.length !== 1) throw headerError("an scrypt stanza must be the only stanza in the header");
      if (s.args.length !== 2) throw headerError("scrypt stanza must have exactly two arguments");
      const salt = b64decode(s.args[0] as string);
      if (salt === undefined || salt.length !== SALT_SIZE) {
        throw headerError("scrypt stanza salt is not a canonical 16-byte value");
      }
      const logNText = s.args[1] as string;
      if (!WORK_FACTOR.test(logNText)) throw headerError("scrypt stanza work factor is not a decimal number");
      const logN = Number(logNText);
      if (logN > this.#maxLogN) {
        throw headerError(`scrypt work factor is above the limit of 2^${this.#maxLogN}`);
      }
      if (s.body.length !== FILE_KEY_SIZE + TAG_SIZE) throw headerError("scrypt stanza body has the wrong length");
      const wrapKey = await deriveWrapKey(this.#passphrase, salt, logN);
      const fileKey = openFileKey(wrapKey, s.body);
      wrapKey.fill(0);
      if (fileKey !== undefined) return fileKey;
    }
    return undefined;
  }
}
