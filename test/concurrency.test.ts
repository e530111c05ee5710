import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import {
  appendFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { projectFolderName } from "../core/claude/paths.js";
import type { UserKey } from "../core/crypto/keys.js";
import { CcbError } from "../core/errors.js";
import { acquireLock, lockPath, withLock } from "../core/lock.js";
import { expectStoreTrustworthy } from "./helpers/consistency.js";
import { type FixtureSession, writeSession } from "./helpers/fixture.js";
import { machineKey } from "./helpers/hostile.js";
import { type Machine, sameUserOnTwoMachines } from "./helpers/machine.js";
import { stagingLeftovers } from "./helpers/tree.js";

/**
 * Two of the same command at once on one machine, and a pull while Claude
 * Code keeps appending to the session it restores.
 */

const scratch = mkdtempSync(path.join(os.tmpdir(), "ccb-lock-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** A pid that existed and is gone now. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ["-e", ""], { stdio: "ignore" });
  await new Promise((resolve) => child.on("exit", resolve));
  return child.pid!;
}

/** Run `n` critical sections under the lock at once; report the most that ever overlapped. */
async function contend(home: string, n: number): Promise<number> {
  let inside = 0;
  let most = 0;
  await Promise.all(
    Array.from({ length: n }, () =>
      withLock(
        home,
        "push",
        async () => {
          inside++;
          most = Math.max(most, inside);
          await new Promise((resolve) => setTimeout(resolve, 5));
          inside--;
        },
        { waitMs: 30_000 },
      ),
    ),
  );
  return most;
}

/**
 * `processes` node processes, each taking the lock `rounds` times and logging when it is in and
 * out. Returns the most that were ever inside at once, as the log shows it (1 when the lock
 * held); every section must have been logged.
 */
async function contendAcrossProcesses(home: string, log: string, processes: number, rounds: number): Promise<number> {
  const lockModule = new URL("../dist/core/lock.js", import.meta.url).href;
  const script = `
    const { withLock } = await import(${JSON.stringify(lockModule)});
    const { appendFileSync } = await import("node:fs");
    for (let i = 0; i < ${rounds}; i++) {
      await withLock(process.argv[1], "push", async () => {
        appendFileSync(process.argv[2], "in " + process.pid + "\\n");
        await new Promise((r) => setTimeout(r, 3));
        appendFileSync(process.argv[2], "out " + process.pid + "\\n");
      }, { waitMs: 30000 });
    }`;
  writeFileSync(log, "");
  const children = Array.from({ length: processes }, () =>
    spawn(process.execPath, ["--input-type=module", "-e", script, home, log], { stdio: "inherit" }),
  );
  await Promise.all(children.map((child) => new Promise((resolve) => child.on("exit", resolve))));
  const events = readFileSync(log, "utf8").trim().split("\n");
  expect(events).toHaveLength(2 * processes * rounds);
  let inside = 0;
  let most = 0;
  for (const event of events) {
    inside += event.startsWith("in ") ? 1 : -1;
    most = Math.max(most, inside);
  }
  return most;
}

/** The ticket a remover of the push lock holding `content` takes first (core/lock.ts). */
function ticketFor(home: string, content: string): string {
  return `${lockPath(home, "push")}.${createHash("sha256").update(content).digest("hex").slice(0, 16)}.takeover`;
}

/** Leave a lock file as a holder would have; returns its exact content. */
function plantLock(
  home: string,
  owner: { pid: number; host: string; started: number; boot?: string; ticks?: string; pidns?: string },
): string {
  mkdirSync(path.join(home, "locks"), { recursive: true });
  const content = JSON.stringify(owner);
  writeFileSync(lockPath(home, "push"), content);
  return content;
}

describe("the lock in CCBUNDLE_HOME", () => {
  it("lets one holder in at a time", async () => {
    const home = path.join(scratch, "one");
    expect(await contend(home, 12)).toBe(1);
    expect(existsSync(lockPath(home, "push"))).toBe(false);
  });

  it("a lock whose process is gone is taken over, by exactly one of many contenders", async () => {
    // The race this guards against was rare (1 round in 200 of the old rename-and-put-back),
    // so run many rounds; each leaves nothing behind in the locks folder.
    const dead = await deadPid();
    for (let round = 0; round < 25; round++) {
      const home = path.join(scratch, `stale-${round}`);
      plantLock(home, { pid: dead, host: os.hostname(), started: Date.now() });
      expect(await contend(home, 10)).toBe(1);
      expect(readdirSync(path.join(home, "locks"))).toEqual([]);
    }
  });

  it("a takeover left unfinished by a dead process does not wedge the lock", async () => {
    const home = path.join(scratch, "ticket");
    const stale = plantLock(home, { pid: await deadPid(), host: os.hostname(), started: Date.now() });
    // The ticket a contender takes before removing the stale lock; that contender died too.
    writeFileSync(
      ticketFor(home, stale),
      JSON.stringify({ pid: await deadPid(), host: os.hostname(), started: Date.now() }),
    );
    expect(await contend(home, 6)).toBe(1);
    expect(readdirSync(path.join(home, "locks"))).toEqual([]);
  });

  it("release removes the lock even when a dead contender's takeover ticket is on it", async () => {
    const home = path.join(scratch, "release-ticket");
    const release = await acquireLock(home, "push");
    const mine = readFileSync(lockPath(home, "push"), "utf8");
    // A contender judged our lock stale (by age), took its ticket, and was killed.
    writeFileSync(
      ticketFor(home, mine),
      JSON.stringify({ pid: await deadPid(), host: os.hostname(), started: Date.now() }),
    );
    await release();
    expect(readdirSync(path.join(home, "locks"))).toEqual([]);
  });

  it("release never throws (the locks folder gone under it), and the next one gets in", async () => {
    const home = path.join(scratch, "release-gone");
    const release = await acquireLock(home, "push");
    rmSync(path.join(home, "locks"), { recursive: true });
    await release();
    await (await acquireLock(home, "push"))();
  });

  it("taking the lock clears files that killed processes left beside it an hour ago, and only those", async () => {
    const home = path.join(scratch, "leftovers");
    mkdirSync(path.join(home, "locks"), { recursive: true });
    const lock = lockPath(home, "push");
    const old = [`${lock}.0123456789ab.tmp`, `${lock}.0123456789abcdef.takeover`];
    const recent = `${lock}.ba9876543210.tmp`;
    const other = path.join(home, "locks", "backup.lock.0123456789ab.tmp");
    for (const file of [...old, recent, other]) writeFileSync(file, "");
    const twoHoursAgo = new Date(Date.now() - 2 * 3600_000);
    for (const file of [...old, other]) utimesSync(file, twoHoursAgo, twoHoursAgo);
    await (await acquireLock(home, "push"))();
    expect(readdirSync(path.join(home, "locks")).sort()).toEqual([path.basename(other), path.basename(recent)].sort());
  });

  it("holds across processes: many CLIs starting at once never overlap", async () => {
    const home = path.join(scratch, "procs");
    expect(await contendAcrossProcesses(home, path.join(scratch, "procs.log"), 6, 3)).toBe(1);
  });

  it("holds across processes when they all start by taking over a stale lock", async () => {
    const home = path.join(scratch, "procs-stale");
    const dead = await deadPid();
    for (let round = 0; round < 4; round++) {
      plantLock(home, { pid: dead, host: os.hostname(), started: Date.now() });
      expect(await contendAcrossProcesses(home, path.join(scratch, `procs-stale-${round}.log`), 6, 1)).toBe(1);
      expect(readdirSync(path.join(home, "locks"))).toEqual([]);
    }
  });

  it("an unreadable lock file (a crash of an older version) is taken over", async () => {
    const home = path.join(scratch, "garbage");
    mkdirSync(path.join(home, "locks"), { recursive: true });
    writeFileSync(lockPath(home, "push"), "");
    const release = await acquireLock(home, "push");
    await release();
  });

  it("a live holder makes the next one wait, then fail with who holds it", async () => {
    const home = path.join(scratch, "live");
    const holder = spawn("sleep", ["30"], { stdio: "ignore" });
    try {
      mkdirSync(path.join(home, "locks"), { recursive: true });
      writeFileSync(
        lockPath(home, "push"),
        JSON.stringify({ pid: holder.pid, host: os.hostname(), started: Date.now() }),
      );
      const start = Date.now();
      const err = await acquireLock(home, "push", { waitMs: 400 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CcbError);
      expect((err as CcbError).message).toContain(`another ccbundle push is running (pid ${holder.pid}`);
      expect((err as CcbError).hint).toContain(lockPath(home, "push"));
      expect(Date.now() - start).toBeGreaterThanOrEqual(400);
    } finally {
      holder.kill("SIGKILL");
    }
  });
});

/** Linux's boot id and a process's start ticks, read here independently of core/lock.ts. */
const bootId = () => readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
const pidns = () => readlinkSync("/proc/self/ns/pid");
const startTicks = (pid: number) => {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19]!;
};

describe.runIf(existsSync("/proc/self/stat"))("the lock's owner, when its pid is in use again", () => {
  const liveHolder = () => spawn("sleep", ["30"], { stdio: "ignore" });

  it("records the boot and the start ticks of the process that holds it", async () => {
    const home = path.join(scratch, "ident");
    const release = await acquireLock(home, "push");
    try {
      const owner = JSON.parse(readFileSync(lockPath(home, "push"), "utf8")) as Record<string, unknown>;
      expect(owner.boot).toBe(bootId());
      expect(owner.ticks).toBe(startTicks(process.pid));
      expect(owner.pidns).toBe(pidns());
    } finally {
      await release();
    }
  });

  it("a lock from an earlier boot is taken over at once, though a process has its pid now", async () => {
    const home = path.join(scratch, "reboot");
    const holder = liveHolder();
    try {
      plantLock(home, {
        pid: holder.pid!,
        host: os.hostname(),
        started: Date.now(),
        boot: "00000000-0000-4000-8000-000000000000",
        ticks: startTicks(holder.pid!),
      });
      const release = await acquireLock(home, "push");
      await release();
    } finally {
      holder.kill("SIGKILL");
    }
  });

  it("a lock whose pid now belongs to a later process (a restarted container) is taken over at once", async () => {
    const home = path.join(scratch, "pid-again");
    const holder = liveHolder();
    try {
      const ticks = String(Number(startTicks(holder.pid!)) - 1);
      const same = { host: os.hostname(), started: Date.now(), boot: bootId(), ticks, pidns: pidns() };
      plantLock(home, { pid: holder.pid!, ...same });
      const release = await acquireLock(home, "push");
      await release();
      // Our own pid, written by an earlier process that had it.
      plantLock(home, { pid: process.pid, ...same });
      const again = await acquireLock(home, "push");
      await again();
    } finally {
      holder.kill("SIGKILL");
    }
  });

  it("the process that really holds it is waited for", async () => {
    const home = path.join(scratch, "real-owner");
    const holder = liveHolder();
    try {
      const owner = { pid: holder.pid!, host: os.hostname(), started: Date.now() };
      plantLock(home, { ...owner, boot: bootId(), ticks: startTicks(holder.pid!), pidns: pidns() });
      const err = await acquireLock(home, "push", { waitMs: 300 }).catch((e: unknown) => e);
      expect((err as CcbError).message).toContain(`another ccbundle push is running (pid ${holder.pid}`);
      // Written in another pid namespace (a container sharing this home): its ticks say nothing
      // here, and a live pid keeps the lock, as it did before ticks were recorded.
      plantLock(home, { ...owner, boot: bootId(), ticks: "1", pidns: "pid:[1]" });
      const other = await acquireLock(home, "push", { waitMs: 300 }).catch((e: unknown) => e);
      expect((other as CcbError).message).toContain(`another ccbundle push is running (pid ${holder.pid}`);
    } finally {
      holder.kill("SIGKILL");
    }
  });
});

describe("two commands at once on one machine", () => {
  let alice: Machine;
  let bob: Machine;
  let key: UserKey;
  let nas: string;
  let session: FixtureSession;
  let project: string;
  let bobProject: string;

  beforeAll(async () => {
    ({ alice, bob, nas } = await sameUserOnTwoMachines("conc", { nas: true }));
    key = machineKey(alice.ccbHome);
    project = alice.project("app");
    bobProject = bob.project("app");
    session = writeSession({
      claudeDir: alice.claudeDir,
      projectDir: project,
      home: alice.home,
      turns: 30,
      padding: 4000,
    });
  });

  afterAll(() => {
    alice?.cleanup();
    bob?.cleanup();
  });

  it("two pushes: both succeed one after the other, the record points at a complete blob, no lock left", async () => {
    const [a, b] = await Promise.all([
      alice.run(["push", "--json"], { cwd: project }),
      alice.run(["push", "--json"], { cwd: project }),
    ]);
    expect(a.code, a.stderr).toBe(0);
    expect(b.code, b.stderr).toBe(0);
    expect(JSON.parse(a.stdout).blobKey).not.toBe(JSON.parse(b.stdout).blobKey);
    expect(existsSync(lockPath(alice.ccbHome, "push"))).toBe(false);
    await expectStoreTrustworthy(nas, key);
    expect((await bob.run(["pull", "--project", bobProject, "--no-resume"])).code).toBe(0);
  });

  it("a pull while Claude Code appends to the same session never loses an appended line", async () => {
    const transcript = path.join(bob.claudeDir, "projects", projectFolderName(bobProject), `${session.id}.jsonl`);
    const full = readFileSync(transcript, "utf8");
    const lines = full.split("\n").filter(Boolean);
    const outcomes: string[] = [];
    for (let round = 0; round < 4; round++) {
      // Bob's copy is behind: the pull will want to fast-forward it.
      writeFileSync(transcript, `${lines.slice(0, lines.length - 10).join("\n")}\n`);
      const appended: string[] = [];
      const { done } = bob.start(["pull", "--project", bobProject, "--no-resume", "--json"]);
      let running = true;
      const finished = done.finally(() => {
        running = false;
      });
      // Claude Code: whole lines, appended every few milliseconds, starting at a different moment each round.
      await new Promise((resolve) => setTimeout(resolve, 100 + round * 120));
      let n = 0;
      while (running) {
        const line = JSON.stringify({ type: "user", marker: `round${round}-line${n++}`, sessionId: session.id });
        appendFileSync(transcript, `${line}\n`);
        appended.push(line);
        await new Promise((resolve) => setTimeout(resolve, 1));
      }
      const result = await finished;
      expect(result.code, result.stderr).toBe(0);
      outcomes.push(JSON.parse(result.stdout).sessions[0].outcome);
      const now = readFileSync(transcript, "utf8");
      for (const line of now.split("\n").filter(Boolean)) expect(() => JSON.parse(line)).not.toThrow();
      const saved = backupsText(bob.ccbHome);
      const lost = appended.filter((line) => !now.includes(line) && !saved.includes(line));
      expect(lost, `outcome ${outcomes.at(-1)}`).toEqual([]);
      expect(stagingLeftovers(bob.claudeDir)).toEqual([]);
    }
  });
});

function backupsText(home: string): string {
  const dir = path.join(home, "backups");
  if (!existsSync(dir)) return "";
  let text = "";
  for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (entry.isFile()) text += readFileSync(path.join(entry.parentPath, entry.name), "utf8");
  }
  return text;
}
