/**
 * Why an age file could not be opened. Every failure is an IntegrityError
 * (exit 5); `failure` names the stage that refused it, so callers and tests
 * can tell a damaged header from a wrong key without parsing messages. The
 * stages follow the C2SP CCTV vocabulary: armor, header, no match, HMAC,
 * payload. Messages never carry key material or file bytes.
 */

import { type CcbErrorOptions, IntegrityError } from "../../errors.js";

export type AgeFailure = "armor" | "header" | "no-match" | "hmac" | "payload";

const HINTS: Record<AgeFailure, string> = {
  armor: "the ASCII-armored file is damaged or was edited; get a fresh copy",
  header: "the file is damaged or is not an age file; get a fresh copy",
  "no-match": "ask the sender to encrypt it to your key (`ccbundle whoami` prints it)",
  hmac: "the file's header was altered or damaged after encryption; get a fresh copy",
  payload: "the file is damaged or truncated; get a fresh copy",
};

export class AgeError extends IntegrityError {
  readonly failure: AgeFailure;

  constructor(failure: AgeFailure, message: string, options: CcbErrorOptions = {}) {
    super(message, { hint: options.hint ?? HINTS[failure], cause: options.cause });
    this.name = "AgeError";
    this.failure = failure;
  }
}

export function armorError(detail: string): AgeError {
  return new AgeError("armor", `invalid age armor: ${detail}`);
}

export function headerError(detail: string, cause?: unknown): AgeError {
  return new AgeError("header", `invalid age header: ${detail}`, { cause });
}

export function payloadError(detail: string): AgeError {
  return new AgeError("payload", `age payload does not decrypt: ${detail}`);
}
