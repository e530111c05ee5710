import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { projectFolderName } from "../core/claude/paths.js";
import { backupMachine, withSameIdentity } from "./helpers/backup.js";
import { type FixtureSession, writeSession } from "./helpers/fixture.js";
import type { Machine } from "./helpers/machine.js";
import { startTestnet, type Testnet } from "./helpers/testnet.js";

/**
 * A pull fetches and stages the blob named by the first record to come in and
 * installs it only if that record is the newest. On loopback the (warmed) DHT
 * answers before the store's mirror; here the second push went to the store
 * only, so the DHT's first answer is an older record than the mirror's: the
 * newer handoff must be the one restored, whether the older one's blob is
 * still there or gone, and nothing of the dropped stage may stay behind.
 */

let testnet: Testnet;
let laptop: Machine;
let desktop: Machine;
let nas: string;
let project: string;
let older: FixtureSession;
let newer: FixtureSession;
/** The store mirror's copy of the record, as each push left it. */
let olderRecord: Buffer;
let newerRecord: Buffer;
let recordFile: string;
let z32: string;

beforeAll(async () => {
  testnet = await startTestnet(8);
  const net = { CCBUNDLE_BOOTSTRAP: testnet.bootstrap.join(","), CCBUNDLE_RELAYS: "none" };
  ({ machine: laptop, nas } = await backupMachine("alice", net));
  desktop = await withSameIdentity(laptop, "desk", { ...net, CCBUNDLE_STORE: nas });
  project = laptop.project("work/app");
  older = writeSession({ claudeDir: laptop.claudeDir, projectDir: project, home: laptop.home, title: "Older" });
  newer = writeSession({ claudeDir: laptop.claudeDir, projectDir: project, home: laptop.home, title: "Newer" });
  z32 = readFileSync(path.join(laptop.ccbHome, "identity.pub"), "utf8").split("\n")[0]!;
  recordFile = path.join(nas, "ccbundle", "v1", "records", z32);
  await laptop.runOk(["push", "--session", older.id], { cwd: project });
  olderRecord = readFileSync(recordFile);
  // The DHT keeps the older record: this push reaches the store (and its mirror) only.
  await laptop.runOk(["push", "--session", newer.id], { cwd: project, env: { CCBUNDLE_BOOTSTRAP: "none" } });
  newerRecord = readFileSync(recordFile);
  expect(newerRecord.equals(olderRecord)).toBe(false);
}, 60_000);

afterAll(async () => {
  laptop?.cleanup();
  desktop?.cleanup();
  await testnet?.close();
});

function transcriptOn(machine: Machine, target: string, session: FixtureSession): string {
  return path.join(machine.claudeDir, "projects", projectFolderName(target), `${session.id}.jsonl`);
}

async function pullOnDesktop(): Promise<{ sessionId: string; project: string }> {
  const target = desktop.project("work/app");
  rmSync(desktop.claudeDir, { recursive: true, force: true });
  const doc = JSON.parse(
    (await desktop.runOk(["pull", "--json", "--no-resume", "--project", target], { cwd: target })).stdout,
  );
  expect(doc.ok).toBe(true);
  expect(doc.sessions).toHaveLength(1);
  // Nothing of a dropped stage is left where Claude Code or a later pull would look.
  expect(readdirSync(desktop.claudeDir).filter((name) => name.startsWith(".ccbundle"))).toEqual([]);
  return doc.sessions[0];
}

describe("pull: the first record starts the download, the newest one is installed", () => {
  it("with mirror and DHT in agreement, the blob staged from the first answer is installed", async () => {
    writeFileSync(recordFile, olderRecord);
    const session = await pullOnDesktop();
    expect(session.sessionId).toBe(older.id);
    expect(existsSync(transcriptOn(desktop, session.project, older))).toBe(true);
  });

  it("a first answer older than the mirror's record: its blob is dropped and the newer handoff restored", async () => {
    writeFileSync(recordFile, newerRecord);
    const session = await pullOnDesktop();
    expect(session.sessionId).toBe(newer.id);
    expect(existsSync(transcriptOn(desktop, session.project, newer))).toBe(true);
    expect(existsSync(transcriptOn(desktop, session.project, older))).toBe(false);
  });

  it("an older record whose blob is gone does not fail the pull of the newer one", async () => {
    // The ledger lists the pushes' blobs in order: the first is the one the older record names.
    const ledger = JSON.parse(readFileSync(path.join(laptop.ccbHome, "state", `handoffs-${z32}.json`), "utf8"));
    const olderBlob = path.join(nas, ...ledger.handoffs[0].key.split("/"));
    expect(existsSync(olderBlob)).toBe(true);
    rmSync(olderBlob);
    const session = await pullOnDesktop();
    expect(session.sessionId).toBe(newer.id);
    expect(existsSync(transcriptOn(desktop, session.project, newer))).toBe(true);
  });
});
