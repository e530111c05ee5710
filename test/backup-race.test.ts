import { readdirSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { backupSessions } from "../core/backup/backup.js";
import { listBackups } from "../core/backup/list.js";
import { loadSettings } from "../core/config.js";
import { LocalStore } from "../storage-adapters/local.js";
import { backupMachine, StoreWithInterruption, withSameIdentity } from "./helpers/backup.js";
import { writeSession } from "./helpers/fixture.js";
import { machineKey } from "./helpers/hostile.js";
import type { Machine } from "./helpers/machine.js";

/**
 * Two machines of one user backing up into one store at the same moment: each builds on the
 * same newest snapshot. Whichever writes last used to make the newest snapshot, which `list`
 * and `restore` read, without the other's new session (found by the S3 audit, and by two cron
 * jobs at the same minute). The store wrappers below order the two machines' steps exactly,
 * so each case is deterministic, no timing luck; the last case runs two real `ccbundle backup`
 * processes at once, a few times.
 */

let a: Machine;
let b: Machine;
let nas: string;

beforeAll(async () => {
  ({ machine: a, nas } = await backupMachine("race-a"));
  b = await withSameIdentity(a, "race-b", { CCBUNDLE_STORE: nas });
  writeSession({ claudeDir: a.claudeDir, projectDir: a.project("app"), home: a.home });
  writeSession({ claudeDir: b.claudeDir, projectDir: b.project("app"), home: b.home });
  await a.runOk(["backup"]);
  await b.runOk(["backup"]);
});

afterAll(() => {
  a?.cleanup();
  b?.cleanup();
});

describe("two machines backing up at once", () => {
  it("B's whole backup after A's first read: the newest snapshot holds both machines' new sessions", async () => {
    const fromA = writeSession({ claudeDir: a.claudeDir, projectDir: a.project("app"), home: a.home });
    const fromB = writeSession({ claudeDir: b.claudeDir, projectDir: b.project("app"), home: b.home });
    const key = machineKey(a.ccbHome);
    const backupOf = (machine: Machine, store: LocalStore) =>
      backupSessions({
        settings: loadSettings({ ...machine.env }, {}),
        key,
        store,
        scope: {},
        cwd: machine.home,
      });
    const resultA = await backupOf(
      a,
      new StoreWithInterruption(nas, async () => {
        const resultB = await backupOf(b, new LocalStore(nas));
        expect(resultB.wroteSnapshot).toBe(true);
      }),
    );
    expect(resultA.wroteSnapshot).toBe(true);
    const listed = await listBackups({ store: new LocalStore(nas), key, filter: {} });
    const ids = listed.sessions.map((entry) => entry.id);
    expect(ids).toContain(fromA.id);
    expect(ids).toContain(fromB.id);
    expect(ids).toHaveLength(4);
    expect(listed.snapshot).toBe(resultA.snapshot);
  });

  it("B reads the newest before A's snapshot lands and writes after A looked again: one more round merges them", async () => {
    // The race two cron jobs at the same minute met (3 of 6 rounds): B reads the newest (the
    // old one) just before A's snapshot lands, A reads the newest again and sees its own, and
    // B's snapshot, without A's new session, lands after that and sorts last.
    const fromA = writeSession({ claudeDir: a.claudeDir, projectDir: a.project("app"), home: a.home });
    const fromB = writeSession({ claudeDir: b.claudeDir, projectDir: b.project("app"), home: b.home });
    const key = machineKey(a.ccbHome);
    const backupOf = (machine: Machine, store: LocalStore) =>
      backupSessions({ settings: loadSettings({ ...machine.env }, {}), key, store, scope: {}, cwd: machine.home });

    let bReadOld!: () => void;
    const bHasReadOld = new Promise<void>((resolve) => {
      bReadOld = resolve;
    });
    let aLooked!: () => void;
    const aLookedAgain = new Promise<void>((resolve) => {
      aLooked = resolve;
    });
    const isSnapshot = (name: string) => name.includes("/snapshots/");

    /**
     * A: its snapshot lands only once B has read the old newest. Its "look again" is its first
     * listing of the announcements after writing (or, before there were announcements, its read
     * of the newest after writing).
     */
    class StoreA extends LocalStore {
      wrote = false;
      override async put(...args: Parameters<LocalStore["put"]>) {
        if (!isSnapshot(args[0])) return super.put(...args);
        await bHasReadOld;
        const result = await super.put(...args);
        this.wrote = true;
        return result;
      }
      override list(prefix: string) {
        if (this.wrote && prefix.includes("/snapshot-writes/")) aLooked();
        return super.list(prefix);
      }
      override async getBytes(name: string) {
        const bytes = await super.getBytes(name);
        if (this.wrote && isSnapshot(name)) aLooked();
        return bytes;
      }
    }
    /**
     * B: its look for the newest just before it writes (its second listing of the snapshots)
     * returns only once A looked again. A listing, not a download: the snapshot B read first is
     * still in hand and is not downloaded again.
     */
    class StoreB extends LocalStore {
      listings = 0;
      override async *list(prefix: string) {
        yield* super.list(prefix);
        if (isSnapshot(prefix) && ++this.listings === 2) {
          bReadOld();
          await aLookedAgain;
        }
      }
    }
    const [resultA, resultB] = await Promise.all([
      backupOf(a, new StoreA(nas)).finally(aLooked),
      backupOf(b, new StoreB(nas)),
    ]);
    expect(resultA.wroteSnapshot).toBe(true);
    expect(resultB.wroteSnapshot).toBe(true);
    expect([...resultA.warnings, ...resultB.warnings]).toEqual([]);
    const listed = await listBackups({ store: new LocalStore(nas), key, filter: {} });
    const ids = listed.sessions.map((entry) => entry.id);
    expect(ids).toContain(fromA.id);
    expect(ids).toContain(fromB.id);
    expect(ids).toHaveLength(6);
    // Nothing announced is left behind.
    expect(readdirSync(path.join(nas, "ccbundle/v1/snapshot-writes", key.z32))).toEqual([]);
  });

  it("two `ccbundle backup` processes at once, a few times: every newest snapshot holds every session", async () => {
    let expected = (await listBackups({ store: new LocalStore(nas), key: machineKey(a.ccbHome), filter: {} })).sessions
      .length;
    for (let round = 0; round < 4; round++) {
      writeSession({ claudeDir: a.claudeDir, projectDir: a.project("app"), home: a.home });
      writeSession({ claudeDir: b.claudeDir, projectDir: b.project("app"), home: b.home });
      expected += 2;
      await Promise.all([a.runOk(["backup"]), b.runOk(["backup"])]);
      const listed = await listBackups({ store: new LocalStore(nas), key: machineKey(a.ccbHome), filter: {} });
      expect(listed.sessions).toHaveLength(expected);
    }
  });
});
