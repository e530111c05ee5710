import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { withSameIdentity } from "./helpers/backup.js";
import { type FixtureSession, writeSession } from "./helpers/fixture.js";
import { Machine } from "./helpers/machine.js";
import { type S3rverHandle, startS3rver } from "./helpers/s3rver.js";

/** The whole backup cycle against an S3 store (a real s3rver on 127.0.0.1): backup, incremental, prune, restore. */

let s3: S3rverHandle;
let alice: Machine;
const sessions: FixtureSession[] = [];
// s3rver wants the access key S3RVER; nothing may reach the developer's AWS files or instance metadata.
const awsEnv = {
  AWS_ACCESS_KEY_ID: "S3RVER",
  AWS_SECRET_ACCESS_KEY: "S3RVER",
  AWS_EC2_METADATA_DISABLED: "true",
  AWS_CONFIG_FILE: path.join(os.tmpdir(), "ccb-no-aws-config"),
  AWS_SHARED_CREDENTIALS_FILE: path.join(os.tmpdir(), "ccb-no-aws-credentials"),
};

beforeAll(async () => {
  s3 = await startS3rver({ buckets: ["ccbundle"] });
  alice = new Machine("alice", { ...awsEnv, CCBUNDLE_STORE: s3.url("ccbundle", "alice-backup") });
  await alice.runOk(["init", "--no-passphrase"]);
  const project = alice.project("work/app");
  for (let i = 0; i < 6; i++) {
    sessions.push(writeSession({ claudeDir: alice.claudeDir, projectDir: project, home: alice.home, padding: 5000 }));
  }
});

afterAll(async () => {
  alice?.cleanup();
  await s3?.stop();
});

describe("backups in an S3 store", () => {
  it("backs up, skips what did not change, prunes and restores", async () => {
    const firstRun = await alice.runOk(["backup", "--json"]);
    // Nothing on stderr: not even the AWS SDK's warning about Node versions (cli/main.ts turns it off).
    expect(firstRun.stderr).toBe("");
    const first = JSON.parse(firstRun.stdout);
    expect(first.sessions).toMatchObject({ uploaded: 6, failed: 0, inSnapshot: 6 });
    expect(first.store).toBe(`s3://ccbundle/alice-backup?endpoint=${s3.endpoint}`);
    const unchanged = JSON.parse((await alice.runOk(["backup", "--json"])).stdout);
    expect(unchanged.sessions).toMatchObject({ uploaded: 0, unchanged: 6 });
    writeSession({
      claudeDir: alice.claudeDir,
      projectDir: sessions[0]!.cwd,
      home: alice.home,
      sessionId: sessions[0]!.id,
      turns: 7,
    });
    const second = JSON.parse((await alice.runOk(["backup", "--json"])).stdout);
    expect(second.sessions).toMatchObject({ uploaded: 1, unchanged: 5 });

    const pruned = JSON.parse((await alice.runOk(["prune", "--keep-last", "1", "--grace", "0", "--json"])).stdout);
    expect(pruned.snapshots.removed).toEqual([first.snapshot]);
    expect(pruned.blobs).toMatchObject({ removed: 1, unknown: 0 });

    const bob = await withSameIdentity(alice, "bob", alice.env);
    try {
      const restored = JSON.parse((await bob.runOk(["restore", "--all", "--json"])).stdout);
      expect(restored).toMatchObject({ ok: true, snapshot: second.snapshot });
      expect(restored.sessions.map((s: { sessionId: string }) => s.sessionId).sort()).toEqual(
        sessions.map((s) => s.id).sort(),
      );
    } finally {
      bob.cleanup();
    }
  });
});
