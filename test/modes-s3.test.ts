import { writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type FixtureSession, writeSession } from "./helpers/fixture.js";
import { Machine } from "./helpers/machine.js";
import { startRelay, type TestRelay } from "./helpers/relay-server.js";
import { type S3rverHandle, startS3rver } from "./helpers/s3rver.js";

/**
 * A PIN handoff through an S3 store (s3rver on 127.0.0.1) to someone with no
 * ccbundle identity and no AWS credentials: the presigned link in the record
 * is their only way to the blob. It also shows the limit of --burn for such a
 * receiver: they cannot delete the blob, so only the sender's revoke ends it.
 */

let s3: S3rverHandle;
let relay: TestRelay;
let alice: Machine;
let pat: Machine;
let session: FixtureSession;
let project: string;
let aliceKey: string;

// The AWS chain must not wander off: no developer ~/.aws files, no instance-metadata probe.
const noAwsFiles = (m: string) => ({
  AWS_EC2_METADATA_DISABLED: "true",
  AWS_CONFIG_FILE: path.join("/nonexistent", m, "config"),
  AWS_SHARED_CREDENTIALS_FILE: path.join("/nonexistent", m, "credentials"),
});

beforeAll(async () => {
  [s3, relay] = await Promise.all([startS3rver(), startRelay()]);
  alice = new Machine("alice-s3", {
    CCBUNDLE_RELAYS: relay.url,
    CCBUNDLE_STORE: s3.url("ccbundle", "team"),
    AWS_ACCESS_KEY_ID: "S3RVER",
    AWS_SECRET_ACCESS_KEY: "S3RVER",
    ...noAwsFiles("alice"),
  });
  pat = new Machine("pat-s3", { CCBUNDLE_RELAYS: relay.url, ...noAwsFiles("pat") });
  await alice.runOk(["init", "--no-passphrase"]);
  aliceKey = (await alice.runOk(["whoami"])).stdout.trim();
  project = alice.project("work/api");
  session = writeSession({ claudeDir: alice.claudeDir, projectDir: project, home: alice.home });
}, 60_000);

afterAll(async () => {
  alice?.cleanup();
  pat?.cleanup();
  await relay?.close();
  await s3?.stop();
});

describe("PIN handoff through S3 to a receiver without credentials", () => {
  it("pulls through the presigned link; burn cannot delete the blob, revoke can", async () => {
    const env = { CCBUNDLE_PIN: "harbor-lantern-9" };
    const pushed = JSON.parse((await alice.runOk(["push", "--pin", "--burn", "--json"], { cwd: project, env })).stdout);
    expect(pushed).toMatchObject({ mode: "pin", presigned: true });
    expect(pushed.recordBytes).toBeLessThanOrEqual(1000);

    const target = pat.project("inbox/api");
    const first = await pat.runOk(["pull", aliceKey, "--pin", "--project", target, "--no-resume", "--json"], { env });
    const doc = JSON.parse(first.stdout);
    expect(doc.sessions[0].sessionId).toBe(session.id);
    expect(doc.burned).toBe(false);
    expect(doc.warnings.join("\n")).toMatch(/could not delete the picked-up bundle.*no AWS credentials/);

    // What burn cannot guarantee: without delete rights, the handoff can be pulled again...
    const second = await pat.run(["pull", aliceKey, "--pin", "--project", target, "--no-resume", "--json"], { env });
    expect(second.code, second.stderr).toBe(0);
    // ...until the sender revokes it, which deletes the blob and leaves a tombstone the PIN opens.
    const revoked = JSON.parse((await alice.runOk(["revoke", "--json"])).stdout);
    expect(revoked.revoked.map((r: { label: string }) => r.label)).toEqual(["by PIN"]);
    const third = await pat.run(["pull", aliceKey, "--pin", "--project", target, "--no-resume"], { env });
    expect(third.code).toBe(5);
    expect(third.stderr).toMatch(/^ccbundle: this handoff was revoked/);
  });
});

describe("a store URL with profile=NAME (credentials from ~/.aws/credentials)", () => {
  it("revoke deletes the bundle with that profile, though the record names the store without it", async () => {
    const carol = new Machine("carol-s3", { CCBUNDLE_RELAYS: relay.url, AWS_EC2_METADATA_DISABLED: "true" });
    try {
      // Only the `nas` profile has keys: the default chain finds none.
      const credentials = path.join(carol.root, "aws-credentials");
      writeFileSync(credentials, "[nas]\naws_access_key_id = S3RVER\naws_secret_access_key = S3RVER\n", {
        mode: 0o600,
      });
      carol.env.AWS_SHARED_CREDENTIALS_FILE = credentials;
      carol.env.AWS_CONFIG_FILE = path.join(carol.root, "no-aws-config");
      const store = `${s3.url("ccbundle", "carol")}&profile=nas`;
      await carol.runOk(["init", "--no-passphrase"]);
      const where = carol.project("api");
      writeSession({ claudeDir: carol.claudeDir, projectDir: where, home: carol.home });
      const pushed = JSON.parse((await carol.runOk(["push", "--store", store, "--json"], { cwd: where })).stdout);
      expect(pushed.store).not.toContain("profile");
      const revoked = JSON.parse((await carol.runOk(["revoke", "--store", store, "--json"])).stdout);
      expect(revoked.warnings).toEqual([]);
      expect(revoked.revoked.map((r: { blobDeleted: boolean }) => r.blobDeleted)).toEqual([true]);
      // With keys in the environment as well, the profile still wins, and the SDK's nine-line
      // "Multiple credential sources detected" warning stays off stderr.
      const doctor = await carol.run(["doctor", "--store", store], {
        env: { AWS_ACCESS_KEY_ID: "WRONG", AWS_SECRET_ACCESS_KEY: "WRONG" },
      });
      // ...and doctor says which keys the store saw: the profile's, not the environment's.
      expect(doctor.stdout).toMatch(/store reachable.*with the credentials from profile nas \(~\/\.aws\/credentials/);
      expect(doctor.stdout).not.toContain("WRONG");
      expect(doctor.stderr).not.toContain("Multiple credential sources");
      expect(doctor.stdout).not.toMatch(/FAIL store/);
    } finally {
      carol.cleanup();
    }
  });
});
