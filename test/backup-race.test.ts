import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { backupSessions } from "../core/backup/backup.js";
import { listBackups } from "../core/backup/list.js";
import { loadSettings } from "../core/config.js";
import { LocalStore } from "../storage-adapters/local.js";
import { backupMachine, withSameIdentity } from "./helpers/backup.js";
import { writeSession } from "./helpers/fixture.js";
import { machineKey } from "./helpers/hostile.js";
import type { Machine } from "./helpers/machine.js";

/**
 * Two machines of one user backing up into one store at the same moment: each builds on the
 * same newest snapshot. Whichever writes last used to make the newest snapshot, which `list`
 * and `restore` read, without the other's new session (found by the S3 audit). Here machine B's
 * whole backup runs while machine A is writing its snapshot: deterministic, no timing luck.
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

/** The store, with `during` run once just before the first snapshot object is written. */
class StoreWithInterruption extends LocalStore {
  constructor(
    root: string,
    private during: (() => Promise<void>) | undefined,
  ) {
    super(root);
  }
  override async put(...args: Parameters<LocalStore["put"]>) {
    const run = this.during;
    if (run && args[0].includes("/snapshots/")) {
      this.during = undefined;
      await run();
    }
    return super.put(...args);
  }
}

describe("two machines backing up at once", () => {
  it("the newest snapshot holds both machines' new sessions", async () => {
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
});
