import { randomBytes, randomUUID } from "node:crypto";
import {
  appendFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { projectFolderName } from "../core/claude/paths.js";
import { backupMachine, withSameIdentity } from "./helpers/backup.js";
import { type FixtureSession, writeSession } from "./helpers/fixture.js";
import type { Machine } from "./helpers/machine.js";

/**
 * `restore --all` run again (after a full disk, a Ctrl-C, a failed session)
 * does not download what an earlier run restored and nobody touched since.
 * The proof that nothing is fetched: the store's blobs are moved away, and the
 * run still succeeds. Anything changed since goes through the normal restore.
 */

let alice: Machine;
let nas: string;
let sessions: FixtureSession[];
const fresh = () => ({ CLAUDE_CONFIG_DIR: path.join(alice.root, "claude-fresh") });
const claudeFresh = () => fresh().CLAUDE_CONFIG_DIR;
const blobs = () => path.join(nas, "ccbundle", "v1", "blobs");
const blobsAside = () => path.join(alice.root, "blobs-aside");

interface RestoredJson {
  originalId: string;
  sessionId: string;
  outcome: string;
  filesWritten: number;
  alreadyRestored?: boolean;
  project: string;
}

async function restoreAll(extra: string[] = []): Promise<{ ok: boolean; sessions: RestoredJson[] }> {
  const result = await alice.runOk(["restore", "--all", "--no-resume", "--json", ...extra], { env: fresh() });
  return JSON.parse(result.stdout);
}

/** Run `body` with the store's blobs gone: anything it restores was not downloaded. */
async function withoutBlobs<T>(body: () => Promise<T>): Promise<T> {
  renameSync(blobs(), blobsAside());
  try {
    return await body();
  } finally {
    renameSync(blobsAside(), blobs());
  }
}

/** One of the session's files here other than its transcript (a subagent's, say). */
function sideFile(session: FixtureSession): string {
  const side = session.files.find((file) => !file.endsWith(`${session.id}.jsonl`) && !file.endsWith("history.jsonl"));
  expect(side).toBeDefined();
  return path.join(claudeFresh(), ...side!.split("/"));
}

beforeAll(async () => {
  ({ machine: alice, nas } = await backupMachine("restore-memo"));
  const project = alice.project("code/app");
  sessions = [0, 1, 2].map(() => writeSession({ claudeDir: alice.claudeDir, projectDir: project, home: alice.home }));
  await alice.runOk(["backup"]);
});
afterAll(() => alice?.cleanup());

describe("restore --all run again", () => {
  it("skips every session an earlier run restored, without downloading it", async () => {
    const first = await restoreAll();
    expect(first.sessions.map((s) => s.outcome)).toEqual(["new", "new", "new"]);
    expect(first.sessions.some((s) => s.alreadyRestored)).toBe(false);

    const again = await withoutBlobs(() => restoreAll());
    expect(again.ok).toBe(true);
    expect(again.sessions).toHaveLength(3);
    for (const session of again.sessions)
      expect(session).toMatchObject({ outcome: "identical", alreadyRestored: true });
    expect(again.sessions.map((s) => s.originalId).sort()).toEqual(sessions.map((s) => s.id).sort());

    const told = await withoutBlobs(() => alice.runOk(["restore", "--all", "--no-resume"], { env: fresh() }));
    expect(told.stdout.trim().split("\n").at(-1)).toBe(
      "Nothing to restore: all 3 sessions are already here as backed up (3 as an earlier restore left them: not downloaded again).",
    );
  });

  it("fetches a session whose transcript went on since (resumed here), and keeps the local copy", async () => {
    const order = (await withoutBlobs(() => restoreAll())).sessions.map((s) => s.originalId);
    const resumed = sessions[0]!;
    const transcript = path.join(claudeFresh(), "projects", resumed.folder, `${resumed.id}.jsonl`);
    appendFileSync(transcript, `${JSON.stringify({ type: "user", message: { role: "user", content: "more" } })}\n`);
    const before = readFileSync(transcript);

    // Without the blobs that session fails (it must be fetched); the others are still skipped.
    const blocked = await withoutBlobs(() =>
      alice.run(["restore", "--all", "--no-resume", "--json"], { env: fresh() }),
    );
    const doc = JSON.parse(blocked.stdout);
    expect(doc.failures.map((f: { session: string }) => f.session)).toEqual([resumed.id]);
    expect(doc.sessions.filter((s: RestoredJson) => s.alreadyRestored)).toHaveLength(2);

    const fetched = await restoreAll();
    // Fetched or skipped, the sessions come in the snapshot's order.
    expect(fetched.sessions.map((s) => s.originalId)).toEqual(order);
    const it0 = fetched.sessions.find((s) => s.originalId === resumed.id)!;
    expect(it0.alreadyRestored).toBeUndefined();
    expect(it0.outcome).toBe("kept-local");
    expect(readFileSync(transcript)).toEqual(before);
    // Kept as it is ahead: the next run keeps it again, without a download.
    const kept = await withoutBlobs(() => restoreAll());
    expect(kept.sessions.find((s) => s.originalId === resumed.id)).toMatchObject({
      outcome: "kept-local",
      alreadyRestored: true,
    });
    const told = await withoutBlobs(() => alice.runOk(["restore", "--all", "--no-resume"], { env: fresh() }));
    expect(told.stdout.trim().split("\n").at(-1)).toBe(
      "Nothing to restore: 2 were already here as backed up (2 as an earlier restore left them: not downloaded again); 1 kept as it is (the local copy is ahead).",
    );
  });

  it("brings back a side file deleted since, and remembers the session again", async () => {
    const session = sessions[1]!;
    const local = sideFile(session);
    const content = readFileSync(local);
    rmSync(local);

    const repaired = await restoreAll();
    const entry = repaired.sessions.find((s) => s.originalId === session.id)!;
    expect(entry.alreadyRestored).toBeUndefined();
    expect(entry.filesWritten).toBe(1);
    expect(readFileSync(local)).toEqual(content);

    const again = await withoutBlobs(() => restoreAll());
    expect(again.sessions.find((s) => s.originalId === session.id)).toMatchObject({ alreadyRestored: true });
  });

  it("a different --map, or a torn memo line, is not taken for a restore done", async () => {
    const moved = await withoutBlobs(() =>
      alice.run(["restore", "--all", "--no-resume", "--json", "--map", `${alice.home}/code=${alice.home}/src`], {
        env: fresh(),
      }),
    );
    // Placed elsewhere: each must be fetched, and the blobs are not there.
    expect(JSON.parse(moved.stdout).sessions.filter((s: RestoredJson) => s.alreadyRestored)).toEqual([]);

    const memoDir = path.join(alice.ccbHome, "state", "restored");
    const [memo] = readdirSync(memoDir);
    appendFileSync(path.join(memoDir, memo!), '{"key":"torn by a cra');
    // The line recorded after the torn one starts on a line of its own.
    rmSync(sideFile(sessions[2]!));
    expect((await restoreAll()).sessions.filter((s) => s.alreadyRestored)).toHaveLength(2);
    const again = await withoutBlobs(() => restoreAll());
    expect(again.sessions.filter((s) => s.alreadyRestored)).toHaveLength(3);
    // An unreadable memo is as good as none: everything is fetched and restored as before.
    writeFileSync(path.join(memoDir, memo!), "not json\n");
    const rebuilt = await restoreAll();
    expect(rebuilt.sessions.filter((s) => s.alreadyRestored)).toEqual([]);
    expect(rebuilt.sessions.map((s) => s.outcome).sort()).toEqual(["identical", "identical", "kept-local"]);
    // --force could replace what a run without it kept: it goes through the normal restore.
    const forced = await withoutBlobs(() =>
      alice.run(["restore", "--all", "--no-resume", "--json", "--force"], { env: fresh() }),
    );
    expect(JSON.parse(forced.stdout).sessions).toEqual([]);
  });
});

describe("restore --all run again, where the earlier run is not the whole story", () => {
  let carol: Machine;
  let project: string;
  let forkedAway: FixtureSession;
  const carolFresh = () => ({ CLAUDE_CONFIG_DIR: path.join(carol.root, "claude-new") });
  const run = async (extra: string[] = []) =>
    JSON.parse(
      (await carol.run(["restore", "--all", "--no-resume", "--json", ...extra], { env: carolFresh() })).stdout,
    ) as { sessions: (RestoredJson & { warnings: string[] })[]; failures: { session: string }[] };

  beforeAll(async () => {
    ({ machine: carol } = await backupMachine("restore-memo-2"));
    project = carol.project("code/app");
    forkedAway = writeSession({ claudeDir: carol.claudeDir, projectDir: project, home: carol.home });
    writeSession({ claudeDir: carol.claudeDir, projectDir: project, home: carol.home });
    await carol.runOk(["backup"]);
  }, 60_000);
  afterAll(() => carol?.cleanup());

  it("a target directory created since the earlier run is looked at again", async () => {
    const moved = path.join(carol.home, "src");
    const map = ["--map", `${path.join(carol.home, "code")}=${moved}`];
    const first = await run(map);
    expect(first.sessions.map((s) => s.warnings.join(" "))).toEqual([
      expect.stringContaining("does not exist here yet"),
      expect.stringContaining("does not exist here yet"),
    ]);
    expect((await run(map)).sessions.every((s) => s.alreadyRestored)).toBe(true);
    mkdirSync(path.join(moved, "app"), { recursive: true });
    const again = await run(map);
    expect(again.sessions.some((s) => s.alreadyRestored)).toBe(false);
    expect(again.sessions.flatMap((s) => s.warnings).join(" ")).not.toContain("does not exist here yet");
  });

  it("a fork is not taken for done once the local original it was made beside is gone", async () => {
    const first = await run();
    const original = path.join(carolFresh().CLAUDE_CONFIG_DIR, "projects", forkedAway.folder, `${forkedAway.id}.jsonl`);
    expect(first.sessions.find((s) => s.originalId === forkedAway.id)).toBeDefined();
    // The local copy goes its own way: the backup's copy comes in as a fork beside it.
    writeFileSync(original, `${readFileSync(original, "utf8").split("\n")[0]}\n{"type":"user","edited":true}\n`);
    const forked = await run();
    const fork = forked.sessions.find((s) => s.originalId === forkedAway.id)!;
    expect(fork.outcome).toBe("forked");
    expect((await run()).sessions.find((s) => s.originalId === forkedAway.id)).toMatchObject({ alreadyRestored: true });
    rmSync(original);
    const back = await run();
    expect(back.sessions.find((s) => s.originalId === forkedAway.id && s.sessionId === forkedAway.id)).toMatchObject({
      outcome: "new",
    });
  });
});

describe("restore --all run again, with copies from two machines and sessions with no cwd", () => {
  let dora: Machine;
  let eve: Machine;
  afterAll(() => {
    dora?.cleanup();
    eve?.cleanup();
  });

  it("two machines' copies of one session on one transcript: runs after the second download neither", async () => {
    let nas: string;
    ({ machine: dora, nas } = await backupMachine("restore-memo-3"));
    const project = dora.project("code/app");
    const id = randomUUID();
    const line = (n: number) =>
      `${JSON.stringify({
        type: "user",
        uuid: `u${n}`,
        parentUuid: n ? `u${n - 1}` : null,
        cwd: project,
        sessionId: id,
        timestamp: `2026-11-20T10:00:0${n}.000Z`,
        message: { role: "user", content: `prompt ${n}` },
      })}\n`;
    const transcript = (machine: Machine, lines: number) => {
      const dir = path.join(machine.claudeDir, "projects", projectFolderName(project));
      mkdirSync(dir, { recursive: true });
      writeFileSync(path.join(dir, `${id}.jsonl`), Array.from({ length: lines }, (_, i) => line(i)).join(""));
    };
    transcript(dora, 2);
    await dora.runOk(["backup"]);
    // The session went on on another machine with the same identity, which backs up to the same store.
    eve = await withSameIdentity(dora, "restore-memo-3b", { CCBUNDLE_STORE: nas });
    transcript(eve, 3);
    await eve.runOk(["backup"]);
    const env = { CLAUDE_CONFIG_DIR: path.join(dora.root, "claude-new") };
    const restore = async () =>
      JSON.parse((await dora.runOk(["restore", "--all", "--no-resume", "--json"], { env })).stdout)
        .sessions as RestoredJson[];
    expect((await restore()).map((s) => s.outcome).sort()).toEqual(["fast-forward", "new"]);
    // The newer copy's install changed the transcript under the older copy's line: the next run
    // fetches the older copy once more (kept: the local copy is ahead). From then on, nothing.
    await restore();
    for (let run = 0; run < 2; run++) {
      const again = await restore();
      expect(again.map((s) => s.alreadyRestored)).toEqual([true, true]);
      expect(again.map((s) => s.outcome).sort()).toEqual(["identical", "kept-local"]);
    }
  });

  it("sessions whose transcripts never said their cwd each go back to their own folder", async () => {
    const folders = ["-home-x-one", "-home-x-two"];
    for (const folder of folders) {
      const dir = path.join(dora.claudeDir, "projects", folder);
      mkdirSync(dir, { recursive: true });
      writeFileSync(
        path.join(dir, `${randomUUID()}.jsonl`),
        `${JSON.stringify({ type: "summary", summary: `s ${folder}`, leafUuid: "u" })}\n`,
      );
    }
    await dora.runOk(["backup"]);
    const fresh = path.join(dora.root, "claude-nocwd");
    await dora.runOk(["restore", "--all", "--no-resume", "--json"], { env: { CLAUDE_CONFIG_DIR: fresh } });
    for (const folder of folders) expect(readdirSync(path.join(fresh, "projects", folder))).toHaveLength(1);
  });
});

describe("restore --all of a session that ran on Windows, without --map", () => {
  let frank: Machine;
  afterAll(() => frank?.cleanup());

  it("keeps it in its own project folder wherever the command runs, and says how to place it", async () => {
    ({ machine: frank } = await backupMachine("restore-windows"));
    const session = writeSession({
      claudeDir: frank.claudeDir,
      projectDir: frank.project("unused"),
      home: frank.home,
      source: { cwd: "C:\\Users\\al\\code\\app", home: "C:\\Users\\al", claudeDir: "C:\\Users\\al\\.claude" },
    });
    await frank.runOk(["backup"]);
    const env = { CLAUDE_CONFIG_DIR: path.join(frank.root, "claude-new") };
    for (const cwd of [frank.home, frank.project("elsewhere")]) {
      const doc = JSON.parse((await frank.runOk(["restore", "--all", "--no-resume", "--json"], { env, cwd })).stdout);
      const restored = doc.sessions.find((s: RestoredJson) => s.originalId === session.id);
      expect(restored.project).toBe("C:\\Users\\al\\code\\app");
      expect(restored.warnings.join(" ")).toContain("--map 'C:\\Users\\al=<a directory here>'");
    }
    expect(readdirSync(path.join(env.CLAUDE_CONFIG_DIR, "projects"))).toEqual([session.folder]);
    // The second run found it where the first put it.
    const again = JSON.parse((await frank.runOk(["restore", "--all", "--no-resume", "--json"], { env })).stdout);
    expect(again.sessions[0]).toMatchObject({ alreadyRestored: true });
  });
});

describe("RestoreMemo", () => {
  it("drops what newer backups superseded, compacts once many lines are dead, and checks each file's stat", async () => {
    const { RestoreMemo } = await import("../core/backup/restore-memo.js");
    const home = path.join(alice.root, "memo-unit");
    const claudeDir = path.join(alice.root, "memo-claude");
    const history = path.join(claudeDir, "history.jsonl");
    mkdirSync(claudeDir, { recursive: true });
    writeFileSync(history, "h\n");
    const transcripts = [0, 1, 2].map((i) => path.join(claudeDir, `t${i}.jsonl`));
    for (const file of transcripts) writeFileSync(file, "x\n");
    const placement = { claudeDir, home: "/home/x", maps: [], rewrite: true, force: false };
    const session = (i: number, outcome: "new" | "kept-local") => ({
      sessionId: `s${i}`,
      originalId: `s${i}`,
      title: undefined,
      targetCwd: "/p",
      transcript: transcripts[i]!,
      target: { cwd: "/p", reason: "original-path" as const },
      outcome,
      conflicts: [],
    });
    const memo = RestoreMemo.open(home, claudeDir, history);
    // Each transcript restored from many backups in turn: once a run looks at the newest three
    // blobs, the older ones of the same transcripts go.
    for (let n = 0; n < 1100; n++) {
      const i = n % 3;
      memo.record(RestoreMemo.key(`blob-${n}`, placement), session(i, n % 2 ? "kept-local" : "new"), [transcripts[i]!]);
    }
    memo.compact(new Set([1097, 1098, 1099].map((n) => RestoreMemo.key(`blob-${n}`, placement))));
    const [name] = readdirSync(path.join(home, "state", "restored"));
    const text = readFileSync(path.join(home, "state", "restored", name!), "utf8");
    expect(text.trim().split("\n")).toHaveLength(3);
    // The files' paths are kept relative to the config dir.
    expect(
      text
        .trim()
        .split("\n")
        .map((line) => JSON.parse(line).files[0][0])
        .sort(),
    ).toEqual(["t0.jsonl", "t1.jsonl", "t2.jsonl"]);
    const reread = RestoreMemo.open(home, claudeDir, history);
    // n = 1097, 1098, 1099: t2 kept-local, t0 new, t1 kept-local.
    expect(reread.unchanged(RestoreMemo.key("blob-1098", placement))).toMatchObject({
      sessionId: "s0",
      outcome: "identical",
    });
    expect(reread.unchanged(RestoreMemo.key("blob-1099", placement))).toMatchObject({ outcome: "kept-local" });
    expect(reread.unchanged(RestoreMemo.key("blob-1095", placement))).toBeUndefined();
    for (const other of [{ force: true }, { home: "/home/y" }, { rewrite: false }, { claudeDir: home }]) {
      expect(reread.unchanged(RestoreMemo.key("blob-1099", { ...placement, ...other }))).toBeUndefined();
    }
    // An edit of the same size whose mtime is put back: its ctime says so.
    const t1 = transcripts[1]!;
    const { atime, mtime } = statSync(t1);
    await new Promise((resolve) => setTimeout(resolve, 20));
    writeFileSync(t1, "z\n");
    utimesSync(t1, atime, mtime);
    expect(reread.unchanged(RestoreMemo.key("blob-1099", placement))).toBeUndefined();
    // history.jsonl: appended to is fine; replaced, not.
    appendFileSync(history, "more\n");
    expect(reread.unchanged(RestoreMemo.key("blob-1098", placement))).toBeDefined();
    renameSync(history, `${history}.old`);
    writeFileSync(history, "h\nmore\nand more\n");
    expect(reread.unchanged(RestoreMemo.key("blob-1098", placement))).toBeUndefined();
  });
});

describe("restore --all interrupted", () => {
  let bob: Machine;
  const small: FixtureSession[] = [];
  let big: FixtureSession;

  beforeAll(async () => {
    ({ machine: bob } = await backupMachine("restore-int"));
    const project = bob.project("code/app");
    for (let i = 0; i < 2; i++)
      small.push(writeSession({ claudeDir: bob.claudeDir, projectDir: project, home: bob.home }));
    big = writeSession({ claudeDir: bob.claudeDir, projectDir: project, home: bob.home });
    // Does not compress, so its restore takes a while; and restores last (sessions go oldest first).
    writeFileSync(path.join(path.dirname(big.transcript), big.id, "big.txt"), randomBytes(48 << 20).toString("base64"));
    const now = Date.now() / 1000;
    for (const [i, session] of small.entries()) utimesSync(session.transcript, now - 100 + i, now - 100 + i);
    await bob.runOk(["backup"]);
  }, 60_000);
  afterAll(() => bob?.cleanup());

  it("says how far it got and how to go on; the run again fetches only the rest", async () => {
    const claudeDir = path.join(bob.root, "claude-new");
    const env = { CLAUDE_CONFIG_DIR: claudeDir };
    const memoDir = path.join(bob.ccbHome, "state", "restored");
    const remembered = () =>
      existsSync(memoDir) && readdirSync(memoDir).some((name) => readFileSync(path.join(memoDir, name)).length > 0);
    const result = await bob.interruptWhen(["restore", "--all", "--no-resume"], remembered, { env });
    expect(result.sent, "the restore ended before its first session was in").toBe(true);
    expect(result.signal).toBe("SIGINT");
    expect(result.stderr).toMatch(
      /ccbundle: interrupted\nccbundle: restored [12] of 3 sessions before the interrupt\n/,
    );
    expect(result.stderr).toContain("hint: run the same command again to restore the rest");

    const again = JSON.parse((await bob.runOk(["restore", "--all", "--no-resume", "--json"], { env })).stdout);
    const byId = new Map(again.sessions.map((s: RestoredJson) => [s.originalId, s]));
    expect(byId.get(small[0]!.id)).toMatchObject({ alreadyRestored: true });
    expect(byId.get(big.id)).toMatchObject({ outcome: "new" });
  }, 60_000);

  it("with --json, the interrupt is one JSON document on stdout, with the tally", async () => {
    const claudeDir = path.join(bob.root, "claude-new-json");
    const memoDir = path.join(bob.ccbHome, "state", "restored");
    const before = new Set(readdirSync(memoDir));
    // This config dir's memo is a new file in the folder: ready once it holds a line.
    const remembered = () =>
      readdirSync(memoDir).some((name) => !before.has(name) && readFileSync(path.join(memoDir, name)).length > 0);
    const result = await bob.interruptWhen(["restore", "--all", "--no-resume", "--json"], remembered, {
      env: { CLAUDE_CONFIG_DIR: claudeDir },
    });
    expect(result.sent, "the restore ended before its first session was in").toBe(true);
    expect(result.signal).toBe("SIGINT");
    const doc = JSON.parse(result.stdout);
    expect(doc).toMatchObject({
      ok: false,
      of: 3,
      error: { message: "interrupted (SIGINT)", exitCode: 130, hint: expect.stringContaining("run the same command") },
    });
    expect(doc.restored).toBeGreaterThanOrEqual(1);
    expect(result.stderr).not.toContain("before the interrupt");
  }, 60_000);
});
