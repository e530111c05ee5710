import { appendFileSync, existsSync, utimesSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applyPolicy } from "../core/backup/policy.js";
import { backupMachine, blobNames, snapshotNames, withSameIdentity } from "./helpers/backup.js";
import { type FixtureSession, writeSession } from "./helpers/fixture.js";
import type { Machine } from "./helpers/machine.js";

/**
 * Pruning: the keep policy (unit), and through the CLI that a prune never
 * deletes a blob a kept snapshot names, a blob younger than the grace period,
 * a live handoff's blob, or (without --unreferenced) a blob it cannot tell is
 * ours.
 */

describe("keep policy", () => {
  const day = 86_400_000;
  const noon = Date.UTC(2026, 10, 20, 12);
  // Three snapshots a day for five days, newest first: d0-a (noon), d0-b (11:00), …
  const snapshots = [0, 1, 2, 3, 4].flatMap((d) =>
    ["a", "b", "c"].map((x, i) => ({ id: `d${d}-${x}`, time: noon - d * day - i * 3_600_000 })),
  );

  it("keeps the newest always, the last N, the newest of each of the last N days, and a time window", () => {
    expect(applyPolicy(snapshots, {}).keep).toEqual([{ id: "d0-a", reasons: ["newest"] }]);
    expect(applyPolicy(snapshots, { last: 2 }).keep.map((k) => k.id)).toEqual(["d0-a", "d0-b"]);
    const daily = applyPolicy(snapshots, { daily: 3 });
    expect(daily.keep.map((k) => k.id)).toEqual(["d0-a", "d1-a", "d2-a"]);
    expect(daily.remove).toHaveLength(12);
    const within = applyPolicy(snapshots, { withinSeconds: 36 * 3600 }, noon + 1000);
    expect(within.keep.map((k) => k.id)).toEqual(["d0-a", "d0-b", "d0-c", "d1-a", "d1-b", "d1-c"]);
    const all = applyPolicy(snapshots, { last: 1, daily: 2, withinSeconds: 7200 }, noon + 1000);
    expect(all.keep).toEqual([
      { id: "d0-a", reasons: ["newest", "last", "daily", "within"] },
      { id: "d0-b", reasons: ["within"] },
      { id: "d1-a", reasons: ["daily"] },
    ]);
    expect(applyPolicy([], { last: 3 })).toEqual({ keep: [], remove: [] });
  });

  it("counts days by when a snapshot was made when its id had to follow one dated a year ahead", () => {
    const ahead = noon + 365 * day;
    // Made daily since, each id 1 ms after the one before (newSnapshotId's clamp), newest first.
    const clamped = [0, 1, 2, 3].map((d) => ({ id: `c${3 - d}`, time: ahead + 4 - d, madeAt: noon - d * day }));
    const all = [...clamped, { id: "future", time: ahead, madeAt: ahead }];
    const daily = applyPolicy(all, { daily: 3 }, noon + 1000);
    expect(daily.keep.map((k) => k.id)).toEqual(["c3", "c2", "c1"]);
    const within = applyPolicy(all, { withinSeconds: 36 * 3600 }, noon + 1000);
    // The one dated ahead is not old by any clock: it stays until its time has passed.
    expect(within.keep.map((k) => k.id)).toEqual(["c3", "c2", "future"]);
  });
});

let alice: Machine;
let nas: string;
const sessions: FixtureSession[] = [];

const blobPath = (name: string) => path.join(nas, "ccbundle", "v1", "blobs", name);
const listedBlobs = async () =>
  JSON.parse((await alice.runOk(["list", "--json"])).stdout).sessions.map((s: { blob: { key: string } }) =>
    path.basename(s.blob.key),
  ) as string[];

beforeAll(async () => {
  ({ machine: alice, nas } = await backupMachine("alice"));
  const project = alice.project("app");
  for (let i = 0; i < 4; i++)
    sessions.push(writeSession({ claudeDir: alice.claudeDir, projectDir: project, home: alice.home }));
});

afterAll(() => alice?.cleanup());

describe("prune", () => {
  let oldVersions: string[];
  let current: string[];
  let handoff: string;
  const foreign = "zzzzzzzzzzzzzzzzzzzzzzzzzz";

  it("needs a policy", async () => {
    const result = await alice.run(["prune"]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("hint: e.g. ccbundle prune --keep-last");
  });

  it("sets up three snapshots, a live handoff and a blob that is not ours", async () => {
    await alice.runOk(["backup"]);
    const first = new Set(await listedBlobs());
    for (let i = 0; i < 2; i++) {
      appendFileSync(sessions[0]!.transcript, `${JSON.stringify({ type: "user", n: i })}\n`);
      await alice.runOk(["backup"]);
    }
    expect(snapshotNames(nas)).toHaveLength(3);
    current = await listedBlobs();
    const before = new Set(blobNames(nas));
    await alice.runOk(["push", "--session", sessions[1]!.id], { cwd: alice.home });
    handoff = blobNames(nas).find((name) => !before.has(name))!;
    expect(handoff).toBeDefined();
    writeFileSync(blobPath(foreign), "someone else's bundle");
    const old = new Date(Date.now() - 3 * 3600_000);
    utimesSync(blobPath(foreign), old, old);
    oldVersions = blobNames(nas).filter((name) => !current.includes(name) && name !== handoff && name !== foreign);
    expect(oldVersions).toHaveLength(2); // session 0's first two versions
    expect([...first].filter((name) => !current.includes(name))).toHaveLength(1);
  });

  it("--dry-run says what would go and deletes nothing", async () => {
    const names = blobNames(nas);
    const doc = JSON.parse(
      (await alice.runOk(["prune", "--keep-last", "1", "--grace", "0s", "--dry-run", "--json"])).stdout,
    );
    expect(doc).toMatchObject({
      ok: true,
      dryRun: true,
      snapshots: { removed: expect.any(Array), damaged: [] },
      blobs: { removed: 2, young: 0, liveHandoffs: 0, unknown: 1 },
    });
    expect(doc.snapshots.removed).toHaveLength(2);
    expect(doc.snapshots.kept).toEqual([{ id: expect.any(String), reasons: ["newest", "last"] }]);
    expect(blobNames(nas)).toEqual(names);
    expect(snapshotNames(nas)).toHaveLength(3);
  });

  it("within the grace period, forgotten snapshots go but their young blobs stay", async () => {
    const doc = JSON.parse((await alice.runOk(["prune", "--keep-last", "1", "--json"])).stdout);
    expect(doc.snapshots.removed).toHaveLength(2);
    expect(doc.blobs).toMatchObject({ removed: 0, young: 2 });
    expect(snapshotNames(nas)).toHaveLength(1);
    for (const name of oldVersions) expect(existsSync(blobPath(name))).toBe(true);
  });

  it("past the grace period they go; kept, handoff and unknown blobs stay", async () => {
    const doc = JSON.parse((await alice.runOk(["prune", "--keep-last", "1", "--grace", "0s", "--json"])).stdout);
    expect(doc.snapshots.removed).toEqual([]);
    expect(doc.blobs).toMatchObject({ removed: 2, young: 0, unknown: 1 });
    for (const name of oldVersions) expect(existsSync(blobPath(name))).toBe(false);
    for (const name of [...current, handoff, foreign]) expect(existsSync(blobPath(name)), name).toBe(true);
    // Everything the kept snapshot names restores.
    const bob = await withSameIdentity(alice, "bob", { CCBUNDLE_STORE: nas });
    try {
      const restored = JSON.parse((await bob.runOk(["restore", "--all", "--json"])).stdout);
      expect(restored.sessions).toHaveLength(4);
    } finally {
      bob.cleanup();
    }
  });

  it("--unreferenced deletes what nothing names, never a live handoff's blob", async () => {
    const doc = JSON.parse(
      (await alice.runOk(["prune", "--keep-last", "1", "--grace", "0s", "--unreferenced", "--json"])).stdout,
    );
    expect(doc.blobs).toMatchObject({ removed: 1, liveHandoffs: 1, unknown: 0 });
    expect(existsSync(blobPath(foreign))).toBe(false);
    expect(existsSync(blobPath(handoff))).toBe(true);
    for (const name of current) expect(existsSync(blobPath(name))).toBe(true);
  });

  it("--expired deletes an expired handoff's blob; every snapshot stays without a keep flag", async () => {
    const before = new Set(blobNames(nas));
    await alice.runOk(["push", "--session", sessions[2]!.id, "--ttl", "1s"]);
    const expiring = blobNames(nas).find((name) => !before.has(name))!;
    await new Promise((resolve) => setTimeout(resolve, 2100));
    const doc = JSON.parse((await alice.runOk(["prune", "--expired", "--grace", "0s", "--json"])).stdout);
    expect(doc.snapshots.removed).toEqual([]);
    expect(doc.blobs.removed).toBe(1);
    expect(existsSync(blobPath(expiring))).toBe(false);
    // The earlier handoff left the record (this push replaced its slot) but has not expired:
    // this machine's handoff ledger still names it, so it stays until it does.
    expect(doc.blobs.unknown).toBe(0);
    expect(existsSync(blobPath(handoff))).toBe(true);
  });
});
