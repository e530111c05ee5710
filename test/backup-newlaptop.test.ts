import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { projectFolderName } from "../core/claude/paths.js";
import { UserKey } from "../core/crypto/keys.js";
import { backupMachine, withSameIdentity } from "./helpers/backup.js";
import { type FixtureSession, writeSession } from "./helpers/fixture.js";
import { Machine } from "./helpers/machine.js";
import { startTestnet, type Testnet } from "./helpers/testnet.js";

/**
 * Disaster recovery: the old machine backs up with --publish; a new laptop
 * with a different user name and home, an empty Claude Code config dir, no
 * store configured and only the identity, finds the store through its own
 * record on a loopback Mainline DHT and restores every session, each into its
 * own project path moved by one --map.
 */

let testnet: Testnet;
let old: Machine;
let laptop: Machine;
let nas: string;
const sessions: FixtureSession[] = [];
let projects: string[];

beforeAll(async () => {
  testnet = await startTestnet(8);
  const bootstrap = testnet.bootstrap.join(",");
  ({ machine: old, nas } = await backupMachine("bob", { CCBUNDLE_BOOTSTRAP: bootstrap }));
  projects = [old.project("src/api"), old.project("src/site")];
  for (let i = 0; i < 5; i++) {
    sessions.push(
      writeSession({ claudeDir: old.claudeDir, projectDir: projects[i % 2]!, home: old.home, title: `Job ${i}` }),
    );
  }
  // The new laptop: another user name and home, no store configured, only the identity.
  laptop = await withSameIdentity(old, "robert", { CCBUNDLE_BOOTSTRAP: bootstrap });
});

afterAll(async () => {
  old?.cleanup();
  laptop?.cleanup();
  await testnet?.close();
});

describe("backup --publish, then restore --all on a new laptop", () => {
  let snapshot: string;

  it("backup --publish points the owner's record at the snapshot", async () => {
    const doc = JSON.parse((await old.runOk(["backup", "--publish", "--json"])).stdout);
    expect(doc.ok).toBe(true);
    snapshot = doc.snapshot;
    expect(doc.published).toMatchObject({ status: "published", snapshot, summary: expect.stringContaining("DHT") });
    expect(doc.published.recordBytes).toBeLessThanOrEqual(1000);
    const status = JSON.parse((await old.runOk(["status", "--json"])).stdout);
    expect(status.slots).toContainEqual(
      expect.objectContaining({ slot: "backup", kind: "snapshot", snapshot, store: `file://${nas}` }),
    );
  });

  it("the new laptop lists and restores everything with only the identity", async () => {
    expect(laptop.env.CCBUNDLE_STORE).toBeUndefined();
    const listed = JSON.parse((await laptop.runOk(["list", "--json"])).stdout);
    expect(listed.via).toBe("record");
    expect(listed.snapshot).toBe(snapshot);
    expect(listed.sessions).toHaveLength(5);

    const doc = JSON.parse(
      (await laptop.runOk(["restore", "--all", "--map", `${old.home}=${laptop.home}`, "--json"])).stdout,
    );
    expect(doc).toMatchObject({ ok: true, partial: false, via: "record", snapshot, failures: [] });
    expect(doc.sessions).toHaveLength(5);
    for (const session of sessions) {
      const restored = doc.sessions.find((s: { sessionId: string }) => s.sessionId === session.id);
      const moved = session.cwd.replace(old.home, laptop.home);
      expect(restored).toMatchObject({ outcome: "new", project: moved, targetReason: "mapped" });
      // The project does not exist on the laptop yet: filed under its path all the same.
      expect(restored.warnings.join(" ")).toContain("does not exist here yet");
      const transcript = path.join(laptop.claudeDir, "projects", projectFolderName(moved), `${session.id}.jsonl`);
      const text = readFileSync(transcript, "utf8");
      expect(text).not.toContain(old.home);
      expect(JSON.parse(text.split("\n")[0]!).cwd).toBe(moved);
    }
    expect(readdirSync(laptop.claudeDir).filter((n) => n.startsWith(".ccbundle"))).toEqual([]);
  });

  it("a second restore --all changes nothing; without --map each session keeps its original path", async () => {
    const again = JSON.parse(
      (await laptop.runOk(["restore", "--all", "--map", `${old.home}=${laptop.home}`, "--json"])).stdout,
    );
    expect(again.sessions.map((s: { outcome: string }) => s.outcome)).toEqual(Array(5).fill("identical"));
    expect(again.sessions.every((s: { alreadyRestored?: boolean }) => s.alreadyRestored)).toBe(true);
    const told = await laptop.runOk(["restore", "--all", "--map", `${old.home}=${laptop.home}`]);
    expect(told.stdout).toContain(
      "Nothing to restore: all 5 sessions are already here as backed up (5 as an earlier restore left them: not downloaded again).",
    );
    const carol = await withSameIdentity(old, "carol", { CCBUNDLE_STORE: nas });
    try {
      const doc = JSON.parse(
        (await carol.runOk(["restore", "--all", "--project", projects[1]!, "--no-resume", "--json"])).stdout,
      );
      expect(doc.via).toBe("configured store");
      expect(doc.sessions).toHaveLength(2);
      for (const s of doc.sessions) {
        expect(s).toMatchObject({ project: projects[1], targetReason: "original-path" });
        // Kept where it was, paths inside too: carol's home is not bob's, but no project moved.
        const text = readFileSync(
          path.join(carol.claudeDir, "projects", projectFolderName(projects[1]!), `${s.sessionId}.jsonl`),
          "utf8",
        );
        expect(JSON.parse(text.split("\n")[0]!).cwd).toBe(projects[1]);
        // (Only paths into the config dir move: that is where the files are now.)
        expect(text).not.toContain(`${carol.home}/src`);
        expect(text).toContain(`${carol.claudeDir}/projects/`);
      }
    } finally {
      carol.cleanup();
    }
  });

  it("restore --all prints a warning many sessions share once, with how many sessions it concerns", async () => {
    const dave = await withSameIdentity(old, "dave", { CCBUNDLE_STORE: nas });
    try {
      const { stderr } = await dave.runOk(["restore", "--all", "--no-resume", "--map", `${old.home}=${dave.home}`]);
      const warnings = stderr.split("\n").filter((line) => line.includes("does not exist here yet"));
      // Five sessions in two projects that are not on this machine: one line per project.
      expect(warnings).toHaveLength(2);
      expect(warnings.map((line) => line.match(/\((\d) sessions\)$/)?.[1]).sort()).toEqual(["2", "3"]);
    } finally {
      dave.cleanup();
    }
  });

  it("the snapshot slot sits beside handoffs; when they fill the record it waits rather than evict one", async () => {
    const next = writeSession({
      claudeDir: old.claudeDir,
      projectDir: projects[0]!,
      home: old.home,
      title: "x".repeat(40),
    });
    await old.runOk(["push", "--session", next.id]);
    const kinds = async () =>
      JSON.parse((await old.runOk(["status", "--json"])).stdout)
        .slots.map((s: { kind: string }) => s.kind)
        .sort();
    expect(await kinds()).toEqual(["handoff", "snapshot"]);
    // A handoff to eight people takes the room the snapshot slot had.
    const people = Array.from({ length: 8 }, () => UserKey.generate().z32).flatMap((z32) => ["--to", z32]);
    const shared = await old.runOk(["push", "--session", next.id, ...people]);
    expect(shared.stderr).toContain("no room left in the 1000-byte record for the pointer to your backups");
    expect(await kinds()).toEqual(["handoff", "handoff"]);

    const doc = JSON.parse((await old.runOk(["backup", "--publish", "--json"])).stdout);
    expect(doc).toMatchObject({ ok: true, sessions: { uploaded: 1 } });
    expect(doc.published).toMatchObject({ status: "deferred", snapshot: doc.snapshot });
    expect(doc.published.error.message).toContain("without dropping a live handoff");
    expect(await kinds()).toEqual(["handoff", "handoff"]);
    // The laptop still finds the backups: the handoffs name the same store.
    const listed = JSON.parse((await laptop.runOk(["list", "--json"])).stdout);
    expect(listed).toMatchObject({ via: "record", snapshot: doc.snapshot });
    expect(listed.sessions).toHaveLength(6);
  });

  it("a push that needs room drops the snapshot slot, never a live handoff (self, PIN, to others)", async () => {
    const { machine: erin } = await backupMachine("erin", { CCBUNDLE_BOOTSTRAP: "none" });
    try {
      const project = erin.project("app");
      const s = writeSession({
        claudeDir: erin.claudeDir,
        projectDir: project,
        home: erin.home,
        title: "y".repeat(40),
      });
      await erin.runOk(["push", "--session", s.id]);
      await erin.runOk(["push", "--session", s.id, "--pin"], { env: { CCBUNDLE_PIN: "harbor-lantern-9" } });
      await erin.runOk(["backup", "--publish"]);
      const slots = async () =>
        JSON.parse((await erin.runOk(["status", "--json"])).stdout)
          .slots.map((slot: { label: string; kind: string }) => `${slot.kind}:${slot.label}`)
          .sort();
      expect(await slots()).toEqual(["handoff:by PIN", "handoff:to yourself", "snapshot:backup"]);
      const pushed = await erin.runOk(["push", "--session", s.id, "--to", UserKey.generate().z32]);
      expect(pushed.stderr).toContain("no room left in the 1000-byte record for the pointer to your backups");
      expect((await slots()).filter((slot: string) => slot.startsWith("handoff:"))).toHaveLength(3);
      expect(await slots()).not.toContain("snapshot:backup");
    } finally {
      erin.cleanup();
    }
  });

  it("without a store, a DHT or a published snapshot: exit 4 with a hint; the default store is looked in", async () => {
    const stranger = new Machine("dave");
    try {
      await stranger.runOk(["init", "--no-passphrase"]);
      const result = await stranger.run(["restore", "--all"]);
      expect(result.code).toBe(4);
      expect(result.stderr).toContain("no backups found");
      expect(result.stderr).toContain("hint: pass --store");
      // Backups into the default local store are found there.
      writeSession({ claudeDir: stranger.claudeDir, projectDir: stranger.project("p"), home: stranger.home });
      await stranger.runOk(["backup"]);
      const listed = JSON.parse((await stranger.runOk(["list", "--json"])).stdout);
      expect(listed).toMatchObject({
        via: "default store",
        store: expect.stringContaining("/.local/share/ccbundle/store"),
      });
      expect(listed.sessions).toHaveLength(1);
    } finally {
      stranger.cleanup();
    }
  });
});
