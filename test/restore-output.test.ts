import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { backupMachine } from "./helpers/backup.js";
import { writeSession } from "./helpers/fixture.js";
import type { Machine } from "./helpers/machine.js";

/**
 * What `restore --all` prints for many sessions: three lines each for
 * thousands of sessions said little. Past 30, the sessions that went back as
 * they were backed up are counted by project; `--verbose` lists each.
 */

let alice: Machine;
const SESSIONS = 34;

beforeAll(async () => {
  ({ machine: alice } = await backupMachine("restore-output"));
  for (let i = 0; i < SESSIONS; i++) {
    const project = alice.project(i % 2 === 0 ? "code/app" : "code/api");
    writeSession({ claudeDir: alice.claudeDir, projectDir: project, home: alice.home });
  }
  await alice.runOk(["backup"]);
});
afterAll(() => alice?.cleanup());

describe("restore --all of many sessions", () => {
  it("counts routine sessions by project; --verbose lists each", async () => {
    const fresh = { CLAUDE_CONFIG_DIR: path.join(alice.root, "claude-fresh") };
    const summary = await alice.runOk(["restore", "--all", "--no-resume"], { env: fresh });
    const lines = summary.stdout.trim().split("\n");
    expect(lines.filter((line) => line.startsWith("Session "))).toHaveLength(0);
    expect(summary.stdout).toContain(`${SESSIONS} sessions went back as backed up (--verbose lists each):`);
    expect(summary.stdout).toMatch(new RegExp(`code/api: ${SESSIONS / 2} sessions\\n`));
    expect(summary.stdout).toMatch(new RegExp(`code/app: ${SESSIONS / 2} sessions\\n`));
    expect(lines.at(-1)).toBe(`Restored ${SESSIONS} sessions.`);
    expect(lines.length).toBeLessThan(10);

    const verbose = await alice.runOk(["restore", "--all", "--no-resume", "--verbose"], { env: fresh });
    expect(verbose.stdout.split("\n").filter((line) => line.startsWith("Session "))).toHaveLength(SESSIONS);
    expect(verbose.stdout.trim().split("\n").at(-1)).toBe(
      `Nothing to restore: all ${SESSIONS} sessions are already here as backed up (${SESSIONS} as an earlier restore left them: not downloaded again).`,
    );
  });
});
