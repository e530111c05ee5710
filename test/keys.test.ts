/**
 * The user's key: one ed25519 seed, signing and (converted to X25519) age
 * decryption. Checked against RFC 8032 and libsodium vectors, against
 * OpenSSL's ed25519, and against an independent BigInt computation of the
 * Edwards-to-Montgomery map.
 */

import { spawnSync } from "node:child_process";
import { createHash, createPrivateKey, createPublicKey, randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import z32 from "z32";
import { decrypt, encrypt, X25519Identity } from "../core/crypto/age/index.js";
import {
  decodeZ32PublicKey,
  encodeZ32PublicKey,
  parseRecipient,
  recipientFromPublicKey,
  UserKey,
  verifyEd25519,
} from "../core/crypto/keys.js";
import { UsageError } from "../core/errors.js";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const unhex = (s: string) => new Uint8Array(Buffer.from(s, "hex"));

/** Ed25519 public key by OpenSSL, from a raw seed (PKCS#8 with the RFC 8410 prefix). */
function opensslPublicKey(seed: Uint8Array): Buffer {
  const der = Buffer.concat([Buffer.from("302e020100300506032b657004220420", "hex"), seed]);
  const spki = createPublicKey(createPrivateKey({ key: der, format: "der", type: "pkcs8" })).export({
    format: "der",
    type: "spki",
  });
  return spki.subarray(spki.length - 32);
}

// Independent Edwards -> Montgomery map: u = (1 + y) / (1 - y) mod p.
const P = 2n ** 255n - 19n;
function modPow(b: bigint, e: bigint): bigint {
  let r = 1n;
  b %= P;
  for (; e > 0n; e >>= 1n, b = (b * b) % P) if (e & 1n) r = (r * b) % P;
  return r;
}
function edwardsToMontgomery(pub: Uint8Array): Buffer {
  const le = Buffer.from(pub);
  le[31] = (le[31] as number) & 0x7f;
  const y = BigInt(`0x${Buffer.from(le).reverse().toString("hex")}`);
  const u = ((1n + y) * modPow((1n - y + P) % P, P - 2n)) % P;
  return Buffer.from(u.toString(16).padStart(64, "0"), "hex").reverse();
}

// libsodium's crypto_sign_ed25519_sk_to_curve25519: clamp(SHA-512(seed)[:32]).
function sodiumSecret(seed: Uint8Array): Buffer {
  const h = createHash("sha512").update(seed).digest().subarray(0, 32);
  h[0] = (h[0] as number) & 248;
  h[31] = ((h[31] as number) & 127) | 64;
  return h;
}

describe("UserKey", () => {
  it("matches RFC 8032 test 1 (keys and signature)", () => {
    const key = UserKey.fromSeed(unhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"));
    expect(hex(key.publicKey)).toBe("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
    const sig = key.sign(new Uint8Array(0));
    expect(hex(sig)).toBe(
      "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    );
    expect(verifyEd25519(key.publicKey, new Uint8Array(0), sig)).toBe(true);
  });

  it("matches libsodium's ed25519 -> curve25519 conversion vector", () => {
    const key = UserKey.fromSeed(unhex("421151a459faeade3d247115f94aedae42318124095afabe4d1451a559faedee"));
    expect(hex(key.ageRecipient().publicKey)).toBe("f1814f0e8ff1043d8a44d25babff3cedcae6c22c3edaa48f857ae70de2baae50");
    expect(hex(key.ageIdentity().recipient().publicKey)).toBe(
      "f1814f0e8ff1043d8a44d25babff3cedcae6c22c3edaa48f857ae70de2baae50",
    );
    const expectedSecret = X25519Identity.fromString(
      new X25519Identity(unhex("8052030376d47112be7f73ed7a019293dd12ad910b654455798b4667d73de166")).toString(),
    );
    expect(key.ageIdentity().toString()).toBe(expectedSecret.toString());
  });

  it("for 200 random seeds: X25519(converted seed) == converted ed25519 public key", () => {
    for (let i = 0; i < 200; i++) {
      const seed = randomBytes(32);
      const key = UserKey.fromSeed(seed);
      expect(hex(key.publicKey)).toBe(hex(opensslPublicKey(seed)));
      const fromSecret = key.ageIdentity().recipient().publicKey;
      const fromPublic = recipientFromPublicKey(key.publicKey).publicKey;
      expect(hex(fromSecret)).toBe(hex(fromPublic));
      expect(hex(fromPublic)).toBe(hex(edwardsToMontgomery(key.publicKey)));
      expect(key.ageIdentity().toString()).toBe(new X25519Identity(sodiumSecret(seed)).toString());
      expect(key.ageRecipient().toString()).toBe(parseRecipient(key.z32).toString());
    }
  });

  it("z32 is 52 characters and decodes back to the public key", () => {
    const key = UserKey.generate();
    expect(key.z32).toMatch(/^[ybndrfg8ejkmcpqxot1uwisza345h769]{52}$/);
    expect(hex(decodeZ32PublicKey(key.z32))).toBe(hex(key.publicKey));
    expect(encodeZ32PublicKey(key.publicKey)).toBe(key.z32);
    expect(hex(decodeZ32PublicKey(` ${key.z32.toUpperCase()}\n`))).toBe(hex(key.publicKey));
  });

  it("signs and verifies; verification rejects tampering and malformed input", () => {
    const key = UserKey.generate();
    const msg = randomBytes(100);
    const sig = key.sign(msg);
    expect(verifyEd25519(key.publicKey, msg, sig)).toBe(true);
    const badMsg = Buffer.from(msg);
    badMsg[0] = (badMsg[0] as number) ^ 1;
    expect(verifyEd25519(key.publicKey, badMsg, sig)).toBe(false);
    const badSig = Buffer.from(sig);
    badSig[63] = (badSig[63] as number) ^ 0x40;
    expect(verifyEd25519(key.publicKey, msg, badSig)).toBe(false);
    expect(verifyEd25519(key.publicKey, msg, sig.subarray(0, 63))).toBe(false);
    expect(verifyEd25519(UserKey.generate().publicKey, msg, sig)).toBe(false);
    expect(verifyEd25519(new Uint8Array(32), msg, sig)).toBe(false);
  });

  it("encrypts to its z32 key and decrypts with its age identity", async () => {
    const key = UserKey.generate();
    const file = await encrypt(Buffer.from("to myself"), [parseRecipient(key.z32)]);
    expect(Buffer.from(await decrypt(file, [key.ageIdentity()])).toString()).toBe("to myself");
    await expect(decrypt(file, [UserKey.generate().ageIdentity()])).rejects.toThrow(/not encrypted to your identity/);
  });

  it("exportSeed round-trips, and destroy() zeroes the seed", () => {
    const key = UserKey.generate();
    const seed = key.exportSeed();
    expect(hex(UserKey.fromSeed(seed).publicKey)).toBe(hex(key.publicKey));
    key.destroy();
    expect(hex(key.exportSeed())).toBe("00".repeat(32));
  });

  it("rejects seeds of the wrong size", () => {
    expect(() => UserKey.fromSeed(new Uint8Array(31))).toThrow(UsageError);
    expect(() => UserKey.fromSeed(new Uint8Array(64))).toThrow(UsageError);
  });
});

describe("parseRecipient / decodeZ32PublicKey", () => {
  const key = UserKey.generate();

  it("accepts a z32 key, a pk: URI and an age1 recipient", () => {
    const expected = key.ageRecipient().toString();
    expect(parseRecipient(key.z32).toString()).toBe(expected);
    expect(parseRecipient(`pk:${key.z32}`).toString()).toBe(expected);
    expect(parseRecipient(expected).toString()).toBe(expected);
  });

  it.each([
    ["empty", ""],
    ["garbage", "hello"],
    ["an identity", "AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX"],
    ["a bad age1 checksum", "age1zvkyg2lqzraa2lnjvqej32nkuu0ues2s82hzrye869xeexvn73equnujwq"],
    ["a post-quantum recipient", "age1pq1x34nzsvr0rxjsgdn8zgyhfe8j7ceq5r9rdelk"],
    ["51 z32 characters", "ybndrfg8ejkmcpqxot1uwisza345h769ybndrfg8ejkmcpqxot1"],
  ])("rejects %s with a UsageError and a hint", (_name, input) => {
    let err: unknown;
    try {
      parseRecipient(input);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(UsageError);
    expect((err as UsageError).exitCode).toBe(2);
    expect((err as UsageError).hint).toBeTruthy();
    // Never echo what was typed: it could be a secret key.
    if (input.length > 8) expect((err as UsageError).message).not.toContain(input);
  });

  it("rejects invalid z32 keys", () => {
    const bad = (s: string) => expect(() => decodeZ32PublicKey(s)).toThrow(UsageError);
    bad(key.z32.slice(0, 51)); // too short
    bad(`${key.z32}y`); // too long
    bad(`${key.z32.slice(0, 51)}0`); // '0' is not in the z-base-32 alphabet
    // Non-canonical: the last character carries 4 padding bits that must be zero.
    const last = key.z32.charAt(51);
    const alphabet = "ybndrfg8ejkmcpqxot1uwisza345h769";
    const v = alphabet.indexOf(last);
    bad(key.z32.slice(0, 51) + alphabet.charAt(v ^ 1));
    // The identity point (small order) and a y with no point on the curve.
    const identity = new Uint8Array(32);
    identity[0] = 1;
    bad(z32.encode(identity));
    const notOnCurve = new Uint8Array(32);
    notOnCurve[0] = 2;
    bad(z32.encode(notOnCurve));
  });
});

describe("X25519 wrapping under load", () => {
  // On Node 20.20, `generateKeyPairSync` keys exported as JWK could deadlock their thread (a GC
  // inside the export destroying a key-generation job that takes the export's lock): a backup hung
  // at 0% CPU, deaf to signals. Ephemeral keys are imported from random bytes instead. A child
  // process with a deadline, so a hang fails this test instead of stalling the suite.
  it("wraps thousands of file keys (fresh ephemeral key each) without hanging", () => {
    const module = new URL("../dist/core/crypto/age/index.js", import.meta.url).href;
    const script = `
      const { X25519Identity } = await import(${JSON.stringify(module)});
      const recipient = X25519Identity.generate().recipient();
      const shares = new Set();
      for (let i = 0; i < 3000; i++) shares.add(recipient.wrapFileKey(new Uint8Array(16))[0].args[0]);
      console.log(shares.size);`;
    const result = spawnSync(process.execPath, ["--input-type=module", "-e", script], {
      encoding: "utf8",
      timeout: 60_000,
    });
    expect(result.signal, "the wrapping loop hung").toBeNull();
    expect(result.stderr).toBe("");
    // Every stanza has its own ephemeral share.
    expect(result.stdout.trim()).toBe("3000");
  }, 70_000);
});
