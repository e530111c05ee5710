import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runHint } from "../cli/commands/restore.js";
import { backupMachine } from "./helpers/backup.js";
import { type FixtureSession, writeSession } from "./helpers/fixture.js";
import type { Machine } from "./helpers/machine.js";

/**
 * The newest backup snapshot damaged in the store (a bad disk, a half-synced copy): on the new
 * laptop, `restore --all` said "cannot be opened with your key ... made with another identity"
 * and stopped, while the snapshot before it was fine. It now says the snapshot is damaged and
 * restores from the newest one that opens, with a warning.
 */

let alice: Machine;
let nas: string;
let first: FixtureSession;
let second: FixtureSession;
const fresh = () => ({ CLAUDE_CONFIG_DIR: path.join(alice.root, "claude-fresh") });

beforeAll(async () => {
  ({ machine: alice, nas } = await backupMachine("damaged-snapshot"));
  const project = alice.project("code/app");
  first = writeSession({ claudeDir: alice.claudeDir, projectDir: project, home: alice.home });
  await alice.runOk(["backup"]);
  second = writeSession({ claudeDir: alice.claudeDir, projectDir: project, home: alice.home });
  await alice.runOk(["backup"]);
});
afterAll(() => alice?.cleanup());

describe("a damaged newest snapshot", () => {
  it("is called damaged, and restore --all restores from the one before it", async () => {
    const folder = path.join(nas, "ccbundle", "v1", "snapshots");
    const [owner] = readdirSync(folder);
    const ids = readdirSync(path.join(folder, owner!)).sort();
    expect(ids).toHaveLength(2);
    const newest = path.join(folder, owner!, ids[1]!);
    const bytes = readFileSync(newest);
    bytes[bytes.length - 5]! ^= 0x40; // inside the last payload chunk: its tag no longer verifies
    writeFileSync(newest, bytes);

    const chosen = await alice.run(["restore", "--all", "--no-resume", "--snapshot", ids[1]!], { env: fresh() });
    expect(chosen.code).toBe(5);
    expect(chosen.stderr).toContain(`snapshot ${ids[1]} is damaged`);
    expect(chosen.stderr).not.toContain("another identity");

    // `list` lists the snapshots, the damaged one marked, and the sessions of the newest that opens
    // (it exited 5 and showed nothing, while its hint said to run `ccbundle list`).
    const listed = JSON.parse((await alice.runOk(["list", "--json"])).stdout);
    expect(listed.snapshot).toBe(ids[0]);
    expect(listed.snapshots.find((s: { id: string }) => s.id === ids[1]).damaged).toMatch(/is damaged/);
    expect(listed.sessions.map((s: { id: string }) => s.id)).toEqual([first.id]);

    const result = await alice.runOk(["restore", "--all", "--no-resume", "--json"], { env: fresh() });
    const doc = JSON.parse(result.stdout);
    expect(doc.ok).toBe(true);
    expect(doc.snapshot).toBe(ids[0]);
    expect(doc.warnings).toEqual([
      expect.stringContaining(`passed over snapshot ${ids[1]}: snapshot ${ids[1]} is damaged`),
    ]);
    expect(doc.sessions.map((s: { originalId: string }) => s.originalId)).toEqual([first.id]);
    expect(second.id).not.toBe(first.id);

    // The session only the damaged snapshot holds: not "no session" without a word about it.
    const missing = await alice.run(["restore", second.id.slice(0, 8), "--no-resume"], { env: fresh() });
    expect(missing.code).toBe(4);
    expect(missing.stderr).toContain(
      `no session ${second.id.slice(0, 8)} in the snapshot ${ids[0]}, the newest that opens`,
    );
    expect(missing.stderr).toContain(`passed over snapshot ${ids[1]}: snapshot ${ids[1]} is damaged`);
    expect(missing.stderr).toMatch(/hint: it may be in the damaged snapshot/);
  });
});

describe("the hint of a run that restored some sessions", () => {
  it("does not say nothing was changed, and says to run the command again", () => {
    expect(runHint("free some space; nothing was changed", true)).toBe(
      "free some space; then run the same command again to restore the rest (what was restored is not downloaded again)",
    );
    expect(runHint("free some space; nothing was changed", false)).toBe("free some space; nothing was changed");
    expect(runHint(undefined, true)).toMatch(/^run the same command again/);
  });
});
