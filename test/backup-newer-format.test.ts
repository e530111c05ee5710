import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { listSnapshotIds, newestSnapshot, newSnapshot, writeSnapshot } from "../core/backup/snapshot.js";
import { SEAL_VERSION } from "../core/crypto/slot-seal.js";
import { signPacket } from "../core/pointer/packet.js";
import { recordEntries } from "../core/pointer/record.js";
import { storeLayout } from "../core/store-layout.js";
import { LocalStore } from "../storage-adapters/local.js";
import { backupMachine } from "./helpers/backup.js";
import { type FixtureSession, writeSession } from "./helpers/fixture.js";
import { machineKey } from "./helpers/hostile.js";
import type { Machine } from "./helpers/machine.js";

/**
 * A store shared with a machine that runs a newer ccbundle: its newest
 * snapshot is in a format this build cannot read. Passing over it as damaged
 * (as before) let this machine write a snapshot that sorts as the newest and
 * lacks what the newer one recorded, with nothing said under cron. Backup
 * stops instead, and says to upgrade.
 */

let alice: Machine;
let nas: string;
let project: string;
let session: FixtureSession;

beforeAll(async () => {
  ({ machine: alice, nas } = await backupMachine("newer-format"));
  project = alice.project("app");
  session = writeSession({ claudeDir: alice.claudeDir, projectDir: project, home: alice.home });
});
const machines: Machine[] = [];
afterAll(() => {
  alice?.cleanup();
  for (const machine of machines) machine.cleanup();
});

describe("the newest snapshot was written by a newer ccbundle", () => {
  it("backup exits 5 and writes nothing; reading that snapshot says to upgrade", async () => {
    await alice.runOk(["backup", "--json"]);
    const key = machineKey(alice.ccbHome);
    const store = new LocalStore(nas);
    const base = await newestSnapshot(store, key, []);
    const future = newSnapshot({
      key,
      machine: "ffffffffffffffff",
      host: "upgraded",
      parent: base,
      sessions: base!.sessions,
      now: new Date(),
    });
    (future as { format: string }).format = "ccbundle-snapshot/2";
    await writeSnapshot(store, key, future, [key.ageRecipient()]);
    const before = await listSnapshotIds(store, key.z32);

    appendFileSync(session.transcript, `${JSON.stringify({ type: "user", cwd: project, message: "more" })}\n`);
    const backup = await alice.run(["backup"]);
    expect(backup.code, backup.stderr).toBe(5);
    expect(backup.stderr).toMatch(
      new RegExp(`^ccbundle: snapshot ${future.id} was written by a newer ccbundle \\(ccbundle-snapshot/2\\)`),
    );
    expect(backup.stderr).toMatch(/hint: upgrade ccbundle on this machine/);
    expect(await listSnapshotIds(store, key.z32)).toEqual(before);

    const list = await alice.run(["list", "--snapshot", future.id]);
    expect(list.code).toBe(5);
    expect(list.stderr).toMatch(/written by a newer ccbundle/);
  });

  it("a backup state file of a newer version: upgrade, not 'delete it'", async () => {
    const dir = path.join(alice.ccbHome, "state", "backup");
    const file = path.join(dir, readdirSync(dir).find((name) => name.endsWith(".json"))!);
    const state = JSON.parse(readFileSync(file, "utf8"));
    writeFileSync(file, JSON.stringify({ ...state, version: 2 }));
    const backup = await alice.run(["backup"]);
    expect(backup.code).toBe(1);
    expect(backup.stderr).toMatch(/^ccbundle: backup state .* was written by a newer ccbundle\nhint: upgrade ccbundle/);
    writeFileSync(file, "{ torn");
    const damaged = await alice.run(["backup"]);
    expect(damaged.stderr).toMatch(/is damaged\nhint: delete it/);
    writeFileSync(file, JSON.stringify(state));
  });
});

describe("prune --unreferenced beside record slots a newer ccbundle wrote", () => {
  it("skips its sweep: such a slot may name any blob", async () => {
    // A machine of its own: alice's store holds a newer snapshot (above), which skips the sweep anyway.
    const { machine: carol, nas } = await backupMachine("newer-slots-prune");
    machines.push(carol);
    writeSession({ claudeDir: carol.claudeDir, projectDir: carol.project("app"), home: carol.home });
    await carol.runOk(["backup"]);
    const key = machineKey(carol.ccbHome);
    const newerSeal = Buffer.concat([Buffer.from([SEAL_VERSION + 1]), Buffer.alloc(120, 3)]);
    const seed = key.exportSeed();
    const record = signPacket(seed, recordEntries([newerSeal]), Date.now() * 1000);
    seed.fill(0);
    const file = path.join(nas, storeLayout.record(key.z32));
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, record.bytes);
    // A blob nothing of ours names, old enough for any grace.
    const stray = path.join(nas, storeLayout.blobsPrefix, "strayblob0000000000000000000");
    writeFileSync(stray, "x");
    const pruned = JSON.parse((await carol.runOk(["prune", "--unreferenced", "--grace", "0s", "--json"])).stdout);
    expect(pruned.warnings.join("\n")).toMatch(
      /--unreferenced skipped: your record holds slots a newer ccbundle wrote/,
    );
    expect(existsSync(stray)).toBe(true);
  });
});

describe("the handoff ledger of a newer version", () => {
  it("is written back with what this build does not know", async () => {
    const { addHandoff } = await import("../core/handoff-ledger.js");
    const key = machineKey(alice.ccbHome);
    const file = path.join(alice.ccbHome, "state", `handoffs-${key.z32}.json`);
    const unknownEntry = { slot: "self", store: nas, key: "ccbundle/v1/blobs/y", created: 1, until: "forever" };
    writeFileSync(file, JSON.stringify({ version: 2, handoffs: [unknownEntry], names: {}, groups: { team: ["x"] } }));
    await addHandoff(alice.ccbHome, key.z32, {
      slot: "self",
      store: nas,
      key: "ccbundle/v1/blobs/x",
      created: 1,
      expires: 2,
    });
    const written = JSON.parse(readFileSync(file, "utf8"));
    expect(written.version).toBe(2);
    expect(written.groups).toEqual({ team: ["x"] });
    expect(written.handoffs).toHaveLength(2);
    expect(written.handoffs).toContainEqual(unknownEntry);
  });
});
