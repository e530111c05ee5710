import type { EventEmitter } from "node:events";
import DHT from "bittorrent-dht";
import { verifyEd25519 } from "../../core/pointer/dht.js";

/**
 * A real Mainline DHT of `size` bittorrent-dht nodes on 127.0.0.1. The first node
 * bootstraps from nobody (`bootstrap: false`); the others bootstrap from it. All
 * bind to 127.0.0.1 and store BEP44 mutable items (ed25519 `verify`). No public
 * bootstrap node is ever contacted. Like Rust mainline nodes (and unlike stock
 * bittorrent-dht), the nodes honour BEP 43: a querier that sends `ro: 1` is
 * answered but not added to the routing table.
 */
export interface Testnet {
  /** `127.0.0.1:port` of every node, usable as Settings.bootstrap. */
  bootstrap: string[];
  nodes: DHT[];
  /**
   * Stop answering, ports kept bound: a DHT that is down. Closing it instead would free its ports,
   * and a client socket bound to port 0 later may be given one of them and answer itself.
   */
  mute(): void;
  close(): Promise<void>;
}

export async function startTestnet(size = 8): Promise<Testnet> {
  const nodes: DHT[] = [];
  const close = async () => {
    await Promise.all(nodes.map((node) => new Promise<void>((resolve) => node.destroy(() => resolve()))));
  };
  try {
    const first = new DHT({ bootstrap: false, verify: verifyEd25519, timeout: 1000 });
    honourReadOnly(first);
    nodes.push(first);
    await listen(first);
    const seed = `127.0.0.1:${first.address().port}`;
    for (let i = 1; i < size; i++) {
      const node = new DHT({ bootstrap: [seed], verify: verifyEd25519, timeout: 1000 });
      honourReadOnly(node);
      nodes.push(node);
      await listen(node);
    }
    await Promise.all(nodes.map(waitReady));
    // Introduce everyone to everyone, then wait until every routing table is full.
    for (const node of nodes) {
      for (const other of nodes) {
        if (other !== node) node.addNode({ host: "127.0.0.1", port: other.address().port });
      }
    }
    const deadline = Date.now() + 10_000;
    while (!nodes.every((node) => node.nodes.count() >= size - 1)) {
      if (Date.now() > deadline) throw new Error("testnet nodes did not find each other within 10 s");
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    const mute = () => {
      for (const node of nodes) {
        const rpc = node._rpc as unknown as { socket: { socket: EventEmitter } };
        rpc.socket.socket.removeAllListeners("message");
      }
    };
    return { bootstrap: nodes.map((node) => `127.0.0.1:${node.address().port}`), nodes, mute, close };
  } catch (err) {
    await close();
    throw err;
  }
}

function listen(node: DHT): Promise<void> {
  return new Promise((resolve, reject) => {
    node.once("error", reject);
    node.listen(0, "127.0.0.1", () => {
      node.off("error", reject);
      node.on("error", () => {});
      resolve();
    });
  });
}

function waitReady(node: DHT): Promise<void> {
  return node.ready ? Promise.resolve() : new Promise((resolve) => node.once("ready", () => resolve()));
}

/** k-rpc adds every querier to the routing table; skip that for `ro: 1` queries (BEP 43). */
function honourReadOnly(node: DHT): void {
  const rpc = node._rpc as unknown as EventEmitter & { socket: EventEmitter };
  const [original] = rpc.socket.listeners("query") as Array<(query: { ro?: unknown }, peer: unknown) => void>;
  if (!original) throw new Error("k-rpc query listener not found");
  rpc.socket.off("query", original);
  rpc.socket.on("query", (query: { ro?: unknown }, peer: unknown) => {
    if (query.ro === 1) rpc.emit("query", query, peer);
    else original(query, peer);
  });
}
