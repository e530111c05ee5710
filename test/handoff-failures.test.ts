import {
  appendFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { projectFolderName } from "../core/claude/paths.js";
import { type FixtureSession, writeSession } from "./helpers/fixture.js";
import { Machine } from "./helpers/machine.js";
import { expectOneLineError, snapshotTree } from "./helpers/tree.js";

/** Bad input gets a one-line error with a hint and the documented exit code, and loses nothing. */

let alice: Machine;
let bob: Machine;
let nas: string;
let session: FixtureSession;
let project: string;
let bobProject: string;

function blobFiles(): string[] {
  const dir = path.join(nas, "ccbundle", "v1", "blobs");
  return existsSync(dir) ? readdirSync(dir).map((n) => path.join(dir, n)) : [];
}

/** A store holding only `from`'s records: where a pull finds the record, but not the bundle. */
function copyRecords(from: string, to: string): void {
  const records = path.join("ccbundle", "v1", "records");
  cpSync(path.join(from, records), path.join(to, records), { recursive: true });
}

beforeAll(async () => {
  alice = new Machine("alice");
  bob = new Machine("bob");
  nas = path.join(alice.root, "nas");
  mkdirSync(nas);
  alice.env.CCBUNDLE_STORE = nas;
  bob.env.CCBUNDLE_STORE = nas;
  alice.env.CCBUNDLE_PASSPHRASE = "correct horse battery staple";
  await alice.runOk(["init"]);
  const exported = path.join(alice.root, "key.age");
  await alice.runOk(["key", "export", exported]);
  await bob.runOk(["key", "import", exported], { env: { CCBUNDLE_PASSPHRASE: "correct horse battery staple" } });
  bob.env.CCBUNDLE_PASSPHRASE = "correct horse battery staple";
  project = alice.project("proj");
  bobProject = bob.project("proj");
  session = writeSession({ claudeDir: alice.claudeDir, projectDir: project, home: alice.home });
});

afterAll(() => {
  alice?.cleanup();
  bob?.cleanup();
});

describe("identity errors", () => {
  it("an encrypted identity is an age file that needs the passphrase", async () => {
    const bytes = readFileSync(path.join(alice.ccbHome, "identity"), "utf8");
    expect(bytes.startsWith("age-encryption.org/v1\n-> scrypt ")).toBe(true);
    const r = await alice.run(["push"], { cwd: project, env: { CCBUNDLE_PASSPHRASE: "wrong" } });
    expect(r.code).toBe(5);
    expect(r.stderr).toContain("wrong passphrase");
    expectOneLineError(r.stderr);
    expect(r.stderr).not.toContain("wrong\n"); // the passphrase itself is never echoed
  });

  it("the passphrase file and fd work, argv is refused", async () => {
    const file = path.join(alice.root, "pass.txt");
    writeFileSync(file, "correct horse battery staple\n", { mode: 0o600 });
    // Exporting the age identity needs the secret key, so the passphrase.
    const viaFile = await alice.run(["key", "export", "-", "--age-identity", "--passphrase-file", file], {
      env: { CCBUNDLE_PASSPHRASE: "" },
    });
    expect(viaFile.code, viaFile.stderr).toBe(0);
    expect(viaFile.stdout).toMatch(/^AGE-SECRET-KEY-1/);
    const onArgv = await alice.run(["push", "--passphrase=hunter22"], { cwd: project });
    expect(onArgv.code).toBe(2);
    expect(onArgv.stderr).toContain("not accepted on the command line");
    expect(onArgv.stderr).not.toContain("hunter22");
  });

  it("no identity: exit 1 with a hint to init or import", async () => {
    const nobody = new Machine("nobody");
    try {
      const r = await nobody.run(["push"], { cwd: nobody.home });
      expect(r.code).toBe(1);
      expect(r.stderr).toContain("ccbundle init");
      expectOneLineError(r.stderr);
    } finally {
      nobody.cleanup();
    }
  });

  it("an identity file readable by others is refused", async () => {
    const file = path.join(alice.ccbHome, "identity");
    const { chmodSync } = await import("node:fs");
    chmodSync(file, 0o644);
    try {
      const r = await alice.run(["push"], { cwd: project });
      expect(r.code).toBe(1);
      expect(r.stderr).toContain("chmod 600");
    } finally {
      chmodSync(file, 0o600);
    }
  });
});

describe("push errors", () => {
  it("unknown session: exit 4", async () => {
    const r = await alice.run(["push", "--session", "deadbeef"], { cwd: project });
    expect(r.code).toBe(4);
    expectOneLineError(r.stderr);
  });

  it("a project without sessions: exit 4 naming the project", async () => {
    const empty = alice.project("empty");
    const r = await alice.run(["push"], { cwd: empty });
    expect(r.code).toBe(4);
    expect(r.stderr).toContain(empty);
  });

  it("a missing store folder: exit 1, nothing created", async () => {
    const missing = path.join(alice.root, "no-such-nas");
    const r = await alice.run(["push", "--store", missing], { cwd: project });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("does not exist");
    expect(existsSync(missing)).toBe(false);
  });

  it("a read-only store: exit 1 with a hint", async () => {
    if (process.getuid?.() === 0) {
      // root ignores permission bits; use a path under a file instead, which no one can create.
      const file = path.join(alice.root, "plain-file");
      writeFileSync(file, "x");
      const r = await alice.run(["push", "--store", path.join(file, "store")], { cwd: project });
      expect(r.code).toBe(1);
      expectOneLineError(r.stderr);
      return;
    }
    const ro = path.join(alice.root, "ro-nas");
    mkdirSync(ro, { mode: 0o555 });
    const r = await alice.run(["push", "--store", ro], { cwd: project });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("not writable");
  });

  it("bad flags: exit 2", async () => {
    const r = await alice.run(["push", "--ttl", "forever"], { cwd: project });
    expect(r.code).toBe(2);
    // yargs read `-1h` as flags and printed help with exit 0, pushing nothing.
    const negative = await alice.run(["push", "--ttl", "-1h"], { cwd: project });
    expect(negative.code).toBe(2);
    expect(negative.stderr).toContain("--ttl -1h: a duration cannot be negative");
    const unknown = await alice.run(["push", "--no-such-flag"], { cwd: project });
    expect(unknown.code).toBe(2);
    // `--to $UNSET`: no silent handoff to yourself alone.
    for (const args of [
      ["push", "--to"],
      ["export", "--to", "--out", path.join(alice.root, "x.ccb")],
    ]) {
      const empty = await alice.run(args, { cwd: project });
      expect(empty.code, args.join(" ")).toBe(2);
      expect(empty.stderr).toContain("--to needs a key");
    }
    expect(existsSync(path.join(alice.root, "x.ccb"))).toBe(false);
    // `--session $UNSET`: no silent push of the newest session.
    const noSession = await alice.run(["push", "--session", ""], { cwd: project });
    expect(noSession.code).toBe(2);
    expect(noSession.stderr).toContain("--session needs a session id");
  });
});

describe("pull errors leave the config dir exactly as it was", () => {
  beforeAll(async () => {
    await alice.runOk(["push"], { cwd: project });
  });

  it("no record for the key: exit 4", async () => {
    const stranger = new Machine("stranger", { CCBUNDLE_STORE: nas });
    try {
      await stranger.runOk(["init", "--no-passphrase"]);
      const r = await stranger.run(["pull", "--no-resume"]);
      expect(r.code).toBe(4);
      expectOneLineError(r.stderr);
    } finally {
      stranger.cleanup();
    }
  });

  // Exit 1, "store unreachable": 4 would tell a script that nothing was pushed.
  it("a store folder that is not there (a NAS not mounted here): exit 1 naming it", async () => {
    const unmounted = path.join(bob.root, "nas-not-mounted");
    const before = snapshotTree(bob.claudeDir);
    const r = await bob.run(["pull", "--no-resume", "--store", unmounted]);
    expect(r.code).toBe(1);
    expectOneLineError(r.stderr);
    expect(r.stderr).toContain(`store folder ${unmounted} does not exist`);
    expect(r.stderr).toMatch(/^hint: check --store \(or CCBUNDLE_STORE\), and that the folder is mounted/m);
    expect(snapshotTree(bob.claudeDir)).toEqual(before);
  });

  it("push into an empty store folder it pushed to before (the NAS not mounted): refused, nothing written under the mount point", async () => {
    const mountPoint = path.join(alice.root, "mnt-push");
    mkdirSync(mountPoint);
    await alice.runOk(["push", "--store", mountPoint], { cwd: project });
    // Unmounted: the folder is there, empty.
    renameSync(mountPoint, `${mountPoint}.mounted`);
    mkdirSync(mountPoint);
    const r = await alice.run(["push", "--store", mountPoint], { cwd: project });
    expect(r.code).toBe(1);
    expectOneLineError(r.stderr);
    expect(r.stderr).toContain(`store folder ${mountPoint} is empty, but this machine has pushed to it before`);
    expect(r.stderr).toMatch(/^hint: mount the NAS/m);
    expect(readdirSync(mountPoint)).toEqual([]);
    // Emptied on purpose: the hint's folder says so.
    expect(r.stderr).toContain(`mkdir -p ${path.join(mountPoint, "ccbundle", "v1", "blobs")} and push again`);
    mkdirSync(path.join(mountPoint, "ccbundle", "v1", "blobs"), { recursive: true });
    await alice.runOk(["push", "--store", mountPoint], { cwd: project });
  });

  it("an empty store folder (a mount point with nothing mounted): exit 4 saying it is empty", async () => {
    const mountPoint = path.join(bob.root, "mnt-nas");
    mkdirSync(mountPoint);
    const r = await bob.run(["pull", "--no-resume", "--store", mountPoint]);
    expect(r.code).toBe(4);
    expectOneLineError(r.stderr);
    expect(r.stderr).toContain(`store folder ${mountPoint} is empty`);
    expect(r.stderr).toMatch(/^hint: .*mount the NAS/m); // the store's own hint, ahead of the resolver's
  });

  it("a --store without the bundle, the record's store out of reach: both facts, not 'gone'; exit 1 (not there) or 4 (empty)", async () => {
    // The record is read from a copy of the store's records; the blob's store, the NAS, is away.
    const recordsOnly = path.join(alice.root, "records-only");
    copyRecords(nas, recordsOnly);
    const away = `${nas}.away`;
    renameSync(nas, away);
    try {
      const r = await bob.run(["pull", "--project", bobProject, "--no-resume"], {
        env: { CCBUNDLE_STORE: recordsOnly },
      });
      expect(r.code).toBe(1);
      expectOneLineError(r.stderr);
      expect(r.stderr).toContain(`the bundle is not in ${recordsOnly}, and the record's store`);
      expect(r.stderr).toContain(`store folder ${nas} does not exist`);
      expect(r.stderr).not.toContain("gone");
      // The NAS's mount point there, with nothing mounted on it.
      mkdirSync(nas);
      const empty = await bob.run(["pull", "--project", bobProject, "--no-resume"], {
        env: { CCBUNDLE_STORE: recordsOnly },
      });
      expect(empty.code).toBe(4);
      expectOneLineError(empty.stderr);
      expect(empty.stderr).toContain(`store folder ${nas} is empty`);
      expect(empty.stderr).not.toContain("gone");
    } finally {
      rmSync(nas, { recursive: true, force: true }); // only ever the empty mount point made above
      renameSync(away, nas);
    }
  });

  it("a record signed by another key: exit 5", async () => {
    const mallory = new Machine("mallory", { CCBUNDLE_STORE: path.join(alice.root, "mallory-nas") });
    mkdirSync(path.join(alice.root, "mallory-nas"));
    try {
      await mallory.runOk(["init", "--no-passphrase"]);
      writeSession({ claudeDir: mallory.claudeDir, projectDir: mallory.project("p"), home: mallory.home });
      await mallory.runOk(["push"], { cwd: path.join(mallory.home, "p") });
      const aliceKey = (await alice.runOk(["whoami"])).stdout.trim();
      const malloryKey = (await mallory.runOk(["whoami"])).stdout.trim();
      // Mallory's signed packet, filed under Alice's key in a store Bob reads.
      const forgedStore = path.join(alice.root, "forged-nas");
      cpSync(path.join(alice.root, "mallory-nas"), forgedStore, { recursive: true });
      cpSync(
        path.join(forgedStore, "ccbundle/v1/records", malloryKey),
        path.join(forgedStore, "ccbundle/v1/records", aliceKey),
      );
      const before = snapshotTree(bob.claudeDir);
      const r = await bob.run(["pull", "--no-resume", "--store", forgedStore]);
      expect(r.code).toBe(5);
      expect(r.stderr).toContain("signature");
      expect(snapshotTree(bob.claudeDir)).toEqual(before);
    } finally {
      mallory.cleanup();
    }
  });

  it("a tampered blob: exit 5, nothing restored", async () => {
    const [blob] = blobFiles().sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs);
    const original = readFileSync(blob!);
    const tampered = Buffer.from(original);
    tampered[tampered.length - 100] ^= 0x01;
    writeFileSync(blob!, tampered);
    try {
      const before = snapshotTree(bob.claudeDir);
      const r = await bob.run(["pull", "--project", bobProject, "--no-resume"]);
      expect(r.code).toBe(5);
      expectOneLineError(r.stderr);
      // The store's copy is named as what is damaged, with a hint for a handoff (not "get a fresh copy").
      expect(r.stderr).toMatch(
        /^ccbundle: the stored bundle is damaged or was replaced \(age payload does not decrypt/m,
      );
      expect(r.stderr).toContain("hint: the session has to be pushed again: ask its sender (your own: push it again");
      expect(snapshotTree(bob.claudeDir)).toEqual(before);
    } finally {
      writeFileSync(blob!, original);
    }
  });

  it("a truncated blob: exit 5, nothing restored", async () => {
    const [blob] = blobFiles().sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs);
    const original = readFileSync(blob!);
    writeFileSync(blob!, original.subarray(0, Math.floor(original.length / 2)));
    try {
      const before = snapshotTree(bob.claudeDir);
      const r = await bob.run(["pull", "--project", bobProject, "--no-resume"]);
      expect(r.code).toBe(5);
      expect(snapshotTree(bob.claudeDir)).toEqual(before);
    } finally {
      writeFileSync(blob!, original);
    }
  });

  it("a deleted blob: exit 4 with a hint", async () => {
    const [blob] = blobFiles().sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs);
    const original = readFileSync(blob!);
    rmSync(blob!);
    try {
      // The record's store, however --store spells it, says the bundle is gone.
      for (const store of [nas, `${nas}/`, `file://${nas}`, `file://${nas}/`]) {
        const r = await bob.run(["pull", "--project", bobProject, "--no-resume", "--store", store]);
        expect(r.code).toBe(4);
        expectOneLineError(r.stderr);
        expect(r.stderr).toContain("the bundle this handoff points at is gone from");
      }
    } finally {
      writeFileSync(blob!, original);
    }
  });
});

describe("revoke with the store out of reach", () => {
  it("publishes the tombstone, warns, and does not call the bundle deleted", async () => {
    const carol = new Machine("carol");
    try {
      const carolNas = path.join(carol.root, "nas");
      mkdirSync(carolNas);
      await carol.runOk(["init", "--no-passphrase"]);
      writeSession({ claudeDir: carol.claudeDir, projectDir: carol.project("p"), home: carol.home });
      await carol.runOk(["push", "--store", carolNas], { cwd: path.join(carol.home, "p") });
      // The record can be read from a copy; the NAS the bundle is on is not mounted.
      const recordsOnly = path.join(carol.root, "records-only");
      copyRecords(carolNas, recordsOnly);
      renameSync(carolNas, `${carolNas}.away`);
      const r = await carol.run(["revoke", "--store", recordsOnly]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/tombstone published .*; bundle not deleted \(see the warning\)/);
      expect(r.stdout).not.toContain("bundle deleted");
      expect(r.stderr).toContain(`could not delete the bundle (to yourself): store folder ${carolNas} does not exist`);
      renameSync(`${carolNas}.away`, carolNas);
      const json = JSON.parse((await carol.runOk(["revoke", "--json", "--store", carolNas])).stdout);
      expect(json.revoked).toEqual([]); // the tombstone went out: nothing live is left to revoke
    } finally {
      carol.cleanup();
    }
  });
});

describe("an existing session file is never overwritten without keeping it", () => {
  const transcript = () => path.join(bob.claudeDir, "projects", projectFolderName(bobProject), `${session.id}.jsonl`);

  it("local prefix of incoming: fast-forward", async () => {
    await bob.runOk(["pull", "--project", bobProject, "--no-resume"]);
    const full = readFileSync(transcript(), "utf8");
    const lines = full.split("\n");
    writeFileSync(transcript(), `${lines.slice(0, 3).join("\n")}\n`);
    const doc = JSON.parse((await bob.runOk(["pull", "--project", bobProject, "--no-resume", "--json"])).stdout);
    expect(doc.sessions[0].outcome).toBe("fast-forward");
    expect(readFileSync(transcript(), "utf8")).toBe(full);
  });

  it("local ahead of incoming: kept", async () => {
    const extra = `${readFileSync(transcript(), "utf8")}${JSON.stringify({ type: "user", message: { role: "user", content: "more" } })}\n`;
    writeFileSync(transcript(), extra);
    const doc = JSON.parse((await bob.runOk(["pull", "--project", bobProject, "--no-resume", "--json"])).stdout);
    expect(doc.sessions[0].outcome).toBe("kept-local");
    expect(readFileSync(transcript(), "utf8")).toBe(extra);
  });

  it("diverged: local kept untouched, incoming restored as a fork; --force backs local up and replaces", async () => {
    const diverged = `${JSON.stringify({ type: "user", message: { role: "user", content: "something else" } })}\n`;
    writeFileSync(transcript(), diverged);
    const doc = JSON.parse((await bob.runOk(["pull", "--project", bobProject, "--no-resume", "--json"])).stdout);
    expect(doc.sessions[0].outcome).toBe("forked");
    const forkId = doc.sessions[0].sessionId;
    expect(forkId).not.toBe(session.id);
    expect(readFileSync(transcript(), "utf8")).toBe(diverged);
    const fork = readFileSync(
      path.join(bob.claudeDir, "projects", projectFolderName(bobProject), `${forkId}.jsonl`),
      "utf8",
    );
    expect(fork).toContain(`"sessionId":"${forkId}"`);
    expect(fork).not.toContain(session.id);
    // The same pull again finds that fork there: nothing to do, no second fork.
    const sessionsHere = () => readdirSync(path.join(bob.claudeDir, "projects", projectFolderName(bobProject)));
    const before = sessionsHere();
    const again = JSON.parse((await bob.runOk(["pull", "--project", bobProject, "--no-resume", "--json"])).stdout);
    expect(again.sessions[0]).toMatchObject({ outcome: "identical", sessionId: forkId });
    expect(sessionsHere()).toEqual(before);

    const forced = JSON.parse(
      (await bob.runOk(["pull", "--project", bobProject, "--no-resume", "--force", "--json"])).stdout,
    );
    expect(forced.sessions[0].outcome).toBe("replaced");
    const backup = path.join(
      forced.sessions[0].backupDir,
      "projects",
      projectFolderName(bobProject),
      `${session.id}.jsonl`,
    );
    expect(backup.startsWith(bob.ccbHome)).toBe(true);
    expect(readFileSync(backup, "utf8")).toBe(diverged);
    expect(readFileSync(transcript(), "utf8")).toContain(bobProject);
  });

  it("diverged, and the other machine went on: its fork here is brought up to date, not forked again", async () => {
    const folder = path.join(bob.claudeDir, "projects", projectFolderName(bobProject));
    const transcripts = () => readdirSync(folder).filter((name) => name.endsWith(".jsonl"));
    const mine = `${JSON.stringify({ type: "user", message: { role: "user", content: "bob's own turn" } })}\n`;
    writeFileSync(transcript(), mine);
    const first = JSON.parse((await bob.runOk(["pull", "--project", bobProject, "--no-resume", "--json"])).stdout);
    const forkId = first.sessions[0].sessionId;
    expect(forkId).not.toBe(session.id);
    const before = transcripts();
    for (const turn of [1, 2]) {
      // Alice works on and hands it over again; bob pulls over his diverged copy.
      const line = { type: "user", message: { role: "user", content: `alice went on, turn ${turn}` } };
      appendFileSync(session.transcript, `${JSON.stringify({ ...line, sessionId: session.id, cwd: project })}\n`);
      await alice.runOk(["push", "--session", session.id], { cwd: project });
      const doc = JSON.parse((await bob.runOk(["pull", "--project", bobProject, "--no-resume", "--json"])).stdout);
      expect(doc.sessions[0]).toMatchObject({ outcome: "fast-forward", sessionId: forkId, originalId: session.id });
      expect(transcripts()).toEqual(before);
      const fork = readFileSync(path.join(folder, `${forkId}.jsonl`), "utf8");
      expect(fork).toContain(`alice went on, turn ${turn}`);
      expect(fork).not.toContain(session.id);
      expect(readFileSync(transcript(), "utf8")).toBe(mine);
      // The same pull again (a retry, a script): the fork has it all already, nothing new is made.
      const again = JSON.parse((await bob.runOk(["pull", "--project", bobProject, "--no-resume", "--json"])).stdout);
      expect(again.sessions[0]).toMatchObject({ outcome: "identical", sessionId: forkId });
      expect(transcripts()).toEqual(before);
    }
    // Said in words: which fork went on.
    appendFileSync(session.transcript, `${JSON.stringify({ type: "user", sessionId: session.id, cwd: project })}\n`);
    await alice.runOk(["push", "--session", session.id], { cwd: project });
    const told = await bob.runOk(["pull", "--project", bobProject, "--no-resume"]);
    expect(told.stdout).toContain(`kept it, and brought the fork ${forkId} an earlier pull made up to date`);
    // Bob resumed the fork and wrote to it: the next version from alice is a fork of its own.
    appendFileSync(path.join(folder, `${forkId}.jsonl`), mine);
    appendFileSync(session.transcript, `${JSON.stringify({ type: "user", sessionId: session.id, cwd: project })}\n`);
    await alice.runOk(["push", "--session", session.id], { cwd: project });
    const split = JSON.parse((await bob.runOk(["pull", "--project", bobProject, "--no-resume", "--json"])).stdout);
    expect(split.sessions[0].outcome).toBe("forked");
    expect(split.sessions[0].sessionId).not.toBe(forkId);
    expect(transcripts()).toHaveLength(before.length + 1);
  });
});
