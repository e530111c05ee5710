/**
 * core/crypto/ed25519.ts (OpenSSL + a little BigInt) against @noble/curves,
 * which it replaced on the CLI's paths: same public keys, signatures,
 * Montgomery conversions, point validation, small-order detection and strict
 * verification — including signatures whose R carries a torsion component,
 * which only the cofactored equation accepts. verifySodium against libsodium
 * (what pkarr verifies records with), on the same inputs.
 */

import { randomBytes } from "node:crypto";
import { ed25519 } from "@noble/curves/ed25519.js";
import { sha512 } from "@noble/hashes/sha2.js";
import sodium from "sodium-universal";
import { describe, expect, it } from "vitest";
import {
  isPoint,
  isSmallOrderPoint,
  montgomeryPublic,
  montgomerySecret,
  publicKeyFromSeed,
  signWithSeed,
  verifySodium,
  verifyStrict,
} from "../core/crypto/ed25519.js";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const L = 2n ** 252n + 27742317777372353535851937790883648493n;
const le = (b: Uint8Array) => BigInt(`0x${Buffer.from(b).reverse().toString("hex")}`);

/** The secret scalar of an ed25519 seed (RFC 8032 §5.1.5: clamped lower half of SHA-512), reduced mod L. */
function secretScalar(seed: Uint8Array): bigint {
  const h = sha512(seed);
  h[0]! &= 248;
  h[31]! &= 127;
  h[31]! |= 64;
  return le(h.subarray(0, 32)) % L;
}
const toLE = (n: bigint) => Buffer.from(n.toString(16).padStart(64, "0"), "hex").reverse();

/** The 8 small-order points, the identity with the sign bit, and encodings with y ≥ p. */
const EDGE_POINTS = [
  "0100000000000000000000000000000000000000000000000000000000000000",
  "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
  "0000000000000000000000000000000000000000000000000000000000000000",
  "0000000000000000000000000000000000000000000000000000000000000080",
  "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
  "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
  "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
  "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
  "0100000000000000000000000000000000000000000000000000000000000080",
  "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
  "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
  "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
].map((h) => Buffer.from(h, "hex"));

function noblePoint(bytes: Uint8Array) {
  try {
    return ed25519.Point.fromBytes(bytes);
  } catch {
    return undefined;
  }
}

function attempt<T>(fn: () => T): T | "throws" {
  try {
    return fn();
  } catch {
    return "throws";
  }
}

describe("ed25519 through OpenSSL", () => {
  it("derives, signs, converts and verifies as noble does for random seeds", () => {
    for (let i = 0; i < 100; i++) {
      const seed = randomBytes(32);
      const pub = ed25519.getPublicKey(seed);
      expect(hex(publicKeyFromSeed(seed))).toBe(hex(pub));
      const message = randomBytes(i * 3);
      const sig = ed25519.sign(message, seed);
      expect(hex(signWithSeed(message, seed))).toBe(hex(sig));
      expect(hex(montgomerySecret(seed))).toBe(hex(ed25519.utils.toMontgomerySecret(seed)));
      expect(hex(montgomeryPublic(pub))).toBe(hex(ed25519.utils.toMontgomery(pub)));
      expect(verifyStrict(pub, message, sig)).toBe(true);
      const bad = Uint8Array.from(sig);
      bad[i % 64]! ^= 1 << (i % 8);
      expect(verifyStrict(pub, message, bad)).toBe(ed25519.verify(bad, message, pub, { zip215: false }));
    }
  });

  it("validates points, small order and the Montgomery map as noble does", () => {
    const near = Array.from({ length: 300 }, () => {
      const b = randomBytes(32);
      b.fill(0xff, 1, 31);
      return b;
    });
    const samples = [...EDGE_POINTS, ...near, ...Array.from({ length: 1500 }, () => randomBytes(32))];
    // Distinct encodings: a near sample is the edge point ecff…ff7f (y = -1) once in 65536 draws.
    const smallOrder = new Set<string>();
    for (const bytes of samples) {
      const point = noblePoint(bytes);
      expect(isPoint(bytes), hex(bytes)).toBe(point !== undefined);
      expect(isSmallOrderPoint(bytes), hex(bytes)).toBe(point?.isSmallOrder());
      if (point?.isSmallOrder()) smallOrder.add(hex(bytes));
      if (point) {
        const ours = attempt(() => hex(montgomeryPublic(bytes)));
        expect(ours, hex(bytes)).toBe(attempt(() => hex(ed25519.utils.toMontgomery(bytes))));
      }
    }
    expect(smallOrder.size).toBe(8);
  });

  it("accepts a signature whose R has a torsion component (cofactored), refuses small-order keys", () => {
    const seed = randomBytes(32);
    const pub = ed25519.getPublicKey(seed);
    const a = secretScalar(seed);
    const message = Buffer.from("torsion");
    for (const torsion of EDGE_POINTS.slice(1, 8)) {
      const r = le(randomBytes(32)) % L;
      const R = ed25519.Point.BASE.multiply(r).add(ed25519.Point.fromBytes(torsion)).toBytes();
      const k = le(sha512(Buffer.concat([R, pub, message]))) % L;
      const sig = Buffer.concat([R, toLE((r + k * a) % L)]);
      expect(ed25519.verify(sig, message, pub, { zip215: false })).toBe(true);
      expect(verifyStrict(pub, message, sig)).toBe(true);
    }
    for (const small of EDGE_POINTS.slice(0, 8)) {
      expect(verifyStrict(small, message, Buffer.alloc(64))).toBe(false);
    }
  });

  it("verifySodium agrees with libsodium on good, corrupted, torsion-R and small-order inputs", () => {
    const libsodium = (pub: Uint8Array, message: Uint8Array, sig: Uint8Array) =>
      sodium.crypto_sign_verify_detached(Buffer.from(sig), Buffer.from(message), Buffer.from(pub));
    const seed = randomBytes(32);
    const pub = ed25519.getPublicKey(seed);
    const a = secretScalar(seed);
    const cases: Array<[Uint8Array, Uint8Array, Uint8Array]> = [];
    for (let i = 0; i < 60; i++) {
      const message = randomBytes(i);
      const sig = ed25519.sign(message, seed);
      cases.push([pub, message, sig]);
      const bad = Uint8Array.from(sig);
      bad[(i * 7) % 64]! ^= 1 << (i % 8);
      cases.push([pub, message, bad]);
      // S + L: the same point equation, a non-canonical scalar.
      cases.push([pub, message, Buffer.concat([sig.subarray(0, 32), toLE(le(sig.subarray(32)) + L)])]);
    }
    const message = Buffer.from("torsion");
    for (const torsion of EDGE_POINTS) {
      const r = le(randomBytes(32)) % L;
      const point = noblePoint(torsion);
      if (!point) continue;
      const R = ed25519.Point.BASE.multiply(r).add(point).toBytes();
      const k = le(sha512(Buffer.concat([R, pub, message]))) % L;
      cases.push([pub, message, Buffer.concat([R, toLE((r + k * a) % L)])]);
      cases.push([torsion, message, Buffer.concat([torsion, Buffer.alloc(32)])]);
      cases.push([pub, message, Buffer.concat([torsion, toLE(a % L)])]);
    }
    for (const [key, msg, sig] of cases) {
      expect(verifySodium(key, msg, sig), `${hex(key)} ${hex(sig)}`).toBe(libsodium(key, msg, sig));
    }
  });
});
