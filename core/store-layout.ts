import { randomBytes } from "node:crypto";
import { decodeBase32, encodeBase32 } from "./base32.js";

/**
 * Object names inside a store (DESIGN.md "Store layout"). No name reveals a
 * session id, host or path: blobs get random ids, records and snapshots are
 * filed under the publisher's z32 key only.
 */
const ROOT = "ccbundle/v1";

export const storeLayout = {
  root: ROOT,
  blobsPrefix: `${ROOT}/blobs/`,
  recordsPrefix: `${ROOT}/records/`,
  snapshotsPrefix: `${ROOT}/snapshots/`,
  blob: (id: string) => `${ROOT}/blobs/${id}`,
  record: (z32: string) => `${ROOT}/records/${z32}`,
  snapshotDir: (z32: string) => `${ROOT}/snapshots/${z32}/`,
  snapshot: (z32: string, id: string) => `${ROOT}/snapshots/${z32}/${id}`,
  /** `doctor`'s probe objects, apart from everything else (core/store-check.ts). */
  doctorPrefix: `${ROOT}/.doctor/`,
};

const ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567";

/** 128 random bits, base32 lower-case: unguessable and filename-safe. */
export function randomId(): string {
  return encodeBase32(randomBytes(16), ID_ALPHABET);
}

/** The 16 bytes of an id randomId made (records carry them raw); undefined for any other text. */
export function idBytes(id: string): Uint8Array | undefined {
  const bytes = decodeBase32(id, ID_ALPHABET);
  return bytes?.length === 16 && encodeBase32(bytes, ID_ALPHABET) === id ? bytes : undefined;
}

export function idFromBytes(bytes: Uint8Array): string {
  return encodeBase32(bytes, ID_ALPHABET);
}
