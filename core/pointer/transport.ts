/**
 * A place a signed PKARR packet can be published to and resolved from:
 * the Mainline DHT, a pkarr relay, or the store's `records/<z32>` mirror.
 * All three carry the same bytes (the relay payload: sig | seq | dns), and
 * none of them is trusted: the resolver verifies every packet it gets.
 */
export interface PointerTransport {
  /** Short human name for reports: "dht", "relay https://…", "store file:///…". */
  readonly name: string;
  /** Publish; resolves with a short success detail (e.g. "8 nodes"), rejects with a reason. */
  publish(packet: RelayPayload): Promise<string>;
  /** The newest payload this transport has for the key, unverified; undefined when it has none. */
  resolve(publicKey: Uint8Array, signal: AbortSignal): Promise<Uint8Array | undefined>;
  close?(): Promise<void>;
  /** Get ready for a resolve that comes next (load code, open sockets), without waiting; failures show at the resolve. */
  warm?(): void;
}

/** A signed packet in the pkarr relay wire form: 64-byte signature, 8-byte big-endian seq (µs), DNS bytes. */
export interface RelayPayload {
  publicKey: Uint8Array;
  bytes: Uint8Array;
  /** Microseconds since the epoch: the BEP44 seq. */
  timestamp: number;
  signature: Uint8Array;
  /** The encoded DNS packet (BEP44 `v`). */
  dns: Uint8Array;
}
