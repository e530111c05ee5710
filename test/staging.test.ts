import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { removeDeadStaging } from "../core/claude/staging.js";

/**
 * What an interrupted pull leaves in the config dir: a staging folder of
 * decrypted files. Before a receiving command stages anything it removes those
 * of dead processes that never reached their install (they only take space:
 * enough, after a big session, to fail the next pull's disk space check);
 * one with an install journal is left for the recovery that replays it.
 */

const root = mkdtempSync(path.join(os.tmpdir(), "ccb-staging-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function stagingFolder(name: string, pid: number, files: Record<string, string>): string {
  const dir = path.join(root, `.ccbundle-staging-${name}`);
  mkdirSync(dir);
  writeFileSync(path.join(dir, "owner.json"), JSON.stringify({ pid, host: os.hostname(), started: Date.now() }));
  for (const [file, content] of Object.entries(files)) writeFileSync(path.join(dir, file), content);
  return dir;
}

describe("staging folders of dead processes", () => {
  it("go before anything is staged when they hold no journal; one with a journal, or a live owner's, stays", async () => {
    const dead = spawnSync("true").pid!;
    const plaintext = stagingFolder("000000000001", dead, { "f-1": "decrypted session bytes".repeat(1000) });
    const interrupted = stagingFolder("000000000002", dead, { "f-1": "x", "journal-1.json": "{}" });
    const live = stagingFolder("000000000003", process.pid, { "f-1": "x" });
    await removeDeadStaging(root);
    expect(existsSync(plaintext)).toBe(false);
    expect(existsSync(interrupted)).toBe(true);
    expect(existsSync(live)).toBe(true);
  });
});
