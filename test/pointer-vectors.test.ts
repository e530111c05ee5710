import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import type { Answer, Packet } from "dns-packet";
import SignedPacket from "pkarr/lib/signed_packet.js";
import { encodeSigData, generateKeyPair } from "pkarr/lib/tools.js";
import { describe, expect, it } from "vitest";
import z32pkg from "z32";
import { CcbError, IntegrityError, UsageError } from "../core/errors.js";
import { dhtTarget, verifyEd25519 } from "../core/pointer/dht.js";
import {
  assertFits,
  bep44Signable,
  dnsSize,
  MAX_DNS_BYTES,
  signPacket,
  txtRecords,
  verifyPayload,
} from "../core/pointer/packet.js";
import { decodePublicKey, encodePublicKey, z32DecodeLoose, z32Encode } from "../core/pointer/z32.js";
import { entriesOfSize } from "./helpers/pointer.js";

const vectors = JSON.parse(readFileSync(new URL("./vectors/pkarr.json", import.meta.url), "utf8"));
const hex = (text: string) => Buffer.from(text, "hex");
const toHex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex");
const SEED_ZERO = new Uint8Array(32);

describe("z32 keys (pkarr keys.rs vectors)", () => {
  it("encodes and decodes the reference key", () => {
    const v = vectors.z32;
    expect(encodePublicKey(hex(v.public_key_hex))).toBe(v.z32);
    expect(toHex(decodePublicKey(v.z32))).toBe(v.public_key_hex);
    expect(toHex(decodePublicKey(v.uri))).toBe(v.public_key_hex);
    expect(toHex(decodePublicKey(`  ${v.z32.toUpperCase()}\n`))).toBe(v.public_key_hex);
    // Padding bits of the last character are ignored (as the Rust z32 crate does); keys print canonically.
    expect(toHex(decodePublicKey(`${v.z32.slice(0, 51)}t`))).toBe(v.public_key_hex);
    // Same bytes as the z32 package pkarr-js uses.
    expect(z32pkg.encode(hex(v.public_key_hex))).toBe(v.z32);
  });

  it("rejects an invalid ed25519 public key with a UsageError and a hint", () => {
    const v = vectors.invalid_public_key;
    expect(toHex(z32DecodeLoose(v.z32)!)).toBe(v.public_key_hex);
    expect(toHex(z32pkg.decode(v.z32))).toBe(v.public_key_hex);
    const err = catchError(() => decodePublicKey(v.z32));
    expect(err).toBeInstanceOf(UsageError);
    expect((err as UsageError).exitCode).toBe(2);
    expect((err as UsageError).message).toMatch(/not an ed25519 point/);
    expect((err as UsageError).hint).toMatch(/52-character/);
  });

  it.each([
    ["too short", "yg4gxe7z1r7mr6orids9fh95y7gxhdsxjqi6nngsxxtakqaxr5n", /51 characters/],
    ["too long", "yg4gxe7z1r7mr6orids9fh95y7gxhdsxjqi6nngsxxtakqaxr5noy", /53 characters/],
    ["bad character", "yg4gxe7z1r7mr6orids9fh95y7gxhdsxjqi6nngsxxtakqaxr5n0", /not valid z-base-32/],
    ["empty", "", /0 characters/],
  ])("rejects %s", (_name, input, message) => {
    const err = catchError(() => decodePublicKey(input));
    expect(err).toBeInstanceOf(UsageError);
    expect((err as Error).message).toMatch(message);
    expect((err as UsageError).hint).toBeTruthy();
  });

  it("round-trips random keys and matches the z32 package", () => {
    for (let i = 0; i < 50; i++) {
      const { publicKey } = generateKeyPair();
      const text = encodePublicKey(publicKey);
      expect(text).toHaveLength(52);
      expect(text).toBe(z32pkg.encode(publicKey));
      expect(toHex(decodePublicKey(text))).toBe(toHex(publicKey));
    }
    for (const length of [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]) {
      const bytes = new Uint8Array(length).map((_, i) => (i * 37 + 11) & 0xff);
      expect(z32Encode(bytes)).toBe(z32pkg.encode(bytes));
      expect(toHex(z32DecodeLoose(z32Encode(bytes))!)).toBe(toHex(bytes));
    }
  });

  it("derives the seed-zero keypair", () => {
    const v = vectors.keypair_seed_zero;
    const keypair = generateKeyPair(hex(v.secret_seed_hex));
    expect(toHex(keypair.publicKey)).toBe(v.public_key_hex);
    expect(encodePublicKey(keypair.publicKey)).toBe(v.z32);
    expect(toHex(signPacket(SEED_ZERO, [], 1).publicKey)).toBe(v.public_key_hex);
  });
});

describe("BEP44", () => {
  it("signable matches mainline's", () => {
    const v = vectors.bep44_signable;
    expect(Buffer.from(encodeSigData({ seq: v.seq, v: Buffer.from(v.v_utf8) })).toString()).toBe(v.signable_utf8);
    expect(bep44Signable(v.seq, Buffer.from(v.v_utf8)).toString()).toBe(v.signable_utf8);
  });

  it("target is SHA1 of the public key, and the reference signature verifies over our signable", () => {
    const v = vectors.signed_packet;
    expect(dhtTarget(hex(v.bep44.k_hex)).toString("hex")).toBe(v.bep44.target_sha1_hex);
    expect(createHash("sha1").update(hex(v.bep44.k_hex)).digest("hex")).toBe(v.bep44.target_sha1_hex);
    const rust = v.rust_style_compressed;
    const dns = hex(rust.dns_packet_hex);
    const signable = bep44Signable(v.bep44.seq, dns);
    expect(signable.subarray(0, signable.length - dns.length).toString()).toBe(rust.signable_prefix_utf8);
    expect(verifyEd25519(hex(rust.signature_hex), signable, hex(v.bep44.k_hex))).toBe(true);
    expect(verifyEd25519(hex(rust.signature_hex), bep44Signable(v.bep44.seq + 1, dns), hex(v.bep44.k_hex))).toBe(false);
    expect(verifyEd25519(Buffer.alloc(10), signable, hex(v.bep44.k_hex))).toBe(false);
    expect(verifyEd25519(hex(rust.signature_hex), signable, hex(vectors.invalid_public_key.public_key_hex))).toBe(
      false,
    );
  });
});

describe("signed packets", () => {
  const v = vectors.signed_packet;
  const publicKey = hex(vectors.keypair_seed_zero.public_key_hex);

  it("parses and verifies the Rust-style compressed packet", () => {
    const rust = v.rust_style_compressed;
    const canonical = hex(rust.canonical_signed_packet_hex);
    expect(canonical.length).toBe(rust.canonical_length);
    expect(toHex(canonical.subarray(0, 32))).toBe(vectors.keypair_seed_zero.public_key_hex);
    const payload = hex(rust.relay_payload_hex);
    expect(toHex(canonical.subarray(32))).toBe(rust.relay_payload_hex);

    const verified = verifyPayload(publicKey, payload);
    expect(verified.timestamp).toBe(v.inputs.timestamp_us);
    expect(toHex(verified.signature)).toBe(rust.signature_hex);
    expect(toHex(verified.dns)).toBe(rust.dns_packet_hex);
    expect(toHex(verified.bytes)).toBe(rust.relay_payload_hex);
    expect(answers(verified.packet.packet())).toEqual([
      [v.inputs.normalized_names[0], "A", 30, "1.1.1.1"],
      [v.inputs.normalized_names[1], "TXT", 30, "hello"],
    ]);
    expect(txtRecords(verified, "_foo").map((data) => Buffer.from(data).toString())).toEqual(["hello"]);
    expect(verified.packet.resourceRecords("_derp_region.iroh")).toHaveLength(1);
  });

  it("pkarr-js signs the uncompressed form of the same records byte for byte, and it verifies too", () => {
    const js = v.pkarr_js_1_3_0_uncompressed;
    const packet: Packet = {
      type: "response",
      id: 0,
      flags: 0,
      answers: v.inputs.records.map(
        (record: { name: string; type: "A" | "TXT"; ttl: number; data: string }) =>
          ({ name: record.name, type: record.type, class: "IN", ttl: record.ttl, data: record.data }) as Answer,
      ),
    };
    const signed = SignedPacket.fromPacket(generateKeyPair(SEED_ZERO), packet, {
      timestamp: v.inputs.timestamp_us as unknown as object,
    });
    expect(toHex(signed.bytes())).toBe(js.relay_payload_hex);
    const verified = verifyPayload(publicKey, hex(js.relay_payload_hex));
    expect(toHex(verified.dns)).toBe(js.dns_packet_hex);
    expect(answers(verified.packet.packet())).toEqual([
      [v.inputs.normalized_names[0], "A", 30, "1.1.1.1"],
      [v.inputs.normalized_names[1], "TXT", 30, "hello"],
    ]);
  });

  it("parses the CNAME packet with compressed names inside rdata", () => {
    const c = vectors.cname_packet;
    const verified = verifyPayload(publicKey, hex(c.canonical_signed_packet_hex).subarray(32));
    const origin = vectors.keypair_seed_zero.z32;
    expect(answers(verified.packet.packet())).toEqual([
      [origin, "CNAME", 300, "example.com"],
      [`www.${origin}`, "CNAME", 300, "example.com"],
    ]);
    expect(toHex(verified.signature)).toBe(c.signature_hex);
  });

  it("parses the empty packet with timestamp 42", () => {
    const e = vectors.empty_packet;
    const verified = verifyPayload(publicKey, hex(e.canonical_signed_packet_hex).subarray(32));
    expect(verified.timestamp).toBe(42);
    expect(verified.packet.packet().answers ?? []).toHaveLength(0);
    expect(toHex(verified.dns)).toBe(e.dns_packet_hex);
  });

  it("rejects the Rust packet under another key, tampered, truncated or oversized", () => {
    const payload = hex(v.rust_style_compressed.relay_payload_hex);
    const other = generateKeyPair().publicKey;
    expect(() => verifyPayload(other, payload)).toThrow(/signature does not verify/);
    const tampered = Buffer.from(payload);
    tampered.writeUInt8(tampered.readUInt8(tampered.length - 1) ^ 1, tampered.length - 1);
    expect(() => verifyPayload(publicKey, tampered)).toThrow(IntegrityError);
    const olderSeq = Buffer.from(payload);
    olderSeq.writeBigUInt64BE(BigInt(v.inputs.timestamp_us - 1), 64);
    expect(() => verifyPayload(publicKey, olderSeq)).toThrow(/signature does not verify/);
    expect(() => verifyPayload(publicKey, payload.subarray(0, 71))).toThrow(/too short/);
    const hugeSeq = Buffer.from(payload);
    hugeSeq.writeBigUInt64BE(2n ** 63n, 64);
    expect(() => verifyPayload(publicKey, hugeSeq)).toThrow(/timestamp is out of range/);
    expect(() => verifyPayload(publicKey, Buffer.alloc(72 + MAX_DNS_BYTES + 1))).toThrow(/too large/);
  });

  it("normalises names as pkarr's normalize_names does", () => {
    const n = vectors.normalize_names;
    // The vector's origin has no published seed: replay the cases with the seed-zero origin.
    const origin = vectors.keypair_seed_zero.z32;
    for (const [input, expected] of n.cases as [string, string][]) {
      const name = input.replaceAll(n.origin, origin);
      const payload = signPacket(SEED_ZERO, [{ name, data: Buffer.from("x") }], 1_700_000_000_000_000);
      const verified = verifyPayload(publicKey, payload.bytes);
      expect(verified.packet.packet().answers?.[0]?.name).toBe(expected.replaceAll(n.origin, origin));
    }
  });

  it("our uncompressed packets round-trip binary TXT data split at 255 bytes", () => {
    const data = Buffer.from(Array.from({ length: 700 }, (_, i) => (i * 7) & 0xff));
    const payload = signPacket(SEED_ZERO, [{ name: "_ccbundle", data }], 1_700_000_000_000_001);
    const verified = verifyPayload(publicKey, payload.bytes);
    expect(verified.timestamp).toBe(1_700_000_000_000_001);
    const [record] = txtRecords(verified, "_ccbundle");
    expect(Buffer.from(record!).equals(data)).toBe(true);
    const rr = verified.packet.resourceRecords("_ccbundle")[0] as { data: Buffer[] };
    expect(rr.data.map((part) => part.length)).toEqual([255, 255, 190]);
  });
});

describe("the 1000-byte DNS budget", () => {
  it("signs exactly 1000 bytes and refuses 1001", () => {
    const fit = entriesOfSize(MAX_DNS_BYTES);
    expect(dnsSize(fit)).toBe(MAX_DNS_BYTES);
    expect(() => assertFits(fit)).not.toThrow();
    expect(signPacket(SEED_ZERO, fit, 5).dns.length).toBe(MAX_DNS_BYTES);

    const over = entriesOfSize(MAX_DNS_BYTES + 1);
    expect(dnsSize(over)).toBe(MAX_DNS_BYTES + 1);
    const err = catchError(() => assertFits(over));
    expect(err).toBeInstanceOf(CcbError);
    expect((err as CcbError).exitCode).toBe(1);
    expect((err as CcbError).message).toMatch(/record too large: 1001 bytes of DNS, the limit is 1000/);
    expect((err as CcbError).hint).toBeTruthy();
    expect(() => signPacket(SEED_ZERO, over, 5)).toThrow(/record too large/);
    expect(() => assertFits(fit, 996)).toThrow(/limit is 996/);
  });

  it("refuses a timestamp that is not a positive safe integer", () => {
    expect(() => signPacket(SEED_ZERO, [], 0)).toThrow(/invalid record timestamp/);
    expect(() => signPacket(SEED_ZERO, [], 1.5)).toThrow(/invalid record timestamp/);
  });
});

function answers(packet: Packet): unknown[] {
  return (packet.answers ?? []).map((answer) => {
    const data = (answer as { data: unknown }).data;
    const text = Array.isArray(data)
      ? data.map((part) => Buffer.from(part as Uint8Array).toString()).join("")
      : Buffer.isBuffer(data)
        ? data.toString()
        : data;
    return [answer.name, answer.type, (answer as { ttl?: number }).ttl, text];
  });
}

function catchError(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error("expected an error");
}
