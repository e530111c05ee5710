import { mkdir, readdir, readFile, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { CcbError, IntegrityError, NotFoundError, UsageError } from "../core/errors.js";
import { DhtTransport } from "../core/pointer/dht.js";
import { MAX_DNS_BYTES, txtRecords } from "../core/pointer/packet.js";
import { RelayTransport } from "../core/pointer/relay.js";
import {
  closeTransports,
  lastSeen,
  nextSeq,
  publishAll,
  resolveNewest,
  seenStatePath,
  transportsFor,
} from "../core/pointer/resolver.js";
import { StoreMirrorTransport } from "../core/pointer/store-mirror.js";
import type { PointerTransport, RelayPayload } from "../core/pointer/transport.js";
import { storeLayout } from "../core/store-layout.js";
import { LocalStore } from "../storage-adapters/local.js";
import { entriesOfSize, type Identity, newIdentity, nowMicros, Scratch } from "./helpers/pointer.js";
import { startRelay, type TestRelay } from "./helpers/relay-server.js";
import { startTestnet, type Testnet } from "./helpers/testnet.js";

let testnet: Testnet;
let relayA: TestRelay;
let relayB: TestRelay;
let junk: TestRelay;
let deadRelayUrl: string;
const scratch = new Scratch();

beforeAll(async () => {
  [testnet, relayA, relayB, junk] = await Promise.all([
    startTestnet(8),
    startRelay(),
    startRelay(),
    startRelay({ mode: "junk" }),
  ]);
  // Port 2: nothing listens there, and unlike a just-closed port no socket of another test can be
  // given it (it is below the ephemeral range; port 1 is on fetch's list of ports it refuses).
  deadRelayUrl = "http://127.0.0.1:2";
});
afterAll(async () => {
  await Promise.all([relayA, relayB, junk].map((relay) => relay?.close()));
  await testnet?.close();
});
afterEach(async () => {
  relayA.mode = "normal";
  await scratch.cleanup();
});

/** One "machine": its own home (seen.json), DHT node, relays and store handle. */
async function machine(
  parts: { dht?: string[] | false; relays?: string[]; store?: string | false } = {},
): Promise<{ home: string; transports: PointerTransport[]; store: LocalStore | undefined }> {
  const home = await scratch.dir("ccb-home-");
  const store = parts.store ? new LocalStore(parts.store) : undefined;
  const transports = scratch.trackAll(
    transportsFor(
      { bootstrap: parts.dht === false ? [] : (parts.dht ?? testnet.bootstrap), relays: parts.relays ?? [] },
      store,
      // The DHT nodes run in this process: a busy machine can stall it past the 1 s loopback
      // default, and the tests count the nodes that answered ("stored on 8 DHT nodes").
      { dht: { queryTimeoutMs: 5000 } },
    ),
  );
  return { home, transports, store };
}

async function publish(me: Identity, home: string, transports: PointerTransport[], text: string) {
  const packet = me.sign(text, await nextSeq(home, me.z32));
  return { packet, report: await publishAll(transports, packet) };
}

function text(payload: { packet: Parameters<typeof txtRecords>[0]["packet"] } & RelayPayload): string {
  return Buffer.from(txtRecords(payload as Parameters<typeof txtRecords>[0], "_ccbundle")[0]!).toString();
}

describe("nextSeq and seen.json", () => {
  it("hands out max(now, last + 1) and records it atomically with mode 0600", async () => {
    const home = await scratch.dir();
    const me = newIdentity();
    const before = Date.now() * 1000;
    const seqs: number[] = [];
    for (let i = 0; i < 20; i++) seqs.push(await nextSeq(home, me.z32));
    expect(seqs[0]!).toBeGreaterThanOrEqual(before);
    for (let i = 1; i < seqs.length; i++) expect(seqs[i]!).toBeGreaterThan(seqs[i - 1]!);
    const file = seenStatePath(home);
    expect(file).toBe(path.join(home, "state", "seen.json"));
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect(await readdir(path.dirname(file))).toEqual(["seen.json"]);
    const state = JSON.parse(await readFile(file, "utf8"));
    expect(state.issued[me.z32]).toBe(seqs.at(-1));

    // A clock behind what was seen still moves forward.
    const future = Date.now() * 1000 + 3_600_000_000;
    state.issued[me.z32] = future;
    await writeFile(file, JSON.stringify(state));
    expect(await nextSeq(home, me.z32)).toBe(future + 1);
  });

  it("refuses a corrupt state file with a hint", async () => {
    const home = await scratch.dir();
    await nextSeq(home, "x");
    await writeFile(seenStatePath(home), "{not json");
    const err = await nextSeq(home, "x").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CcbError);
    expect((err as CcbError).hint).toMatch(/delete it/);
  });
});

describe("publishAll", () => {
  it("publishes everywhere at once and summarises", async () => {
    const me = newIdentity();
    const m = await machine({ relays: [relayA.url, relayB.url], store: await scratch.dir() });
    const { report } = await publish(me, m.home, m.transports, "everywhere");
    expect(report.ok).toBe(true);
    expect(report.summary).toBe("stored on 8 DHT nodes, 2 relays, store");
    expect(report.results.map((result) => [result.transport, result.ok])).toEqual([
      ["dht", true],
      [`relay ${relayA.url}`, true],
      [`relay ${relayB.url}`, true],
      [`store ${m.store!.url}`, true],
    ]);
  });

  it("reports failures next to successes", async () => {
    const me = newIdentity();
    relayA.mode = "ratelimit";
    const m = await machine({ dht: false, relays: [relayA.url, relayB.url, deadRelayUrl] });
    const { report } = await publish(me, m.home, m.transports, "partly");
    expect(report.summary).toBe(
      `stored on 1 relay; failed: relay ${relayA.url}: 429 rate limited (retry after 30 s); relay ${deadRelayUrl}: unreachable (ECONNREFUSED)`,
    );
    expect(report.results.filter((result) => !result.ok)).toHaveLength(2);
  });

  it("throws CcbError (exit 1) with a hint when nothing took the record", async () => {
    const me = newIdentity();
    const m = await machine({ dht: false, relays: [deadRelayUrl] });
    const err = await publish(me, m.home, m.transports, "nowhere").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CcbError);
    expect((err as CcbError).exitCode).toBe(1);
    expect((err as CcbError).message).toBe(
      `could not publish the record anywhere: relay ${deadRelayUrl}: unreachable (ECONNREFUSED)`,
    );
    expect((err as CcbError).hint).toMatch(/republish/);
    await expect(publishAll([], me.sign("x", nowMicros()))).rejects.toThrow(/nowhere to publish/);
  });
});

describe("resolveNewest", () => {
  it("resolves with only the DHT", async () => {
    const me = newIdentity();
    const a = await machine();
    const { packet } = await publish(me, a.home, a.transports, "dht only");
    const b = await machine();
    const result = await resolveNewest(b.transports, me.publicKey, { home: b.home });
    expect(result.from).toEqual(["dht"]);
    expect(result.failures).toEqual([]);
    expect(result.payload.timestamp).toBe(packet.timestamp);
    expect(text(result.payload)).toBe("dht only");
    expect(await lastSeen(b.home, me.z32)).toBe(packet.timestamp);
  });

  it("resolves with only a relay", async () => {
    const me = newIdentity();
    const a = await machine({ dht: false, relays: [relayA.url] });
    await publish(me, a.home, a.transports, "relay only");
    const b = await machine({ dht: false, relays: [relayA.url] });
    const result = await resolveNewest(b.transports, me.publicKey, { home: b.home });
    expect(result.from).toEqual([`relay ${relayA.url}`]);
    expect(text(result.payload)).toBe("relay only");
  });

  it("resolves from the store mirror and from every transport that has the newest", async () => {
    const me = newIdentity();
    const storeDir = await scratch.dir();
    const a = await machine({ relays: [relayB.url], store: storeDir });
    await publish(me, a.home, a.transports, "all three");
    const b = await machine({ relays: [relayB.url], store: storeDir });
    const result = await resolveNewest(b.transports, me.publicKey, { home: b.home });
    expect(result.from.sort()).toEqual(["dht", `relay ${relayB.url}`, `store ${b.store!.url}`].sort());
  });

  it("falls back to the relay when the DHT is down", async () => {
    const small = await startTestnet(4);
    const me = newIdentity();
    const a = await machine({ dht: small.bootstrap, relays: [relayB.url] });
    const { report } = await publish(me, a.home, a.transports, "dht then down");
    expect(report.summary).toBe("stored on 4 DHT nodes, 1 relay");
    small.mute();
    try {
      const b = await machine({ dht: small.bootstrap, relays: [relayB.url] });
      const started = Date.now();
      const result = await resolveNewest(b.transports, me.publicKey, { home: b.home, timeoutMs: 2000 });
      // Bounded by the timeout (plus room for a busy CI machine), not by the DHT's own retries.
      expect(Date.now() - started).toBeLessThan(5000);
      expect(result.from).toEqual([`relay ${relayB.url}`]);
      expect(result.failures).toHaveLength(1);
      expect(result.failures[0]!.transport).toBe("dht");
      expect(result.failures[0]!.reason).toMatch(/no DHT node answered|timed out after 2 s/);
      expect(text(result.payload)).toBe("dht then down");
    } finally {
      await small.close();
    }
  });

  it("everything down: NotFoundError (exit 4) within the timeout, naming each transport", async () => {
    const gone = await startTestnet(2);
    gone.mute();
    const me = newIdentity();
    // A store in use (an empty store folder is reported as such: see EmptyStoreError).
    const storeDir = await scratch.dir();
    await mkdir(path.join(storeDir, "ccbundle", "v1", "blobs"), { recursive: true });
    const b = await machine({ dht: gone.bootstrap, relays: [deadRelayUrl], store: storeDir });
    const started = Date.now();
    const err = await resolveNewest(b.transports, me.publicKey, { home: b.home }).catch((e: unknown) => e);
    const elapsed = Date.now() - started;
    await gone.close();
    expect(elapsed).toBeLessThan(9000);
    expect(err).toBeInstanceOf(NotFoundError);
    expect((err as NotFoundError).exitCode).toBe(4);
    const message = (err as NotFoundError).message;
    expect(message).toContain(`no record found for ${me.z32}`);
    expect(message).toContain(`no record on store ${b.store!.url}`);
    expect(message).toContain(`relay ${deadRelayUrl}: unreachable (ECONNREFUSED)`);
    expect(message).toMatch(/dht: (no DHT node answered|timed out after 4 s)/);
    expect((err as NotFoundError).hint).toBeTruthy();
  });

  it("a silent relay does not stall resolution", async () => {
    const me = newIdentity();
    const a = await machine({ dht: false, relays: [relayB.url] });
    await publish(me, a.home, a.transports, "despite a hang");
    relayA.mode = "hang";
    const b = await machine({ dht: false, relays: [relayA.url, relayB.url] });
    const started = Date.now();
    // 2 s: relay B answers from this process, which a busy machine can stall for a while.
    const result = await resolveNewest(b.transports, me.publicKey, { home: b.home, timeoutMs: 2000 });
    // The hung relay never answers: without the timeout this would wait for the test's own.
    expect(Date.now() - started).toBeLessThan(5000);
    expect(result.from).toEqual([`relay ${relayB.url}`]);
    expect(result.failures).toEqual([{ transport: `relay ${relayA.url}`, reason: "timed out after 2 s" }]);
  });

  it("rejects a forged record: exit 5 when nothing valid, ignored when a valid one exists", async () => {
    const me = newIdentity();
    const mallory = newIdentity();
    const storeDir = await scratch.dir();
    const forged = mallory.sign("evil", nowMicros() + 3_600_000_000);
    // The relay and the store serve Mallory's packet under my key.
    relayA.inject(me.publicKey, forged.bytes);
    const store = new LocalStore(storeDir);
    await store.put(storeLayout.record(me.z32), forged.bytes);
    const b = await machine({ dht: false, relays: [relayA.url], store: storeDir });
    const err = await resolveNewest(b.transports, me.publicKey, { home: b.home }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IntegrityError);
    expect((err as IntegrityError).exitCode).toBe(5);
    expect((err as IntegrityError).message).toMatch(
      /^no valid record for .*: relay .*: rejected record: signed packet: signature does not verify for this key; store .*: rejected record/,
    );

    // Now a genuine record on the DHT: it wins; the forgeries are reported.
    const a = await machine();
    const { packet } = await publish(me, a.home, a.transports, "genuine");
    const c = await machine({ relays: [relayA.url], store: storeDir });
    const result = await resolveNewest(c.transports, me.publicKey, { home: c.home });
    expect(result.payload.timestamp).toBe(packet.timestamp);
    expect(result.from).toEqual(["dht"]);
    expect(result.failures.map((failure) => failure.transport)).toEqual([`relay ${relayA.url}`, `store ${store.url}`]);
    expect(result.failures[0]!.reason).toMatch(/^rejected record: /);
    relayA.forget(me.publicKey);
  });

  it("refuses a replayed older record once a newer one was seen", async () => {
    const me = newIdentity();
    const a = await machine({ dht: false, relays: [relayA.url] });
    const { packet: first } = await publish(me, a.home, a.transports, "first");
    const { packet: second } = await publish(me, a.home, a.transports, "second");
    const b = await machine({ dht: false, relays: [relayA.url] });
    expect((await resolveNewest(b.transports, me.publicKey, { home: b.home })).payload.timestamp).toBe(
      second.timestamp,
    );
    // The relay is rolled back to the first record.
    relayA.inject(me.publicKey, first.bytes);
    const err = await resolveNewest(b.transports, me.publicKey, { home: b.home }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IntegrityError);
    expect((err as IntegrityError).message).toMatch(/^replayed record: older than one already seen for /);
    expect((err as IntegrityError).hint).toMatch(/republish/);
    // A machine that never saw the newer one accepts it.
    const fresh = await machine({ dht: false, relays: [relayA.url] });
    expect((await resolveNewest(fresh.transports, me.publicKey, { home: fresh.home })).payload.timestamp).toBe(
      first.timestamp,
    );
    relayA.forget(me.publicKey);
  });

  it("publishes and resolves a record of exactly 1000 DNS bytes; 1001 is refused before publishing", async () => {
    const me = newIdentity();
    const storeDir = await scratch.dir();
    const a = await machine({ relays: [relayB.url], store: storeDir });
    const packet = me.signEntries(entriesOfSize(MAX_DNS_BYTES), await nextSeq(a.home, me.z32));
    expect(packet.dns.length).toBe(1000);
    expect((await publishAll(a.transports, packet)).summary).toBe("stored on 8 DHT nodes, 1 relay, store");
    for (const only of [{}, { dht: false as const, relays: [relayB.url] }, { dht: false as const, store: storeDir }]) {
      const b = await machine(only);
      const result = await resolveNewest(b.transports, me.publicKey, { home: b.home });
      expect(result.payload.dns.length).toBe(1000);
      expect(result.from).toHaveLength(1);
    }
    expect(() => me.signEntries(entriesOfSize(MAX_DNS_BYTES + 1), nowMicros())).toThrow(
      /record too large: 1001 bytes of DNS/,
    );
  });

  it("two quick publishes in a row: the second wins everywhere", async () => {
    const me = newIdentity();
    const storeDir = await scratch.dir();
    const a = await machine({ relays: [relayB.url], store: storeDir });
    const first = await publish(me, a.home, a.transports, "one");
    const second = await publish(me, a.home, a.transports, "two");
    expect(second.packet.timestamp).toBeGreaterThan(first.packet.timestamp);
    expect(second.report.summary).toBe("stored on 8 DHT nodes, 1 relay, store");
    for (const only of [{}, { dht: false as const, relays: [relayB.url] }, { dht: false as const, store: storeDir }]) {
      const b = await machine(only);
      const result = await resolveNewest(b.transports, me.publicKey, { home: b.home });
      expect(text(result.payload)).toBe("two");
    }
  });

  it("a relay answering junk does not break resolution from the others", async () => {
    const me = newIdentity();
    const a = await machine({ relays: [relayB.url] });
    await publish(me, a.home, a.transports, "despite junk");
    const b = await machine({ relays: [junk.url, relayB.url] });
    const result = await resolveNewest(b.transports, me.publicKey, { home: b.home });
    expect(text(result.payload)).toBe("despite junk");
    expect(result.from.sort()).toEqual(["dht", `relay ${relayB.url}`].sort());
    expect(result.failures).toHaveLength(1);
    expect(result.failures[0]!.transport).toBe(`relay ${junk.url}`);
    expect(result.failures[0]!.reason).toMatch(/^rejected record: signed packet/);
    expect(junk.requests.some((request) => request.method === "GET" && request.path === me.z32)).toBe(true);
  });

  it("only junk: exit 5, not 4", async () => {
    const me = newIdentity();
    const b = await machine({ dht: false, relays: [junk.url] });
    await expect(resolveNewest(b.transports, me.publicKey, { home: b.home })).rejects.toBeInstanceOf(IntegrityError);
  });

  it("no transports at all: a usage error (2, not 4: it never looked) that says where it could look", async () => {
    const err = await resolveNewest([], newIdentity().publicKey, { home: await scratch.dir() }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(UsageError);
    expect((err as UsageError).message).toMatch(/nowhere to look \(the DHT and relays are off, no store given\)$/);
    expect((err as UsageError).hint).toContain("--store with the store it was pushed to");
  });
});

describe("transportsFor", () => {
  it("builds the DHT when bootstrap is set, each relay, and the store mirror", async () => {
    const store = new LocalStore(await scratch.dir());
    const all = transportsFor(
      { bootstrap: ["127.0.0.1:1"], relays: ["https://a.example/", "http://b.example"] },
      store,
    );
    expect(all.map((transport) => transport.name)).toEqual([
      "dht",
      "relay https://a.example",
      "relay http://b.example",
      `store ${store.url}`,
    ]);
    expect(all[0]).toBeInstanceOf(DhtTransport);
    expect(all[1]).toBeInstanceOf(RelayTransport);
    expect(all[3]).toBeInstanceOf(StoreMirrorTransport);
    expect(transportsFor({ bootstrap: [], relays: [] }, undefined)).toEqual([]);
    await closeTransports(all);
  });
});
