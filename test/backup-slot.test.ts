import { describe, expect, it } from "vitest";
import { UserKey } from "../core/crypto/keys.js";
import { decodePayload, encodePayload } from "../core/pointer/payload-codec.js";
import type { PointerPayload } from "../core/pointer/record.js";

/** The snapshot slot in the compact payload format: a snapshot id and a store URL, no blob. */

const owner = UserKey.generate().z32;
const snapshot: PointerPayload = {
  v: 1,
  pub: owner,
  slot: "backup",
  kind: "snapshot",
  created: 1_763_700_000,
  snapshot: "20261121T063953583Z-rwrcqz",
  store: "s3://ccbundle/alice-backup?endpoint=http://nas.lan:9000",
};

describe("snapshot slot payload", () => {
  it("round-trips, and is small", () => {
    const bytes = encodePayload(snapshot);
    expect(decodePayload(bytes, owner)).toEqual(snapshot);
    expect(bytes.length).toBeLessThan(120);
  });

  it("a store without a blob is refused on any other kind of slot", () => {
    for (const kind of ["handoff", "tombstone"] as const) {
      const bytes = encodePayload({ ...snapshot, kind });
      expect(() => decodePayload(bytes, owner)).toThrow(/malformed/);
    }
  });

  it("a snapshot slot with a blob keeps the store inside the blob, as handoffs do", () => {
    const { store: _store, ...rest } = snapshot;
    const withBlob: PointerPayload = {
      ...rest,
      blob: {
        store: "file:///mnt/nas",
        key: "ccbundle/v1/blobs/abcdefghijklmnopqrstuvwxyz",
        size: 10,
        sha256: "0".repeat(64),
        age: Buffer.alloc(32, 1).toString("base64url"),
      },
    };
    expect(decodePayload(encodePayload(withBlob), owner)).toEqual(withBlob);
  });
});
