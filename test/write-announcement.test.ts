import { mkdtempSync, rmSync, utimesSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { announcementPrefix, announceSnapshotWrite, awaitAnnouncedWrites } from "../core/backup/write-announcement.js";
import { CcbError } from "../core/errors.js";
import { LocalStore } from "../storage-adapters/local.js";

/** The announcements two machines backing up at once use (test/backup-race.test.ts runs them end to end). */

const OWNER = "o".repeat(52);
const dir = announcementPrefix(OWNER);
let root: string;
let store: LocalStore;

beforeEach(() => {
  root = mkdtempSync(path.join(os.tmpdir(), "ccb-announce-"));
  store = new LocalStore(root);
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

async function names(): Promise<string[]> {
  const out: string[] = [];
  for await (const object of store.list(dir)) out.push(object.key.slice(dir.length));
  return out.sort();
}

const A = "aaaaaaaaaaaaaaaa";
const B = "bbbbbbbbbbbbbbbb";

describe("snapshot write announcements", () => {
  it("are there while announced, outside snapshots/, gone once withdrawn (twice is fine)", async () => {
    const warnings: string[] = [];
    const announcement = await announceSnapshotWrite(store, OWNER, A, warnings);
    expect(announcement.key?.startsWith(`ccbundle/v1/snapshot-writes/${OWNER}/`)).toBe(true);
    expect(await names()).toEqual([expect.stringMatching(new RegExp(`^\\d{8}T\\d{9}Z-${A}-[a-z2-7]{8}$`))]);
    await announcement.withdraw(warnings);
    await announcement.withdraw(warnings);
    expect(await names()).toEqual([]);
    expect(warnings).toEqual([]);
  });

  it("another machine's live one is waited for until withdrawn", async () => {
    const other = await announceSnapshotWrite(store, OWNER, B, []);
    const mine = await announceSnapshotWrite(store, OWNER, A, []);
    await mine.withdraw([]);
    const started = Date.now();
    setTimeout(() => void other.withdraw([]), 300);
    const pending = await awaitAnnouncedWrites(store, OWNER, A, {
      storeNow: mine.storeNow,
      warnings: [],
      waitMs: 10_000,
    });
    expect(pending).toEqual([]);
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
  });

  it("one never withdrawn is waited for at most the limit, and named", async () => {
    const other = await announceSnapshotWrite(store, OWNER, B, []);
    const started = Date.now();
    const pending = await awaitAnnouncedWrites(store, OWNER, A, { storeNow: Date.now, warnings: [], waitMs: 400 });
    expect(pending).toEqual([other.key]);
    expect(Date.now() - started).toBeLessThan(3000);
  });

  it("stale is judged by the store's clock alone; this machine's own leftovers are deleted", async () => {
    const old = new Date(Date.now() - 2 * 60_000);
    const oldStamp = old.toISOString().replace(/[-:.]/g, "");
    const killed = `${dir}${oldStamp}-${B}-abcdefgh`;
    await store.put(killed, new Uint8Array(0));
    utimesSync(path.join(root, killed), old, old);
    // Named long ago (a machine whose clock is behind) but stored just now: live.
    const behind = `${dir}${oldStamp}-cccccccccccccccc-abcdefgh`;
    await store.put(behind, new Uint8Array(0));
    const leftover = `${dir}${oldStamp}-${A}-abcdefgh`;
    await store.put(leftover, new Uint8Array(0));
    const mine = await announceSnapshotWrite(store, OWNER, A, []);
    await mine.withdraw([]);
    // This machine's own clock an hour ahead changes nothing: the store's time is what counts.
    const realNow = Date.now;
    Date.now = () => realNow() + 3600_000;
    try {
      const pending = await awaitAnnouncedWrites(store, OWNER, A, { storeNow: mine.storeNow, warnings: [], waitMs: 0 });
      expect(pending).toEqual([behind]);
    } finally {
      Date.now = realNow;
    }
    expect(await names()).toEqual([killed, behind].map((key) => key.slice(dir.length)).sort());
  });

  it("a local listing while announcements are withdrawn does not fail (it did, with ENOENT, before the walk skipped them)", async () => {
    const announced = await Promise.all(
      Array.from({ length: 200 }, (_, i) => announceSnapshotWrite(store, OWNER, `${i}`.padStart(16, "c"), [])),
    );
    const listing = (async () => {
      const seen: string[] = [];
      for await (const object of store.list(dir)) {
        seen.push(object.key);
        await new Promise((resolve) => setImmediate(resolve));
      }
      return seen;
    })();
    await Promise.all(announced.map((announcement) => announcement.withdraw([])));
    expect((await listing).length).toBeLessThan(200);
  });

  it("a store that refuses them costs a warning, never the backup", async () => {
    const refusing = new (class extends LocalStore {
      override async put(...args: Parameters<LocalStore["put"]>): ReturnType<LocalStore["put"]> {
        if (args[0].startsWith(dir)) throw new CcbError("AccessDenied: put");
        return super.put(...args);
      }
      override async delete(): Promise<void> {
        throw new CcbError("AccessDenied: delete");
      }
      override list(): AsyncIterable<never> {
        throw new CcbError("AccessDenied: list");
      }
    })(root);
    const warnings: string[] = [];
    const none = await announceSnapshotWrite(refusing, OWNER, A, warnings);
    expect(none.key).toBeUndefined();
    await none.withdraw(warnings);
    expect(await awaitAnnouncedWrites(refusing, OWNER, A, { storeNow: Date.now, warnings })).toEqual([]);
    expect(warnings).toEqual([
      expect.stringMatching(/^could not announce this snapshot write in the store \(AccessDenied: put\)/),
      expect.stringMatching(/^could not look for other machines' snapshot writes \(AccessDenied: list\)/),
    ]);
    // Announced, then not deletable: a warning too.
    const announced = await announceSnapshotWrite(
      new (class extends LocalStore {
        override async delete(): Promise<void> {
          throw new CcbError("AccessDenied: delete");
        }
      })(root),
      OWNER,
      A,
      warnings,
    );
    await announced.withdraw(warnings);
    expect(warnings.at(-1)).toMatch(
      /^could not withdraw this machine's snapshot-write announcement .* \(AccessDenied: delete\)/,
    );
  });
});
