import { createHash } from "node:crypto";
import type DHT from "bittorrent-dht";
import type { DhtNodeAddress, KrpcError, KrpcMessage } from "bittorrent-dht";
import { verifyNative } from "../crypto/ed25519.js";
import { UsageError } from "../errors.js";
import { abortable, describeError, TimeoutReason, timeoutSignal } from "./abort.js";
import { bep44Signable, MAX_DNS_BYTES } from "./packet.js";
import type { PointerTransport, RelayPayload } from "./transport.js";

/**
 * The Mainline DHT as a pointer transport: BEP44 mutable items (k = ed25519
 * public key, seq = packet timestamp in µs, v = DNS bytes, no salt), stored at
 * target SHA1(k), exactly as pkarr clients do.
 *
 * We drive bittorrent-dht directly rather than through pkarr's wrapper (which
 * reads and writes ~/.config/pkarr and falls back to public bootstrap nodes).
 * The node contacts only the network reached from `bootstrap`; when every
 * bootstrap host is loopback it binds to 127.0.0.1 and refuses to send to any
 * other address, so tests never leave the machine.
 *
 * Publish and resolve run the traversal themselves (bittorrent-dht's `_closest`,
 * `_tables`, `_rpc`, stable across 11.x) instead of `put()`/`get()`, because:
 * `put()` refuses v of exactly 1000 bytes (pkarr allows up to 1000, and so do the
 * storing nodes), it reports only a success count, and `get()` returns nothing
 * until the full lookup ends, so a timeout would lose values already received.
 */

export interface DhtTransportOptions {
  /** Budget for one publish (lookup + puts), ms. Default 8000. */
  publishTimeoutMs?: number;
  /** Per-query UDP timeout, ms. Default 2000, or 1000 on a loopback-only network. */
  queryTimeoutMs?: number;
  /** Address to bind. Default: 127.0.0.1 when every bootstrap host is loopback, else all interfaces. */
  host?: string;
  /**
   * Once resolve has a verified value, how long to keep listening for a newer one
   * before answering, ms. Default 500. (A full lookup waits out every dead node's timeout.)
   */
  settleMs?: number;
}

interface BestValue {
  seq: number;
  bytes: Uint8Array;
}

export class DhtTransport implements PointerTransport {
  readonly name = "dht";
  /** True when every bootstrap host is loopback: bound to 127.0.0.1, talks to loopback only. */
  readonly loopbackOnly: boolean;
  private readonly peers: Array<{ host: string; port: number }>;
  private readonly publishTimeoutMs: number;
  private readonly queryTimeoutMs: number;
  private readonly bindHost: string | undefined;
  private readonly settleMs: number;
  private starting: Promise<DHT> | undefined;
  private instance: DHT | undefined;
  private closed = false;
  /**
   * Lookups under way: close() ends them. A destroyed DHT never finishes its walks, and a lookup
   * left waiting for its time budget (seconds) kept a push that had failed from exiting.
   */
  private readonly lookups = new Set<() => void>();
  /**
   * Fails a start still waiting for its socket to bind: a DHT destroyed by close() before then never
   * calls back, and the lookup awaiting the start held a failed push open until its time ran out.
   */
  private failStart: ((err: Error) => void) | undefined;
  private lastError: Error | undefined;
  /** The last `get` walk towards each target (hex), whose write tokens a publish may reuse. */
  private readonly walks = new Map<string, Walk>();

  constructor(
    readonly bootstrap: string[],
    options: DhtTransportOptions = {},
  ) {
    if (bootstrap.length === 0) {
      throw new UsageError("the DHT needs at least one bootstrap node", {
        hint: "set CCBUNDLE_BOOTSTRAP=host:port,… or disable the DHT with --no-dht",
      });
    }
    this.peers = bootstrap.map(parseHostPort);
    this.loopbackOnly = this.peers.every((peer) => isLoopbackHost(peer.host));
    this.publishTimeoutMs = options.publishTimeoutMs ?? 8000;
    this.queryTimeoutMs = options.queryTimeoutMs ?? (this.loopbackOnly ? 1000 : 2000);
    this.bindHost = options.host ?? (this.loopbackOnly ? "127.0.0.1" : undefined);
    this.settleMs = options.settleMs ?? 500;
  }

  /** The local UDP address once started (for tests and diagnostics). */
  localAddress(): { address: string; port: number } | undefined {
    if (!this.instance?.listening) return undefined;
    const { address, port } = this.instance.address();
    return { address, port };
  }

  async publish(packet: RelayPayload): Promise<string> {
    if (packet.dns.length > MAX_DNS_BYTES) {
      throw new Error(`record too large for the DHT (${packet.dns.length} bytes of DNS, limit ${MAX_DNS_BYTES})`);
    }
    const signal = timeoutSignal(this.publishTimeoutMs);
    const dht = await abortable(this.start(), signal);
    const key = Buffer.from(packet.publicKey);
    const target = sha1(key);

    // 1. Walk towards the target with `get`: collects write tokens from the closest nodes and
    //    tells us what each already holds. A push has just walked there to read the current
    //    record (while it packed the session): its tokens are reused, saving a whole lookup
    //    after the upload (seconds on the real DHT). Should no node store it that way (tokens
    //    expired, or 302s that the old walk cannot explain), the put is tried after a fresh walk.
    const recent = this.walks.get(target.toString("hex"));
    if (recent && Date.now() - recent.started < TOKEN_REUSE_MS) {
      // A resolve answers before its walk ends: the rest of that walk is still quicker than a new one.
      const walked = await abortable(recent.finished, signal).then(
        () => true,
        () => false,
      );
      if (walked) {
        const outcome = await this.putTo(dht, recent, packet, signal);
        // 302s are told apart by what the nodes held during the walk: after an old walk, ask afresh.
        if (outcome.total > 0 || signal.aborted) return this.describePut(outcome);
      }
    }
    const walk = this.walk(dht, key);
    const visited = await abortable(walk.finished, signal);
    const outcome = await this.putTo(dht, walk, packet, signal);
    if (outcome.asked === 0) {
      throw new Error(visited === 0 ? this.unreachable() : "no DHT node offered to store the record");
    }
    return this.describePut(outcome);
  }

  /**
   * 2. Put to each of the closest nodes that gave a token on `walk`. 302 means the node
   *    already holds this seq or a newer one.
   */
  private async putTo(dht: DHT, walk: Walk, packet: RelayPayload, signal: AbortSignal): Promise<PutOutcome> {
    const key = Buffer.from(packet.publicKey);
    const signature = Buffer.from(packet.signature);
    const nodes = this.tokenHolders(dht, walk.target);
    let stored = 0;
    let alreadyHad = 0;
    let newer = 0;
    const errors: string[] = [];
    await new Promise<void>((resolve) => {
      let missing = nodes.length;
      // No token holder: nothing to wait for (the caller says why).
      if (missing === 0) return resolve();
      const finish = () => {
        signal.removeEventListener("abort", finish);
        resolve();
      };
      signal.addEventListener("abort", finish, { once: true });
      for (const node of nodes) {
        const message = {
          q: "put",
          a: {
            id: dht._rpc.id,
            token: node.token,
            k: key,
            seq: packet.timestamp,
            sig: signature,
            v: Buffer.from(packet.dns),
          },
        };
        dht._rpc.query(node, message, (err) => {
          if (!err) {
            stored++;
            walk.held.set(addressOf(node), { seq: packet.timestamp, sig: signature });
          } else if (Number(err.code) === 302) {
            const had = walk.held.get(addressOf(node));
            if (had && had.seq === packet.timestamp && had.sig.equals(signature)) alreadyHad++;
            else newer++;
          } else errors.push(putErrorReason(err));
          if (--missing === 0) finish();
        });
      }
    });

    return {
      total: stored + alreadyHad,
      stored,
      alreadyHad,
      newer,
      errors,
      asked: nodes.length,
      aborted: signal.aborted,
    };
  }

  private describePut(outcome: PutOutcome): string {
    const { total, stored, alreadyHad, newer, errors } = outcome;
    if (total > 0) {
      const notes = [
        alreadyHad > 0 && stored === 0 ? "already there" : undefined,
        // Another machine published a newer record since this one was signed: resolvers will prefer it.
        newer > 0 ? `${newer} hold${newer === 1 ? "s" : ""} a newer record` : undefined,
      ].filter((note) => note !== undefined);
      return `stored on ${total} DHT node${plural(total)}${notes.length > 0 ? ` (${notes.join("; ")})` : ""}`;
    }
    if (newer > 0) throw new Error(`${newer} DHT node${plural(newer)} hold a newer record (error 302)`);
    if (outcome.aborted) throw new TimeoutReason(this.publishTimeoutMs);
    throw new Error(`no DHT node stored the record (${summarizeErrors(errors, outcome.asked)})`);
  }

  /** The closest nodes to `target` that gave this process a write token (bittorrent-dht keeps them 5 minutes). */
  private tokenHolders(dht: DHT, target: Buffer) {
    return (dht._tables.get(target.toString("hex"))?.closest(target, dht._rpc.k) ?? []).filter((node) => node.token);
  }

  async resolve(publicKey: Uint8Array, signal: AbortSignal): Promise<Uint8Array | undefined> {
    const dht = await abortable(this.start(), signal);
    const key = Buffer.from(publicKey);
    let best: BestValue | undefined;
    let visited: number | undefined;
    await new Promise<void>((resolve) => {
      let settle: NodeJS.Timeout | undefined;
      const finish = () => {
        clearTimeout(settle);
        signal.removeEventListener("abort", finish);
        this.lookups.delete(finish);
        resolve();
      };
      if (signal.aborted || this.closed) return finish();
      signal.addEventListener("abort", finish, { once: true });
      this.lookups.add(finish);
      this.walk(dht, key, (value) => {
        if (!best || value.seq > best.seq) {
          best = { seq: value.seq, bytes: relayBytes(value) };
          settle ??= setTimeout(finish, this.settleMs);
        }
      }).finished.then(
        (count) => {
          visited = count;
          finish();
        },
        () => finish(),
      );
    });
    // Aborted mid-walk: a value already received still counts.
    if (best) return best.bytes;
    if (visited === undefined) {
      if (this.closed) throw new Error("the DHT transport is closed");
      throw signal.reason instanceof Error ? signal.reason : new Error("aborted");
    }
    if (visited === 0) throw new Error(this.unreachable());
    return undefined;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.failStart?.(new Error("the DHT transport is closed"));
    for (const finish of [...this.lookups]) finish();
    const dht = this.instance;
    this.instance = undefined;
    if (dht && !dht.destroyed) await new Promise<void>((resolve) => dht.destroy(() => resolve()));
  }

  private unreachable(): string {
    const why = this.lastError ? `: ${describeError(this.lastError)}` : "";
    return `no DHT node answered (bootstrap ${this.bootstrap.join(", ")})${why}`;
  }

  /**
   * Start the node now: a pull that is about to resolve calls this before it loads the rest of
   * its code, so loading bittorrent-dht and the first round trips overlap that. A failure here
   * is the resolve's to report (it awaits the same start).
   */
  warm(): void {
    this.start().catch(() => undefined);
  }

  /** Start the node once: load bittorrent-dht, bind; bootstrapping runs in the background. */
  private start(): Promise<DHT> {
    if (this.closed) return Promise.reject(new Error("the DHT transport is closed"));
    this.starting ??= (async () => {
      const { default: DHTClass } = await import("bittorrent-dht");
      if (this.closed) throw new Error("the DHT transport is closed");
      const dht = new DHTClass({
        bootstrap: this.peers,
        verify: verifyEd25519,
        timeout: this.queryTimeoutMs,
        ...(this.bindHost ? { host: this.bindHost } : {}),
      });
      this.instance = dht;
      dht.on("error", (err: Error) => {
        this.lastError = err;
      });
      dht.on("warning", () => {});
      if (this.loopbackOnly) restrictToLoopback(dht);
      readOnly(dht);
      // Bind before the first query goes out (bootstrap runs on the next tick).
      await new Promise<void>((resolve, reject) => {
        const onError = (err: Error) => reject(err);
        this.failStart = reject;
        dht.once("error", onError);
        dht.listen(0, this.bindHost, () => {
          dht.off("error", onError);
          resolve();
        });
      }).finally(() => {
        this.failStart = undefined;
      });
      // We do not wait for `ready` (the end of the routing-table fill): a lookup
      // starts from the bootstrap nodes by itself, and `ready` waits out the
      // timeout of every dead node met on the way (seconds on the real DHT).
      return dht;
    })();
    return this.starting;
  }

  /**
   * An iterative `get` lookup towards SHA1(key); `finished` resolves with how many nodes
   * answered. Every verified value is kept per node (and passed to `onValue`), and the walk is
   * remembered so that a publish soon after can reuse its write tokens.
   */
  private walk(dht: DHT, key: Buffer, onValue?: (value: DhtValue) => void): Walk {
    const target = sha1(key);
    const walk: Walk = { target, started: Date.now(), held: new Map(), finished: Promise.resolve(0) };
    walk.finished = new Promise<number>((resolve, reject) => {
      dht._closest(
        target,
        { q: "get", a: { id: dht._rpc.id, target } },
        (message: KrpcMessage, from: DhtNodeAddress) => {
          const value = message.r && message.r.v !== undefined ? verifiedValue(message.r, key) : undefined;
          if (value) {
            walk.held.set(addressOf(from), { seq: value.seq, sig: value.sig });
            onValue?.(value);
          }
          return true;
        },
        (err, visited) => (err ? reject(err) : resolve(visited ?? 0)),
      );
    });
    // A resolve may answer before its walk ends; a failure nobody awaits is not an unhandled rejection.
    walk.finished.catch(() => undefined);
    this.walks.set(target.toString("hex"), walk);
    return walk;
  }
}

/**
 * How long a walk's write tokens are reused by a publish. Nodes accept a token for 5 to 10
 * minutes (bittorrent-dht rotates its secret every 5 and accepts the previous one); a push
 * publishes seconds after its walk.
 */
const TOKEN_REUSE_MS = 60_000;

/** A `get` walk towards a target (see DhtTransport.walk). */
interface Walk {
  target: Buffer;
  started: number;
  finished: Promise<number>;
  /** The verified value each node answered with, by address: tells "already there" from "newer" on a 302. */
  held: Map<string, { seq: number; sig: Buffer }>;
}

interface PutOutcome {
  total: number;
  stored: number;
  alreadyHad: number;
  newer: number;
  errors: string[];
  asked: number;
  aborted: boolean;
}

/** ed25519 verification for bittorrent-dht (`verify(sig, msg, pub)`); never throws. */
export function verifyEd25519(signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array): boolean {
  if (!(signature instanceof Uint8Array) || signature.length !== 64) return false;
  if (!(publicKey instanceof Uint8Array) || publicKey.length !== 32) return false;
  try {
    return verifyNative(publicKey, message, signature);
  } catch {
    return false;
  }
}

/** The DHT target of a pkarr key: SHA1 of the 32-byte public key. */
export function dhtTarget(publicKey: Uint8Array): Buffer {
  return sha1(publicKey);
}

interface DhtValue {
  seq: number;
  v: Buffer;
  sig: Buffer;
}

/** A `get` response's value, if it is for `key`, well-formed and correctly signed. */
function verifiedValue(r: Record<string, unknown>, key: Buffer): DhtValue | undefined {
  const { k, v, sig, seq, salt } = r;
  if (salt !== undefined) return undefined;
  if (!Buffer.isBuffer(k) || !k.equals(key)) return undefined;
  if (!Buffer.isBuffer(v) || v.length > MAX_DNS_BYTES) return undefined;
  if (!Buffer.isBuffer(sig) || sig.length !== 64) return undefined;
  if (typeof seq !== "number" || !Number.isSafeInteger(seq) || seq < 0) return undefined;
  if (!verifyEd25519(sig, bep44Signable(seq, v), key)) return undefined;
  return { seq, v, sig };
}

/** Relay payload form: sig(64) | seq u64 BE (8) | v. */
function relayBytes(value: DhtValue): Uint8Array {
  const out = Buffer.alloc(72 + value.v.length);
  value.sig.copy(out, 0);
  out.writeBigUInt64BE(BigInt(value.seq), 64);
  value.v.copy(out, 72);
  return out;
}

function putErrorReason(err: KrpcError): string {
  if (err.code === "ETIMEDOUT") return "timed out";
  if (typeof err.code === "number" && err.code > 0) return `error ${err.message}`;
  return describeError(err);
}

function summarizeErrors(errors: string[], asked: number): string {
  if (errors.length === 0) return `asked ${asked}`;
  const counts = new Map<string, number>();
  for (const error of errors) counts.set(error, (counts.get(error) ?? 0) + 1);
  return [...counts].map(([error, count]) => `${count} ${error}`).join(", ");
}

/**
 * BEP 43 read-only mode, as the Rust mainline client uses: every query carries
 * `ro: 1`, so nodes that honour it do not add this short-lived client to their
 * routing tables (where it would linger as a dead node slowing others' lookups).
 */
function readOnly(dht: DHT): void {
  const socket = dht._rpc.socket;
  const send = socket.send.bind(socket);
  socket.send = (peer, message, cb) => {
    if (message.y === "q") message.ro = 1;
    send(peer, message, cb);
  };
}

/** Refuse (fail fast, send nothing) any query to a non-loopback address. */
function restrictToLoopback(dht: DHT): void {
  const socket = dht._rpc.socket;
  const query = socket.query.bind(socket);
  socket.query = (peer, message, cb) => {
    if (isLoopbackHost(peer.host)) return query(peer, message, cb);
    const err: KrpcError = new Error(`refused to contact non-loopback DHT node ${peer.host}:${peer.port}`);
    err.code = "ENONLOOPBACK";
    process.nextTick(() => cb(err, null, peer));
    return 0;
  };
}

export function isLoopbackHost(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

function parseHostPort(entry: string): { host: string; port: number } {
  const match = /^([A-Za-z0-9.-]+):(\d{1,5})$/.exec(entry.trim());
  const port = match ? Number(match[2]) : 0;
  if (!match || port < 1 || port > 65535) {
    throw new UsageError(`invalid DHT bootstrap node: ${JSON.stringify(entry)}`, {
      hint: "use host:port (IPv4 or a host name), e.g. router.bittorrent.com:6881",
    });
  }
  return { host: match[1]!, port };
}

function addressOf(node: { host?: string; address?: string; port: number }): string {
  return `${node.host ?? node.address}:${node.port}`;
}

function sha1(data: Uint8Array): Buffer {
  return createHash("sha1").update(data).digest();
}

function plural(n: number): string {
  return n === 1 ? "" : "s";
}
