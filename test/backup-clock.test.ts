import { appendFileSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newSnapshotId, snapshotTime } from "../core/backup/snapshot.js";
import { backupMachine, withSameIdentity } from "./helpers/backup.js";
import { type FixtureSession, writeSession } from "./helpers/fixture.js";
import type { Machine } from "./helpers/machine.js";

/**
 * A backup made while the machine's clock was a year ahead (a VM's clock, a
 * dead RTC) must not hide the backups made after the clock was put right:
 * "newest" is the last snapshot id in sort order, and ids start with a time.
 */

const YEAR_MS = 365 * 24 * 3600_000;
let alice: Machine;
let nas: string;
let project: string;
let session: FixtureSession;
let aheadEnv: NodeJS.ProcessEnv;

beforeAll(async () => {
  ({ machine: alice, nas } = await backupMachine("clock"));
  project = alice.project("app");
  session = writeSession({ claudeDir: alice.claudeDir, projectDir: project, home: alice.home });
  // Date, a year ahead, in the CLI's process (what a wrong system clock looks like to Node).
  const preload = path.join(alice.root, "clock-ahead.cjs");
  writeFileSync(
    preload,
    `const Real = Date;
class Ahead extends Real {
  constructor(...args) { if (args.length === 0) super(Real.now() + ${YEAR_MS}); else super(...args); }
  static now() { return Real.now() + ${YEAR_MS}; }
}
globalThis.Date = Ahead;
`,
  );
  aheadEnv = { NODE_OPTIONS: `--require ${preload}` };
});
afterAll(() => alice?.cleanup());

describe("snapshot ids", () => {
  it("a new id follows its parent's, even when the clock is behind it", () => {
    const now = new Date("2026-11-21T10:00:00.000Z");
    expect(snapshotTime(newSnapshotId(now))).toBe(now.getTime());
    const earlier = newSnapshotId(new Date("2026-11-21T09:00:00.000Z"));
    expect(snapshotTime(newSnapshotId(now, earlier))).toBe(now.getTime());
    const ahead = newSnapshotId(new Date("2027-11-21T10:00:00.000Z"));
    const next = newSnapshotId(now, ahead);
    expect(next > ahead).toBe(true);
    expect(snapshotTime(next)).toBe(snapshotTime(ahead) + 1);
  });
});

describe("a backup made while the clock was a year ahead", () => {
  it("does not hide the next backup from list, restore and the backup after it", async () => {
    const future = JSON.parse((await alice.runOk(["backup", "--json"], { env: aheadEnv })).stdout);
    expect(future.snapshot.startsWith(String(new Date().getUTCFullYear() + 1))).toBe(true);

    // The clock is right again; the session goes on.
    const line = JSON.stringify({ type: "user", cwd: project, sessionId: session.id, message: { content: "later" } });
    appendFileSync(session.transcript, `${line}\n`);
    const now = await alice.runOk(["backup", "--json"]);
    const doc = JSON.parse(now.stdout);
    expect(doc.snapshot > future.snapshot).toBe(true);
    expect(doc.warnings.join("\n")).toContain(
      `the newest snapshot ${future.snapshot} is dated after this machine's clock`,
    );
    expect(JSON.parse((await alice.runOk(["list", "--json"])).stdout).snapshot).toBe(doc.snapshot);

    // A new laptop restores the later state.
    const laptop = await withSameIdentity(alice, "clock-laptop", { CCBUNDLE_STORE: nas });
    try {
      const restored = JSON.parse(
        (await laptop.runOk(["restore", session.id.slice(0, 8), "--no-resume", "--json"])).stdout,
      );
      expect(restored.snapshot).toBe(doc.snapshot);
      expect(readFileSync(restored.sessions[0].transcript, "utf8")).toContain('"content":"later"');
    } finally {
      laptop.cleanup();
    }
  });
});
