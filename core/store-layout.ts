import { randomBytes } from "node:crypto";

/**
 * Object names inside a store (DESIGN.md "Store layout"). No name reveals a
 * session id, host or path: blobs get random ids, records and snapshots are
 * filed under the publisher's z32 key only.
 */
const ROOT = "ccbundle/v1";

export const storeLayout = {
  blobsPrefix: `${ROOT}/blobs/`,
  recordsPrefix: `${ROOT}/records/`,
  snapshotsPrefix: `${ROOT}/snapshots/`,
  blob: (id: string) => `${ROOT}/blobs/${id}`,
  record: (z32: string) => `${ROOT}/records/${z32}`,
  snapshotDir: (z32: string) => `${ROOT}/snapshots/${z32}/`,
  snapshot: (z32: string, id: string) => `${ROOT}/snapshots/${z32}/${id}`,
};

/** 128 random bits, base32 lower-case: unguessable and filename-safe. */
export function randomId(): string {
  const alphabet = "abcdefghijklmnopqrstuvwxyz234567";
  const bytes = randomBytes(16);
  let bits = 0;
  let value = 0;
  let out = "";
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += alphabet[(value << (5 - bits)) & 31];
  return out;
}
