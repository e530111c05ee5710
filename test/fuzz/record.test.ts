import fc from "fast-check";
import { encodeSigData } from "pkarr/lib/tools.js";
import { describe, expect, it } from "vitest";
import { encrypt } from "../../core/crypto/age/index.js";
import { UserKey } from "../../core/crypto/keys.js";
import { signPacket, txtRecords, verifyPayload } from "../../core/pointer/packet.js";
import { decodePayload, encodePayload } from "../../core/pointer/payload-codec.js";
import { openSlots, type PointerPayload, RECORD_NAME, sealPayload } from "../../core/pointer/record.js";
import { fuzzRuns, fuzzTimeout, onlyTyped } from "./runs.js";

/**
 * The record decoder against anything a DHT node, relay or store could serve:
 * raw bytes, validly signed junk DNS, mutated real packets, junk TXT data,
 * junk age, junk JSON. Only ccbundle's typed errors may come out.
 */

const publisher = UserKey.generate();
const reader = UserKey.generate();
let micros = Date.now() * 1000;

function signRaw(dns: Uint8Array): Uint8Array {
  const timestamp = ++micros;
  const signature = publisher.sign(encodeSigData({ seq: timestamp, v: Buffer.from(dns) }));
  const out = Buffer.alloc(72 + dns.length);
  out.set(signature, 0);
  out.writeBigUInt64BE(BigInt(timestamp), 64);
  out.set(dns, 72);
  return out;
}

async function decodeAll(bytes: Uint8Array): Promise<void> {
  const verified = verifyPayload(publisher.publicKey, bytes);
  txtRecords(verified, RECORD_NAME);
  await openSlots(verified, publisher.z32, [reader.ageIdentity()]);
}

const validPayload = {
  v: 1,
  pub: publisher.z32,
  slot: "self",
  kind: "handoff",
  created: 1_800_000_000,
  expires: 1_800_086_400,
  host: "laptop",
  session: { id: "0b7e6a52-8c1d-4e0f-9a3b-2c4d5e6f7a8b", title: "Fix tests" },
  blob: { store: "/nas", key: "ccbundle/v1/blobs/x", size: 42, sha256: "a".repeat(64), age: "B".repeat(43) },
};

describe("fuzz: record decoder", () => {
  it(
    "raw bytes never crash verifyPayload",
    async () => {
      await fc.assert(
        fc.asyncProperty(fc.uint8Array({ maxLength: 1200 }), async (bytes) => {
          await onlyTyped(() => decodeAll(bytes));
        }),
        fuzzRuns(2000),
      );
    },
    fuzzTimeout(2000, 1),
  );

  it(
    "validly signed junk DNS never crashes the decoder",
    async () => {
      await fc.assert(
        fc.asyncProperty(fc.uint8Array({ minLength: 0, maxLength: 1000 }), async (dns) => {
          await onlyTyped(() => decodeAll(signRaw(dns)));
        }),
        fuzzRuns(600),
      );
    },
    fuzzTimeout(600, 8),
  );

  it(
    "mutated real packets, re-signed, never crash the decoder",
    async () => {
      const sealed = await sealPayload(validPayload as never, [reader.ageRecipient()]);
      const base = Buffer.from(signPacket(publisher.exportSeed(), [{ name: RECORD_NAME, data: sealed }], micros).dns);
      await fc.assert(
        fc.asyncProperty(
          fc.array(fc.record({ at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }), {
            minLength: 1,
            maxLength: 8,
          }),
          fc.nat(),
          async (edits, cut) => {
            const dns = Buffer.from(base);
            for (const edit of edits) dns[edit.at % dns.length] = edit.value;
            await onlyTyped(() => decodeAll(signRaw(dns.subarray(0, dns.length - (cut % 8)))));
          },
        ),
        fuzzRuns(800),
      );
    },
    fuzzTimeout(800, 8),
  );

  it(
    "junk TXT data and junk age ciphertext never crash openSlots",
    async () => {
      const good = Buffer.from(await encrypt(Buffer.from("{}"), [reader.ageRecipient()]));
      await fc.assert(
        fc.asyncProperty(
          fc.oneof(
            fc.uint8Array({ maxLength: 700 }),
            fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })).map(([at, v]) => {
              const copy = Buffer.from(good);
              copy[at % copy.length] = v;
              return new Uint8Array(copy);
            }),
          ),
          async (data) => {
            const packet = signPacket(publisher.exportSeed(), [{ name: RECORD_NAME, data }], ++micros);
            await onlyTyped(() => decodeAll(packet.bytes));
          },
        ),
        fuzzRuns(800),
      );
    },
    fuzzTimeout(800, 8),
  );

  it(
    "any bytes in a slot: decodePayload accepts only well-formed payloads",
    async () => {
      // Real encodings with bytes flipped, cut or appended, and plain junk.
      const valid = encodePayload(validPayload as PointerPayload);
      const mutated = fc
        .tuple(
          fc.nat({ max: valid.length - 1 }),
          fc.integer({ min: 1, max: 255 }),
          fc.nat({ max: 3 }),
          fc.uint8Array({ maxLength: 8 }),
        )
        .map(([at, xor, how, extra]) => {
          const bytes = Buffer.from(valid);
          if (how === 0) bytes[at]! ^= xor;
          if (how === 1) return bytes.subarray(0, at);
          if (how === 2) return Buffer.concat([bytes, extra]);
          if (how === 3) return Buffer.concat([bytes.subarray(0, at), extra, bytes.subarray(at)]);
          return bytes;
        });
      await fc.assert(
        fc.property(
          fc.oneof(
            mutated,
            fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)),
          ),
          (bytes) => {
            let parsed: PointerPayload | undefined;
            try {
              parsed = decodePayload(bytes, publisher.z32, "C".repeat(43));
            } catch (err) {
              return void onlyTyped(() => {
                throw err;
              });
            }
            // What passes is something the rest of pull can use without more checks.
            expect(parsed.pub).toBe(publisher.z32);
            expect(["handoff", "snapshot", "tombstone"]).toContain(parsed.kind);
            expect(Number.isSafeInteger(parsed.created)).toBe(true);
            if (parsed.kind === "handoff") expect(parsed.blob).toBeDefined();
            if (parsed.blob) {
              expect(parsed.blob.key.split("/")).not.toContain("..");
              expect(parsed.blob.sha256).toMatch(/^[0-9a-f]{64}$/);
              expect(Number.isSafeInteger(parsed.blob.size)).toBe(true);
            }
          },
        ),
        fuzzRuns(3000),
      );
    },
    fuzzTimeout(3000, 1),
  );
});
