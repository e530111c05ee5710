import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { cpSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { projectFolderName } from "../core/claude/paths.js";
import type { UserKey } from "../core/crypto/keys.js";
import { storeLayout } from "../core/store-layout.js";
import { S3Store } from "../storage-adapters/s3.js";
import { backupMachine, withSameIdentity } from "./helpers/backup.js";
import { claudeFiles, expectStoreTrustworthy } from "./helpers/consistency.js";
import { type FixtureSession, writeSession } from "./helpers/fixture.js";
import { machineKey } from "./helpers/hostile.js";
import { type Machine, sameUserOnTwoMachines } from "./helpers/machine.js";
import { startRelay } from "./helpers/relay-server.js";
import { type S3rverHandle, startS3rver, useS3rverCredentials } from "./helpers/s3rver.js";
import { startTcpProxy, type TcpProxy } from "./helpers/tcp-proxy.js";
import { startTestnet, type Testnet } from "./helpers/testnet.js";
import { expectOneLineError, stagingLeftovers } from "./helpers/tree.js";

/**
 * Faults: the store dying mid-upload and mid-download (s3rver killed), the DHT
 * gone, a relay answering junk, the disk filling up while restoring. After each:
 * a one-line error, the config dir as it was, no half-object anyone would
 * trust, and a rerun that succeeds once the fault is gone.
 */

const MIB = 1 << 20;
const S3_ENV = {
  AWS_ACCESS_KEY_ID: "S3RVER",
  AWS_SECRET_ACCESS_KEY: "S3RVER",
  AWS_EC2_METADATA_DISABLED: "true",
  AWS_CONFIG_FILE: "/nonexistent/aws-config",
  AWS_SHARED_CREDENTIALS_FILE: "/nonexistent/aws-credentials",
};

let alice: Machine;
let bob: Machine;
let key: UserKey;
let session: FixtureSession;
let aliceProject: string;
let bobProject: string;

function bigToolResult(s: FixtureSession, claudeDir: string, bytes: number): void {
  const file = path.join(claudeDir, "projects", s.folder, s.id, "tool-results", "big.txt");
  mkdirSync(path.dirname(file), { recursive: true });
  // base64 of random bytes: compresses to ~75%, so the blob is about as big as this.
  writeFileSync(file, randomBytes(Math.ceil((bytes * 3) / 4)).toString("base64"));
}

beforeAll(async () => {
  ({ alice, bob } = await sameUserOnTwoMachines("faults", { env: S3_ENV }));
  key = machineKey(alice.ccbHome);
  aliceProject = alice.project("app");
  bobProject = bob.project("app");
  session = writeSession({ claudeDir: alice.claudeDir, projectDir: aliceProject, home: alice.home, turns: 6 });
});

afterAll(() => {
  alice?.cleanup();
  bob?.cleanup();
});

describe("the S3 store dies mid-transfer (s3rver killed)", () => {
  let s3: S3rverHandle;
  let proxy: TcpProxy;
  let url: string;
  let store: S3Store;

  beforeAll(async () => {
    useS3rverCredentials();
    s3 = await startS3rver({ buckets: ["ccbundle"] });
    proxy = await startTcpProxy(s3.port);
    url = `s3://ccbundle/faults?endpoint=http://127.0.0.1:${proxy.port}&region=us-east-1`;
    store = S3Store.fromUrl(`s3://ccbundle/faults?endpoint=${s3.endpoint}&region=us-east-1`);
    // Over the 16 MiB part size: a multipart upload, visible only once completed.
    bigToolResult(session, alice.claudeDir, 22 * MIB);
  });

  afterAll(async () => {
    await store?.close();
    await proxy?.close();
    await s3?.stop();
  });

  async function objects(prefix: string): Promise<string[]> {
    const keys: string[] = [];
    for await (const object of store.list(prefix)) keys.push(object.key);
    return keys;
  }

  it("mid-upload: exit 1 in one line, no blob and no record in the store; the rerun succeeds", async () => {
    proxy.reset();
    proxy.when("up", 6 * MIB, () => void s3.kill());
    const r = await alice.run(["push", "--store", url], { cwd: aliceProject });
    expect(r.code, r.stderr).toBe(1);
    expectOneLineError(r.stderr);
    expect(r.stderr).toMatch(/cannot reach/);
    await s3.restart();
    expect(await objects(storeLayout.blob("x").slice(0, -1))).toEqual([]);
    expect(await objects(storeLayout.record(key.z32))).toEqual([]);

    proxy.reset();
    await alice.runOk(["push", "--store", url], { cwd: aliceProject });
    expect(await objects(storeLayout.blob("x").slice(0, -1))).toHaveLength(1);
    await expectStoreTrustworthy(store, key);
  });

  it("mid-download: exit 1 in one line, the config dir as it was; the rerun restores", async () => {
    const before = claudeFiles(bob.claudeDir);
    proxy.reset();
    proxy.when("down", 4 * MIB, () => void s3.kill());
    const r = await bob.run(["pull", "--store", url, "--project", bobProject, "--no-resume"]);
    expect(r.code, r.stderr).toBe(1);
    expectOneLineError(r.stderr);
    expect(claudeFiles(bob.claudeDir)).toEqual(before);
    expect(stagingLeftovers(bob.claudeDir)).toEqual([]);

    await s3.restart();
    proxy.reset();
    const rerun = await bob.run(["pull", "--store", url, "--project", bobProject, "--no-resume", "--json"]);
    expect(rerun.code, rerun.stderr).toBe(0);
    expect(JSON.parse(rerun.stdout).sessions[0].outcome).toBe("new");
    rmSync(bob.claudeDir, { recursive: true, force: true });
  });

  it("the store down from the start: push exit 1 in one line, quickly", async () => {
    await s3.kill();
    try {
      const start = Date.now();
      const r = await alice.run(["push", "--store", url], { cwd: aliceProject });
      expect(r.code).toBe(1);
      expectOneLineError(r.stderr);
      expect(Date.now() - start).toBeLessThan(20_000);
    } finally {
      await s3.restart();
    }
  });
});

describe("the DHT goes away, a relay answers junk", () => {
  let testnet: Testnet;
  let nas: string;

  beforeAll(async () => {
    testnet = await startTestnet(8);
    nas = path.join(alice.root, "nas");
    mkdirSync(nas);
    rmSync(path.join(alice.claudeDir, "projects", session.folder, session.id, "tool-results", "big.txt"));
  });

  afterAll(async () => {
    await testnet?.close();
  });

  it("a push that fails with the DHT on ends at once: its DHT socket is closed, not left to hold the process", async () => {
    const env = { CCBUNDLE_BOOTSTRAP: testnet.bootstrap.join(","), CCBUNDLE_DEBUG: "1" };
    const noSession = await alice.run(["push", "--store", nas, "--session", "deadbeef"], { cwd: aliceProject, env });
    expect(noSession.code).toBe(4);
    const noStore = await alice.run(["push", "--store", path.join(alice.root, "no-such-nas")], {
      cwd: aliceProject,
      env,
    });
    expect(noStore.code).toBe(1);
    for (const result of [noSession, noStore]) {
      expectOneLineError(result.stderr);
      // main.ts's safety net says so (under CCBUNDLE_DEBUG) when a handle outlives the command.
      expect(result.stderr).not.toContain("handles left open");
    }
  });

  it("a record on the DHT alone is found; with every DHT node down, exit 1 (could not look, not 'no record') in one line; the store mirror still serves it", async () => {
    const bootstrap = testnet.bootstrap.join(",");
    await alice.runOk(["push", "--store", nas], { cwd: aliceProject, env: { CCBUNDLE_BOOTSTRAP: bootstrap } });
    const viaDht = await bob.run(["pull", "--project", bobProject, "--no-resume"], {
      env: { CCBUNDLE_BOOTSTRAP: bootstrap },
    });
    expect(viaDht.code, viaDht.stderr).toBe(0);
    expect(viaDht.stdout).toContain("via dht");
    // A --store that does not exist (a typo) does not stop a pull the DHT serves, but it is named.
    const typo = path.join(bob.root, "nsa");
    const withTypo = await bob.run(["pull", "--store", typo, "--project", bobProject, "--no-resume"], {
      env: { CCBUNDLE_BOOTSTRAP: bootstrap },
    });
    expect(withTypo.code, withTypo.stderr).toBe(0);
    expect(withTypo.stderr).toContain(`warning: store folder ${typo} does not exist: the handoff came without it`);

    // The record's store is not on this machine either (it is a folder on the sender's).
    const dht = { env: { CCBUNDLE_BOOTSTRAP: bootstrap } };
    renameSync(nas, `${nas}.away`);
    try {
      // A --store that is not there, or empty, is named first: it may be the mistake to fix.
      const emptyFolder = path.join(bob.root, "empty-nas");
      mkdirSync(emptyFolder);
      for (const [store, what] of [
        [typo, "does not exist"],
        [emptyFolder, "is empty"],
      ]) {
        const both = await bob.run(["pull", "--store", store!, "--project", bobProject, "--no-resume"], dht);
        expect(both.code, both.stderr).toBe(1);
        expectOneLineError(both.stderr);
        expect(both.stderr).toContain(
          `ccbundle: store folder ${store} ${what}, and the record's store file://${nas} cannot be reached from here (store folder ${nas} does not exist)`,
        );
      }
      // No --store: the folder the record names is the sender's, which --store cannot fix from here.
      const senders = await bob.run(["pull", "--project", bobProject, "--no-resume"], dht);
      expect(senders.code, senders.stderr).toBe(1);
      expectOneLineError(senders.stderr);
      expect(senders.stderr).toContain(`ccbundle: the bundle is in store folder ${nas}, which is not on this machine`);
      expect(senders.stderr).toMatch(
        /^hint: .*push again with --store <a NAS folder or s3:\/\/…> both machines reach/m,
      );
    } finally {
      renameSync(`${nas}.away`, nas);
    }

    testnet.mute(); // down, its ports kept (see Testnet.mute); afterAll closes it
    rmSync(path.join(bob.ccbHome, "state"), { recursive: true, force: true });
    const start = Date.now();
    const gone = await bob.run(["pull", "--project", bobProject, "--no-resume"], {
      env: { CCBUNDLE_BOOTSTRAP: bootstrap },
    });
    expect(gone.code, gone.stderr).toBe(1);
    expectOneLineError(gone.stderr);
    expect(gone.stderr).toContain("could not look up the record");
    expect(Date.now() - start).toBeLessThan(30_000);

    const viaStore = await bob.run(["pull", "--store", nas, "--project", bobProject, "--no-resume"], {
      env: { CCBUNDLE_BOOTSTRAP: bootstrap },
    });
    expect(viaStore.code, viaStore.stderr).toBe(0);
    // Push with the DHT down still succeeds through the store, and says what failed.
    const push = await alice.run(["push", "--store", nas], {
      cwd: aliceProject,
      env: { CCBUNDLE_BOOTSTRAP: bootstrap },
    });
    expect(push.code, push.stderr).toBe(0);
    expect(push.stderr).toMatch(/not published: dht/);
  });

  it("a relay answering junk does not stop a pull the store mirror can serve", async () => {
    const junk = await startRelay({ mode: "junk" });
    try {
      const r = await bob.run(["pull", "--store", nas, "--relay", junk.url, "--project", bobProject, "--no-resume"]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/via store/);
    } finally {
      await junk.close();
    }
  });
});

describe("the disk fills up while restoring (tmpfs)", () => {
  const mounts: string[] = [];
  let nas: string;

  function mountTmpfs(dir: string, options: string): void {
    mkdirSync(dir, { recursive: true });
    // Needs root (CI and the dev machines run as root); failing here is a real failure, not a skip.
    execFileSync("mount", ["-t", "tmpfs", "-o", options, "tmpfs", dir]);
    mounts.push(dir);
  }

  /** Before the machine it lives in is removed (else: EBUSY). */
  function unmountTmpfs(dir: string): void {
    if (!mounts.includes(dir)) return;
    execFileSync("umount", ["-l", dir]);
    mounts.splice(mounts.indexOf(dir), 1);
  }

  function fill(dir: string, leaveBytes: number): void {
    const free = Number(execFileSync("df", ["-B1", "--output=avail", dir]).toString().split("\n")[1]);
    writeFileSync(path.join(dir, "filler"), Buffer.alloc(Math.max(0, free - leaveBytes)));
  }

  beforeAll(async () => {
    nas = path.join(alice.root, "nas-disk");
    mkdirSync(nas);
    bigToolResult(session, alice.claudeDir, 3 * MIB);
    await alice.runOk(["push", "--store", nas], { cwd: aliceProject });
  });

  afterAll(() => {
    for (const dir of mounts.reverse()) execFileSync("umount", ["-l", dir]);
  });

  const pull = (extra: string[] = [], env: NodeJS.ProcessEnv = {}) =>
    bob.run(["pull", "--store", nas, "--project", bobProject, "--no-resume", "--json", ...extra], { env });

  it("too little space for the bundle: refused up front, exit 1, nothing changed", async () => {
    rmSync(bob.claudeDir, { recursive: true, force: true });
    mountTmpfs(bob.claudeDir, "size=2m");
    writeFileSync(path.join(bob.claudeDir, "settings.json"), "{}");
    const before = claudeFiles(bob.claudeDir);
    const r = await bob.run(["pull", "--store", nas, "--project", bobProject, "--no-resume"]);
    expect(r.code, r.stderr).toBe(1);
    expectOneLineError(r.stderr);
    expect(r.stderr).toMatch(/not enough disk space/);
    expect(claudeFiles(bob.claudeDir)).toEqual(before);
    expect(stagingLeftovers(bob.claudeDir)).toEqual([]);
  });

  it("the disk runs out mid-restore (no inodes left): exit 1, nothing changed; the rerun succeeds once there is room", async () => {
    const dir = path.join(bob.root, "claude-inodes");
    // Fewer inodes than the staged files take: the restore fails while staging, before its journal.
    mountTmpfs(dir, "size=64m,nr_inodes=16");
    writeFileSync(path.join(dir, "settings.json"), "{}");
    const before = claudeFiles(dir);
    const r = await pull([], { CLAUDE_CONFIG_DIR: dir });
    expect(r.code, r.stderr).toBe(1);
    expectOneLineError(r.stderr);
    expect(r.stderr).toMatch(/no space left/);
    expect(claudeFiles(dir)).toEqual(before);
    expect(stagingLeftovers(dir)).toEqual([]);
    // The same pull into a config dir with room.
    const roomy = path.join(bob.root, "claude-roomy");
    const ok = await pull([], { CLAUDE_CONFIG_DIR: roomy });
    expect(ok.code, ok.stderr).toBe(0);
  });

  it("a pull needs room for its transcript once (it is rewritten on its way in), not twice", async () => {
    const project = alice.project("big-transcript");
    const big = writeSession({ claudeDir: alice.claudeDir, projectDir: project, home: alice.home });
    // ~6 MiB of lines naming Alice's paths (rewritten for Bob), compressing little.
    const lines: string[] = [];
    for (let i = 0; i < 1500; i++) {
      lines.push(
        JSON.stringify({ type: "user", cwd: project, message: { content: randomBytes(3000).toString("base64") } }),
      );
    }
    writeFileSync(big.transcript, `${lines.join("\n")}\n`, { flag: "a" });
    const store = path.join(alice.root, "nas-big");
    mkdirSync(store);
    await alice.runOk(["push", "--store", store], { cwd: project });
    // A machine of its own: Bob's remembers records it saw, and the next tests pull an older one.
    const laptop = await withSameIdentity(alice, "faults-once");
    try {
      const dir = path.join(laptop.root, "claude-once");
      // Room for the transcript once, not for two copies of it.
      mountTmpfs(dir, "size=10m");
      const pulled = await laptop.run(
        ["pull", "--store", store, "--project", laptop.project("big-transcript"), "--no-resume"],
        { env: { CLAUDE_CONFIG_DIR: dir } },
      );
      expect(pulled.code, pulled.stderr).toBe(0);
      expect(stagingLeftovers(dir)).toEqual([]);
    } finally {
      unmountTmpfs(path.join(laptop.root, "claude-once"));
      laptop.cleanup();
    }
  });

  it("restore --all stops when a write finds the disk full, and says how many it did not try", async () => {
    const { machine: carol } = await backupMachine("faults-full");
    const dir = path.join(carol.root, "claude-full");
    try {
      const project = carol.project("app");
      for (let i = 0; i < 6; i++) writeSession({ claudeDir: carol.claudeDir, projectDir: project, home: carol.home });
      await carol.runOk(["backup"]);
      // Bytes to spare, files not: the up-front check passes and a create fails (ENOSPC) a session or two in.
      mountTmpfs(dir, "size=64m,nr_inodes=40");
      const r = await carol.run(["restore", "--all", "--no-resume", "--json"], { env: { CLAUDE_CONFIG_DIR: dir } });
      const doc = JSON.parse(r.stdout);
      expect(doc.failures, r.stdout).toHaveLength(1);
      expect(doc.failures[0].message).toMatch(/no space left/);
      expect(doc.notAttempted).toBe(6 - doc.sessions.length - 1);
      expect(doc.notAttempted).toBeGreaterThan(0);
      expect(r.code).toBe(doc.sessions.length > 0 ? 3 : 1);
      expect(stagingLeftovers(dir)).toEqual([]);
      const human = await carol.run(["restore", "--all", "--no-resume"], { env: { CLAUDE_CONFIG_DIR: dir } });
      expect(human.stderr).toMatch(
        /the disk is full: stopped with \d+ sessions? not tried\nhint: free some space and run the same command again/,
      );
      expect(human.stderr.split("\n").filter((line) => line.startsWith("ccbundle: ")).length).toBe(2);
    } finally {
      unmountTmpfs(dir);
      carol.cleanup();
    }
  });

  it("restore --all refuses a session too big for the disk and goes on with those that fit", async () => {
    const { machine: dana } = await backupMachine("faults-big-one");
    const dir = path.join(dana.root, "claude-small");
    try {
      const project = dana.project("app");
      // The oldest (restored first) is too big for the disk; four small ones after it fit.
      const big = writeSession({
        claudeDir: dana.claudeDir,
        projectDir: project,
        home: dana.home,
        start: new Date("2026-01-01T00:00:00Z"),
      });
      bigToolResult(big, dana.claudeDir, 8 * MIB);
      for (let i = 0; i < 4; i++) writeSession({ claudeDir: dana.claudeDir, projectDir: project, home: dana.home });
      await dana.runOk(["backup"]);
      mountTmpfs(dir, "size=5m");
      const r = await dana.run(["restore", "--all", "--no-resume", "--json"], { env: { CLAUDE_CONFIG_DIR: dir } });
      const doc = JSON.parse(r.stdout);
      expect(doc.failures.map((f: { session: string }) => f.session)).toEqual([big.id]);
      expect(doc.failures[0].message).toMatch(/not enough disk space to restore/);
      expect(doc.sessions).toHaveLength(4);
      expect(doc.notAttempted).toBe(0);
      expect(r.code).toBe(3);
    } finally {
      unmountTmpfs(dir);
      dana.cleanup();
    }
  });

  it("no room to back up the local copy --force replaces: exit 1, nothing changed; rerun with room replaces it", async () => {
    const claudeDir = path.join(bob.root, "claude-force");
    const transcript = path.join(claudeDir, "projects", projectFolderName(bobProject), `${session.id}.jsonl`);
    mkdirSync(path.dirname(transcript), { recursive: true });
    writeFileSync(transcript, `${JSON.stringify({ type: "user", message: { content: "x".repeat(400_000) } })}\n`);
    const home = path.join(bob.root, "ccb-home-small");
    mountTmpfs(home, "size=1m");
    for (const name of readdirSync(bob.ccbHome))
      cpSync(path.join(bob.ccbHome, name), path.join(home, name), { recursive: true });
    fill(home, 120 * 1024);
    const env = { CLAUDE_CONFIG_DIR: claudeDir, CCBUNDLE_HOME: home };
    const before = claudeFiles(claudeDir);
    const r = await pull(["--force"], env);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/no space left/);
    expect(claudeFiles(claudeDir)).toEqual(before);
    expect(stagingLeftovers(claudeDir)).toEqual([]);

    rmSync(path.join(home, "filler"));
    const ok = await pull(["--force"], env);
    expect(ok.code, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout).sessions[0].outcome).toBe("replaced");
  });
});
