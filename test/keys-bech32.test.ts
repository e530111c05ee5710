/**
 * Bech32 as age uses it for key strings: BIP 173 vectors, the age spec's
 * example key pair, and no 90-character limit (post-quantum recipients).
 */

import { generateHybridIdentity, identityToRecipient } from "age-encryption";
import { describe, expect, it } from "vitest";
import { bech32, parseIdentityFile, X25519Identity, X25519Recipient } from "../core/crypto/age/index.js";
import { UsageError } from "../core/errors.js";

describe("bech32", () => {
  it.each([
    "A12UEL5L",
    "a12uel5l",
    "an83characterlonghumanreadablepartthatcontainsthenumber1andtheexcludedcharactersbio1tt5tgs",
    "abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw",
    `11${"q".repeat(82)}c8247j`,
    "split1checkupstagehandshakeupstreamerranterredcaperred2y9e3w",
    "?1ezyfcl",
    // Over BIP 173's 90 characters: invalid there, valid for age.
    "an84characterslonghumanreadablepartthatcontainsthenumber1andtheexcludedcharactersbio1569pvx",
  ])("accepts BIP 173 valid string %s and re-encodes it", (s) => {
    const { hrp, data } = bech32.decode(s);
    const upper = s.toUpperCase() === s && s.toLowerCase() !== s;
    expect(bech32.encode(hrp, data, upper)).toBe(s);
  });

  it.each([
    ["HRP character out of range", "\x201nwldj5"],
    ["DEL in HRP", "\x7f1axkwrx"],
    ["non-ASCII in HRP", "\x801eym55h"],
    ["no separator", "pzry9x0s0muk"],
    ["empty HRP", "1pzry9x0s0muk"],
    ["invalid data character", "x1b4n0q5v"],
    ["too short checksum", "li1dgmt3"],
    ["invalid checksum character", "de1lg7wt\xff"],
    ["checksum over uppercase HRP", "A1G7SGD8"],
    ["empty HRP (2)", "10a06t8"],
    ["empty HRP (3)", "1qzzfhee"],
    ["mixed case", "A12uEL5L"],
    ["non-zero padding bits", "age1zvkyg2lqzraa2lnjvqej32nkuu0ues2s82hzrye869xeexvn73equnujwl"],
  ])("rejects %s", (_why, s) => {
    expect(() => bech32.decode(s)).toThrow(UsageError);
  });

  it("matches the age spec's example identity and recipient", () => {
    const id = X25519Identity.fromString("AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX");
    expect(id.recipient().toString()).toBe("age1zvkyg2lqzraa2lnjvqej32nkuu0ues2s82hzrye869xeexvn73equnujwj");
    expect(id.toString()).toBe("AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX");
  });

  it("has no length limit: a ~1950-character post-quantum recipient round-trips", async () => {
    const recipient = await identityToRecipient(await generateHybridIdentity());
    expect(recipient.length).toBeGreaterThan(1900);
    const { hrp, data } = bech32.decode(recipient);
    expect(hrp).toBe("age1pq");
    expect(data.length).toBe(1216);
    expect(bech32.encode(hrp, data)).toBe(recipient);
  });

  it("age keys: recipients are lowercase only, identities uppercase only", () => {
    const id = X25519Identity.generate();
    const r = id.recipient().toString();
    expect(r).toMatch(/^age1[02-9ac-hj-np-z]{58}$/);
    expect(X25519Recipient.fromString(r).toString()).toBe(r);
    expect(() => X25519Recipient.fromString(r.toUpperCase())).toThrow(UsageError);
    expect(id.toString()).toMatch(/^AGE-SECRET-KEY-1[02-9AC-HJ-NP-Z]{58}$/);
    expect(() => X25519Identity.fromString(id.toString().toLowerCase())).toThrow(UsageError);
    // A recipient is not an identity and vice versa.
    expect(() => X25519Identity.fromString(r)).toThrow(UsageError);
    expect(() => X25519Recipient.fromString(id.toString())).toThrow(UsageError);
  });

  it("identity files: comments and blank lines are skipped; a bad line is an error without the key in it", () => {
    const a = X25519Identity.generate();
    const b = X25519Identity.generate();
    const ids = parseIdentityFile(`# created: now\r\n# public key: x\r\n\r\n${a.toString()}\r\n${b.toString()}\n`);
    expect(ids.map((i) => i.toString())).toEqual([a.toString(), b.toString()]);
    // Change the checksum's last character (to one it is not, or the line would still be valid 1 time in 32).
    const last = a.toString().slice(-1);
    const broken = `${a.toString().slice(0, -1)}${last === "Q" ? "P" : "Q"}`;
    let err: unknown;
    try {
      parseIdentityFile(broken);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(UsageError);
    expect((err as Error).message).not.toContain(broken.slice(16, 40));
    expect(() => parseIdentityFile("# nothing here\n")).toThrow(/no age identity/);
  });
});
