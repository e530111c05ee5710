import { spawn } from "node:child_process";
import { appendFileSync, existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { projectFolderName } from "../core/claude/paths.js";
import { backupMachine, blobNames, snapshotNames, withSameIdentity } from "./helpers/backup.js";
import { type FixtureSession, writeSession } from "./helpers/fixture.js";
import { CLI, type Machine } from "./helpers/machine.js";

/**
 * Backups that do not get to finish: a run killed with SIGKILL half-way leaves
 * the previous snapshot as the valid one, and the next run reuses every blob
 * the killed one had finished. And a session Claude Code is still writing is
 * backed up as whole lines, then again once it has grown.
 */

/** Preload that makes the backup SIGKILL itself right after its first journal line. */
const KILL_AFTER_JOURNAL = fileURLToPath(new URL("./helpers/kill-after-journal.mjs", import.meta.url));

let alice: Machine;
let nas: string;
let project: string;
const sessions: FixtureSession[] = [];

function appendLine(session: FixtureSession, text: string) {
  const line = { type: "user", message: { role: "user", content: text }, sessionId: session.id, cwd: session.cwd };
  appendFileSync(session.transcript, `${JSON.stringify(line)}\n`);
}

function journalLines(): number {
  const dir = path.join(alice.ccbHome, "state", "backup");
  if (!existsSync(dir)) return 0;
  return readdirSync(dir)
    .filter((name) => name.endsWith(".journal"))
    .reduce((sum, name) => sum + readFileSync(path.join(dir, name), "utf8").split("\n").filter(Boolean).length, 0);
}

beforeAll(async () => {
  ({ machine: alice, nas } = await backupMachine("alice"));
  project = alice.project("code/big");
  for (let i = 0; i < 16; i++) {
    sessions.push(
      writeSession({ claudeDir: alice.claudeDir, projectDir: project, home: alice.home, turns: 6, padding: 40_000 }),
    );
  }
});

afterAll(() => alice?.cleanup());

describe("an interrupted backup", () => {
  it("killed after its first upload: the previous snapshot stays valid; the rerun reuses what was uploaded", async () => {
    const first = JSON.parse((await alice.runOk(["backup", "--json"])).stdout);
    expect(first.sessions.uploaded).toBe(16);
    for (const session of sessions) appendLine(session, "and now something else");
    const blobsBefore = new Set(blobNames(nas));

    // One bundle at a time, killed as soon as the first finished upload is journaled.
    const child = spawn(process.execPath, [CLI, "backup", "--concurrency", "1"], {
      env: { ...alice.env, NODE_OPTIONS: `--import ${KILL_AFTER_JOURNAL}` },
      stdio: "ignore",
    });
    const killed = await new Promise<NodeJS.Signals | null>((resolve) => {
      child.on("exit", (_code, signal) => resolve(signal));
    });
    expect(killed).toBe("SIGKILL");
    const journaled = journalLines();
    expect(journaled).toBe(1);

    // The store still has exactly the first snapshot, and it restores.
    expect(snapshotNames(nas)).toHaveLength(1);
    const listed = JSON.parse((await alice.runOk(["list", "--json"])).stdout);
    expect(listed.snapshot).toBe(first.snapshot);
    expect(listed.sessions).toHaveLength(16);
    const uploadedByKilledRun = blobNames(nas).filter((name) => !blobsBefore.has(name));
    expect(uploadedByKilledRun.length).toBeGreaterThanOrEqual(journaled);

    const rerun = JSON.parse((await alice.runOk(["backup", "--json"])).stdout);
    expect(rerun.sessions).toMatchObject({ resumed: journaled, uploaded: 16 - journaled, failed: 0, inSnapshot: 16 });
    expect(rerun.parent).toBe(first.snapshot);
    // The reused blobs are the killed run's; nothing it finished was uploaded twice.
    const finalList = JSON.parse((await alice.runOk(["list", "--json"])).stdout);
    const named = new Set(finalList.sessions.map((s: { blob: { key: string } }) => path.basename(s.blob.key)));
    const reused = uploadedByKilledRun.filter((name) => named.has(name));
    expect(reused).toHaveLength(journaled);
    expect(blobNames(nas).length).toBe(blobsBefore.size + uploadedByKilledRun.length + (16 - journaled));
    // No journal is left once a run completes.
    expect(journalLines()).toBe(0);
  });
});

describe("a session being written while it is backed up", () => {
  it("is backed up as whole lines, a prefix of the file, and backed up again once it has grown", async () => {
    const live = writeSession({
      claudeDir: alice.claudeDir,
      projectDir: project,
      home: alice.home,
      turns: 30,
      padding: 120_000,
    });
    // Claude Code keeps appending (sometimes half a line at a time) while the backup reads.
    let n = 0;
    const writer = setInterval(() => {
      const line = JSON.stringify({ type: "assistant", n: n++, sessionId: live.id, text: "x".repeat(3000) });
      appendFileSync(live.transcript, line.slice(0, 1500));
      setImmediate(() => appendFileSync(live.transcript, `${line.slice(1500)}\n`));
    }, 1);
    let doc: { sessions: { uploaded: number }; uploaded: { bytes: number }[] };
    try {
      doc = JSON.parse((await alice.runOk(["backup", "--session", live.id, "--json"])).stdout);
    } finally {
      clearInterval(writer);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(doc.sessions.uploaded).toBe(1);
    const final = readFileSync(live.transcript);

    // Restore it byte for byte (--no-rewrite) on another machine with the same identity.
    const bob = await withSameIdentity(alice, "bob", { CCBUNDLE_STORE: nas });
    try {
      const target = bob.project("restored");
      await bob.runOk(["restore", live.id, "--project", target, "--no-rewrite", "--no-resume"]);
      const restored = readFileSync(
        path.join(bob.claudeDir, "projects", projectFolderName(target), `${live.id}.jsonl`),
      );
      expect(restored.length).toBeGreaterThan(0);
      expect(restored.length).toBeLessThan(final.length);
      expect(restored.at(-1)).toBe(0x0a);
      expect(final.subarray(0, restored.length).equals(restored)).toBe(true);
    } finally {
      bob.cleanup();
    }
    const again = JSON.parse((await alice.runOk(["backup", "--session", live.id, "--json"])).stdout);
    expect(again.sessions.uploaded).toBe(1);
    expect(again.uploaded[0].bytes).toBeGreaterThan(doc.uploaded[0].bytes);
  });
});
