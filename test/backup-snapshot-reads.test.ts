import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { backupSessions } from "../core/backup/backup.js";
import { newestSnapshot } from "../core/backup/snapshot.js";
import { loadSettings } from "../core/config.js";
import { LocalStore } from "../storage-adapters/local.js";
import { backupMachine, StoreWithInterruption, withSameIdentity } from "./helpers/backup.js";
import { writeSession } from "./helpers/fixture.js";
import { machineKey } from "./helpers/hostile.js";
import type { Machine } from "./helpers/machine.js";

/**
 * A backup that writes a snapshot looks for the newest snapshot three times (at the start, before
 * writing, after writing: backup.ts writeMergedSnapshot). Each look used to download, decrypt and
 * verify it again, though it was the one this run had just read or written: two GETs per cron run
 * too many on S3. Now only snapshots the run does not hold yet are read.
 */

let machine: Machine;
let nas: string;

beforeAll(async () => {
  ({ machine, nas } = await backupMachine("snapshot-reads"));
  writeSession({ claudeDir: machine.claudeDir, projectDir: machine.project("app"), home: machine.home });
  await machine.runOk(["backup"]);
});

afterAll(() => machine?.cleanup());

/** The local store, counting the snapshot objects it hands out (`during`: see StoreWithInterruption). */
class CountingStore extends StoreWithInterruption {
  snapshotGets = 0;

  override async getBytes(...args: Parameters<LocalStore["getBytes"]>) {
    if (args[0].includes("/snapshots/")) this.snapshotGets++;
    return super.getBytes(...args);
  }
}

/** One backup of `machine`'s sessions through `store`, in this process (so the store can count). */
const backupThrough = (store: LocalStore) =>
  backupSessions({
    settings: loadSettings({ ...machine.env }, {}),
    key: machineKey(machine.ccbHome),
    store,
    scope: {},
    cwd: machine.home,
  });

describe("snapshot reads of one backup", () => {
  it("reads the newest snapshot once, writes the next, and the newest then holds the new session", async () => {
    const added = writeSession({
      claudeDir: machine.claudeDir,
      projectDir: machine.project("app"),
      home: machine.home,
    });
    const store = new CountingStore(nas, undefined);
    const result = await backupThrough(store);
    expect(result.wroteSnapshot).toBe(true);
    expect(store.snapshotGets).toBe(1);
    const newest = await newestSnapshot(new LocalStore(nas), machineKey(machine.ccbHome), []);
    expect(newest?.id).toBe(result.snapshot);
    expect(newest?.sessions.map((session) => session.id)).toContain(added.id);
  });

  it("a snapshot another machine wrote after this run's first read is read, and merged", async () => {
    const other = await withSameIdentity(machine, "snapshot-reads-b", { CCBUNDLE_STORE: nas });
    try {
      const here = writeSession({
        claudeDir: machine.claudeDir,
        projectDir: machine.project("app"),
        home: machine.home,
      });
      const there = writeSession({ claudeDir: other.claudeDir, projectDir: other.project("app"), home: other.home });
      const store = new CountingStore(nas, () => other.runOk(["backup"]));
      const result = await backupThrough(store);
      expect(result.wroteSnapshot).toBe(true);
      // The first read, and the other machine's snapshot: not taken for the one in hand.
      expect(store.snapshotGets).toBe(2);
      const newest = await newestSnapshot(new LocalStore(nas), machineKey(machine.ccbHome), []);
      expect(newest?.id).toBe(result.snapshot);
      expect(newest?.sessions.map((session) => session.id)).toEqual(expect.arrayContaining([here.id, there.id]));
    } finally {
      other.cleanup();
    }
  });
});
