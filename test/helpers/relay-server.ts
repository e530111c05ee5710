import { randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { DhtTransport } from "../../core/pointer/dht.js";
import { MAX_DNS_BYTES, verifyPayload } from "../../core/pointer/packet.js";
import { decodePublicKey, encodePublicKey } from "../../core/pointer/z32.js";

/**
 * A small pkarr (v7 API) relay on 127.0.0.1 for tests:
 *   PUT /<z32>  verifies the packet, keeps the newest per key (409 on an older one)
 *   GET /<z32>  200 payload | 404 | 304 when If-Modified-Since covers Last-Modified
 * Optionally backed by a DHT (puts go there too, misses are looked up there).
 * Modes: "normal"; "junk" (GET answers random bytes); "ratelimit" (429 to all);
 * "hang" (accepts the connection and never answers).
 */
export type RelayMode = "normal" | "junk" | "ratelimit" | "hang";

export interface TestRelay {
  url: string;
  mode: RelayMode;
  /** Every request seen, in order. */
  requests: Array<{ method: string; path: string }>;
  /** The body of every PUT, in order (for leak checks: every byte published here). */
  putBodies: Uint8Array[];
  /** Serve these bytes for a key without checking them (forged / replayed records). */
  inject(publicKey: Uint8Array, bytes: Uint8Array): void;
  /** Forget everything stored for a key. */
  forget(publicKey: Uint8Array): void;
  close(): Promise<void>;
}

export interface TestRelayOptions {
  mode?: RelayMode;
  /** Back the relay with a DHT reached from these bootstrap nodes. */
  dhtBootstrap?: string[];
}

interface Stored {
  bytes: Uint8Array;
  timestamp: number;
}

export async function startRelay(options: TestRelayOptions = {}): Promise<TestRelay> {
  const records = new Map<string, Stored>();
  const dht = options.dhtBootstrap ? new DhtTransport(options.dhtBootstrap) : undefined;
  const hanging = new Set<ServerResponse>();

  const relay: TestRelay = {
    url: "",
    mode: options.mode ?? "normal",
    requests: [],
    putBodies: [],
    inject(publicKey, bytes) {
      const timestamp = bytes.length >= 72 ? Number(Buffer.from(bytes).readBigUInt64BE(64)) : 0;
      records.set(encodePublicKey(publicKey), { bytes, timestamp });
    },
    forget(publicKey) {
      records.delete(encodePublicKey(publicKey));
    },
    async close() {
      for (const response of hanging) response.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await dht?.close();
    },
  };

  const handle = async (request: IncomingMessage, response: ServerResponse) => {
    const path = decodeURIComponent((request.url ?? "/").split("?")[0]!.replace(/^\/+/, ""));
    relay.requests.push({ method: request.method ?? "", path });
    const body = await readBody(request);
    if (relay.mode === "hang") {
      hanging.add(response);
      return;
    }
    if (relay.mode === "ratelimit") return send(response, 429, "rate limited", { "retry-after": "30" });
    let publicKey: Uint8Array;
    try {
      publicKey = decodePublicKey(path);
    } catch {
      return send(response, 400, "invalid public key");
    }
    const z32 = encodePublicKey(publicKey);

    if (request.method === "PUT") {
      if (body === undefined) return send(response, 400, "payload too large");
      relay.putBodies.push(body);
      let timestamp: number;
      try {
        timestamp = verifyPayload(publicKey, body).timestamp;
      } catch (err) {
        return send(response, 400, `invalid signed packet: ${(err as Error).message}`);
      }
      const existing = records.get(z32);
      if (existing) {
        const same = Buffer.from(existing.bytes).equals(Buffer.from(body));
        if (timestamp < existing.timestamp || (timestamp === existing.timestamp && !same)) {
          return send(response, 409, "not the most recent");
        }
      }
      if (relay.mode !== "junk") records.set(z32, { bytes: body, timestamp });
      if (dht) {
        await dht
          .publish({
            publicKey,
            bytes: body,
            timestamp,
            signature: body.subarray(0, 64),
            dns: body.subarray(72),
          })
          .catch(() => {});
      }
      return send(response, 204);
    }

    if (request.method === "GET") {
      if (relay.mode === "junk") return send(response, 200, randomBytes(64 + Math.floor(Math.random() * 200)));
      let stored = records.get(z32);
      if (!stored && dht) {
        const bytes = await dht.resolve(publicKey, AbortSignal.timeout(3000)).catch(() => undefined);
        if (bytes) stored = { bytes, timestamp: Number(Buffer.from(bytes).readBigUInt64BE(64)) };
      }
      if (!stored) return send(response, 404, "not found");
      const lastModifiedMs = Math.floor(stored.timestamp / 1_000_000) * 1000;
      const since = Date.parse(request.headers["if-modified-since"] ?? "");
      if (Number.isFinite(since) && lastModifiedMs <= since) return send(response, 304);
      return send(response, 200, stored.bytes, {
        "content-type": "application/pkarr.org/relays#payload",
        "last-modified": new Date(lastModifiedMs).toUTCString(),
        "cache-control": "public, max-age=300",
      });
    }
    return send(response, 405, "method not allowed");
  };

  const server = createServer((request, response) => {
    handle(request, response).catch((err) => send(response, 500, String(err)));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  relay.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return relay;
}

/** The request body, or undefined when it is larger than any signed packet. */
async function readBody(request: IncomingMessage): Promise<Uint8Array | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  let tooLarge = false;
  for await (const chunk of request as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > 72 + MAX_DNS_BYTES) tooLarge = true;
    else chunks.push(chunk);
  }
  return tooLarge ? undefined : Buffer.concat(chunks);
}

function send(
  response: ServerResponse,
  status: number,
  body?: string | Uint8Array,
  headers: Record<string, string> = {},
): void {
  if (response.headersSent) return;
  response.writeHead(status, headers);
  response.end(body);
}
