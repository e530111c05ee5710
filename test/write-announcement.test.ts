import { mkdtempSync, rmSync, utimesSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { announceSnapshotWrite, awaitAnnouncedWrites } from "../core/backup/write-announcement.js";
import { LocalStore } from "../storage-adapters/local.js";

/** The announcements two machines backing up at once use (test/backup-race.test.ts runs them end to end). */

const OWNER = "o".repeat(52);
const dir = `ccbundle/v1/snapshots/${OWNER}/.writing/`;
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

describe("snapshot write announcements", () => {
  it("are there while announced, gone once withdrawn (twice is fine)", async () => {
    const announcement = await announceSnapshotWrite(store, OWNER, "aaaaaaaaaaaaaaaa");
    expect(await names()).toEqual([expect.stringMatching(/^\d{8}T\d{9}Z-aaaaaaaaaaaaaaaa-[a-z2-7]{8}$/)]);
    await announcement.withdraw();
    await announcement.withdraw();
    expect(await names()).toEqual([]);
  });

  it("another machine's live one is waited for until withdrawn", async () => {
    const other = await announceSnapshotWrite(store, OWNER, "bbbbbbbbbbbbbbbb");
    const started = Date.now();
    setTimeout(() => void other.withdraw(), 300);
    expect(await awaitAnnouncedWrites(store, OWNER, "aaaaaaaaaaaaaaaa", { waitMs: 10_000 })).toEqual([]);
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
  });

  it("one never withdrawn is waited for at most the limit, and named", async () => {
    const other = await announceSnapshotWrite(store, OWNER, "bbbbbbbbbbbbbbbb");
    const started = Date.now();
    expect(await awaitAnnouncedWrites(store, OWNER, "aaaaaaaaaaaaaaaa", { waitMs: 400 })).toEqual([other.key]);
    expect(Date.now() - started).toBeLessThan(3000);
  });

  it("a killed run's is passed over once old by its name and the store's time; this machine's own is deleted", async () => {
    const old = new Date(Date.now() - 6 * 60_000);
    const stamp = old.toISOString().replace(/[-:.]/g, "");
    await store.put(`${dir}${stamp}-bbbbbbbbbbbbbbbb-abcdefgh`, new Uint8Array(0));
    utimesSync(path.join(root, dir, `${stamp}-bbbbbbbbbbbbbbbb-abcdefgh`), old, old);
    // Old by its name only (this machine's clock behind the other's, or the other way): still live.
    await store.put(`${dir}${stamp}-cccccccccccccccc-abcdefgh`, new Uint8Array(0));
    const mine = await announceSnapshotWrite(store, OWNER, "aaaaaaaaaaaaaaaa");
    const pending = await awaitAnnouncedWrites(store, OWNER, "aaaaaaaaaaaaaaaa", { waitMs: 0 });
    expect(pending).toEqual([`${dir}${stamp}-cccccccccccccccc-abcdefgh`]);
    expect(await names()).not.toContain(mine.key.slice(dir.length));
    expect(await names()).toHaveLength(2);
  });
});
