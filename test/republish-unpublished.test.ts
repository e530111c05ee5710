import { renameSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeSession } from "./helpers/fixture.js";
import { type Machine, twoMachines } from "./helpers/machine.js";

/**
 * A push whose record could be published nowhere (here the store is its only transport, and its
 * records/ folder cannot be written) uploaded its bundle and said to run `ccbundle republish`.
 * republish then sent the record from before that push: the other machine pulled the previous
 * session while the user believed the new one was handed over.
 */

let alice: Machine;
let bob: Machine;
let nas: string;

beforeAll(async () => {
  ({ alice, bob, nas } = await twoMachines("alice-unpublished", "bob-unpublished"));
});
afterAll(() => {
  alice?.cleanup();
  bob?.cleanup();
});

let unwritable = 0;
/**
 * Run `ccbundle` args with the store's records/ folder replaced by a file (the DHT is off: the
 * record can go nowhere), then put the folder back.
 */
async function runPublishingNowhere(args: string[], env: NodeJS.ProcessEnv = {}) {
  const records = path.join(nas, "ccbundle", "v1", "records");
  const aside = `${records}.aside${++unwritable}`;
  renameSync(records, aside);
  writeFileSync(records, "not a folder");
  try {
    return await alice.run(args, { env });
  } finally {
    renameSync(records, `${records}.file${unwritable}`);
    renameSync(aside, records);
  }
}
const PIN = { CCBUNDLE_PIN: "tulip-orbit-42-lantern" };

describe("republish after a push that could publish nowhere", () => {
  it("sends that push's record, not the one before it", async () => {
    const project = alice.project("app");
    const bobProject = bob.project("app");
    const first = writeSession({ claudeDir: alice.claudeDir, projectDir: project, home: alice.home });
    await alice.runOk(["push", "--session", first.id]);

    const second = writeSession({ claudeDir: alice.claudeDir, projectDir: project, home: alice.home });
    const failed = await runPublishingNowhere(["push", "--session", second.id]);
    expect(failed.code).toBe(1);
    expect(failed.stderr).toContain("could not publish the record anywhere");
    expect(failed.stderr).toContain("ccbundle republish");

    await alice.runOk(["republish"]);
    const pulled = JSON.parse((await bob.runOk(["pull", "--project", bobProject, "--no-resume", "--json"])).stdout);
    expect(pulled.sessions.map((s: { sessionId: string }) => s.sessionId)).toEqual([second.id]);

    // Published now: a later republish sends the newest record, which is still that one.
    await alice.runOk(["republish"]);
    const again = JSON.parse((await bob.runOk(["status", "--json"])).stdout);
    expect(JSON.stringify(again)).toContain(second.id.slice(0, 8));
  });

  it("a push after it, instead of republish, keeps that push's handoff in the record", async () => {
    const project = alice.project("app");
    const pinned = writeSession({ claudeDir: alice.claudeDir, projectDir: project, home: alice.home });
    const failed = await runPublishingNowhere(["push", "--session", pinned.id, "--pin"], PIN);
    expect(failed.code).toBe(1);

    const plain = writeSession({ claudeDir: alice.claudeDir, projectDir: project, home: alice.home });
    await alice.runOk(["push", "--session", plain.id]);
    const status = JSON.parse((await alice.runOk(["status", "--json"])).stdout);
    const sessions = status.slots.map((slot: { session?: { id: string } }) => slot.session?.id);
    // The PIN handoff the failed push made (sealed to the PIN and the owner) is still offered.
    expect(sessions).toContain(pinned.id);
    expect(sessions).toContain(plain.id);
  });

  it("revoke after it tombstones that push's handoff too (it went out live, its bundle deleted)", async () => {
    const project = alice.project("app");
    // A published record with no PIN handoff in it, then a PIN push that publishes nowhere.
    await alice.runOk(["revoke"]);
    const plain = writeSession({ claudeDir: alice.claudeDir, projectDir: project, home: alice.home });
    await alice.runOk(["push", "--session", plain.id]);
    const pinned = writeSession({ claudeDir: alice.claudeDir, projectDir: project, home: alice.home });
    const failed = await runPublishingNowhere(["push", "--session", pinned.id, "--pin"], PIN);
    expect(failed.code).toBe(1);

    await alice.runOk(["revoke"]);
    const status = JSON.parse((await alice.runOk(["status", "--json"])).stdout);
    const live = status.slots.filter((slot: { kind: string; state?: string }) => slot.kind === "handoff");
    expect(live).toEqual([]);
    // And republish afterwards does not bring it back.
    await alice.runOk(["republish"]);
    const after = JSON.parse((await alice.runOk(["status", "--json"])).stdout);
    expect(after.slots.filter((slot: { kind: string }) => slot.kind === "handoff")).toEqual([]);
  });
});
