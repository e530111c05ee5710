import { randomBytes } from "node:crypto";
import { UsageError } from "../errors.js";
import { headerError } from "./age/errors.js";
import { b64decode, b64encode, type Stanza } from "./age/format.js";
import type { Identity, Recipient } from "./age/index.js";
import { FILE_KEY_SIZE, openFileKey, sealFileKey, TAG_SIZE } from "./age/primitives.js";

/**
 * PIN handoffs: the file key of a record slot wrapped under a key derived
 * from a PIN with Argon2id (RFC 9106), so a receiver who has no ccbundle
 * identity at all can open it. Shaped like age's scrypt recipient: a stanza
 *
 *     -> argon2id <base64 16-byte salt> <log2 memory KiB> <passes> <lanes>
 *     body = ChaCha20-Poly1305(Argon2id(PIN, salt), file key)
 *
 * Anyone can copy the record from the DHT and guess PINs offline, so the cost
 * per guess is the only defence: 64 MiB and 3 passes, about a third of a second
 * per guess on one core here (docs/modes.md has the brute-force arithmetic).
 * A reader refuses parameters outside [MIN, MAX] so a hostile record can
 * neither make a PIN cheap to guess nor ask for gigabytes of memory.
 */

export const PIN_STANZA = "argon2id";
export const MIN_PIN_LENGTH = 8;
export const PIN_SALT_SIZE = 16;

export interface Argon2Params {
  /** log2 of the memory in KiB: 16 = 64 MiB. */
  logMemoryKiB: number;
  passes: number;
  lanes: number;
}

/** RFC 9106's second recommended option, memory held at 64 MiB, one lane (WASM runs lanes one after another). */
export const DEFAULT_ARGON2: Argon2Params = { logMemoryKiB: 16, passes: 3, lanes: 1 };
const MIN_LOG_MEMORY = 16;
const MAX_LOG_MEMORY = 20; // 1 GiB
const MAX_PASSES = 16;
const MAX_LANES = 8;
const DOMAIN = "ccbundle/pin/v1";

/** The PIN as bytes: NFC-normalised (so the same PIN typed on macOS and Linux matches), UTF-8. */
export function pinBytes(pin: string): Uint8Array {
  return new Uint8Array(Buffer.from(pin.normalize("NFC"), "utf8"));
}

/** Refuse a PIN too short to survive offline guessing for even a day (push only; pull takes what it is given). */
export function checkNewPin(pin: string): void {
  const length = [...pin.normalize("NFC")].length;
  if (length < MIN_PIN_LENGTH) {
    throw new UsageError(`the PIN has ${length} characters; a PIN needs at least ${MIN_PIN_LENGTH}`, {
      hint: "anyone can copy the record and guess offline: use 8+ random characters, or a few random words",
    });
  }
}

/**
 * Why a new PIN is easy to guess offline though long enough, or undefined: digits only (10⁸
 * guesses for 8: one rented GPU for a few hours, docs/modes.md), or few different characters.
 */
export function weakPinReason(pin: string): string | undefined {
  const characters = [...pin.normalize("NFC")];
  if (/^[0-9]+$/.test(pin) && characters.length < 12) return `a PIN of ${characters.length} digits`;
  if (new Set(characters).size < 4) return "a PIN of so few different characters";
  return undefined;
}

export function checkArgon2Params(params: Argon2Params): boolean {
  return (
    Number.isInteger(params.logMemoryKiB) &&
    params.logMemoryKiB >= MIN_LOG_MEMORY &&
    params.logMemoryKiB <= MAX_LOG_MEMORY &&
    Number.isInteger(params.passes) &&
    params.passes >= 1 &&
    params.passes <= MAX_PASSES &&
    Number.isInteger(params.lanes) &&
    params.lanes >= 1 &&
    params.lanes <= MAX_LANES
  );
}

/** Argon2id(PIN, "ccbundle/pin/v1" || salt) → 32-byte wrap key. Runs the full cost whatever the PIN. */
export async function derivePinKey(pin: Uint8Array, salt: Uint8Array, params: Argon2Params): Promise<Uint8Array> {
  // Loaded here, not at the top: hash-wasm costs ~30 ms to load, and only PIN handoffs need it.
  const { argon2id } = await import("hash-wasm");
  return argon2id({
    password: pin,
    salt: Buffer.concat([Buffer.from(DOMAIN, "latin1"), salt]),
    parallelism: params.lanes,
    iterations: params.passes,
    memorySize: 2 ** params.logMemoryKiB,
    hashLength: 32,
    outputType: "binary",
  });
}

export class PinRecipient implements Recipient {
  // Held by reference: the caller zeroes the PIN bytes once sealing is done.
  readonly #pin: Uint8Array;
  readonly #params: Argon2Params;

  constructor(pin: Uint8Array, params: Argon2Params = DEFAULT_ARGON2) {
    if (pin.length === 0) throw new UsageError("the PIN is empty", { hint: "choose a PIN of 8+ characters" });
    if (!checkArgon2Params(params)) throw new UsageError("Argon2id parameters out of range");
    this.#pin = pin;
    this.#params = params;
  }

  async wrapFileKey(fileKey: Uint8Array): Promise<Stanza[]> {
    const salt = randomBytes(PIN_SALT_SIZE);
    const wrapKey = await derivePinKey(this.#pin, salt, this.#params);
    try {
      const { logMemoryKiB, passes, lanes } = this.#params;
      const args = [b64encode(salt), String(logMemoryKiB), String(passes), String(lanes)];
      return [{ type: PIN_STANZA, args, body: sealFileKey(wrapKey, fileKey) }];
    } finally {
      wrapKey.fill(0);
    }
  }
}

export class PinIdentity implements Identity {
  readonly #pin: Uint8Array;
  readonly #derive: typeof derivePinKey;

  /** `derive` is for tests that count derivations; it defaults to the real one. */
  constructor(pin: Uint8Array, derive: typeof derivePinKey = derivePinKey) {
    this.#pin = pin;
    this.#derive = derive;
  }

  async unwrapFileKey(stanzas: Stanza[]): Promise<Uint8Array | undefined> {
    for (const stanza of stanzas) {
      if (stanza.type !== PIN_STANZA) continue;
      const { salt, params } = parsePinStanza(stanza);
      const wrapKey = await this.#derive(this.#pin, salt, params);
      // The tag check is constant-time (OpenSSL); a wrong PIN costs exactly one derivation, like a right one.
      const fileKey = openFileKey(wrapKey, stanza.body);
      wrapKey.fill(0);
      if (fileKey !== undefined) return fileKey;
    }
    return undefined;
  }

  /** Zero the PIN bytes (the caller's buffer). */
  destroy(): void {
    this.#pin.fill(0);
  }
}

export function parsePinStanza(stanza: Stanza): { salt: Buffer; params: Argon2Params } {
  if (stanza.args.length !== 4) throw headerError("argon2id stanza must have four arguments");
  const salt = b64decode(stanza.args[0]!);
  if (salt?.length !== PIN_SALT_SIZE) throw headerError("argon2id stanza salt is not a 16-byte value");
  const [logMemoryKiB, passes, lanes] = stanza.args.slice(1).map((arg) => (/^[1-9][0-9]{0,2}$/.test(arg) ? +arg : 0));
  const params = { logMemoryKiB: logMemoryKiB!, passes: passes!, lanes: lanes! };
  if (!checkArgon2Params(params)) throw headerError("argon2id parameters are outside the accepted range");
  if (stanza.body.length !== FILE_KEY_SIZE + TAG_SIZE) throw headerError("argon2id stanza body has the wrong length");
  return { salt, params };
}
