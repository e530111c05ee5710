/**
 * Sealing and opening the header: the file key wrapped for every recipient,
 * and the MAC that proves the header was written by someone who knew the
 * file key (so stanzas cannot be added, dropped or edited in transit).
 */

import { CcbError, UsageError } from "../../errors.js";
import { AgeError, headerError } from "./errors.js";
import {
  b64encode,
  encodeHeaderWithoutMac,
  headerMac,
  type ParsedHeader,
  type Stanza,
  verifyHeaderMac,
} from "./format.js";
import type { Identity, Recipient } from "./index.js";
import { FILE_KEY_SIZE } from "./primitives.js";

/** Serialize a complete header (MAC line included) for `fileKey`. */
export async function sealHeader(recipients: readonly Recipient[], fileKey: Uint8Array): Promise<Buffer> {
  if (recipients.length === 0) {
    throw new UsageError("no recipients to encrypt to", { hint: "give at least one recipient or a passphrase" });
  }
  const stanzas: Stanza[] = [];
  for (const r of recipients) stanzas.push(...(await r.wrapFileKey(fileKey)));
  if (stanzas.length !== 1 && stanzas.some((s) => s.type === "scrypt")) {
    throw new UsageError("a passphrase cannot be combined with other recipients", {
      hint: "encrypt either with a passphrase or to keys, not both",
    });
  }
  const head = encodeHeaderWithoutMac(stanzas);
  const mac = headerMac(fileKey, head);
  return Buffer.concat([head, Buffer.from(` ${b64encode(mac)}\n`, "latin1")]);
}

/**
 * Find the file key with the first identity that can unwrap a stanza, then
 * check the header MAC with it. The caller owns (and should zero) the key.
 */
export async function openHeader(header: ParsedHeader, identities: readonly Identity[]): Promise<Buffer> {
  const { stanzas } = header;
  if (identities.length === 0) {
    throw new UsageError("no identities to decrypt with", { hint: "give an identity or a passphrase" });
  }
  // Checked here for every file, not only by the scrypt identity, so that a
  // mixed header is refused even when a non-scrypt identity would match.
  if (stanzas.length !== 1 && stanzas.some((s) => s.type === "scrypt")) {
    throw headerError("an scrypt stanza must be the only stanza in the header");
  }

  let fileKey: Uint8Array | undefined;
  for (const id of identities) {
    try {
      fileKey = await id.unwrapFileKey(stanzas);
    } catch (err) {
      // Identities throw only for stanzas of their own type that are
      // malformed; third-party identities may throw plain Errors.
      if (err instanceof CcbError) throw err;
      throw headerError("a recipient stanza is malformed", err);
    }
    if (fileKey !== undefined) break;
  }
  if (fileKey === undefined) {
    const passphrase = stanzas.length === 1 && stanzas[0]?.type === "scrypt";
    throw passphrase
      ? new AgeError("no-match", "the passphrase does not decrypt this file", {
          hint: "check the passphrase; it is case-sensitive",
        })
      : new AgeError("no-match", "this file was not encrypted to your identity");
  }
  const key = Buffer.from(fileKey);
  fileKey.fill(0);
  if (key.length !== FILE_KEY_SIZE) throw headerError("the unwrapped file key has the wrong length");
  if (!verifyHeaderMac(key, header)) {
    key.fill(0);
    throw new AgeError("hmac", "the age header MAC does not verify");
  }
  return key;
}
