import { readdir, readFile } from "node:fs/promises";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { UsageError } from "../core/errors.js";
import { DhtTransport, dhtTarget } from "../core/pointer/dht.js";
import { verifyPayload } from "../core/pointer/packet.js";
import { RelayTransport } from "../core/pointer/relay.js";
import { StoreMirrorTransport } from "../core/pointer/store-mirror.js";
import { storeLayout } from "../core/store-layout.js";
import { EmptyStoreError } from "../storage-adapters/blob-store.js";
import { LocalStore } from "../storage-adapters/local.js";
import { entriesOfSize, newIdentity, nowMicros, Scratch } from "./helpers/pointer.js";
import { startRelay, type TestRelay } from "./helpers/relay-server.js";
import { startTestnet, type Testnet } from "./helpers/testnet.js";

let testnet: Testnet;
let relay: TestRelay;
const scratch = new Scratch();

beforeAll(async () => {
  testnet = await startTestnet(8);
  relay = await startRelay();
});
afterAll(async () => {
  await relay?.close();
  await testnet?.close();
});
afterEach(async () => {
  relay.mode = "normal";
  await scratch.cleanup();
});

const never = () => new AbortController().signal;

/**
 * A transport over the live testnet. The tests count the nodes that answered ("stored on 8 DHT
 * nodes"): a 5 s query timeout instead of the loopback default of 1 s, so a stall of this busy
 * test process (the nodes run in it) does not turn a reply that came in time into a timeout.
 */
const liveDht = (bootstrap: string[]) => scratch.track(new DhtTransport(bootstrap, { queryTimeoutMs: 5000 }));

describe("DhtTransport over a loopback Mainline DHT", () => {
  it("puts a BEP44 mutable item on the closest nodes and gets it back from another node", async () => {
    const me = newIdentity();
    const packet = me.sign("hello dht", nowMicros());
    const publisher = liveDht(testnet.bootstrap);
    expect(publisher.loopbackOnly).toBe(true);
    expect(await publisher.publish(packet)).toBe("stored on 8 DHT nodes");
    expect(publisher.localAddress()?.address).toBe("127.0.0.1");

    // Stored as pkarr stores it: target SHA1(k), seq = timestamp, v = dns.
    const stored = testnet.nodes.filter((node) => valuesOf(node).get(dhtTarget(me.publicKey).toString("hex")));
    expect(stored).toHaveLength(8);
    const item = valuesOf(stored[0]).get(dhtTarget(me.publicKey).toString("hex"))!;
    expect(item.seq).toBe(packet.timestamp);
    expect(Buffer.from(item.v).equals(Buffer.from(packet.dns))).toBe(true);

    const reader = liveDht([testnet.bootstrap[3]!]);
    const bytes = await reader.resolve(me.publicKey, never());
    expect(Buffer.from(bytes!).equals(Buffer.from(packet.bytes))).toBe(true);
    expect(verifyPayload(me.publicKey, bytes!).timestamp).toBe(packet.timestamp);
  });

  it("answers undefined for a key nobody published", async () => {
    const reader = liveDht(testnet.bootstrap);
    expect(await reader.resolve(newIdentity().publicKey, never())).toBeUndefined();
  });

  it("treats 302 for the same seq as already stored, and a newer seq on the nodes as a failure", async () => {
    const me = newIdentity();
    const dht = liveDht(testnet.bootstrap);
    const older = me.sign("older", nowMicros());
    const newer = me.sign("newer", nowMicros());
    expect(await dht.publish(newer)).toBe("stored on 8 DHT nodes");
    expect(await dht.publish(newer)).toBe("stored on 8 DHT nodes (already there)");
    await expect(dht.publish(older)).rejects.toThrow("8 DHT nodes hold a newer record (error 302)");

    // Mixed: 3 nodes forget the key, so they store the older packet while 5 answer 302.
    const target = dhtTarget(me.publicKey).toString("hex");
    for (const node of testnet.nodes.slice(0, 3))
      (node as unknown as { _values: { remove(key: string): void } })._values.remove(target);
    expect(await dht.publish(older)).toBe("stored on 3 DHT nodes (5 hold a newer record)");
  });

  it("a publish after a resolve of the same key reuses that walk's write tokens: no second lookup", async () => {
    const me = newIdentity();
    const first = me.sign("first", nowMicros());
    await liveDht(testnet.bootstrap).publish(first);

    // A push: resolve the current record, then publish the next one through the same transport.
    const dht = liveDht(testnet.bootstrap);
    expect(Buffer.from((await dht.resolve(me.publicKey, never()))!).equals(Buffer.from(first.bytes))).toBe(true);
    const sent = countQueries(dht);
    expect(await dht.publish(me.sign("second", nowMicros()))).toBe("stored on 8 DHT nodes");
    expect(sent).toEqual({ put: 8 });
  });

  it("tokens no node takes any more: the publish walks again and stores the record", async () => {
    const me = newIdentity();
    const dht = liveDht(testnet.bootstrap);
    expect(await dht.resolve(me.publicKey, never())).toBeUndefined();
    // As if the nodes had rotated their secrets twice since the walk.
    const target = dhtTarget(me.publicKey);
    const table = internals(dht)._tables.get(target.toString("hex"))!;
    for (const node of table.closest(target, 8)) node.token = Buffer.from("stale-token");
    const sent = countQueries(dht);
    const packet = me.sign("after a rotation", nowMicros());
    expect(await dht.publish(packet)).toBe("stored on 8 DHT nodes");
    expect(sent.get).toBeGreaterThan(0);
    expect(sent.put).toBe(16);
    const reader = liveDht(testnet.bootstrap);
    expect(Buffer.from((await reader.resolve(me.publicKey, never()))!).equals(Buffer.from(packet.bytes))).toBe(true);
  });

  it("publishes and resolves a packet of exactly 1000 DNS bytes", async () => {
    const me = newIdentity();
    const packet = me.signEntries(entriesOfSize(1000), nowMicros());
    expect(packet.dns.length).toBe(1000);
    const dht = liveDht(testnet.bootstrap);
    expect(await dht.publish(packet)).toBe("stored on 8 DHT nodes");
    const reader = liveDht(testnet.bootstrap);
    const bytes = await reader.resolve(me.publicKey, never());
    expect(bytes?.length).toBe(1072);
  });

  it("ignores values whose signature does not verify, and keeps the valid one", async () => {
    const me = newIdentity();
    const packet = me.sign("genuine", nowMicros());
    await liveDht(testnet.bootstrap).publish(packet);
    // A node that lies: a higher seq with a bad signature for the same key.
    const target = dhtTarget(me.publicKey).toString("hex");
    const liar = testnet.nodes[5]!;
    valuesOf(liar).set(target, {
      v: Buffer.from(packet.dns),
      k: Buffer.from(me.publicKey),
      sig: Buffer.alloc(64, 7),
      seq: packet.timestamp + 1_000_000,
      id: liar.nodeId,
    });
    const bytes = await liveDht(testnet.bootstrap).resolve(me.publicKey, never());
    expect(verifyPayload(me.publicKey, bytes!).timestamp).toBe(packet.timestamp);

    // Only forged values out there: nothing comes back.
    const victim = newIdentity();
    for (const node of testnet.nodes) {
      valuesOf(node).set(dhtTarget(victim.publicKey).toString("hex"), {
        v: Buffer.from(packet.dns),
        k: Buffer.from(victim.publicKey),
        sig: Buffer.from(packet.signature),
        seq: packet.timestamp,
        id: node.nodeId,
      });
    }
    expect(await liveDht(testnet.bootstrap).resolve(victim.publicKey, never())).toBeUndefined();
  });

  it("never sends to a non-loopback address when bootstrapped from loopback", async () => {
    const dht = liveDht([testnet.bootstrap[0]!]);
    await dht.resolve(newIdentity().publicKey, never());
    const internal = (dht as unknown as { instance: { _rpc: { socket: { query: QueryFn } } } }).instance;
    const err = await new Promise<Error | null>((resolve) =>
      internal._rpc.socket.query({ host: "192.0.2.1", port: 6881 }, { q: "ping", a: {} }, (e) => resolve(e)),
    );
    expect(err?.message).toMatch(/refused to contact non-loopback DHT node 192.0.2.1:6881/);
  });

  it("stays out of other nodes' routing tables (BEP 43 read-only) and can be closed", async () => {
    const me = newIdentity();
    const dht = new DhtTransport(testnet.bootstrap);
    await dht.publish(me.sign("ro", nowMicros()));
    const port = dht.localAddress()!.port;
    for (const node of testnet.nodes) expect(node.nodes.toArray().map((peer) => peer.port)).not.toContain(port);
    await dht.close();
    expect(dht.localAddress()).toBeUndefined();
    await expect(dht.resolve(me.publicKey, never())).rejects.toThrow(/closed/);
  });

  it("core never imports pkarr's index (whose DHT wrapper writes ~/.config/pkarr) nor loads bittorrent-dht eagerly", async () => {
    const dir = new URL("../core/pointer/", import.meta.url);
    for (const file of await readdir(dir)) {
      const source = await readFile(new URL(file, dir), "utf8");
      expect(source).not.toMatch(/from "pkarr"|import\("pkarr"\)/);
      expect(source).not.toMatch(/^import (?!type ).*from "bittorrent-dht"/m);
    }
  });

  it("fails fast with a reason when no bootstrap node answers", async () => {
    const dead = await startTestnet(2);
    dead.mute();
    try {
      const dht = scratch.track(new DhtTransport(dead.bootstrap, { queryTimeoutMs: 300 }));
      const started = Date.now();
      await expect(dht.resolve(newIdentity().publicKey, never())).rejects.toThrow(/no DHT node answered/);
      await expect(dht.publish(newIdentity().sign("x", nowMicros()))).rejects.toThrow(/no DHT node answered/);
      expect(Date.now() - started).toBeLessThan(6000);
    } finally {
      await dead.close();
    }
  });

  it("rejects a bad bootstrap list", () => {
    expect(() => new DhtTransport([])).toThrow(UsageError);
    expect(() => new DhtTransport(["router.bittorrent.com"])).toThrow(/invalid DHT bootstrap node/);
    expect(() => new DhtTransport(["127.0.0.1:70000"])).toThrow(UsageError);
    expect(new DhtTransport(["router.bittorrent.com:6881"]).loopbackOnly).toBe(false);
  });
});

describe("RelayTransport against a local pkarr relay", () => {
  it("PUTs and GETs the relay payload", async () => {
    const me = newIdentity();
    const packet = me.sign("hello relay", nowMicros());
    const transport = new RelayTransport(`${relay.url}/`);
    expect(transport.name).toBe(`relay ${relay.url}`);
    expect(await transport.publish(packet)).toBe("stored on relay");
    const bytes = await transport.resolve(me.publicKey, never());
    expect(Buffer.from(bytes!).equals(Buffer.from(packet.bytes))).toBe(true);
    expect(relay.requests.slice(-2)).toEqual([
      { method: "PUT", path: me.z32 },
      { method: "GET", path: me.z32 },
    ]);
    expect(await transport.resolve(newIdentity().publicKey, never())).toBeUndefined();
  });

  it("maps relay refusals to clear reasons", async () => {
    const me = newIdentity();
    const transport = new RelayTransport(relay.url);
    const older = me.sign("older", nowMicros());
    await transport.publish(me.sign("newer", nowMicros()));
    await expect(transport.publish(older)).rejects.toThrow("409 not the most recent (the relay holds a newer record)");
    const garbage = { ...older, bytes: new Uint8Array(100).fill(1) };
    await expect(transport.publish(garbage)).rejects.toThrow(/^400 bad request \(the relay rejected the packet\)/);
    relay.mode = "ratelimit";
    await expect(transport.publish(me.sign("x", nowMicros()))).rejects.toThrow("429 rate limited (retry after 30 s)");
    await expect(transport.resolve(me.publicKey, never())).rejects.toThrow("429 rate limited");
  });

  it("reports an unreachable or silent relay", async () => {
    // Port 2: nothing listens there, and no other socket can be given it (below the ephemeral range).
    const gone = "http://127.0.0.1:2";
    const me = newIdentity();
    await expect(new RelayTransport(gone).publish(me.sign("x", nowMicros()))).rejects.toThrow(
      "unreachable (ECONNREFUSED)",
    );
    relay.mode = "hang";
    const started = Date.now();
    await expect(new RelayTransport(relay.url, { timeoutMs: 300 }).publish(me.sign("x", nowMicros()))).rejects.toThrow(
      "timed out after 0.3 s",
    );
    await expect(new RelayTransport(relay.url).resolve(me.publicKey, AbortSignal.timeout(200))).rejects.toThrow();
    expect(Date.now() - started).toBeLessThan(4000);
  });

  it("returns whatever a junk relay sends (the resolver verifies it)", async () => {
    relay.mode = "junk";
    const bytes = await new RelayTransport(relay.url).resolve(newIdentity().publicKey, never());
    expect(bytes!.length).toBeGreaterThanOrEqual(64);
  });

  it("revalidates with If-Modified-Since when asked to, and the relay answers 304", async () => {
    const me = newIdentity();
    const packet = me.sign("cached", nowMicros());
    const transport = new RelayTransport(relay.url, { conditional: true });
    await transport.publish(packet);
    const first = await transport.resolve(me.publicKey, never());
    const second = await transport.resolve(me.publicKey, never());
    expect(Buffer.from(second!).equals(Buffer.from(first!))).toBe(true);
    const since = new Date(Math.floor(packet.timestamp / 1000)).toUTCString();
    const response = await fetch(`${relay.url}/${me.z32}`, { headers: { "if-modified-since": since } });
    expect(response.status).toBe(304);
  });

  it("refuses a URL that is not http(s)", () => {
    expect(() => new RelayTransport("ftp://relay.example")).toThrow(UsageError);
    expect(() => new RelayTransport("not a url")).toThrow(/invalid relay URL/);
  });

  it("a DHT-backed relay puts into the DHT too", async () => {
    const backed = await startRelay({ dhtBootstrap: testnet.bootstrap });
    try {
      const me = newIdentity();
      const packet = me.sign("via relay", nowMicros());
      await new RelayTransport(backed.url).publish(packet);
      const bytes = await liveDht(testnet.bootstrap).resolve(me.publicKey, never());
      expect(Buffer.from(bytes!).equals(Buffer.from(packet.bytes))).toBe(true);
    } finally {
      await backed.close();
    }
  });
});

describe("StoreMirrorTransport over a LocalStore", () => {
  it("writes records/<z32> and reads it back; missing is undefined; an empty store folder is said so", async () => {
    const store = new LocalStore(await scratch.dir());
    const mirror = new StoreMirrorTransport(store);
    expect(mirror.name).toBe(`store ${store.url}`);
    const me = newIdentity();
    // Nothing at all in the store folder: maybe a mount point with nothing mounted.
    await expect(mirror.resolve(me.publicKey, never())).rejects.toBeInstanceOf(EmptyStoreError);
    // The first record of a new store is written all the same.
    const someoneElse = newIdentity();
    expect(await mirror.publish(someoneElse.sign("first", nowMicros()))).toBe("stored in store");
    expect(await mirror.resolve(me.publicKey, never())).toBeUndefined();
    const packet = me.sign("in the store", nowMicros());
    expect(await mirror.publish(packet)).toBe("stored in store");
    expect(Buffer.from(await store.getBytes(storeLayout.record(me.z32))).equals(Buffer.from(packet.bytes))).toBe(true);
    expect(Buffer.from((await mirror.resolve(me.publicKey, never()))!).equals(Buffer.from(packet.bytes))).toBe(true);
  });

  it("keeps a newer record and overwrites a corrupt one", async () => {
    const store = new LocalStore(await scratch.dir());
    const mirror = new StoreMirrorTransport(store);
    const me = newIdentity();
    const older = me.sign("older", nowMicros());
    const newer = me.sign("newer", nowMicros());
    await mirror.publish(newer);
    await expect(mirror.publish(older)).rejects.toThrow("the store holds a newer record");
    await store.put(storeLayout.record(me.z32), new Uint8Array(80).fill(9));
    await mirror.publish(older);
    expect(verifyPayload(me.publicKey, (await mirror.resolve(me.publicKey, never()))!).timestamp).toBe(older.timestamp);
  });
});

type QueryFn = (
  peer: { host: string; port: number },
  message: { q: string; a: Record<string, unknown> },
  cb: (err: Error | null) => void,
) => number;

interface StoredItem {
  v: Buffer;
  k: Buffer;
  sig: Buffer;
  seq: number;
  id: Buffer;
}

function valuesOf(node: unknown): {
  get(key: string): StoredItem | undefined;
  set(key: string, value: StoredItem): void;
} {
  return (node as { _values: { get(key: string): StoredItem | undefined; set(key: string, value: StoredItem): void } })
    ._values;
}

interface DhtInternals {
  _tables: Map<string, { closest(target: Buffer, k: number): Array<{ token?: Buffer }> }>;
  _rpc: { socket: { query(node: unknown, message: { q: string }, cb: unknown): unknown } };
}

/** The transport's bittorrent-dht node (private: started by its first resolve or publish). */
function internals(dht: DhtTransport): DhtInternals {
  return (dht as unknown as { instance: DhtInternals }).instance;
}

/** Counts the queries the transport sends from now on, by kind (get, put, …): every one goes through its socket. */
function countQueries(dht: DhtTransport): Record<string, number> {
  const counts: Record<string, number> = {};
  const socket = internals(dht)._rpc.socket;
  const query = socket.query.bind(socket);
  socket.query = (node, message, cb) => {
    counts[message.q] = (counts[message.q] ?? 0) + 1;
    return query(node, message, cb);
  };
  return counts;
}
