/**
 * Interoperability with the two reference implementations available here:
 * Debian's age/age-keygen binaries (Go, filippo.io/age) and typage (the
 * age-encryption npm package), in both directions, through the buffer API
 * and the streaming Transforms. Plus tamper and wrong-key behaviour.
 */

import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { Decrypter, Encrypter } from "age-encryption";
import { afterAll, describe, expect, it } from "vitest";
import {
  type AgeError,
  armor,
  createDecryptStream,
  createEncryptStream,
  decrypt,
  encrypt,
  type Identity,
  parseIdentityFile,
  type Recipient,
  ScryptIdentity,
  ScryptRecipient,
  X25519Identity,
  X25519Recipient,
} from "../core/crypto/age/index.js";
import { parseRecipient, UserKey } from "../core/crypto/keys.js";
import { IntegrityError } from "../core/errors.js";

const AGE = "/usr/bin/age";
const AGE_KEYGEN = "/usr/bin/age-keygen";
const MiB = 1024 * 1024;
const SIZES = [0, 1, 65535, 65536, 65537, 5 * MiB];

const dir = mkdtempSync(join(tmpdir(), "ccbundle-age-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function run(cmd: string, args: string[], input?: Uint8Array): Buffer {
  const r = spawnSync(cmd, args, { input, maxBuffer: 64 * MiB });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} exited ${r.status}: ${r.stderr.toString()}`);
  return r.stdout;
}

let fileCounter = 0;
function writeTemp(content: string | Uint8Array): string {
  const path = join(dir, `f${fileCounter++}`);
  writeFileSync(path, content, { mode: 0o600 });
  return path;
}

function* pieces(data: Uint8Array, size: number): Generator<Buffer> {
  for (let off = 0; off < data.length; off += size) yield Buffer.from(data.subarray(off, off + size));
}

async function collect(source: Readable, transform: NodeJS.ReadWriteStream): Promise<Buffer> {
  const got: Buffer[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      got.push(chunk);
      cb();
    },
  });
  await pipeline(source, transform, sink);
  return Buffer.concat(got);
}

function streamEncrypt(plaintext: Uint8Array, recipients: Recipient[], piece = MiB + 13): Promise<Buffer> {
  return collect(Readable.from(pieces(plaintext, piece)), createEncryptStream(recipients));
}

function streamDecrypt(file: Uint8Array, identities: Identity[], piece = 65536 + 3): Promise<Buffer> {
  return collect(Readable.from(pieces(file, piece)), createDecryptStream(identities));
}

const label = (n: number) => `${n} bytes`;

describe("against /usr/bin/age", () => {
  const ours = X25519Identity.generate();
  const oursFile = writeTemp(`# created by the ccbundle test suite\n${ours.toString()}\n`);
  const theirsFile = join(dir, "age-keygen.txt");
  run(AGE_KEYGEN, ["-o", theirsFile]);
  const theirRecipient = run(AGE_KEYGEN, ["-y", theirsFile]).toString().trim();

  it("age-keygen reads our identity and derives our recipient", () => {
    expect(run(AGE_KEYGEN, ["-y", oursFile]).toString().trim()).toBe(ours.recipient().toString());
  });

  it("we read age-keygen's identity file and derive its recipient", () => {
    const ids = parseIdentityFile(readFileSync(theirsFile, "utf8"));
    expect(ids).toHaveLength(1);
    expect(ids[0]?.recipient().toString()).toBe(theirRecipient);
    // And its exact secret string round-trips through our Bech32.
    const secretLine = readFileSync(theirsFile, "utf8")
      .split("\n")
      .find((l) => l.startsWith("AGE-SECRET-KEY-1"));
    expect(ids[0]?.toString()).toBe(secretLine);
  });

  for (const size of SIZES) {
    it(`ours encrypts, age -d decrypts: ${label(size)}`, async () => {
      const plaintext = randomBytes(size);
      const viaBuffer = await encrypt(plaintext, [ours.recipient()]);
      const viaStream = await streamEncrypt(plaintext, [ours.recipient()]);
      expect(run(AGE, ["-d", "-i", oursFile], viaBuffer).equals(plaintext)).toBe(true);
      expect(run(AGE, ["-d", "-i", oursFile], viaStream).equals(plaintext)).toBe(true);
      // Size is exactly header + nonce + plaintext + 16 bytes per chunk.
      const chunks = Math.max(1, Math.ceil(size / 65536));
      expect(viaStream.length - viaStream.indexOf("\n---") - 49 - 16).toBe(size + 16 * chunks);
    });

    it(`age -r encrypts, ours decrypts: ${label(size)}`, async () => {
      const plaintext = randomBytes(size);
      const file = run(AGE, ["-r", theirRecipient], plaintext);
      const ids = parseIdentityFile(readFileSync(theirsFile, "utf8"));
      expect(Buffer.from(await decrypt(file, ids)).equals(plaintext)).toBe(true);
      expect((await streamDecrypt(file, ids)).equals(plaintext)).toBe(true);
      expect((await streamDecrypt(file, ids, 7)).subarray(0, 4096).equals(plaintext.subarray(0, 4096))).toBe(true);
    });
  }

  it("armored files both ways", async () => {
    const plaintext = randomBytes(100_000);
    const armored = run(AGE, ["-a", "-r", ours.recipient().toString()], plaintext);
    expect(armored.toString("latin1").startsWith("-----BEGIN AGE ENCRYPTED FILE-----\n")).toBe(true);
    expect(Buffer.from(await decrypt(armored, [ours])).equals(plaintext)).toBe(true);
    expect((await streamDecrypt(armored, [ours], 1000)).equals(plaintext)).toBe(true);
    const oursArmored = armor(await encrypt(plaintext, [ours.recipient()]));
    expect(run(AGE, ["-d", "-i", oursFile], Buffer.from(oursArmored)).equals(plaintext)).toBe(true);
  });

  it("a file for two recipients opens with either key", async () => {
    const plaintext = randomBytes(70_000);
    const file = await encrypt(plaintext, [X25519Recipient.fromString(theirRecipient), ours.recipient()]);
    expect(run(AGE, ["-d", "-i", theirsFile], file).equals(plaintext)).toBe(true);
    expect(run(AGE, ["-d", "-i", oursFile], file).equals(plaintext)).toBe(true);
  });

  it("a UserKey's age identity decrypts, in age, what was encrypted to its z32 key", async () => {
    const user = UserKey.generate();
    const keyFile = writeTemp(`${user.ageIdentity().toString()}\n`);
    expect(run(AGE_KEYGEN, ["-y", keyFile]).toString().trim()).toBe(user.ageRecipient().toString());
    const plaintext = randomBytes(200_000);
    const file = await streamEncrypt(plaintext, [parseRecipient(user.z32)]);
    expect(run(AGE, ["-d", "-i", keyFile], file).equals(plaintext)).toBe(true);
    // And age encrypting to the age1 form of the same key opens with ours.
    const back = run(AGE, ["-r", parseRecipient(user.z32).toString()], plaintext);
    expect(Buffer.from(await decrypt(back, [user.ageIdentity()])).equals(plaintext)).toBe(true);
  });
});

describe("against the age-encryption npm package (typage)", () => {
  const ours = X25519Identity.generate();

  for (const size of SIZES) {
    it(`X25519 both ways: ${label(size)}`, async () => {
      const plaintext = randomBytes(size);
      const e = new Encrypter();
      e.addRecipient(ours.recipient().toString());
      const theirs = await e.encrypt(plaintext);
      expect(Buffer.from(await decrypt(theirs, [ours])).equals(plaintext)).toBe(true);
      expect((await streamDecrypt(theirs, [ours])).equals(plaintext)).toBe(true);

      const d = new Decrypter();
      d.addIdentity(ours.toString());
      expect(Buffer.from(await d.decrypt(await encrypt(plaintext, [ours.recipient()]))).equals(plaintext)).toBe(true);
      expect(
        Buffer.from(await d.decrypt(await streamEncrypt(plaintext, [ours.recipient()], 65536))).equals(plaintext),
      ).toBe(true);
    });

    it(`scrypt both ways: ${label(size)}`, async () => {
      const plaintext = randomBytes(size);
      const passphrase = "correct horse battery staple";
      const e = new Encrypter();
      e.setPassphrase(passphrase);
      e.setScryptWorkFactor(10);
      const theirs = await e.encrypt(plaintext);
      const id = new ScryptIdentity(Buffer.from(passphrase));
      expect(Buffer.from(await decrypt(theirs, [id])).equals(plaintext)).toBe(true);

      const d = new Decrypter();
      d.addPassphrase(passphrase);
      const file = await streamEncrypt(plaintext, [new ScryptRecipient(Buffer.from(passphrase), 10)]);
      expect(Buffer.from(await d.decrypt(file)).equals(plaintext)).toBe(true);
    });
  }

  it("scrypt at the default work factor (2^18)", async () => {
    const passphrase = Buffer.from("hunter2 hunter2");
    const file = await encrypt(Buffer.from("hello"), [new ScryptRecipient(passphrase)]);
    expect(Buffer.from(file).toString("latin1")).toMatch(/^age-encryption\.org\/v1\n-> scrypt \S{22} 18\n/);
    const d = new Decrypter();
    d.addPassphrase(passphrase.toString());
    expect(Buffer.from(await d.decrypt(file)).toString()).toBe("hello");
  });

  it("a file encrypted by typage to a passphrase and a key is impossible, and so is ours", async () => {
    await expect(
      encrypt(Buffer.from("x"), [new ScryptRecipient(Buffer.from("pw"), 10), ours.recipient()]),
    ).rejects.toThrow(/passphrase cannot be combined/);
  });
});

describe("streaming", () => {
  const id = X25519Identity.generate();

  it("decrypting releases each chunk as soon as it authenticates, not at the end", async () => {
    const plaintext = randomBytes(3 * 65536 + 5);
    const file = Buffer.from(await encrypt(plaintext, [id.recipient()]));
    const d = createDecryptStream([id]);
    const got: Buffer[] = [];
    d.on("data", (b: Buffer) => got.push(b));
    const done = new Promise((resolve, reject) => d.on("end", resolve).on("error", reject));
    // Header byte by byte, then all but the last 1000 bytes: chunk 2 is incomplete.
    for (let i = 0; i < 300; i++) d.write(file.subarray(i, i + 1));
    d.write(file.subarray(300, file.length - 1000));
    await new Promise((r) => setImmediate(r));
    expect(Buffer.concat(got).equals(plaintext.subarray(0, 2 * 65536))).toBe(true);
    d.end(file.subarray(file.length - 1000));
    await done;
    expect(Buffer.concat(got).equals(plaintext)).toBe(true);
  });

  it("encrypting emits header and full chunks before the input ends", async () => {
    const e = createEncryptStream([id.recipient()]);
    const got: Buffer[] = [];
    e.on("data", (b: Buffer) => got.push(b));
    const done = new Promise((resolve, reject) => e.on("end", resolve).on("error", reject));
    const plaintext = randomBytes(200_000);
    e.write(plaintext.subarray(0, 150_000));
    await new Promise((r) => setImmediate(r));
    const early = Buffer.concat(got);
    // Two full chunks sealed; the third (and possibly final) one is held back.
    expect(early.length - (early.indexOf("\n---") + 49 + 16)).toBe(2 * (65536 + 16));
    e.end(plaintext.subarray(150_000));
    await done;
    expect(Buffer.from(await decrypt(Buffer.concat(got), [id])).equals(plaintext)).toBe(true);
  });
});

describe("tampering and wrong keys", () => {
  const id = X25519Identity.generate();

  it("changing any single byte of a small file fails with IntegrityError", async () => {
    const plaintext = randomBytes(300);
    const file = Buffer.from(await encrypt(plaintext, [id.recipient()]));
    expect(Buffer.from(await decrypt(file, [id])).equals(plaintext)).toBe(true);
    const failures = new Map<string, number>();
    for (let i = 0; i < file.length; i++) {
      for (const mask of [0x01, 0x80]) {
        const bad = Buffer.from(file);
        bad[i] = (bad[i] as number) ^ mask;
        const err = await decrypt(bad, [id]).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(err, `byte ${i} ^ ${mask}`).toBeInstanceOf(IntegrityError);
        const kind = (err as AgeError).failure;
        failures.set(kind, (failures.get(kind) ?? 0) + 1);
      }
    }
    // Header bytes fail as header/no-match/hmac, payload bytes as payload.
    expect(failures.get("payload")).toBe(2 * (file.length - file.indexOf("\n---") - 49));
    expect(failures.get("hmac")).toBeGreaterThan(0);
    expect(failures.get("header")).toBeGreaterThan(0);
  });

  it("truncating or extending a file fails with IntegrityError", async () => {
    const file = Buffer.from(await encrypt(randomBytes(65536 + 100), [id.recipient()]));
    for (const cut of [1, 16, 100, 116, 117, file.length - 200]) {
      await expect(decrypt(file.subarray(0, file.length - cut), [id])).rejects.toBeInstanceOf(IntegrityError);
    }
    // After a short final chunk an extra byte just makes that chunk fail; after
    // a full-size final chunk it is recognisably trailing data.
    await expect(decrypt(Buffer.concat([file, Buffer.from([0])]), [id])).rejects.toThrow(/chunk 1 failed/);
    const full = Buffer.concat([await encrypt(randomBytes(2 * 65536), [id.recipient()]), Buffer.from([0])]);
    await expect(decrypt(full, [id])).rejects.toThrow(/trailing data/);
    await expect(streamDecrypt(full, [id])).rejects.toThrow(/trailing data/);
  });

  it("a wrong identity fails with 'not encrypted to your identity', exit code 5", async () => {
    const file = await encrypt(Buffer.from("secret"), [id.recipient()]);
    const other = X25519Identity.generate();
    const err = await decrypt(file, [other]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IntegrityError);
    expect((err as AgeError).message).toMatch(/not encrypted to your identity/);
    expect((err as AgeError).exitCode).toBe(5);
    expect((err as AgeError).failure).toBe("no-match");
    expect((err as AgeError).hint).toBeTruthy();
    // The message never carries key material.
    expect((err as AgeError).message).not.toContain("AGE-SECRET-KEY");
    await expect(streamDecrypt(file, [other])).rejects.toThrow(/not encrypted to your identity/);
  });

  it("a wrong passphrase is a no-match too", async () => {
    const file = await encrypt(Buffer.from("secret"), [new ScryptRecipient(Buffer.from("right"), 10)]);
    const err = await decrypt(file, [new ScryptIdentity(Buffer.from("wrong"))]).catch((e: unknown) => e);
    expect((err as AgeError).failure).toBe("no-match");
    expect((err as AgeError).message).toMatch(/passphrase/);
  });

  it("a work factor above the limit is refused before any work", async () => {
    const file = await encrypt(Buffer.from("x"), [new ScryptRecipient(Buffer.from("pw"), 12)]);
    const err = await decrypt(file, [new ScryptIdentity(Buffer.from("pw"), 11)]).catch((e: unknown) => e);
    expect((err as AgeError).failure).toBe("header");
  });

  it("non-age input fails fast as a header failure", async () => {
    await expect(decrypt(Buffer.from("hello world\n"), [id])).rejects.toThrow(/not an age encrypted file/);
    const junk = randomBytes(4 * MiB);
    junk[0] = 0x78; // not "-" or blank: random input must not look armored
    await expect(streamDecrypt(junk, [id])).rejects.toThrow(/not an age encrypted file|header/);
    await expect(decrypt(Buffer.alloc(0), [id])).rejects.toBeInstanceOf(IntegrityError);
  });
});
