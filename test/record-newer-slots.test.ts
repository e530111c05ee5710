import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SEAL_VERSION, sealSlot } from "../core/crypto/slot-seal.js";
import { signPacket, txtRecords, verifyPayload } from "../core/pointer/packet.js";
import { PAYLOAD_FORMAT } from "../core/pointer/payload-codec.js";
import { RECORD_NAME, recordEntries } from "../core/pointer/record.js";
import { storeLayout } from "../core/store-layout.js";
import { writeSession } from "./helpers/fixture.js";
import { machineKey } from "./helpers/hostile.js";
import { Machine } from "./helpers/machine.js";

/**
 * Teammates and machines upgrade at different times. A record can hold slots a
 * newer ccbundle wrote (a newer seal, or a newer payload inside a seal): this
 * build cannot read them, and must neither erase them when it pushes nor pass
 * them over in silence. Through the built CLI, with the store mirror as the
 * only transport.
 */

let alice: Machine;
let bob: Machine;
let nas: string;
let project: string;

beforeAll(async () => {
  alice = new Machine("alice-newer");
  bob = new Machine("bob-newer");
  nas = path.join(alice.root, "nas");
  mkdirSync(nas);
  for (const m of [alice, bob]) {
    m.env.CCBUNDLE_STORE = nas;
    await m.runOk(["init", "--no-passphrase"]);
  }
  project = alice.project("app");
  writeSession({ claudeDir: alice.claudeDir, projectDir: project, home: alice.home });
});

afterAll(() => {
  alice?.cleanup();
  bob?.cleanup();
});

const recordFile = () => path.join(nas, storeLayout.record(machineKey(alice.ccbHome).z32));
const slotsOf = (bytes: Buffer) => txtRecords(verifyPayload(machineKey(alice.ccbHome).publicKey, bytes), RECORD_NAME);

describe("slots a newer ccbundle wrote", () => {
  it("a push keeps them byte for byte, with the teammate's handoff; status counts them; pull says to upgrade", async () => {
    const bobZ32 = JSON.parse((await bob.runOk(["whoami", "--json"])).stdout).key as string;
    await alice.runOk(["push", "--to", bobZ32, "--json"], { cwd: project });

    // What an upgraded machine of Alice's would add: a slot with a newer payload inside today's
    // seal (sealed to Alice only), and one with a newer seal altogether.
    const key = machineKey(alice.ccbHome);
    const newerPayload = Buffer.from(
      await sealSlot(Buffer.from([PAYLOAD_FORMAT + 1, 1, 1, 0]), [key.ageRecipient()], key.publicKey),
    );
    const newerSeal = Buffer.concat([Buffer.from([SEAL_VERSION + 1]), Buffer.alloc(120, 7)]);
    const before = slotsOf(readFileSync(recordFile()));
    expect(before).toHaveLength(1);
    const seed = key.exportSeed();
    const upgraded = signPacket(seed, recordEntries([...before, newerPayload, newerSeal]), Date.now() * 1000 + 1000);
    writeFileSync(recordFile(), upgraded.bytes);

    const status = await alice.runOk(["status"]);
    expect(status.stdout).toMatch(/3 slot\(s\)/);
    expect(status.stdout).toMatch(/2 slots in a newer ccbundle's format, which this one cannot read/);
    const statusJson = JSON.parse((await alice.runOk(["status", "--json"])).stdout);
    expect(statusJson.newerSlots).toBe(2);

    // Alice's machine that was not upgraded pushes to herself.
    const pushed = JSON.parse((await alice.runOk(["push", "--json"], { cwd: project })).stdout);
    expect(pushed.warnings ?? []).toEqual([]);
    const after = slotsOf(readFileSync(recordFile())).map((slot) => Buffer.from(slot));
    expect(after).toHaveLength(4);
    expect(after.some((slot) => slot.equals(newerPayload))).toBe(true);
    expect(after.some((slot) => slot.equals(newerSeal))).toBe(true);
    expect(after.some((slot) => slot.equals(Buffer.from(before[0]!)))).toBe(true);

    // Bob still pulls his handoff: the slots he cannot read do not get in the way.
    const bobProject = bob.project("app");
    const pulled = await bob.run(["pull", key.z32, "--project", bobProject, "--no-resume", "--json"]);
    expect(pulled.code, pulled.stderr).toBe(0);

    // A record whose only slot for Bob is in a newer payload format: he is told to upgrade.
    const forBob = Buffer.from(
      await sealSlot(
        Buffer.from([PAYLOAD_FORMAT + 1, 1, 1, 0]),
        [machineKey(bob.ccbHome).ageRecipient(), key.ageRecipient()],
        key.publicKey,
      ),
    );
    writeFileSync(recordFile(), signPacket(seed, recordEntries([forBob]), Date.now() * 1000 + 2000).bytes);
    const refused = await bob.run(["pull", key.z32, "--project", bobProject, "--no-resume"]);
    expect(refused.code).toBe(5);
    expect(refused.stderr).toMatch(
      /^ccbundle: the record of \w+ holds a handoff for you that this ccbundle cannot read/,
    );
    expect(refused.stderr).toMatch(/hint: it was written by a newer ccbundle: upgrade ccbundle/);

    // Only a newer seal, which may be anyone's: "nothing for your key", with a mention of it.
    writeFileSync(recordFile(), signPacket(seed, recordEntries([newerSeal]), Date.now() * 1000 + 3000).bytes);
    seed.fill(0);
    const nothing = await bob.run(["pull", key.z32, "--project", bobProject, "--no-resume"]);
    expect(nothing.code).toBe(5);
    expect(nothing.stderr).toMatch(/^ccbundle: the record of \w+ holds nothing for your key\n/);
    expect(nothing.stderr).toMatch(/one slot is in a newer ccbundle's format and may be for you/);
  });

  it("a wrong PIN is still a wrong PIN beside slots a newer ccbundle wrote", async () => {
    const key = machineKey(alice.ccbHome);
    await alice.runOk(["push", "--pin"], { cwd: project, env: { CCBUNDLE_PIN: "right-pin-4711" } });
    const seed = key.exportSeed();
    const current = slotsOf(readFileSync(recordFile()));
    const newerSeal = Buffer.concat([Buffer.from([SEAL_VERSION + 1]), Buffer.alloc(120, 9)]);
    writeFileSync(
      recordFile(),
      signPacket(seed, recordEntries([...current, newerSeal]), Date.now() * 1000 + 5000).bytes,
    );
    seed.fill(0);
    const wrong = await bob.run(["pull", key.z32, "--pin", "--project", bob.project("pin"), "--no-resume"], {
      env: { CCBUNDLE_PIN: "wrong-pin-0000" },
    });
    expect(wrong.code).toBe(5);
    expect(wrong.stderr).toMatch(/^ccbundle: the PIN does not open the handoff in this record/);
  });

  it("revoke does not call itself done while a handoff it cannot read stays in the record", async () => {
    const key = machineKey(alice.ccbHome);
    const seed = key.exportSeed();
    const newerPayload = Buffer.from(
      await sealSlot(Buffer.from([PAYLOAD_FORMAT + 1, 1, 1, 0]), [key.ageRecipient()], key.publicKey),
    );
    writeFileSync(recordFile(), signPacket(seed, recordEntries([newerPayload]), Date.now() * 1000 + 9000).bytes);
    seed.fill(0);
    const revoked = await alice.runOk(["revoke", "--json"]);
    const doc = JSON.parse(revoked.stdout);
    expect(doc.newerRemoved).toBe(1);
    expect(doc.warnings.join("\n")).toMatch(/removed a slot a newer ccbundle wrote from your record/);
    const after = slotsOf(readFileSync(recordFile())).map((slot) => Buffer.from(slot));
    expect(after.some((slot) => slot.equals(newerPayload))).toBe(false);
    // Said without --json too: not "Nothing to revoke".
    const again = await alice.runOk(["revoke"]);
    expect(again.stdout).toMatch(/Nothing to revoke/);
  });
});
