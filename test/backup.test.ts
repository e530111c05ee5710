import { execFileSync, spawn } from "node:child_process";
import {
  appendFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { backupSessions } from "../core/backup/backup.js";
import { projectFolderName } from "../core/claude/paths.js";
import { loadSettings } from "../core/config.js";
import { LocalStore } from "../storage-adapters/local.js";
import { allObjectNames, backupMachine, blobNames, snapshotNames, withSameIdentity } from "./helpers/backup.js";
import { type FixtureSession, writeDecoys, writeSession } from "./helpers/fixture.js";
import { machineKey } from "./helpers/hostile.js";
import { CLI, type Machine } from "./helpers/machine.js";
import { expectOneLineError } from "./helpers/tree.js";

/**
 * Scripted backups through the built CLI: a config dir with many sessions in
 * several projects, backed up to a local "NAS" store; incremental runs
 * asserted on the store's objects.
 */

let alice: Machine;
let nas: string;
const sessions: FixtureSession[] = [];
let projects: string[];

function appendLine(session: FixtureSession, text = "one more turn") {
  const line = {
    type: "user",
    message: { role: "user", content: text },
    uuid: `u-${Date.now()}-${Math.random()}`,
    timestamp: new Date().toISOString(),
    cwd: session.cwd,
    sessionId: session.id,
  };
  appendFileSync(session.transcript, `${JSON.stringify(line)}\n`);
}

beforeAll(async () => {
  ({ machine: alice, nas } = await backupMachine("alice", { TZ: "UTC" }));
  projects = [alice.project("work/api"), alice.project("work/web app"), alice.project("notes")];
  writeDecoys(alice.claudeDir);
  for (let i = 0; i < 12; i++) {
    sessions.push(
      writeSession({
        claudeDir: alice.claudeDir,
        projectDir: projects[i % 3]!,
        home: alice.home,
        turns: 2 + (i % 4),
        padding: 2000 * i,
        title: `Task number ${i}`,
        start: new Date(Date.UTC(2026, 10, 1 + i, 9)),
      }),
    );
  }
});

afterAll(() => alice?.cleanup());

describe("backup", () => {
  let first: { snapshot: string };

  it("backs up every session as its own bundle and writes one snapshot (--json shape)", async () => {
    const result = await alice.runOk(["backup", "--json"]);
    const doc = JSON.parse(result.stdout);
    first = doc;
    expect(doc).toMatchObject({
      ok: true,
      partial: false,
      wroteSnapshot: true,
      sessions: { scanned: 12, uploaded: 12, unchanged: 0, resumed: 0, failed: 0, inSnapshot: 12 },
      failures: [],
      published: null,
    });
    expect(doc.snapshot).toMatch(/^\d{8}T\d{9}Z-[a-z2-7]{6}$/);
    expect(doc.store).toBe(`file://${nas}`);
    expect(doc.bytes.read).toBeGreaterThan(doc.bytes.uploaded);
    expect(doc.uploaded).toHaveLength(12);
    expect(doc.uploaded[0]).toEqual({
      id: expect.any(String),
      title: expect.any(String),
      project: expect.any(String),
      bytes: expect.any(Number),
      blobBytes: expect.any(Number),
    });
    expect(blobNames(nas)).toHaveLength(12);
    expect(snapshotNames(nas)).toHaveLength(1);
    // No object name reveals a session, a host or a path: each is a random id or the key, and a
    // UTC time. (Not "contains no `alice`": random base32 spells a short word now and then.)
    for (const name of allObjectNames(nas)) {
      for (const s of sessions) expect(name).not.toContain(s.id);
      expect(name).toMatch(
        /^(blobs\/[a-z2-7]{26}|snapshots\/[ybndrfg8ejkmcpqxot1uwisza345h769]{52}\/\d{8}T\d{9}Z-[a-z2-7]{6})$/,
      );
    }
  });

  it("a second run with nothing changed reads and uploads nothing and writes no snapshot", async () => {
    const doc = JSON.parse((await alice.runOk(["backup", "--json"])).stdout);
    expect(doc.sessions).toMatchObject({ scanned: 12, uploaded: 0, unchanged: 12, failed: 0, inSnapshot: 12 });
    expect(doc.wroteSnapshot).toBe(false);
    expect(doc.snapshot).toBe(first.snapshot);
    expect(doc.parent).toBeUndefined();
    expect(blobNames(nas)).toHaveLength(12);
    expect(snapshotNames(nas)).toHaveLength(1);
  });

  it("a touched session is read again but keeps its blob; an unchanged one is judged by size and mtime alone", async () => {
    // A whole-second mtime, so it can be set again exactly.
    const target = sessions[9]!.transcript;
    const stamp = new Date(Math.floor(Date.now() / 1000) * 1000 - 60_000);
    utimesSync(target, stamp, stamp);
    const blobsBefore = blobNames(nas).length;
    const touched = JSON.parse((await alice.runOk(["backup", "--json"])).stdout);
    // Read (its stat changed), found word for word what the last backup holds: nothing to upload.
    expect(touched.uploaded).toEqual([]);
    expect(touched.sessions).toMatchObject({ uploaded: 0, unchanged: 12 });
    expect(touched.wroteSnapshot).toBe(false);
    expect(blobNames(nas)).toHaveLength(blobsBefore);
    // Same size, same mtime (the touched one, now remembered), different bytes: only a read could tell.
    const before = readFileSync(target);
    writeFileSync(target, Buffer.alloc(before.length, 0x78));
    utimesSync(target, stamp, stamp);
    try {
      const doc = JSON.parse((await alice.runOk(["backup", "--json"])).stdout);
      expect(doc.sessions).toMatchObject({ uploaded: 0, unchanged: 12, failed: 0 });
    } finally {
      writeFileSync(target, before);
      utimesSync(target, stamp, stamp);
    }
  });

  it("after one session changes, only that one is uploaded", async () => {
    const before = new Set(blobNames(nas));
    const snapshotsBefore = snapshotNames(nas).length;
    appendLine(sessions[4]!);
    const doc = JSON.parse((await alice.runOk(["backup", "--json"])).stdout);
    expect(doc.sessions).toMatchObject({ uploaded: 1, unchanged: 11, inSnapshot: 12 });
    expect(doc.uploaded.map((u: { id: string }) => u.id)).toEqual([sessions[4]!.id]);
    const added = blobNames(nas).filter((name) => !before.has(name));
    expect(added).toHaveLength(1);
    expect(snapshotNames(nas)).toHaveLength(snapshotsBefore + 1);
  });

  it("is quiet without a terminal, and --verbose prints the summary", async () => {
    appendLine(sessions[0]!);
    const quiet = await alice.runOk(["backup"]);
    expect(quiet.stdout).toBe("");
    expect(quiet.stderr).toBe("");
    const verbose = await alice.runOk(["backup", "--verbose"]);
    expect(verbose.stdout).toContain("Backed up 0 sessions");
    expect(verbose.stdout).toContain("is current");
  });

  it("on a terminal it draws a bar per phase with bytes, rate and ETA, and prints the summary", async () => {
    appendLine(sessions[10]!);
    // util-linux `script` gives the CLI a pseudo-terminal, as a user's shell would.
    const command = [process.execPath, CLI, "backup"].map((part) => `'${part}'`).join(" ");
    const output = execFileSync("script", ["-qec", command, "/dev/null"], { env: alice.env, encoding: "utf8" });
    expect(output).toMatch(/scan\s+\[.*\] 100% \| 12 \/ 12/);
    expect(output).toMatch(/upload\s+\[.*\] \d+% \| [\d.]+ [KM]?B \/ [\d.]+ [KM]?B \| [\d.]+ [KM]?B\/s \| ETA/);
    expect(output).toContain("Backed up 1 session");
  });

  it("--project and --since narrow what is read; everything else stays in the snapshot", async () => {
    appendLine(sessions[1]!); // project 1
    appendLine(sessions[2]!); // project 2
    const doc = JSON.parse((await alice.runOk(["backup", "--project", projects[1]!, "--json"])).stdout);
    expect(doc.sessions).toMatchObject({ scanned: 4, uploaded: 1, inSnapshot: 12 });
    expect(doc.uploaded[0].id).toBe(sessions[1]!.id);
    const since = JSON.parse((await alice.runOk(["backup", "--since", "1h", "--json"])).stdout);
    expect(since.sessions).toMatchObject({ scanned: 12, uploaded: 1, inSnapshot: 12 });
    expect(since.uploaded[0].id).toBe(sessions[2]!.id);
    const usage = await alice.run(["backup", "--all", "--project", projects[0]!]);
    expect(usage.code).toBe(2);
  });

  it("a blob opens with Debian's age and zstd, a snapshot with age and gunzip", async () => {
    const identity = path.join(alice.root, "age-id.txt");
    await alice.runOk(["key", "export", identity, "--age-identity"]);
    const blob = path.join(nas, "ccbundle", "v1", "blobs", blobNames(nas)[0]!);
    const names = execFileSync("sh", ["-c", `age -d -i ${identity} ${blob} | zstd -d | tar t`], { encoding: "utf8" });
    expect(names.split("\n")[0]).toBe("ccbundle.json");
    const snapshot = path.join(nas, "ccbundle", "v1", "snapshots", snapshotNames(nas).at(-1)!);
    const text = execFileSync("sh", ["-c", `age -d -i ${identity} ${snapshot} | gzip -d`], { encoding: "utf8" });
    const parsed = JSON.parse(text);
    expect(parsed.format).toBe("ccbundle-snapshot/1");
    expect(parsed.sessions).toHaveLength(12);
    expect(parsed.signature).toMatch(/^[A-Za-z0-9+/]+=*$/);
  });
});

describe("list", () => {
  it("shows snapshots and the newest one's sessions, with project and date filters (--json)", async () => {
    const doc = JSON.parse((await alice.runOk(["list", "--json"])).stdout);
    expect(doc.ok).toBe(true);
    expect(doc.via).toBe("configured store");
    expect(doc.snapshots.length).toBe(snapshotNames(nas).length);
    expect(doc.snapshots[0]).toEqual({
      id: doc.snapshot,
      created: expect.any(String),
      host: expect.any(String),
      machine: expect.stringMatching(/^[0-9a-f]{16}$/),
      sessions: 12,
      bytes: expect.any(Number),
    });
    expect(doc.sessions).toHaveLength(12);
    const entry = doc.sessions.find((s: { id: string }) => s.id === sessions[3]!.id);
    expect(entry).toMatchObject({
      project: sessions[3]!.cwd,
      folder: sessions[3]!.folder,
      title: "Task number 3",
      host: expect.any(String),
      blob: { key: expect.stringMatching(/^ccbundle\/v1\/blobs\//), size: expect.any(Number) },
    });
    const byProject = JSON.parse((await alice.runOk(["list", "--project", projects[2]!, "--json"])).stdout);
    expect(byProject.sessions.map((s: { id: string }) => s.id).sort()).toEqual(
      sessions
        .filter((_, i) => i % 3 === 2)
        .map((s) => s.id)
        .sort(),
    );
    // Fixture sessions are dated 2026-11-01 … 2026-11-12 (their last line), except those appended to now.
    const window = JSON.parse(
      (await alice.runOk(["list", "--since", "2026-11-05", "--until", "2026-11-08T23:00:00Z", "--json"])).stdout,
    );
    expect(window.sessions.map((s: { title: string }) => s.title).sort()).toEqual([
      "Task number 5",
      "Task number 6",
      "Task number 7",
    ]);
    const human = await alice.runOk(["list"]);
    expect(human.stdout).toContain(`Sessions in snapshot ${doc.snapshot} (12)`);
    expect(human.stdout).toContain('"Task number 3"');
    // Newest activity first (the date shown), and --quiet prints just the ids, in that order.
    const activity = doc.sessions.map((s: { last?: string; modified: number }) =>
      s.last ? Date.parse(s.last) : s.modified,
    );
    expect(activity).toEqual([...activity].sort((a, b) => b - a));
    expect(doc.sessions.every((s: { modified: number }) => Number.isInteger(s.modified))).toBe(true);
    const quiet = await alice.runOk(["list", "--quiet"]);
    expect(quiet.stdout).toBe(doc.sessions.map((s: { id: string }) => `${s.id}\n`).join(""));
  });

  it("restore over a session whose transcript is here but a subagent file differs does not call it identical", async () => {
    // On another machine of alice's (restored there first), so this machine's backups see no change.
    const bob = await withSameIdentity(alice, "bob", { CCBUNDLE_STORE: nas });
    try {
      const session = sessions[4]!;
      const prefix = session.id.slice(0, 8);
      await bob.runOk(["restore", prefix, "--no-resume"]);
      const subagent = session.files.find((file) => file.includes("/subagents/") && file.endsWith(".jsonl"))!;
      const local = path.join(bob.claudeDir, subagent);
      const original = readFileSync(local);
      // Diverged (not a longer copy, which would simply be kept as ahead).
      writeFileSync(local, Buffer.concat([Buffer.from("X"), original.subarray(1)]));
      const kept = await bob.runOk(["restore", prefix, "--no-resume"]);
      expect(kept.stdout).toContain("the transcript is already here, identical; some of its other files differ here");
      expect(kept.stderr).toContain("kept local");
      const forced = await bob.runOk(["restore", prefix, "--no-resume", "--force"]);
      expect(forced.stdout).toContain("the transcript was already here, identical; its other files were brought in");
      expect(readFileSync(local).equals(original)).toBe(true);
      const again = await bob.runOk(["restore", prefix, "--no-resume"]);
      expect(again.stdout).toContain("already here, identical: nothing to do");
    } finally {
      bob.cleanup();
    }
  });

  it("restore with both a session and --all is a usage error that says so", async () => {
    const both = await alice.run(["restore", sessions[0]!.id.slice(0, 8), "--all"]);
    expect(both.code).toBe(2);
    expect(both.stderr).toContain("give a session or --all, not both");
    const short = await alice.run(["restore", "abc"]);
    expect(short.code).toBe(2);
    expect(short.stderr).toContain("at least 4 of their hex digits");
  });

  it("a reader that goes away (`list | head -1`) ends it quietly, exit 0", async () => {
    // The pipe's read end is closed before the CLI writes: every write of its stdout meets EPIPE.
    const child = spawn(process.execPath, [CLI, "list"], { env: alice.env, stdio: ["ignore", "pipe", "pipe"] });
    child.stdout.destroy();
    let stderr = "";
    child.stderr.on("data", (chunk) => {
      stderr += chunk;
    });
    const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
    expect(stderr).toBe("");
    expect(code).toBe(0);
  });
});

describe("failures and sessions that are gone", () => {
  it("one session that cannot be read: the rest is backed up, exit 3, the failure says why", async () => {
    const broken = path.join(alice.claudeDir, "projects", projectFolderName(projects[0]!));
    const id = "0b0b0b0b-0000-4000-8000-000000000001";
    writeFileSync(path.join(broken, `${id}.jsonl`), '{"type":"user","cwd":"/x"'); // no complete line yet
    appendLine(sessions[6]!);
    const result = await alice.run(["backup", "--json"]);
    expect(result.code).toBe(3);
    const doc = JSON.parse(result.stdout);
    expect(doc).toMatchObject({ ok: false, partial: true, sessions: { uploaded: 1, failed: 1, inSnapshot: 12 } });
    expect(doc.error).toEqual({
      message: expect.stringContaining(`session ${id} was not backed up`),
      hint: expect.any(String),
      exitCode: 3,
    });
    expect(doc.failures).toEqual([
      { session: id, message: expect.stringContaining("no complete lines"), hint: expect.any(String), exitCode: 1 },
    ]);
    const human = await alice.run(["backup"]);
    expect(human.code).toBe(3);
    expect(human.stdout).toBe("");
    expect(human.stderr).toContain(`session ${id} was not backed up`);
    rmSync(path.join(broken, `${id}.jsonl`));
  });

  it("an empty transcript (a session just started, or left behind) is skipped, not failed: exit 0, every run", async () => {
    const folder = path.join(alice.claudeDir, "projects", projectFolderName(projects[0]!));
    const empty = path.join(folder, "0b0b0b0b-0000-4000-8000-000000000002.jsonl");
    writeFileSync(empty, "");
    try {
      appendLine(sessions[6]!);
      for (let run = 0; run < 2; run++) {
        const doc = JSON.parse((await alice.runOk(["backup", "--json"])).stdout);
        expect(doc.sessions).toMatchObject({ failed: 0, inSnapshot: 12 });
        expect(doc.failures).toEqual([]);
      }
    } finally {
      rmSync(empty);
    }
  });

  it("a session Claude Code has deleted here stays in every later snapshot and can be restored", async () => {
    const gone = sessions[7]!;
    const original = readFileSync(gone.transcript, "utf8");
    rmSync(gone.transcript);
    appendLine(sessions[8]!);
    const doc = JSON.parse((await alice.runOk(["backup", "--json"])).stdout);
    expect(doc.sessions).toMatchObject({ scanned: 11, uploaded: 1, inSnapshot: 12 });
    const restored = JSON.parse(
      (await alice.runOk(["restore", gone.id.slice(0, 8), "--no-resume", "--json"], { cwd: gone.cwd })).stdout,
    );
    expect(restored.sessions[0]).toMatchObject({ sessionId: gone.id, outcome: "new", project: gone.cwd });
    expect(readFileSync(gone.transcript, "utf8")).toBe(original);
    expect(existsSync(gone.transcript)).toBe(true);
  });

  it("a config dir with no projects folder (cron without CLAUDE_CONFIG_DIR) fails even after earlier snapshots", async () => {
    const wrong = path.join(alice.root, "not-the-claude-dir");
    const missing = await alice.run(["backup"], { env: { CLAUDE_CONFIG_DIR: wrong } });
    expect(missing.code).toBe(4);
    expect(missing.stderr).toContain(`no Claude Code sessions in ${wrong}`);
    expectOneLineError(missing.stderr);
    // A config dir whose sessions Claude Code has all deleted is another matter: the snapshot keeps them.
    const emptied = path.join(alice.root, "emptied-claude-dir");
    mkdirSync(path.join(emptied, "projects"), { recursive: true });
    const doc = JSON.parse((await alice.runOk(["backup", "--json"], { env: { CLAUDE_CONFIG_DIR: emptied } })).stdout);
    expect(doc.sessions).toMatchObject({ scanned: 0, uploaded: 0, inSnapshot: 12 });
  });

  it("restore --all with one bundle gone from the store: the rest is restored, exit 3", async () => {
    const bob = await withSameIdentity(alice, "bob", { CCBUNDLE_STORE: nas });
    try {
      const listed = JSON.parse((await alice.runOk(["list", "--json"])).stdout);
      const lost = listed.sessions[0];
      rmSync(path.join(nas, ...lost.blob.key.split("/")));
      const result = await bob.run(["restore", "--all", "--json"]);
      expect(result.code).toBe(3);
      const doc = JSON.parse(result.stdout);
      expect(doc).toMatchObject({ ok: false, partial: true, snapshot: listed.snapshot });
      expect(doc.error).toEqual({
        message: `session ${lost.id} was not restored: the backup of session ${lost.id} is gone from file://${nas}`,
        hint: expect.stringContaining("older snapshot"),
        exitCode: 3,
      });
      expect(doc.sessions).toHaveLength(11);
      expect(doc.failures).toEqual([
        {
          session: lost.id,
          project: lost.project,
          message: `the backup of session ${lost.id} is gone from file://${nas}`,
          hint: expect.stringContaining("older snapshot"),
          exitCode: 4,
        },
      ]);
      // Nothing half-restored is left where Claude Code would read it.
      expect(readdirSync(bob.claudeDir).filter((name) => name.startsWith(".ccbundle"))).toEqual([]);
    } finally {
      bob.cleanup();
    }
  });
});

describe("a store folder with nothing in it (a NAS mount point, nothing mounted)", () => {
  it("list, restore and prune say the folder is empty (exit 4) instead of 'no snapshots'", async () => {
    const mountPoint = path.join(alice.root, "mnt-nas");
    mkdirSync(mountPoint);
    for (const args of [["list"], ["restore", "--all", "--no-resume"], ["prune", "--keep-last", "1"]]) {
      const result = await alice.run([...args, "--store", mountPoint]);
      expect(result.code, args.join(" ")).toBe(4);
      expect(result.stderr).toContain(`store folder ${mountPoint} is empty`);
      expect(result.stderr).toContain("mount the NAS");
      expectOneLineError(result.stderr);
    }
  });

  it("backup refuses a store it backed up to before that is now empty, and writes nothing there", async () => {
    const aside = `${nas}.unmounted`;
    renameSync(nas, aside);
    mkdirSync(nas);
    try {
      const result = await alice.run(["backup"]);
      expect(result.code).toBe(1);
      expect(result.stderr).toContain(`store folder ${nas} is empty, but this machine has backed up to it before`);
      expect(result.stderr).toMatch(/hint: mount the NAS, .* delete .*state\/backup\/[0-9a-f]+\.json/);
      expect(readdirSync(nas)).toEqual([]);
      // doctor says so too, and writes no probe there; and the empty folders an earlier probe or
      // upload left (.tmp, ccbundle/v1/.doctor) do not make the bare mount point look used.
      const doctor = await alice.run(["doctor", "--json"]);
      expect(doctor.code).toBe(1);
      expect(JSON.parse(doctor.stdout).checks).toContainEqual({
        name: "store",
        ok: false,
        detail: `store folder ${nas} is empty, but this machine has backed up to it before`,
        hint: "mount the NAS, or check --store",
      });
      expect(readdirSync(nas)).toEqual([]);
      mkdirSync(path.join(nas, ".tmp"));
      mkdirSync(path.join(nas, "ccbundle", "v1", ".doctor"), { recursive: true });
      const again = await alice.run(["backup"]);
      expect(again.code).toBe(1);
      expect(again.stderr).toContain(`store folder ${nas} is empty, but this machine has backed up to it before`);
      // Not there at all: the same refusal, not the `mkdir -p` hint that would make the bare mount point.
      rmSync(nas, { recursive: true });
      const missing = await alice.run(["backup"]);
      expect(missing.code).toBe(1);
      expect(missing.stderr).toContain(
        `store folder ${nas} does not exist, but this machine has backed up to it before`,
      );
      expect(missing.stderr).not.toContain("mkdir");
      mkdirSync(nas);
      // A store this machine never used starts out empty: that is fine.
      const fresh = path.join(alice.root, "fresh-store");
      mkdirSync(fresh);
      await alice.runOk(["backup", "--store", fresh]);
      expect(snapshotNames(fresh)).toHaveLength(1);
    } finally {
      rmSync(nas, { recursive: true, force: true });
      renameSync(aside, nas);
    }
  });
});

describe("backup through the worker threads", () => {
  /** Two sessions over backup's 16 MB threshold, so they are encoded on worker threads. */
  function bigSessions(machine: Machine): void {
    for (let i = 0; i < 2; i++) {
      writeSession({
        claudeDir: machine.claudeDir,
        projectDir: machine.project(`big-${i}`),
        home: machine.home,
        turns: 4,
        padding: 2_500_000,
      });
    }
  }

  it("a store folder that does not exist: the one-line error and exit 1, before a session is read", async () => {
    const { machine: carol, nas } = await backupMachine("carol");
    try {
      bigSessions(carol);
      const missing = path.join(nas, "not-made-yet");
      const result = await carol.run(["backup", "--all"], { env: { CCBUNDLE_STORE: missing } });
      expect(result.code).toBe(1);
      expect(result.stderr).toContain(`store folder ${missing} does not exist`);
      expect(result.stderr).not.toMatch(/^\s+at |Unhandled/m);
      expect(existsSync(missing)).toBe(false);
      // The library: the store is checked before the scan, so no session is read or encoded.
      const phases: string[] = [];
      const run = backupSessions({
        settings: loadSettings({ ...carol.env, CCBUNDLE_STORE: missing }, {}),
        key: machineKey(carol.ccbHome),
        store: new LocalStore(missing),
        scope: {},
        cwd: carol.home,
        onProgress: (event) => phases.push(event.phase),
      });
      await expect(run).rejects.toThrow(`store folder ${missing} does not exist`);
      expect(phases).toEqual([]);
    } finally {
      carol.cleanup();
    }
  });

  it("a store that refuses an upload stops the run: one error and exit 1, not a crash of the threads' stream", async () => {
    const { machine: carol, nas } = await backupMachine("carol");
    try {
      bigSessions(carol);
      // The store folder is fine; the folder the blobs go in cannot be made.
      const store = path.join(nas, "blocked");
      mkdirSync(path.join(store, "ccbundle", "v1"), { recursive: true });
      writeFileSync(path.join(store, "ccbundle", "v1", "blobs"), "not a folder");
      const result = await carol.run(["backup", "--all"], { env: { CCBUNDLE_STORE: store } });
      expect(result.code).toBe(1);
      // The first refusal stops the run: one error with its hint, not a line per session.
      expect(result.stderr.trim().split("\n")).toEqual([
        expect.stringMatching(
          /^ccbundle: store file:.* cannot hold ccbundle\/v1\/blobs\/\w+: a file is where a folder of it should be$/,
        ),
        "hint: move that file out of the store folder, or pass another --store",
      ]);
      expect(readdirSync(path.join(store, ".tmp"))).toEqual([]);
    } finally {
      carol.cleanup();
    }
  });
});
