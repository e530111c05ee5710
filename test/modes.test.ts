import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { projectFolderName } from "../core/claude/paths.js";
import { decodeIdentityText } from "../core/crypto/identity-file.js";
import { expiredHandoffs } from "../core/handoff-ledger.js";
import { signPacket, txtRecords, verifyPayload } from "../core/pointer/packet.js";
import { RECORD_NAME, recordEntries } from "../core/pointer/record.js";
import { decodePublicKey } from "../core/pointer/z32.js";
import { type FixtureSession, writeSession } from "./helpers/fixture.js";
import { Machine, type RunResult } from "./helpers/machine.js";
import { startRelay, type TestRelay } from "./helpers/relay-server.js";
import { startTestnet, type Testnet } from "./helpers/testnet.js";

/**
 * Handoff modes end to end through the built CLI, over a real 8-node DHT on
 * 127.0.0.1, a loopback pkarr relay and a shared "NAS" store (whose records/
 * object is the store mirror): to yourself, to two teammates, by PIN to
 * someone with no ccbundle identity at all; burn after reading, expiry and
 * revoke; a third identity that learns nothing; a slot copied into another
 * key's record. The last test scans every byte that was published for what
 * must never leak.
 */

const FAKE_HOST = "leakcheck-host-3f9c2a";
const FAKE_USER = "leakcheck-user-b71e05";
const FAKE_HOST_MODULE = fileURLToPath(new URL("./helpers/fake-host.mjs", import.meta.url));

let testnet: Testnet;
let relay: TestRelay;
const dhtValues: Uint8Array[] = [];
let nas: string;
let laptop: Machine; // alice
let desktop: Machine; // alice's other machine
let bob: Machine;
let carol: Machine;
let eve: Machine; // a third identity
let pat: Machine; // no ccbundle identity at all
const keys: Record<string, string> = {};
let project: string;
const sessions: FixtureSession[] = [];

function json(result: RunResult) {
  return JSON.parse(result.stdout);
}

function blobNames(): string[] {
  const dir = path.join(nas, "ccbundle", "v1", "blobs");
  return existsSync(dir) ? readdirSync(dir) : [];
}

function listTree(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    out.push(full);
    if (entry.isDirectory()) out.push(...listTree(full));
  }
  return out;
}

function expectOneLineError(result: RunResult, code: number, pattern: RegExp) {
  expect(result.code, result.stderr).toBe(code);
  const lines = result.stderr.trim().split("\n");
  expect(lines[0]).toMatch(/^ccbundle: /);
  expect(lines[0]).toMatch(pattern);
  expect(lines.some((line) => line.startsWith("hint: "))).toBe(true);
  expect(result.stderr).not.toMatch(/\n\s+at /);
}

beforeAll(async () => {
  testnet = await startTestnet(8);
  // Every value a DHT node stores, as it is stored: the leak test reads them all.
  for (const node of testnet.nodes) {
    const values = (node as unknown as { _values: { set(key: string, value: { v?: Uint8Array }): void } })._values;
    const set = values.set.bind(values);
    values.set = (key, value) => {
      if (value.v) dhtValues.push(Buffer.from(value.v));
      set(key, value);
    };
  }
  relay = await startRelay();
  const net = { CCBUNDLE_BOOTSTRAP: testnet.bootstrap.join(","), CCBUNDLE_RELAYS: relay.url };
  laptop = new Machine("alice", {
    ...net,
    NODE_OPTIONS: `--import ${FAKE_HOST_MODULE}`,
    CCB_FAKE_HOSTNAME: FAKE_HOST,
    CCB_FAKE_USER: FAKE_USER,
  });
  nas = path.join(laptop.root, "nas");
  mkdirSync(nas);
  laptop.env.CCBUNDLE_STORE = nas;
  desktop = new Machine("desk", { ...net, CCBUNDLE_STORE: nas });
  // Teammates and the PIN receiver have no store configured: they follow the record.
  bob = new Machine("bob", net);
  carol = new Machine("carol", net);
  eve = new Machine("eve", net);
  pat = new Machine("pat", net);
  await Promise.all([laptop, bob, carol, eve].map((m) => m.runOk(["init", "--no-passphrase"])));
  const exported = path.join(laptop.root, "alice.key");
  await laptop.runOk(["key", "export", exported]);
  await desktop.runOk(["key", "import", exported]);
  for (const [name, machine] of Object.entries({ alice: laptop, bob, carol, eve })) {
    keys[name] = readFileSync(path.join(machine.ccbHome, "identity.pub"), "utf8").split("\n")[0]!;
  }
  project = laptop.project("work/webapp");
  for (const title of ["Add rate limiting to login", "Port the parser to Rust", "Fix the flaky CI job"]) {
    sessions.push(
      writeSession({
        claudeDir: laptop.claudeDir,
        projectDir: project,
        home: laptop.home,
        title,
        start: new Date(Date.UTC(2026, 10, 20 + sessions.length)),
      }),
    );
  }
}, 60_000);

afterAll(async () => {
  for (const machine of [laptop, desktop, bob, carol, eve, pat]) machine?.cleanup();
  await relay?.close();
  await testnet?.close();
});

const push = (args: string[], env: NodeJS.ProcessEnv = {}) =>
  laptop.run(["push", "--json", ...args], { cwd: project, env });

describe("handoff modes", () => {
  it("to yourself: the owner's other machine pulls it", async () => {
    const pushed = json(await laptop.runOk(["push", "--json", "--session", sessions[0]!.id], { cwd: project }));
    expect(pushed).toMatchObject({ mode: "self", slot: "self", slots: 1, dropped: [] });
    expect(pushed.recordBytes).toBeLessThan(450);
    const target = desktop.project("code/webapp");
    const pulled = json(await desktop.runOk(["pull", "--project", target, "--no-resume", "--json"]));
    expect(pulled.slot).toBe("self");
    expect(pulled.sessions[0].sessionId).toBe(sessions[0]!.id);
    const transcript = path.join(desktop.claudeDir, "projects", projectFolderName(target), `${sessions[0]!.id}.jsonl`);
    expect(readFileSync(transcript, "utf8")).toContain(target);
  });

  it("to two teammates: each pulls with their own key; the owner's own handoff stays beside theirs", async () => {
    const pushed = json(
      await laptop.runOk(
        ["push", "--json", "--session", sessions[1]!.id, "--to", keys.bob!, "--to", keys.carol!.toUpperCase()],
        {
          cwd: project,
        },
      ),
    );
    expect(pushed.mode).toBe("shared");
    expect(pushed.slot).toMatch(/^to:[0-9a-f]{16},[0-9a-f]{16}$/);
    expect(pushed.slots).toBe(2);
    expect(pushed.recordBytes).toBeLessThanOrEqual(1000);

    // A key as a user may paste it: z-base-32 in any case, with pkarr's `pk:` prefix.
    const typed = new Map([
      [bob, keys.alice!],
      [carol, `pk:${keys.alice!.slice(0, 20).toUpperCase()}${keys.alice!.slice(20)}`],
    ]);
    for (const teammate of [bob, carol]) {
      const target = teammate.project("src/webapp");
      const pulled = json(
        await teammate.runOk(["pull", typed.get(teammate)!, "--project", target, "--no-resume", "--json"]),
      );
      expect(pulled.sessions[0].sessionId).toBe(sessions[1]!.id);
      expect(pulled.signer).toBe(keys.alice);
      expect(
        existsSync(path.join(teammate.claudeDir, "projects", projectFolderName(target), `${sessions[1]!.id}.jsonl`)),
      ).toBe(true);
    }
    // The owner's own latest handoff is still in the record.
    const own = json(
      await desktop.runOk(["pull", "--project", desktop.project("code/webapp"), "--no-resume", "--json"]),
    );
    expect(own.slot).toBe("self");
    expect(own.sessions[0].originalId).toBe(sessions[0]!.id);

    const status = json(await laptop.runOk(["status", "--json"]));
    expect(status.slotCount).toBe(2);
    const bySlot = new Map(status.slots.map((slot: { slot: string; label: string }) => [slot.slot, slot.label]));
    expect(bySlot.get("self")).toBe("to yourself");
    expect(bySlot.get(pushed.slot)).toContain(keys.bob);
    expect(bySlot.get(pushed.slot)).toContain(keys.carol);
    for (const slot of status.slots) {
      expect(slot.state).toBe("live");
      expect(slot.blob.age).toBe("(hidden)");
    }
    // A teammate's status of that record names the slot meant for them.
    const bobsView = json(await bob.runOk(["status", keys.alice!, "--json"]));
    const forBob = bobsView.slots.find((slot: { slot: string }) => slot.slot === pushed.slot);
    expect(forBob.label).toMatch(/^to (you, #[0-9a-f]{16}|#[0-9a-f]{16}, you)$/);
    const human = await laptop.runOk(["status"]);
    expect(human.stdout).toContain("to yourself: handoff");
    expect(human.stdout).toContain(`session ${sessions[1]!.id}`);
  });

  it("an age1 recipient works for a ccbundle identity, with a warning that plain age users need a file", async () => {
    const bobAge = JSON.parse((await bob.runOk(["whoami", "--json"])).stdout).ageRecipient as string;
    const pushed = await laptop.run(
      ["push", "--json", "--session", sessions[1]!.id, "--to", bobAge, "--to", keys.carol!],
      {
        cwd: project,
      },
    );
    expect(pushed.code, pushed.stderr).toBe(0);
    expect(pushed.stderr).toMatch(/^warning: an age1… recipient can pull only if it is a ccbundle identity's/m);
    const target = bob.project("src/by-age1");
    const pulled = json(await bob.runOk(["pull", keys.alice!, "--project", target, "--no-resume", "--json"]));
    expect(pulled.sessions[0].originalId).toBe(sessions[1]!.id);
  });

  it("a third identity learns nothing and gets exit 5", async () => {
    const result = await eve.run(["pull", keys.alice!, "--no-resume"]);
    expectOneLineError(result, 5, /holds nothing for your key/);
    for (const s of sessions) {
      expect(result.stdout + result.stderr).not.toContain(s.id);
    }
    expect(result.stderr).not.toContain("rate limiting");
    const status = json(await eve.runOk(["status", keys.alice!, "--json"]));
    expect(status.slotCount).toBe(2);
    expect(status.slots).toEqual([]);
  });

  it("by PIN: someone with no ccbundle identity pulls with the PIN; a wrong PIN gets exit 5", async () => {
    const pushed = json(
      await laptop.runOk(["push", "--json", "--session", sessions[2]!.id, "--pin"], {
        cwd: project,
        env: { CCBUNDLE_PIN: "tulip-orbit-42" },
      }),
    );
    expect(pushed).toMatchObject({ mode: "pin", slot: "pin" });
    expect(pushed.dropped).not.toContain("self");
    expect(pushed.recordBytes).toBeLessThanOrEqual(1000);

    const wrong = await pat.run(["pull", keys.alice!, "--pin", "--no-resume"], {
      env: { CCBUNDLE_PIN: "tulip-orbit-43" },
    });
    expectOneLineError(wrong, 5, /PIN does not open/);
    expect(wrong.stderr).not.toContain("tulip");
    // Forgot --pin, and has no identity: the hint says --pin first.
    const forgot = await pat.run(["pull", keys.alice!, "--no-resume"]);
    expectOneLineError(forgot, 1, /no ccbundle identity/);
    expect(forgot.stderr).toContain("hint: a PIN handoff needs no identity: add --pin");

    const pinFile = path.join(pat.root, "pin.txt");
    writeFileSync(pinFile, "tulip-orbit-42\n", { mode: 0o600 });
    const target = pat.project("inbox/webapp");
    const pulled = json(
      await pat.runOk([
        "pull",
        keys.alice!,
        "--pin",
        "--pin-file",
        pinFile,
        "--project",
        target,
        "--no-resume",
        "--json",
      ]),
    );
    expect(pulled.slot).toBe("pin");
    expect(pulled.sessions[0].sessionId).toBe(sessions[2]!.id);
    expect(existsSync(path.join(pat.ccbHome, "identity"))).toBe(false);
  });

  it("a PIN must have 8+ characters and never comes from the command line", async () => {
    const before = blobNames().length;
    const short = await push(["--pin"], { CCBUNDLE_PIN: "1234567" });
    expectOneLineError(short, 2, /at least 8/);
    expect(blobNames().length).toBe(before);
    const onArgv = await laptop.run(["push", "--pin=12345678"], { cwd: project });
    expectOneLineError(onArgv, 2, /not accepted on the command line/);
    expect(onArgv.stderr).not.toContain("12345678");
    const pullArgv = await pat.run(["pull", keys.alice!, "--pin", "12345678"]);
    expectOneLineError(pullArgv, 2, /not accepted on the command line/);
    const both = await push(["--pin", "--to", keys.bob!], { CCBUNDLE_PIN: "long-enough-pin" });
    expectOneLineError(both, 2, /either --to people or by --pin/);
    // A TTL no Date can hold broke `status` for good; an empty one (`--ttl $UNSET`) is no default.
    expectOneLineError(await push(["--ttl", "1000000000d"]), 2, /--ttl: 1000000000d is longer than a year/);
    expectOneLineError(await push(["--ttl", ""]), 2, /--ttl needs a duration/);
    expectOneLineError(await push(["--ttl"]), 2, /--ttl needs a duration/);
    expect(blobNames().length).toBe(before);
    // Long enough but all digits: pushed, with a warning (one rented GPU guesses 10⁸ PINs in hours).
    const digits = await push(["--session", sessions[2]!.id, "--pin"], { CCBUNDLE_PIN: "12345678" });
    expect(digits.code, digits.stderr).toBe(0);
    expect(digits.stderr).toMatch(/^warning: a PIN of 8 digits is easy to guess offline/m);
    expect(digits.stderr + digits.stdout).not.toContain("12345678");
    // And in --json's warnings, beside stderr (scripts read the document).
    const digitsJson = json(
      await push(["--session", sessions[2]!.id, "--pin", "--json"], { CCBUNDLE_PIN: "12345678" }),
    );
    expect(digitsJson.warnings).toEqual(expect.arrayContaining([expect.stringMatching(/^a PIN of 8 digits is easy/)]));
    const words = await push(["--session", sessions[2]!.id, "--pin"], { CCBUNDLE_PIN: "tulip-orbit-42" });
    expect(words.stderr).not.toContain("easy to guess");
  });

  it("burn after reading, owner: the first pull deletes the blob and leaves a tombstone; the second gets exit 5", async () => {
    const pushed = json(await push(["--session", sessions[0]!.id, "--burn"]).then(okOrThrow));
    const target = desktop.project("code/webapp");
    const first = json(await desktop.runOk(["pull", "--project", target, "--no-resume", "--json"]));
    expect(first.burned).toBe("record");
    expect(blobNames()).not.toContain(path.basename(pushed.blobKey));
    const second = await desktop.run(["pull", "--project", target, "--no-resume"]);
    expectOneLineError(second, 5, /already picked up/);
    const status = json(await laptop.runOk(["status", "--json"]));
    expect(status.slots.find((slot: { slot: string }) => slot.slot === "self").state).toBe("picked up");
  });

  it("burn after reading, by PIN: the PIN holder deletes the blob; the second pull gets exit 5", async () => {
    const pushed = json(
      await push(["--session", sessions[2]!.id, "--pin", "--burn"], { CCBUNDLE_PIN: "second-pin-77" }).then(okOrThrow),
    );
    const env = { CCBUNDLE_PIN: "second-pin-77" };
    const target = pat.project("inbox/again");
    const first = json(
      await pat.runOk(["pull", keys.alice!, "--pin", "--project", target, "--no-resume", "--json"], { env }),
    );
    expect(first.burned).toBe("blob");
    expect(blobNames()).not.toContain(path.basename(pushed.blobKey));
    const second = await pat.run(["pull", keys.alice!, "--pin", "--project", target, "--no-resume"], { env });
    expectOneLineError(second, 5, /already picked up/);
    // Only the owner can sign a tombstone; status still tells the slot is used up (its blob is gone).
    const status = json(await laptop.runOk(["status", "--json"]));
    expect(status.slots.find((slot: { slot: string }) => slot.slot === "pin").state).toBe("picked up");
    expect((await laptop.runOk(["status"])).stdout).toContain("by PIN: handoff, picked up (its bundle is gone)");
  });

  it("expiry: a pull after --ttl refuses with exit 5 and says when it expired", async () => {
    const pushed = json(await push(["--session", sessions[1]!.id, "--to", keys.eve!, "--ttl", "1s"]).then(okOrThrow));
    await new Promise((resolve) => setTimeout(resolve, 2100));
    const result = await eve.run(["pull", keys.alice!, "--no-resume"]);
    expectOneLineError(result, 5, /expired at \d{4}-\d\d-\d\dT/);
    // The pushing machine knows where the expired blob is, for `prune --expired`.
    const expired = await expiredHandoffs(laptop.ccbHome, keys.alice!);
    expect(expired.map((entry) => entry.key)).toContain(pushed.blobKey);
    expect(expired.every((entry) => entry.expires < Date.now() / 1000)).toBe(true);
  });

  it("a recipient whose newest handoff expired still gets an older live one, and is told", async () => {
    // Recipients such that neither slot replaces the other (a push to a superset would).
    const older = json(
      await push(["--session", sessions[0]!.id, "--to", keys.carol!, "--to", keys.bob!]).then(okOrThrow),
    );
    const newer = json(
      await push(["--session", sessions[2]!.id, "--to", keys.carol!, "--to", keys.eve!, "--ttl", "1s"]).then(okOrThrow),
    );
    expect(newer.dropped).not.toContain(older.slot);
    await new Promise((resolve) => setTimeout(resolve, 2100));
    const target = carol.project("src/older");
    const pulled = json(await carol.runOk(["pull", keys.alice!, "--project", target, "--no-resume", "--json"]));
    expect(pulled.slot).toBe(older.slot);
    expect(pulled.sessions[0].originalId).toBe(sessions[0]!.id);
    expect(pulled.warnings.join("\n")).toMatch(/a newer handoff to you \(.+\) expired: this is the older one from/);
  });

  it("revoke: deletes the live handoff blobs and publishes tombstones their readers can open", async () => {
    // A handoff replaced by a newer push is not in the record, but a cached older record still leads to it.
    const replaced = json(await push(["--session", sessions[0]!.id, "--to", keys.bob!]).then(okOrThrow));
    const pushed = json(await push(["--session", sessions[1]!.id, "--to", keys.bob!]).then(okOrThrow));
    expect(blobNames()).toContain(path.basename(pushed.blobKey));
    expect(blobNames()).toContain(path.basename(replaced.blobKey));
    const revoked = json(await laptop.runOk(["revoke", "--json"]));
    expect(revoked.revoked.map((r: { session: string }) => r.session)).toContain(sessions[1]!.id);

    expect(blobNames()).not.toContain(path.basename(pushed.blobKey));
    expect(revoked.olderDeleted).toBeGreaterThanOrEqual(1);
    expect(blobNames()).not.toContain(path.basename(replaced.blobKey));
    const result = await bob.run(["pull", keys.alice!, "--no-resume"]);
    expectOneLineError(result, 5, /revoked/);
    const again = json(await laptop.runOk(["revoke", "--json"]));
    expect(again.revoked).toEqual([]);
    expect(again.olderDeleted).toBe(0);

    // An expired handoff: its bundle goes, but it is not called revoked (it was, and got a
    // tombstone that had expired before it was published).
    const expiring = json(await push(["--session", sessions[2]!.id, "--to", keys.bob!, "--ttl", "1s"]).then(okOrThrow));
    await new Promise((resolve) => setTimeout(resolve, 2100));
    const late = json(await laptop.runOk(["revoke", "--json"]));
    expect(late.revoked).toEqual([]);
    expect(late.expiredDeleted).toBe(1);
    expect(blobNames()).not.toContain(path.basename(expiring.blobKey));
    // The expired slot stays in the record; the next revoke does not say it deleted it again.
    const after = await laptop.runOk(["revoke"]);
    expect(after.stdout + after.stderr).not.toMatch(/expired handoff/);
    // status says it expired, not that it "expires" at a time gone by.
    const status = await laptop.runOk(["status"]);
    expect(status.stdout).toMatch(/, expired \d{4}-\d{2}-\d{2}/);
  });

  it("the owner's other machine does not take a handoff meant for a teammate: a --burn one stays theirs", async () => {
    // After revoke the record holds only tombstones; now one live handoff, to bob alone.
    json(await push(["--session", sessions[1]!.id, "--to", keys.bob!, "--burn"]).then(okOrThrow));
    // Named by its key, in any case, the own record is still the own record.
    for (const key of [[], [keys.alice!.toUpperCase()]]) {
      const own = await desktop.run(["pull", ...key, "--project", desktop.project("code/webapp"), "--no-resume"]);
      expect(own.code, own.stderr).toBe(4);
      expect(own.stderr).toContain("your record holds no handoff to yourself, only handoffs to others");
      expect(own.stderr).not.toContain("Burn after reading");
    }
    const target = bob.project("src/burned");
    const pulled = json(await bob.runOk(["pull", keys.alice!, "--project", target, "--no-resume", "--json"]));
    expect(pulled.sessions[0].originalId).toBe(sessions[1]!.id);
    expect(pulled.burned).toBe("blob");
    // With no handoff to yourself at all (not even a tombstone), the owner is told why.
    const net = { CCBUNDLE_BOOTSTRAP: bob.env.CCBUNDLE_BOOTSTRAP, CCBUNDLE_RELAYS: bob.env.CCBUNDLE_RELAYS };
    // Its own store: the leak check below reads the NAS's blobs with alice's key.
    const fresh = new Machine("fresh-owner", net);
    fresh.env.CCBUNDLE_STORE = path.join(fresh.root, "store");
    mkdirSync(fresh.env.CCBUNDLE_STORE);
    const twin = new Machine("fresh-twin", net);
    try {
      await fresh.runOk(["init", "--no-passphrase"]);
      const exported = path.join(fresh.root, "fresh.key");
      await fresh.runOk(["key", "export", exported]);
      await twin.runOk(["key", "import", exported]);
      const freshProject = fresh.project("work/app");
      const s = writeSession({ claudeDir: fresh.claudeDir, projectDir: freshProject, home: fresh.home, title: "x" });
      await fresh.runOk(["push", "--session", s.id, "--to", keys.bob!], { cwd: freshProject });
      const result = await twin.run(["pull", "--no-resume"]);
      expectOneLineError(result, 4, /your record holds no handoff to yourself, only handoffs to others/);
    } finally {
      twin.cleanup();
      fresh.cleanup();
    }
  });

  it("a full record keeps a live handoff over one a receiver picked up, and does not warn about that one", async () => {
    okOrThrow(await push(["--session", sessions[0]!.id]));
    const forCarol = json(await push(["--session", sessions[1]!.id, "--to", keys.carol!]).then(okOrThrow));
    const forBob = json(await push(["--session", sessions[2]!.id, "--to", keys.bob!, "--burn"]).then(okOrThrow));
    await bob.runOk(["pull", keys.alice!, "--project", bob.project("src/burn-again"), "--no-resume"]);
    expect(blobNames()).not.toContain(path.basename(forBob.blobKey));
    // Self, a handoff to carol, one to bob picked up: a PIN handoff needs room.
    const pinned = await push(["--session", sessions[2]!.id, "--pin"], { CCBUNDLE_PIN: "harbor-lantern-9" });
    const doc = json(okOrThrow(pinned));
    expect(doc.dropped).toEqual([]);
    expect(pinned.stderr).not.toContain("left out");
    const status = json(await laptop.runOk(["status", "--json"]));
    const slots = status.slots.map((slot: { slot: string }) => slot.slot);
    expect(slots).toContain(forCarol.slot);
    expect(slots).toContain("pin");
    expect(slots).toContain("self");
  });

  it("a slot copied into another key's record is refused with exit 5", async () => {
    await push(["--session", sessions[1]!.id, "--to", keys.bob!]).then(okOrThrow);
    // Eve re-signs Alice's slots as her own record and puts it where Bob will look.
    const aliceRecord = readFileSync(path.join(nas, "ccbundle/v1/records", keys.alice!));
    const slots = txtRecords(verifyPayload(decodePublicKey(keys.alice!), aliceRecord), RECORD_NAME);
    const eveKey = decodeIdentityText(readFileSync(path.join(eve.ccbHome, "identity"), "utf8"));
    const forged = signPacket(eveKey.exportSeed(), recordEntries(slots), Date.now() * 1000);
    const forgedStore = path.join(bob.root, "forged");
    mkdirSync(path.join(forgedStore, "ccbundle/v1/records"), { recursive: true });
    writeFileSync(path.join(forgedStore, "ccbundle/v1/records", keys.eve!), forged.bytes);
    const result = await bob.run(["pull", keys.eve!, "--no-resume", "--store", forgedStore]);
    expectOneLineError(result, 5, /sealed for another record/);
  });
});

describe("what the DHT, the relay and the store see", () => {
  it("no published byte and no object name carries a session id, host name, user name or project path", async () => {
    const published: Array<[string, Buffer]> = [];
    for (const value of dhtValues) published.push(["DHT value", Buffer.from(value)]);
    for (const body of relay.putBodies) published.push(["relay PUT", Buffer.from(body)]);
    const names: string[] = [];
    for (const file of listTree(nas)) {
      names.push(path.relative(nas, file));
      if (!readdirSafe(file)) published.push([`store object ${path.relative(nas, file)}`, readFileSync(file)]);
    }
    expect(dhtValues.length).toBeGreaterThan(5);
    expect(relay.putBodies.length).toBeGreaterThan(5);
    expect(names.some((name) => name.startsWith("ccbundle/v1/records/"))).toBe(true);

    const secrets: Array<[string, Buffer]> = [
      ["host name", Buffer.from(FAKE_HOST)],
      ["user name", Buffer.from(FAKE_USER)],
      ["project path", Buffer.from(project)],
      ["project folder", Buffer.from(projectFolderName(project))],
      ["home", Buffer.from(laptop.home)],
    ];
    for (const s of sessions) {
      secrets.push(["session id", Buffer.from(s.id)]);
      secrets.push(["session id (hex)", Buffer.from(s.id.replaceAll("-", ""))]);
      secrets.push(["session id (bytes)", Buffer.from(s.id.replaceAll("-", ""), "hex")]);
    }
    for (const [what, bytes] of published) {
      for (const [secret, needle] of secrets) {
        expect(bytes.includes(needle), `${what} contains the ${secret}`).toBe(false);
      }
    }
    for (const name of names) {
      for (const [secret, needle] of secrets)
        expect(name.includes(needle.toString()), `${name}: ${secret}`).toBe(false);
    }
    // The scan means something only if the pushes ran under the fake names: the bundles' manifests
    // (encrypted) carry them.
    const identity = path.join(laptop.root, "age-identity.txt");
    await laptop.runOk(["key", "export", identity, "--age-identity"]);
    const blob = path.join(nas, "ccbundle/v1/blobs", blobNames()[0]!);
    const manifest = JSON.parse(
      execFileSync("sh", ["-c", `age -d -i "${identity}" "${blob}" | zstd -d | tar -xO ccbundle.json`], {
        encoding: "utf8",
      }),
    );
    expect(manifest.source).toMatchObject({ host: FAKE_HOST, user: FAKE_USER });
  });
});

function okOrThrow(result: RunResult): RunResult {
  if (result.code !== 0) throw new Error(`exit ${result.code}: ${result.stderr}`);
  return result;
}

function readdirSafe(file: string): boolean {
  try {
    readdirSync(file);
    return true;
  } catch {
    return false;
  }
}
