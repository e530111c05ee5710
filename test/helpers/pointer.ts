import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { generateKeyPair } from "pkarr/lib/tools.js";
import { dnsSize, signPacket, type TxtEntry } from "../../core/pointer/packet.js";
import type { PointerTransport, RelayPayload } from "../../core/pointer/transport.js";
import { encodePublicKey } from "../../core/pointer/z32.js";

export interface Identity {
  seed: Uint8Array;
  publicKey: Uint8Array;
  z32: string;
  /** Sign one `_ccbundle` TXT record with this key. */
  sign(text: string, timestampMicros: number): RelayPayload;
  signEntries(entries: TxtEntry[], timestampMicros: number): RelayPayload;
}

export function newIdentity(): Identity {
  const seed = new Uint8Array(randomBytes(32));
  const publicKey = new Uint8Array(generateKeyPair(seed).publicKey);
  return {
    seed,
    publicKey,
    z32: encodePublicKey(publicKey),
    sign: (text, timestampMicros) =>
      signPacket(seed, [{ name: "_ccbundle", data: Buffer.from(text) }], timestampMicros),
    signEntries: (entries, timestampMicros) => signPacket(seed, entries, timestampMicros),
  };
}

/** Microsecond timestamps, strictly increasing within a test run. */
let lastMicros = 0;
export function nowMicros(): number {
  lastMicros = Math.max(Date.now() * 1000, lastMicros + 1);
  return lastMicros;
}

/** Temp dirs and transports made during a test, cleaned up after it. */
export class Scratch {
  private readonly dirs: string[] = [];
  private readonly transports: PointerTransport[] = [];

  async dir(prefix = "ccb-pointer-"): Promise<string> {
    const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
    this.dirs.push(dir);
    return dir;
  }

  track<T extends PointerTransport>(transport: T): T {
    this.transports.push(transport);
    return transport;
  }

  trackAll<T extends PointerTransport>(transports: T[]): T[] {
    for (const transport of transports) this.track(transport);
    return transports;
  }

  async cleanup(): Promise<void> {
    await Promise.allSettled(this.transports.splice(0).map((transport) => transport.close?.()));
    await Promise.all(this.dirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
  }
}

/** TXT entries under `_ccbundle` whose signed DNS is exactly `target` bytes. */
export function entriesOfSize(target: number): TxtEntry[] {
  const base = dnsSize([{ name: "_ccbundle", data: new Uint8Array(0) }]);
  // Each 255-byte chunk costs 256 bytes (length prefix); find the data length by search.
  for (let length = Math.max(0, target - base - 10); length <= target; length++) {
    const entries = [{ name: "_ccbundle", data: new Uint8Array(length).fill(0x61) }];
    if (dnsSize(entries) === target) return entries;
  }
  throw new Error(`no entry of exactly ${target} bytes`);
}
