// bittorrent-dht 11 ships no types. This declares the public surface we use and,
// separately, the few internals DhtTransport drives (see core/pointer/dht.ts for why).
declare module "bittorrent-dht" {
  import { EventEmitter } from "node:events";

  export interface DhtNodeAddress {
    host: string;
    port: number;
    id?: Buffer;
    token?: Buffer | null;
  }

  export interface DhtOptions {
    bootstrap?: false | Array<string | { host: string; port: number }>;
    verify?: (signature: Buffer, message: Buffer, publicKey: Buffer) => boolean;
    host?: string;
    nodeId?: Buffer;
    /** Per-query timeout of the k-rpc socket, ms (default 2000). */
    timeout?: number;
    concurrency?: number;
    maxValues?: number;
    maxTables?: number;
    timeBucketOutdated?: number;
  }

  /** A KRPC message as bencode decodes it. */
  export interface KrpcMessage {
    t?: Buffer;
    y?: Buffer;
    r?: Record<string, unknown> & { id?: Buffer };
    e?: unknown[];
  }

  export interface KrpcError extends Error {
    code?: number | string;
  }

  export type KrpcCallback = (err: KrpcError | null, message: KrpcMessage | null, peer: DhtNodeAddress) => void;

  export interface KBucketLike {
    count(): number;
    toArray(): DhtNodeAddress[];
    closest(target: Buffer, n?: number): DhtNodeAddress[];
  }

  export interface KrpcSocketLike {
    query(peer: DhtNodeAddress, message: { q: string; a: Record<string, unknown> }, cb: KrpcCallback): number;
    send(peer: DhtNodeAddress, message: Record<string, unknown>, cb?: (err?: Error) => void): void;
    inflight: number;
  }

  export interface KrpcLike {
    id: Buffer;
    k: number;
    nodes: KBucketLike;
    socket: KrpcSocketLike;
    query(peer: DhtNodeAddress, message: { q: string; a: Record<string, unknown> }, cb: KrpcCallback): void;
  }

  export default class DHT extends EventEmitter {
    constructor(options?: DhtOptions);
    readonly nodeId: Buffer;
    readonly nodes: KBucketLike;
    ready: boolean;
    listening: boolean;
    destroyed: boolean;
    listen(port?: number, address?: string, onlistening?: () => void): void;
    address(): { address: string; family: string; port: number };
    addNode(node: { host: string; port: number; id?: Buffer }): void;
    toJSON(): { nodes: Array<{ host: string; port: number }>; values: Record<string, unknown> };
    destroy(cb?: () => void): void;

    // Internals (stable across 11.x) used by DhtTransport.
    _rpc: KrpcLike;
    _closest(
      target: Buffer,
      message: { q: string; a: Record<string, unknown> },
      onmessage: ((message: KrpcMessage, from: DhtNodeAddress) => boolean | undefined) | null,
      cb: (err: Error | null, visited?: number) => void,
    ): void;
    _tables: { get(key: string): KBucketLike | undefined };
  }
}
