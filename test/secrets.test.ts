import { chmodSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decrypt, ScryptIdentity } from "../core/crypto/age/index.js";
import { decodeIdentityText } from "../core/crypto/identity-file.js";
import type { UserKey } from "../core/crypto/keys.js";
import { verifyPayload } from "../core/pointer/packet.js";
import { openSlots } from "../core/pointer/record.js";
import { storeLayout } from "../core/store-layout.js";
import { writeSession } from "./helpers/fixture.js";
import { Machine } from "./helpers/machine.js";
import { expectNoSecrets, expectOneLineError } from "./helpers/tree.js";

/**
 * No secret ever reaches a terminal, a log or a --json document: not the
 * passphrase, not a PIN, not the seed, not the age identity, not a blob key.
 * Identity files are 0600; a readable one is refused, and doctor says so.
 */

const PASSPHRASE = "pass-Zebra-Quartz-4417";
const PIN = "pin-90714233";
let alice: Machine;
let key: UserKey;
let nas: string;
let project: string;

beforeAll(async () => {
  alice = new Machine("alice-secrets", { CCBUNDLE_PASSPHRASE: PASSPHRASE, CCBUNDLE_PIN: PIN });
  nas = path.join(alice.root, "nas");
  mkdirSync(nas);
  alice.env.CCBUNDLE_STORE = nas;
  await alice.runOk(["init", "--json"]);
  const plain = await decrypt(readFileSync(path.join(alice.ccbHome, "identity")), [
    new ScryptIdentity(Buffer.from(PASSPHRASE)),
  ]);
  key = decodeIdentityText(Buffer.from(plain).toString("utf8"));
  project = alice.project("app");
  writeSession({ claudeDir: alice.claudeDir, projectDir: project, home: alice.home });
});

afterAll(() => alice?.cleanup());

describe("secrets stay out of every output", () => {
  it("through push, pull, export, import, status, doctor and their failures, human and --json", async () => {
    // Each command opens the passphrase-encrypted identity (scrypt, ~1 s): a lean but complete tour,
    // two at a time where they are independent.
    const bundle = path.join(alice.root, "s.ccb");
    await alice.runOk(["push", "--json"], { cwd: project });
    await alice.runOk(["pull", "--no-resume", "--project", project, "--json"]);
    await alice.runOk(["export", "--out", bundle, "--json"], { cwd: project });
    await alice.runOk(["import", bundle, "--no-resume", "--project", project]);
    await Promise.all([alice.runOk(["whoami", "--json"]), alice.run(["doctor", "--json"])]);
    // Failures: wrong passphrase, a store that is not there, a file that is not a bundle.
    const wrongEnv = { env: { CCBUNDLE_PASSPHRASE: `${PASSPHRASE}x` }, cwd: project };
    const wrong = await Promise.all([alice.run(["push"], wrongEnv), alice.run(["push", "--json"], wrongEnv)]);
    expect(wrong.map((r) => r.code)).toEqual([5, 5]);
    writeFileSync(path.join(alice.root, "junk.ccb"), "junk");
    const failed = await Promise.all([
      alice.run(["push", "--store", "/nonexistent/nas", "--json"], { cwd: project }),
      alice.run(["import", path.join(alice.root, "junk.ccb"), "--json"]),
    ]);
    expect(failed.map((r) => r.code)).toEqual([1, 5]);
    // The blob keys in the record are secrets too.
    const verified = verifyPayload(key.publicKey, readFileSync(path.join(nas, storeLayout.record(key.z32))));
    const blobKeys = (await openSlots(verified, key.z32, [key.ageIdentity()])).map(
      (slot) => slot.payload.blob?.age ?? "",
    );
    expect(blobKeys.length).toBeGreaterThan(0);
    expectNoSecrets(alice.outputs, [
      PASSPHRASE,
      PIN,
      Buffer.from(key.exportSeed()).toString("base64url"),
      Buffer.from(key.exportSeed()).toString("hex"),
      Buffer.from(key.exportSeed()).toString("base64"),
      key.ageIdentity().toString(),
      ...blobKeys,
    ]);
    // ~10 scrypt derivations on the critical path, ~2 s each here: room for a CI machine 3x slower.
  }, 180_000);

  it("the identity and exported keys are 0600; a group-readable identity is refused and doctor flags it", async () => {
    const identity = path.join(alice.ccbHome, "identity");
    expect(statSync(identity).mode & 0o777).toBe(0o600);
    const exported = path.join(alice.root, "exported.key");
    await alice.runOk(["key", "export", exported]);
    expect(statSync(exported).mode & 0o777).toBe(0o600);
    const ageId = path.join(alice.root, "age.key");
    await alice.runOk(["key", "export", ageId, "--age-identity"]);
    expect(statSync(ageId).mode & 0o777).toBe(0o600);
    chmodSync(identity, 0o640);
    try {
      const push = await alice.run(["push"], { cwd: project });
      expect(push.code).toBe(1);
      expectOneLineError(push.stderr);
      expect(push.stderr).toContain("chmod 600");
      const doctor = await alice.run(["doctor", "--json"]);
      expect(doctor.code).toBe(1);
      const identityCheck = JSON.parse(doctor.stdout).checks.find((c: { name: string }) => c.name === "identity");
      expect(identityCheck.ok).toBe(false);
      expect(identityCheck.hint).toContain("chmod 600");
    } finally {
      chmodSync(identity, 0o600);
    }
    expectNoSecrets(alice.outputs, [PASSPHRASE, key.ageIdentity().toString()]);
  });
});
