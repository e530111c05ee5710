import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { projectFolderName } from "../core/claude/paths.js";
import { backupMachine, withSameIdentity } from "./helpers/backup.js";
import { type FixtureSession, writeSession } from "./helpers/fixture.js";
import type { Machine } from "./helpers/machine.js";
import { expectOneLineError } from "./helpers/tree.js";

/**
 * One user, two machines backing up into one store, and a session both hold: handed from the
 * desktop to the laptop, worked on there, backed up by each. `--machine` says whose copies
 * `list` and `restore` mean; without it `restore <id>` takes the newest copy and says so.
 */

let desktop: Machine;
let laptop: Machine;
let nas: string;
let shared: FixtureSession;
let desktopOnly: FixtureSession;
const machineId: Record<"desktop" | "laptop", string> = { desktop: "", laptop: "" };
const cleanups: Machine[] = [];

beforeAll(async () => {
  ({ machine: desktop, nas } = await backupMachine("desk"));
  const project = desktop.project("code/app");
  shared = writeSession({ claudeDir: desktop.claudeDir, projectDir: project, home: desktop.home, title: "shared" });
  desktopOnly = writeSession({ claudeDir: desktop.claudeDir, projectDir: project, home: desktop.home });
  await desktop.runOk(["backup"]);
  laptop = await withSameIdentity(desktop, "lap", { CCBUNDLE_STORE: nas });
  // The handoff, as a restore: the laptop now holds the shared session under its own home.
  await laptop.runOk(["restore", shared.id, "--no-resume", "--project", laptop.project("code/app")]);
  const onLaptop = path.join(
    laptop.claudeDir,
    "projects",
    projectFolderName(laptop.project("code/app")),
    `${shared.id}.jsonl`,
  );
  const later = { type: "user", message: { role: "user", content: "went on on the laptop" }, uuid: "u-laptop-1" };
  appendFileSync(onLaptop, `${JSON.stringify({ ...later, timestamp: new Date(Date.now() + 60_000).toISOString() })}\n`);
  await laptop.runOk(["backup"]);
  const listed = JSON.parse((await laptop.runOk(["list", "--json"])).stdout);
  for (const entry of listed.sessions as { id: string; machine: string; project: string }[]) {
    if (entry.id === desktopOnly.id) machineId.desktop = entry.machine;
    if (entry.id === shared.id && entry.project.startsWith(laptop.home)) machineId.laptop = entry.machine;
  }
});

afterAll(() => {
  for (const machine of [desktop, laptop, ...cleanups]) machine?.cleanup();
});

describe("sessions that two machines backed up", () => {
  it("list shows both copies; --machine (a machine id prefix) shows one machine's", async () => {
    expect(machineId.desktop).toMatch(/^[0-9a-f]{8,}$/);
    expect(machineId.laptop).toMatch(/^[0-9a-f]{8,}$/);
    expect(machineId.laptop).not.toBe(machineId.desktop);
    const all = JSON.parse((await laptop.runOk(["list", "--json"])).stdout);
    expect(all.sessions.filter((s: { id: string }) => s.id === shared.id)).toHaveLength(2);
    const mine = JSON.parse((await laptop.runOk(["list", "--machine", machineId.laptop.slice(0, 6), "--json"])).stdout);
    expect(mine.sessions.map((s: { id: string }) => s.id)).toEqual([shared.id]);
  });

  it("a --machine that names no machine, or two of them, is a usage error that lists the machines", async () => {
    const unknown = await laptop.run(["list", "--machine", "no-such-host"]);
    expect(unknown.code).toBe(2);
    expectOneLineError(unknown.stderr);
    expect(unknown.stderr).toContain('no machine "no-such-host" in this snapshot');
    expect(unknown.stderr).toContain(machineId.desktop.slice(0, 8));
    expect(unknown.stderr).toContain(machineId.laptop.slice(0, 8));
    // Both test machines run on this host: its name alone does not say which.
    const ambiguous = await laptop.run(["restore", shared.id, "--machine", os.hostname(), "--no-resume"]);
    expect(ambiguous.code).toBe(2);
    expectOneLineError(ambiguous.stderr);
    expect(ambiguous.stderr).toContain("names 2 machines in this snapshot");
    expect(ambiguous.stderr).toContain("give the machine id instead");
  });

  it("restore <id> takes the newest copy and says which other machine has one", async () => {
    const carol = await withSameIdentity(desktop, "carol", { CCBUNDLE_STORE: nas });
    cleanups.push(carol);
    const doc = JSON.parse((await carol.runOk(["restore", shared.id.slice(0, 8), "--no-resume", "--json"])).stdout);
    expect(doc.sessions).toHaveLength(1);
    expect(doc.sessions[0].project).toBe(laptop.project("code/app"));
    const note = doc.sessions[0].warnings.find((w: string) => w.includes("backed up this session too"));
    expect(note).toContain("restored");
    // Both test machines share this host's name: the note names the other machine by its id.
    expect(note).toContain(`--machine ${machineId.desktop.slice(0, 8)}\``);
    const transcript = readFileSync(
      path.join(carol.claudeDir, "projects", projectFolderName(laptop.project("code/app")), `${shared.id}.jsonl`),
      "utf8",
    );
    expect(transcript).toContain("went on on the laptop");
  });

  it("restore <id> --machine takes that machine's copy, and refuses a machine that has none", async () => {
    const dave = await withSameIdentity(desktop, "dave", { CCBUNDLE_STORE: nas });
    cleanups.push(dave);
    const doc = JSON.parse(
      (await dave.runOk(["restore", shared.id, "--machine", machineId.desktop.slice(0, 4), "--no-resume", "--json"]))
        .stdout,
    );
    expect(doc.sessions[0].project).toBe(desktop.project("code/app"));
    expect(doc.sessions[0].warnings.join("\n")).not.toContain("backed up this session too");
    const none = await dave.run(["restore", desktopOnly.id, "--machine", machineId.laptop, "--no-resume"]);
    expect(none.code).toBe(4);
    expectOneLineError(none.stderr);
    expect(none.stderr).toContain(`did not back up session ${desktopOnly.id}`);
  });

  it("restore --all --machine restores only that machine's sessions", async () => {
    const erin = await withSameIdentity(desktop, "erin", { CCBUNDLE_STORE: nas });
    cleanups.push(erin);
    const doc = JSON.parse((await erin.runOk(["restore", "--all", "--machine", machineId.desktop, "--json"])).stdout);
    expect(doc.sessions.map((s: { originalId: string }) => s.originalId).sort()).toEqual(
      [shared.id, desktopOnly.id].sort(),
    );
    expect(new Set(doc.sessions.map((s: { host: string }) => s.host))).toEqual(new Set([os.hostname()]));
    expect(doc.sessions.every((s: { project: string }) => s.project === desktop.project("code/app"))).toBe(true);
  });
});

describe("a transcript that never says where it ran (no line with a cwd)", () => {
  it("is backed up, listed, and restore --all files it back under its own project folder", async () => {
    const { machine: frank, nas: frankNas } = await backupMachine("frank");
    cleanups.push(frank);
    const project = frank.project("code/site");
    const folder = projectFolderName(project);
    const id = "7a1c0d2e-5f60-4b7a-9c8d-0e1f2a3b4c5d";
    const dir = path.join(frank.claudeDir, "projects", folder);
    mkdirSync(dir, { recursive: true });
    // Claude Code writes these before the first prompt; a session left then has nothing else.
    const lines = [
      {
        type: "file-history-snapshot",
        messageId: "m1",
        snapshot: { messageId: "m1", trackedFileBackups: {}, timestamp: "2026-11-01T09:00:00.000Z" },
        isSnapshotUpdate: false,
      },
      { type: "summary", summary: "Read https://example.com/docs and A / B", leafUuid: "m1" },
    ];
    writeFileSync(path.join(dir, `${id}.jsonl`), `${lines.map((line) => JSON.stringify(line)).join("\n")}\n`);
    await frank.runOk(["backup"]);
    const listed = JSON.parse((await frank.runOk(["list", "--json"])).stdout);
    expect(listed.sessions.find((s: { id: string }) => s.id === id)).toMatchObject({ folder, project: "/" });

    const gina = await withSameIdentity(frank, "gina", { CCBUNDLE_STORE: frankNas });
    cleanups.push(gina);
    const doc = JSON.parse((await gina.runOk(["restore", "--all", "--json"])).stdout);
    expect(doc.sessions).toHaveLength(1);
    expect(existsSync(path.join(gina.claudeDir, "projects", folder, `${id}.jsonl`))).toBe(true);
    expect(existsSync(path.join(gina.claudeDir, "projects", projectFolderName("/")))).toBe(false);

    // One session: where pull would put a session whose path is gone, the current directory, said so.
    const hank = await withSameIdentity(frank, "hank", { CCBUNDLE_STORE: frankNas });
    cleanups.push(hank);
    const here = hank.project("work");
    const one = await hank.runOk(["restore", id.slice(0, 8), "--no-resume", "--json"], { cwd: here });
    const session = JSON.parse(one.stdout).sessions[0];
    expect(session).toMatchObject({ targetReason: "current-dir", project: here });
    expect(session.warnings.join("\n")).toContain("does not say which directory it ran in");
    const restored = readFileSync(
      path.join(hank.claudeDir, "projects", projectFolderName(here), `${id}.jsonl`),
      "utf8",
    );
    // "/" stands for the unknown directory: no lone slash is taken for it and rewritten.
    expect(restored).toContain("Read https://example.com/docs and A / B");
  });
});

describe("prune --forget-machine: a replaced laptop's sessions leave", () => {
  it("takes that machine's entries out of a new newest snapshot; its blobs go once nothing kept names them", async () => {
    // A store of its own: desktop and laptop back up; then the laptop is retired.
    const { machine: desk, nas: store } = await backupMachine("forget-desk");
    cleanups.push(desk);
    writeSession({ claudeDir: desk.claudeDir, projectDir: desk.project("app"), home: desk.home });
    await desk.runOk(["backup"]);
    const lap = await withSameIdentity(desk, "forget-lap", { CCBUNDLE_STORE: store });
    cleanups.push(lap);
    const lapSession = writeSession({ claudeDir: lap.claudeDir, projectDir: lap.project("app"), home: lap.home });
    await lap.runOk(["backup"]);
    const before = JSON.parse((await desk.runOk(["list", "--json"])).stdout);
    const lapId = before.sessions.find((s: { id: string }) => s.id === lapSession.id).machine as string;
    const lapBlob = before.sessions.find((s: { id: string }) => s.id === lapSession.id).blob.key as string;
    expect(existsSync(path.join(store, lapBlob))).toBe(true);

    // This machine cannot forget itself (its next backup would put its sessions back).
    const self = await lap.run(["prune", "--forget-machine", lapId]);
    expect(self.code).toBe(2);
    expect(self.stderr).toContain("is this machine");

    // The dry run with the same options predicts what the real one removes (it once said 0 blobs:
    // it kept the old newest snapshot, which names the laptop's blobs).
    const flags = ["--keep-last", "1", "--grace", "0", "--json"];
    const dry = JSON.parse((await desk.runOk(["prune", "--forget-machine", lapId, "--dry-run", ...flags])).stdout);
    expect(dry.forgot).toMatchObject({ machine: lapId, sessions: 1 });
    expect(dry.forgot.snapshot).toBeUndefined();
    expect(dry.blobs.removed).toBeGreaterThanOrEqual(1);
    expect(JSON.parse((await desk.runOk(["list", "--json"])).stdout).sessions).toHaveLength(2);

    const done = JSON.parse((await desk.runOk(["prune", "--forget-machine", lapId.slice(0, 6), ...flags])).stdout);
    expect(done.forgot).toMatchObject({ machine: lapId, sessions: 1 });
    expect(done.blobs.removed).toBe(dry.blobs.removed);
    expect(done.blobs.removedBytes).toBe(dry.blobs.removedBytes);
    expect(done.snapshots.removed).toEqual(dry.snapshots.removed);
    expect(done.snapshots.kept.map((k: { id: string }) => k.id)).toEqual([done.forgot.snapshot]);
    const after = JSON.parse((await desk.runOk(["list", "--json"])).stdout);
    expect(after.snapshot).toBe(done.forgot.snapshot);
    expect(after.sessions.map((s: { id: string }) => s.id)).not.toContain(lapSession.id);
    expect(after.sessions).toHaveLength(1);
    expect(existsSync(path.join(store, lapBlob))).toBe(false);
  });
});
