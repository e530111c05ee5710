import { type BlobStore, EmptyStoreError } from "../../storage-adapters/blob-store.js";
import { IntegrityError, NotFoundError } from "../errors.js";
import { storeLayout } from "../store-layout.js";
import { abortable } from "./abort.js";
import { verifyPayload } from "./packet.js";
import type { PointerTransport, RelayPayload } from "./transport.js";
import { encodePublicKey } from "./z32.js";

/**
 * The store's `records/<z32>` object as a pointer transport: the offline
 * rendezvous when the DHT and relays are out of reach (or have expired the
 * record). It holds the same relay-payload bytes and is no more trusted than a
 * relay: whoever can write the store could put anything there.
 */
export class StoreMirrorTransport implements PointerTransport {
  readonly name: string;

  constructor(private readonly store: BlobStore) {
    this.name = `store ${store.url}`;
  }

  async publish(packet: RelayPayload): Promise<string> {
    const key = storeLayout.record(encodePublicKey(packet.publicKey));
    // Another machine may have pushed since this packet was signed: keep the newer one.
    // An empty store (a new one: this is its first record) holds nothing to keep.
    const existing = await this.read(key, { emptyStoreIsEmpty: true });
    if (existing) {
      let existingTimestamp: number | undefined;
      try {
        existingTimestamp = verifyPayload(packet.publicKey, existing).timestamp;
      } catch (err) {
        if (!(err instanceof IntegrityError)) throw err;
        // Corrupt or forged: overwrite it.
      }
      if (existingTimestamp !== undefined && existingTimestamp > packet.timestamp) {
        throw new Error("the store holds a newer record");
      }
    }
    await this.store.put(key, packet.bytes, { size: packet.bytes.length });
    return "stored in store";
  }

  async resolve(publicKey: Uint8Array, signal: AbortSignal): Promise<Uint8Array | undefined> {
    return abortable(this.read(storeLayout.record(encodePublicKey(publicKey)), { emptyStoreIsEmpty: false }), signal);
  }

  /**
   * The record, or undefined if there is none. A reader is told when the whole store folder is
   * empty (EmptyStoreError: maybe a NAS not mounted) rather than just "no record there".
   */
  private async read(key: string, options: { emptyStoreIsEmpty: boolean }): Promise<Uint8Array | undefined> {
    try {
      return await this.store.getBytes(key);
    } catch (err) {
      if (err instanceof NotFoundError && (options.emptyStoreIsEmpty || !(err instanceof EmptyStoreError))) {
        return undefined;
      }
      throw err;
    }
  }
}
