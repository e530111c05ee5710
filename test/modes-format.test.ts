import { randomBytes, randomUUID } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { afterAll, describe, expect, it } from "vitest";
import { bundleStream, HashCounter, readBundle } from "../core/bundle/blob.js";
import { prepareBundle } from "../core/bundle/build.js";
import { findSession } from "../core/claude/session.js";
import { type Recipient, X25519Identity } from "../core/crypto/age/index.js";
import { UserKey } from "../core/crypto/keys.js";
import { DEFAULT_ARGON2, derivePinKey, PIN_STANZA, PinIdentity, PinRecipient, pinBytes } from "../core/crypto/pin.js";
import { blobSecretFor, openSlot, parseSeal, resealSlot, sealSlot, slotFileKey } from "../core/crypto/slot-seal.js";
import { IntegrityError } from "../core/errors.js";
import { MAX_DNS_BYTES, signPacket, verifyPayload } from "../core/pointer/packet.js";
import { decodePayload, encodePayload } from "../core/pointer/payload-codec.js";
import {
  openSlots,
  type PointerPayload,
  recordEntries,
  recordFits,
  sealedSize,
  sealPayload,
  slotFor,
  supersedes,
} from "../core/pointer/record.js";
import { storeLayout } from "../core/store-layout.js";
import { writeSession } from "./helpers/fixture.js";

/**
 * The record format behind the handoff modes, in process: the compact payload
 * codec, the slot seal (X25519 and PIN stanzas in a binary frame, bound to the
 * publisher), the 1000-byte budget, and tamper detection on every byte of a
 * record and of a blob.
 */

const alice = UserKey.generate();
const bob = UserKey.generate();
const carol = UserKey.generate();
const eve = UserKey.generate();
const scratch = mkdtempSync(path.join(os.tmpdir(), "ccb-format-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function handoff(overrides: Partial<PointerPayload> = {}): PointerPayload {
  return {
    v: 1,
    pub: alice.z32,
    slot: "self",
    kind: "handoff",
    created: 1_790_000_000,
    expires: 1_790_086_400,
    session: { id: randomUUID(), title: "Add rate limiting to the login endpoint" },
    blob: {
      store: "s3://team-bucket/ccbundle?endpoint=https://minio.home.arpa:9000&region=us-east-1&path_style=true",
      key: storeLayout.blob("abcdefghijklmnopqrstuvwxyz"),
      size: 7_340_032,
      sha256: randomBytes(32).toString("hex"),
      age: randomBytes(32).toString("base64url"),
    },
    ...overrides,
  };
}

async function thrown(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error("expected a rejection");
}

describe("payload codec", () => {
  it("round-trips every field, in far fewer bytes than JSON", () => {
    const payload = handoff({ burn: true, host: "laptop", snapshot: "snap-1" });
    payload.blob!.url = "https://minio.home.arpa:9000/x?X-Amz-Signature=abc";
    const bytes = encodePayload(payload);
    expect(decodePayload(bytes, alice.z32)).toEqual(payload);
    const { host: _host, snapshot: _snapshot, ...plain } = handoff();
    expect(encodePayload(plain).length).toBeLessThan(Buffer.byteLength(JSON.stringify(plain)) * 0.6);
    // Non-UUID session ids, free-form keys and named slots round-trip as text.
    const odd = handoff({ slot: "backup", session: { id: "not-a-uuid" } });
    odd.blob!.key = "elsewhere/blob.ccb";
    expect(decodePayload(encodePayload(odd), alice.z32)).toEqual(odd);
    const to = handoff({ slot: "to:0011223344556677,8899aabbccddeeff", kind: "tombstone", blob: undefined });
    delete to.blob;
    expect(decodePayload(encodePayload(to), alice.z32)).toEqual(to);
  });

  it("refuses malformed payloads with exit 5", () => {
    const good = encodePayload(handoff());
    const cases: Array<[string, Buffer]> = [
      ["empty", Buffer.alloc(0)],
      ["newer format", Buffer.concat([Buffer.from([2]), good.subarray(1)])],
      ["truncated", good.subarray(0, good.length - 3)],
      ["trailing byte", Buffer.concat([good, Buffer.from([0x30])])],
      ["unknown field", Buffer.concat([good, Buffer.from([0x40, 1, 0])])],
      ["repeated field", Buffer.concat([good.subarray(0, 1), good.subarray(1, 4), good.subarray(1)])],
      ["non-canonical number", Buffer.from([1, 0x01, 1, 0, 0x02, 1, 1, 0x03, 2, 0, 5])],
      ["no kind", Buffer.from([1, 0x01, 1, 0, 0x03, 1, 5])],
      ["bad kind", Buffer.from([1, 0x01, 1, 0, 0x02, 1, 9, 0x03, 1, 5])],
      ["bad slot", Buffer.from([1, 0x01, 2, 1, 7, 0x02, 1, 1, 0x03, 1, 5])],
      ["unknown flag", Buffer.from([1, 0x01, 1, 0, 0x02, 1, 1, 0x03, 1, 5, 0x05, 1, 0x82])],
      ["half a blob", Buffer.from([1, 0x01, 1, 0, 0x02, 1, 1, 0x03, 1, 5, 0x14, 1, 9])],
    ];
    for (const [what, bytes] of cases) {
      const err = (() => {
        try {
          decodePayload(bytes, alice.z32);
        } catch (e) {
          return e;
        }
      })();
      expect(err, what).toBeInstanceOf(IntegrityError);
      expect((err as IntegrityError).exitCode, what).toBe(5);
    }
  });
});

describe("slot seal", () => {
  it("opens for the owner and each recipient, not for a third identity", async () => {
    const payload = handoff({ slot: slotFor(alice.publicKey, [bob.ageRecipient(), carol.ageRecipient()]) });
    const sealed = await sealPayload(payload, [alice.ageRecipient(), bob.ageRecipient(), carol.ageRecipient()]);
    const record = verifyPayload(alice.publicKey, signPacket(alice.exportSeed(), recordEntries([sealed]), 1).bytes);
    for (const reader of [alice, bob, carol]) {
      const [slot] = await openSlots(record, alice.z32, [reader.ageIdentity()]);
      expect(slot?.payload).toEqual(payload);
    }
    expect(await openSlots(record, alice.z32, [eve.ageIdentity()])).toEqual([]);
    expect(await openSlot(sealed, [eve.ageIdentity()], alice.publicKey)).toBeUndefined();
  });

  it("binds the slot to its publisher: copied into another key's record it is refused", async () => {
    const sealed = await sealPayload(handoff({ slot: slotFor(alice.publicKey, [bob.ageRecipient()]) }), [
      alice.ageRecipient(),
      bob.ageRecipient(),
    ]);
    const forged = verifyPayload(eve.publicKey, signPacket(eve.exportSeed(), recordEntries([sealed]), 2).bytes);
    const err = await thrown(openSlots(forged, eve.z32, [bob.ageIdentity()]));
    expect(err).toBeInstanceOf(IntegrityError);
    expect((err as Error).message).toMatch(/sealed for another record/);
  });

  it("a slot sealed for readers its name does not list is refused (exit 5)", async () => {
    // Named "self" (the owner's alone) but readable by Bob; named for Carol but readable by Bob.
    for (const slot of ["self", slotFor(alice.publicKey, [carol.ageRecipient()]), "pin"]) {
      const sealed = await sealPayload(handoff({ slot }), [alice.ageRecipient(), bob.ageRecipient()]);
      const record = verifyPayload(alice.publicKey, signPacket(alice.exportSeed(), recordEntries([sealed]), 3).bytes);
      const err = await thrown(openSlots(record, alice.z32, [bob.ageIdentity()]));
      expect(err, slot).toBeInstanceOf(IntegrityError);
      expect((err as Error).message).toMatch(/sealed for other readers/);
      // The owner reads it all the same.
      expect((await openSlots(record, alice.z32, [alice.ageIdentity()])).length).toBe(1);
    }
  });

  it("reseals a tombstone for the same readers under the next epoch", async () => {
    const sealed = await sealSlot(Buffer.from("handoff"), [alice.ageRecipient(), bob.ageRecipient()], alice.publicKey);
    const opened = (await openSlot(sealed, [alice.ageIdentity()], alice.publicKey))!;
    const tombstone = resealSlot(opened, Buffer.from("tombstone"), alice.publicKey)!;
    expect(parseSeal(tombstone).epoch).toBe(1);
    const byBob = await openSlot(tombstone, [bob.ageIdentity()], alice.publicKey);
    expect(byBob?.plaintext.toString()).toBe("tombstone");
    // Same stanzas, different payload key: the two ciphertexts share no keystream.
    expect(parseSeal(tombstone).stanzaBytes.equals(parseSeal(sealed).stanzaBytes)).toBe(true);
    const a = parseSeal(sealed).ciphertext;
    const b = parseSeal(tombstone).ciphertext;
    const xorA = Buffer.from(a.subarray(0, 7).map((x, i) => x ^ Buffer.from("handoff")[i]!));
    const xorB = Buffer.from(b.subarray(0, 7).map((x, i) => x ^ Buffer.from("tombsto")[i]!));
    expect(xorA.equals(xorB)).toBe(false);
  });

  it("every flipped bit of a sealed slot stops it from opening", async () => {
    const sealed = await sealSlot(Buffer.from("the payload"), [alice.ageRecipient()], alice.publicKey);
    for (let i = 0; i < sealed.length; i++) {
      const tampered = Buffer.from(sealed);
      tampered[i]! ^= 1 << (i % 8);
      const result = await openSlot(tampered, [alice.ageIdentity()], alice.publicKey).catch((err) => err);
      // Either nobody can open it (not for us any more) or it is refused as damaged; never the plaintext.
      if (result !== undefined) expect(result, `byte ${i}`).toBeInstanceOf(IntegrityError);
    }
  });
});

describe("PIN slots", () => {
  it("carry Argon2id parameters (64 MiB, 3 passes) and a 16-byte salt; a PIN holder opens them, a wrong PIN does not", async () => {
    const pin = pinBytes("tulip-orbit-42");
    const sealed = await sealSlot(
      Buffer.from("for the PIN"),
      [alice.ageRecipient(), new PinRecipient(pin)],
      alice.publicKey,
    );
    const stanza = parseSeal(sealed).stanzas.find((s) => s.type === PIN_STANZA)!;
    expect(stanza.args.slice(1)).toEqual(["16", "3", "1"]);
    expect(Buffer.from(stanza.args[0]!, "base64").length).toBe(16);
    const opened = await openSlot(sealed, [new PinIdentity(pinBytes("tulip-orbit-42"))], alice.publicKey);
    expect(opened?.plaintext.toString()).toBe("for the PIN");
    expect(opened?.via).toBe("pin");
    expect(await openSlot(sealed, [new PinIdentity(pinBytes("tulip-orbit-43"))], alice.publicKey)).toBeUndefined();
    // A record asking for less than 64 MiB (a cheap PIN to guess) is refused.
    const weak = Buffer.from(sealed);
    const at = 3 + 1 + 32 + 32 + 1 + 16; // after the owner's X25519 stanza and the PIN salt
    expect(weak[at]).toBe(16);
    weak[at] = 15;
    expect(await thrown(openSlot(weak, [new PinIdentity(pin)], alice.publicKey))).toBeInstanceOf(IntegrityError);
  });

  it("a wrong PIN costs one full derivation, like a right one (no early exit to time)", async () => {
    const sealed = await sealSlot(Buffer.from("x"), [new PinRecipient(pinBytes("right-pin-123"))], alice.publicKey);
    const calls: Array<{ params: Argon2Params; ms: number }> = [];
    const counted: typeof derivePinKey = async (pin, salt, params) => {
      const start = performance.now();
      const key = await derivePinKey(pin, salt, params);
      calls.push({ params, ms: performance.now() - start });
      return key;
    };
    const attempt = (pin: string) => openSlot(sealed, [new PinIdentity(pinBytes(pin), counted)], alice.publicKey);
    for (const pin of ["x", "wrong-pin-123456789"]) {
      expect(await attempt(pin)).toBeUndefined();
    }
    expect((await attempt("right-pin-123"))?.plaintext.toString()).toBe("x");
    // Exactly one derivation per attempt, at the record's full cost, whatever the PIN; what follows
    // it is one constant-time tag check. (Timing comparisons are left out: on a shared 2-core
    // runner they measure the neighbours.)
    expect(calls.length).toBe(3);
    for (const call of calls) {
      expect(call.params).toEqual(DEFAULT_ARGON2);
      expect(call.ms).toBeGreaterThan(50); // 64 MiB of Argon2id was really filled
    }
  }, 30_000);
});

/** Seal as push does: the blob key derived from the slot's file key, not carried. */
async function sealHandoff(payload: PointerPayload, recipients: Recipient[]): Promise<Uint8Array> {
  const fileKey = slotFileKey();
  payload.blob!.age = blobSecretFor(fileKey).toString("base64url");
  return sealPayload(payload, recipients, fileKey);
}

describe("the 1000-byte record", () => {
  it("a slot's blob key is derived from its file key, not carried; readers get it all the same", async () => {
    const payload = handoff({ slot: slotFor(alice.publicKey, [bob.ageRecipient()]) });
    const sealed = await sealHandoff(payload, [alice.ageRecipient(), bob.ageRecipient()]);
    expect(sealed.length).toBe(sealedSize(payload, [alice.ageRecipient(), bob.ageRecipient()], { omitBlobKey: true }));
    expect(sealed.length).toBe(sealedSize(payload, [alice.ageRecipient(), bob.ageRecipient()]) - 34);
    const record = verifyPayload(alice.publicKey, signPacket(alice.exportSeed(), recordEntries([sealed]), 4).bytes);
    const [slot] = await openSlots(record, alice.z32, [bob.ageIdentity()]);
    expect(slot?.payload.blob?.age).toBe(payload.blob!.age);
  });

  it("holds the owner's handoff beside a handoff to two teammates, even with an S3 store URL", async () => {
    const self = await sealHandoff(handoff(), [alice.ageRecipient()]);
    const toPayload = handoff({ slot: slotFor(alice.publicKey, [bob.ageRecipient(), carol.ageRecipient()]) });
    const shared = await sealHandoff(toPayload, [alice.ageRecipient(), bob.ageRecipient(), carol.ageRecipient()]);
    expect(self.length).toBe(sealedSize(handoff(), [alice.ageRecipient()], { omitBlobKey: true }));
    const fit = recordFits([self, shared]);
    expect(fit.fits).toBe(true);
    expect(fit.size).toBeLessThanOrEqual(MAX_DNS_BYTES);
    // With a local/NAS store there is room to spare.
    const nas = (p: PointerPayload): PointerPayload => ({ ...p, blob: { ...p.blob!, store: "file:///mnt/nas/ccb" } });
    const selfNas = await sealPayload(nas(handoff()), [alice.ageRecipient()]);
    const sharedNas = await sealPayload(nas(toPayload), [
      alice.ageRecipient(),
      bob.ageRecipient(),
      carol.ageRecipient(),
    ]);
    expect(recordFits([selfNas, sharedNas]).size).toBeLessThan(850);
    // A PIN slot fits beside the owner's too.
    const pin = new PinRecipient(pinBytes("tulip-orbit-42"));
    const pinSize = sealedSize(handoff({ slot: "pin" }), [alice.ageRecipient(), pin]);
    expect(recordFits([self, Buffer.alloc(pinSize)]).fits).toBe(true);
  });

  it("a presigned URL (hundreds of bytes) fits only alone", () => {
    const url = `https://minio.home.arpa:9000/team-bucket/ccbundle/v1/blobs/abcdefghijklmnopqrstuvwxyz?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Content-Sha256=UNSIGNED-PAYLOAD&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20261120%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20261120T100000Z&X-Amz-Expires=86400&X-Amz-Signature=${"ab".repeat(32)}&X-Amz-SignedHeaders=host&x-id=GetObject`;
    const withUrl = handoff();
    withUrl.blob!.url = url;
    const alone = Buffer.alloc(sealedSize(withUrl, [alice.ageRecipient()]));
    const other = Buffer.alloc(
      sealedSize(handoff({ slot: "pin" }), [alice.ageRecipient(), new PinRecipient(pinBytes("12345678"))]),
    );
    expect(recordFits([alone]).fits).toBe(true);
    expect(recordFits([alone, other]).fits).toBe(false);
    expect(recordFits([alone, other]).size).toBeGreaterThan(MAX_DNS_BYTES);
  });

  it("a handoff to people replaces the older handoff to a subset of them, never the owner's own", () => {
    const ab = handoff({ slot: slotFor(alice.publicKey, [bob.ageRecipient(), carol.ageRecipient()]) });
    const b = handoff({ slot: slotFor(alice.publicKey, [bob.ageRecipient()]) });
    expect(supersedes(ab, b)).toBe(true);
    expect(supersedes(b, ab)).toBe(false);
    expect(supersedes(ab, handoff())).toBe(false);
    expect(supersedes(handoff(), handoff())).toBe(true);
    expect(supersedes(handoff({ kind: "tombstone", slot: ab.slot }), b)).toBe(false);
  });
});

describe("tampering", () => {
  it("any flipped byte of a signed record is detected", async () => {
    const sealed = await sealPayload(handoff(), [alice.ageRecipient()]);
    const bytes = signPacket(alice.exportSeed(), recordEntries([sealed]), 1_790_000_000_000_000).bytes;
    for (let i = 0; i < bytes.length; i++) {
      const tampered = Buffer.from(bytes);
      tampered[i]! ^= 0x01;
      expect(() => verifyPayload(alice.publicKey, tampered), `byte ${i}`).toThrow(IntegrityError);
    }
  });

  it("any flipped byte of a blob is detected before anything is restored", async () => {
    const claudeDir = path.join(scratch, "claude");
    const projectDir = path.join(scratch, "project");
    mkdirSync(projectDir, { recursive: true });
    const session = writeSession({ claudeDir, projectDir, home: scratch, turns: 2 });
    const ref = await findSession(claudeDir, projectDir, session.id);
    const prepared = await prepareBundle({ claudeDir, ref, key: alice, env: {} });
    const blobKey = X25519Identity.generate();
    const counter = new HashCounter();
    const chunks: Buffer[] = [];
    for await (const chunk of bundleStream({
      manifestJson: prepared.manifestJson,
      files: prepared.files,
      recipients: [blobKey.recipient(), alice.ageRecipient()],
      compression: { codec: "zstd", level: 3 },
    }).pipe(counter))
      chunks.push(chunk as Buffer);
    const blob = Buffer.concat(chunks);
    const sha256 = counter.digest();
    const read = (bytes: Buffer, dir: string) =>
      readBundle(Readable.from([bytes]), { identities: [blobKey], stagingDir: path.join(scratch, dir) });
    // The untouched blob reads, and says what the record promised.
    expect((await read(blob, "clean")).sha256).toBe(sha256);
    // Every byte of the header and the first chunk, then a stride through the rest, and the tail.
    const positions = new Set<number>();
    for (let i = 0; i < Math.min(blob.length, 400); i++) positions.add(i);
    for (let i = 400; i < blob.length; i += 13) positions.add(i);
    for (let i = Math.max(0, blob.length - 40); i < blob.length; i++) positions.add(i);
    for (const i of positions) {
      const tampered = Buffer.from(blob);
      tampered[i]! ^= 0x80;
      const result = await read(tampered, `s${i}`).catch((err) => err);
      // A flip the age layers miss would still change the hash the record promised.
      const detected = result instanceof Error || result.sha256 !== sha256;
      expect(detected, `byte ${i}`).toBe(true);
    }
  });
});
