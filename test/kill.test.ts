import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { appendFileSync, existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { UserKey } from "../core/crypto/keys.js";
import { lockPath } from "../core/lock.js";
import { storeLayout } from "../core/store-layout.js";
import {
  claudeFiles,
  expectEachFileBeforeOrAfter,
  expectStoreTrustworthy,
  killDuring,
  resetTree,
} from "./helpers/consistency.js";
import { type FixtureSession, writeSession } from "./helpers/fixture.js";
import { machineKey } from "./helpers/hostile.js";
import { type Machine, sameUserOnTwoMachines } from "./helpers/machine.js";
import { expectNoSecrets, stagingLeftovers } from "./helpers/tree.js";

/**
 * kill -9 at random points of push and pull, and at every kind of point of
 * the install phase, followed by a consistency check and a rerun: the config
 * dir is as before or (after the rerun that finishes the interrupted
 * install) fully restored, the store holds only complete bundles and a record
 * that points at one, the push lock of a killed run does not block the next.
 */

const CRASH_HELPER = fileURLToPath(new URL("../dist/test/helpers/crash-receive.js", import.meta.url));

let alice: Machine;
let bob: Machine;
let key: UserKey;
let nas: string;
let session: FixtureSession;
let aliceProject: string;
let bobProject: string;
let pushMs = 1000;
let pullMs = 1000;
let before: Record<string, string>;
let after: Record<string, string>;

/** A seeded PRNG, so a failing kill point can be reproduced (the seed is in the test name). */
const SEED = Number(process.env.CCBUNDLE_KILL_SEED ?? Date.now() % 100_000);
let state = SEED;
const random = () => {
  state = (state * 1103515245 + 12345) % 2 ** 31;
  return state / 2 ** 31;
};

function pullArgs() {
  return ["pull", "--project", bobProject, "--no-resume"];
}

/**
 * When to kill the next round: a random point of the command's run time. That time was measured
 * once in beforeAll, and the machine may be quicker now (it was busy then): a round the command
 * finished before its kill lowers the estimate, and a last round with no kill yet aims at the
 * first half (after start-up).
 */
function nextKillDelay(estimateMs: number, from: number, span: number, lastWithoutKill: boolean): number {
  // Not earlier than 0.3: the first ~120 ms are Node starting, where a kill tests nothing.
  return Math.floor(estimateMs * (lastWithoutKill ? 0.3 + 0.3 * random() : from + span * random()));
}

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const start = Date.now();
  const value = await fn();
  return [value, Date.now() - start];
}

beforeAll(async () => {
  ({ alice, bob, nas } = await sameUserOnTwoMachines("kill", { nas: true }));
  key = machineKey(alice.ccbHome);
  aliceProject = alice.project("work/app");
  bobProject = bob.project("code/app");
  session = writeSession({
    claudeDir: alice.claudeDir,
    projectDir: aliceProject,
    home: alice.home,
    turns: 40,
    padding: 2000,
  });
  // Something that does not compress, so the transfer phase is not instant.
  const big = path.join(alice.claudeDir, "projects", session.folder, session.id, "tool-results", "big.txt");
  writeFileSync(big, randomBytes(3 << 20).toString("base64"));

  // Bob has the first half of the session; Alice goes on working and pushes again.
  await alice.runOk(["push"], { cwd: aliceProject });
  await bob.runOk(pullArgs());
  const more = JSON.stringify({ type: "user", cwd: aliceProject, sessionId: session.id, message: { content: "next" } });
  appendFileSync(session.transcript, `${more}\n`.repeat(20));
  const extra = path.join(alice.claudeDir, "file-history", session.id, "later@v1");
  writeFileSync(extra, "later\n");
  [, pushMs] = await timed(() => alice.runOk(["push"], { cwd: aliceProject }));

  before = claudeFiles(bob.claudeDir);
  [, pullMs] = await timed(() => bob.runOk(pullArgs()));
  after = claudeFiles(bob.claudeDir);
  expect(after).not.toEqual(before);
  resetTree(bob.claudeDir, before);
}, 120_000);

afterAll(() => {
  alice?.cleanup();
  bob?.cleanup();
});

describe(`kill -9 of pull at random points (seed ${SEED})`, () => {
  it("each time: every file as before or as restored; the rerun restores it all and leaves no staging", async () => {
    let killedCount = 0;
    for (let i = 0; i < 4; i++) {
      resetTree(bob.claudeDir, before);
      const delay = nextKillDelay(pullMs, 0.3, 0.8, i === 3 && killedCount === 0);
      const { killed, result, elapsedMs } = await killDuring(bob, pullArgs(), delay);
      if (killed) killedCount++;
      else {
        expect(result.code, result.stderr).toBe(0);
        pullMs = Math.min(pullMs, elapsedMs);
      }
      expectEachFileBeforeOrAfter(claudeFiles(bob.claudeDir), before, after);
      const rerun = await bob.run(pullArgs());
      expect(rerun.code, `after a kill at ${delay} ms: ${rerun.stderr}`).toBe(0);
      expect(claudeFiles(bob.claudeDir)).toEqual(after);
      expect(stagingLeftovers(bob.claudeDir)).toEqual([]);
    }
    expect(killedCount).toBeGreaterThan(0);
  });
});

describe("kill -9 at each point of the install phase", () => {
  let blobFile: string;
  let steps = 0;
  let restored: Record<string, string>;

  beforeAll(async () => {
    // The newest blob: encrypted to the owner too, so Bob (same identity) can import it as a file.
    const dir = path.join(nas, ...storeLayout.blob("x").split("/").slice(0, -1));
    blobFile = readdirSync(dir)
      .map((name) => path.join(dir, name))
      .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs)[0]!;
    // From an empty config dir every file of the session is one install step.
    resetTree(bob.claudeDir, {});
    const probe = await crashAt(10_000);
    expect(probe.stdout).toContain("finished");
    steps = Number(/step \d+\/(\d+)/.exec(probe.stdout)?.[1]);
    expect(steps).toBeGreaterThan(20);
    restored = claudeFiles(bob.claudeDir);
  });

  function crashAt(step: number, signal = "SIGKILL"): Promise<{ code: number | null; stdout: string }> {
    return new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [CRASH_HELPER, blobFile, String(step), bobProject, signal], {
        env: bob.env,
        stdio: ["ignore", "pipe", "pipe"],
      });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (d) => {
        stdout += d;
      });
      child.stderr.on("data", (d) => {
        stderr += d;
      });
      child.on("error", reject);
      child.on("close", (code, endedBy) => {
        if (endedBy !== signal && code !== 0) reject(new Error(`crash helper failed: ${stderr}`));
        else resolve({ code, stdout });
      });
    });
  }

  it("the next command finishes the interrupted install from its journal", async () => {
    const points = [...new Set([0, 1, Math.floor(steps / 2), steps - 2, steps - 1])];
    for (const step of points) {
      resetTree(bob.claudeDir, {});
      const crashed = await crashAt(step);
      expect(crashed.stdout).not.toContain("finished");
      expectEachFileBeforeOrAfter(claudeFiles(bob.claudeDir), {}, restored);
      // The transcript goes last: Claude Code sees no session until everything else is in place.
      const transcripts = Object.keys(claudeFiles(bob.claudeDir)).filter((p) => p.endsWith(`${session.id}.jsonl`));
      expect(transcripts).toEqual([]);
      expect(stagingLeftovers(bob.claudeDir)).toHaveLength(1); // the dead run's, journal inside
      if (step === points[0]) {
        const doctor = JSON.parse((await bob.run(["doctor", "--json"])).stdout);
        const check = doctor.checks.find((c: { name: string }) => c.name === "interrupted restore");
        expect(check?.ok).toBe(false);
        expect(check.hint).toContain("run the same command again");
      }
      const rerun = await bob.run(["import", blobFile, "--project", bobProject, "--no-resume"]);
      expect(rerun.code, rerun.stderr).toBe(0);
      expect(rerun.stderr).toContain("finished an interrupted restore");
      expect(claudeFiles(bob.claudeDir), `killed before step ${step}`).toEqual(restored);
      expect(stagingLeftovers(bob.claudeDir)).toEqual([]);
    }
  });

  it("Ctrl-C in the install phase: never a half-installed session without the journal to finish it", async () => {
    for (const step of [0, Math.floor(steps / 2), steps - 1]) {
      resetTree(bob.claudeDir, {});
      const interrupted = await crashAt(step, "SIGINT");
      expect(interrupted.stdout).not.toContain("finished");
      expect(existsSync(lockPath(bob.ccbHome, "restore"))).toBe(false); // its own lock went
      // The renames run without yielding, so the signal is handled once they are done: the install
      // is complete and its staging gone. Were it handled in between, the staging and its journal
      // must be there for the next command.
      const files = claudeFiles(bob.claudeDir);
      expectEachFileBeforeOrAfter(files, {}, restored);
      if (stagingLeftovers(bob.claudeDir).length === 0) expect(files, `Ctrl-C at step ${step}`).toEqual(restored);
      const rerun = await bob.run(["import", blobFile, "--project", bobProject, "--no-resume"]);
      expect(rerun.code, rerun.stderr).toBe(0);
      expect(claudeFiles(bob.claudeDir)).toEqual(restored);
      expect(stagingLeftovers(bob.claudeDir)).toEqual([]);
    }
  });
});

describe(`kill -9 of push at random points (seed ${SEED})`, () => {
  it("the store holds only complete bundles and a record that points at one; the next push is not blocked", async () => {
    let killedCount = 0;
    for (let i = 0; i < 4; i++) {
      const delay = nextKillDelay(pushMs, 0.2, 0.9, i === 3 && killedCount === 0);
      const { killed, result, elapsedMs } = await killDuring(alice, ["push"], delay, { cwd: aliceProject });
      if (killed) killedCount++;
      else {
        expect(result.code, result.stderr).toBe(0);
        pushMs = Math.min(pushMs, elapsedMs);
      }
      await expectStoreTrustworthy(nas, key);
    }
    expect(killedCount).toBeGreaterThan(0);
    // A lock left by a killed push (dead pid) is taken over at once, not waited on for 30 s.
    const [rerun, ms] = await timed(() => alice.run(["push"], { cwd: aliceProject }));
    expect(rerun.code, rerun.stderr).toBe(0);
    expect(ms).toBeLessThan(15_000);
    expect(existsSync(lockPath(alice.ccbHome, "push"))).toBe(false);
    await expectStoreTrustworthy(nas, key);
    resetTree(bob.claudeDir, before);
    expect((await bob.run(pullArgs())).code).toBe(0);
    expect(claudeFiles(bob.claudeDir)).toEqual(after);
  });

  it("a lock held by a push killed while it held it is recovered", async () => {
    const { child, done } = alice.start(["push"], { cwd: aliceProject });
    const lock = lockPath(alice.ccbHome, "push");
    const deadline = Date.now() + 10_000;
    while (!existsSync(lock) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 2));
    expect(existsSync(lock)).toBe(true);
    child.kill("SIGKILL");
    await done;
    expect(JSON.parse(readFileSync(lock, "utf8")).pid).toBe(child.pid);
    const [rerun, ms] = await timed(() => alice.run(["push"], { cwd: aliceProject }));
    expect(rerun.code, rerun.stderr).toBe(0);
    expect(ms).toBeLessThan(15_000);
    await expectStoreTrustworthy(nas, key);
  });

  it("no output carried a secret", () => {
    const secrets = [Buffer.from(key.exportSeed()).toString("base64url"), key.ageIdentity().toString()];
    expectNoSecrets([...alice.outputs, ...bob.outputs], secrets);
  });
});
