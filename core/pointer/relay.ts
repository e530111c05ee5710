import { IntegrityError, UsageError } from "../errors.js";
import { abortable, describeError, firstLine, TimeoutReason, timeoutSignal } from "./abort.js";
import { MAX_DNS_BYTES } from "./packet.js";
import type { PointerTransport, RelayPayload } from "./transport.js";
import { encodePublicKey } from "./z32.js";

/**
 * One pkarr relay (HTTP API of pkarr v7):
 *   PUT /<z32>  body = sig(64) | seq u64 BE (8) | dns   -> 2xx ok; 400 bad; 409/428 not most recent; 429 rate limited
 *   GET /<z32>                                          -> 200 payload; 404 none; 304 when If-Modified-Since matches
 * The relay is not trusted: resolve returns the bytes unverified and the resolver checks them.
 */

const CONTENT_TYPE = "application/pkarr.org/relays#payload";
/** The largest body a relay can legitimately answer with. */
const MAX_PAYLOAD_BYTES = 72 + MAX_DNS_BYTES;

export interface RelayTransportOptions {
  /** Budget for one request (publish, or resolve on top of the caller's signal), ms. Default 8000. */
  timeoutMs?: number;
  /**
   * Send If-Modified-Since with the Last-Modified of the previous answer and reuse
   * it on 304. Off by default: Last-Modified has one-second resolution, so a record
   * republished within the same second would be hidden behind a 304.
   */
  conditional?: boolean;
}

export class RelayTransport implements PointerTransport {
  readonly name: string;
  readonly baseUrl: string;
  private readonly timeoutMs: number;
  private readonly conditional: boolean;
  private readonly lastAnswer = new Map<string, { lastModified: string; bytes: Uint8Array }>();

  constructor(baseUrl: string, options: RelayTransportOptions = {}) {
    let url: URL;
    try {
      url = new URL(baseUrl);
    } catch {
      throw new UsageError(`invalid relay URL: ${JSON.stringify(baseUrl)}`, {
        hint: "use http(s)://host[:port][/path], e.g. https://relay.pkarr.org",
      });
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      throw new UsageError(`invalid relay URL: ${JSON.stringify(baseUrl)} is not http(s)`, {
        hint: "use http(s)://host[:port][/path], e.g. https://relay.pkarr.org",
      });
    }
    url.search = "";
    url.hash = "";
    this.baseUrl = url.href.replace(/\/+$/, "");
    this.name = `relay ${this.baseUrl}`;
    this.timeoutMs = options.timeoutMs ?? 8000;
    this.conditional = options.conditional ?? false;
  }

  async publish(packet: RelayPayload): Promise<string> {
    const signal = timeoutSignal(this.timeoutMs);
    let response: Response;
    try {
      response = await fetch(this.urlFor(packet.publicKey), {
        method: "PUT",
        headers: { "content-type": CONTENT_TYPE },
        body: packet.bytes,
        signal,
      });
    } catch (err) {
      throw new Error(requestFailure(err, signal));
    }
    if (response.ok) {
      await response.body?.cancel();
      return "stored on relay";
    }
    const text = await readText(response, signal);
    throw new Error(statusReason(response, text));
  }

  async resolve(publicKey: Uint8Array, signal: AbortSignal): Promise<Uint8Array | undefined> {
    const url = this.urlFor(publicKey);
    const ownTimeout = timeoutSignal(this.timeoutMs);
    const combined = AbortSignal.any([signal, ownTimeout]);
    const previous = this.conditional ? this.lastAnswer.get(url) : undefined;
    let response: Response;
    try {
      response = await fetch(url, {
        headers: { accept: CONTENT_TYPE, ...(previous ? { "if-modified-since": previous.lastModified } : {}) },
        signal: combined,
      });
    } catch (err) {
      throw new Error(requestFailure(err, combined));
    }
    if (response.status === 404) {
      await response.body?.cancel();
      return undefined;
    }
    if (response.status === 304) {
      await response.body?.cancel();
      if (previous) return previous.bytes;
      throw new Error("304 not modified, but no If-Modified-Since was sent");
    }
    if (response.status !== 200) {
      const text = await readText(response, combined);
      throw new Error(statusReason(response, text));
    }
    const bytes = await readLimited(response, MAX_PAYLOAD_BYTES, combined);
    const lastModified = response.headers.get("last-modified");
    if (this.conditional && lastModified) this.lastAnswer.set(url, { lastModified, bytes });
    return bytes;
  }

  private urlFor(publicKey: Uint8Array): string {
    return `${this.baseUrl}/${encodePublicKey(publicKey)}`;
  }
}

/** Why a fetch() call itself failed: timeout, refused connection, DNS, TLS. */
function requestFailure(err: unknown, signal: AbortSignal): string {
  if (signal.aborted) {
    const reason: unknown = signal.reason;
    return reason instanceof TimeoutReason ? reason.message : describeError(reason);
  }
  return describeError(err);
}

function statusReason(response: Response, body: string): string {
  const detail = body ? `: ${firstLine(body, 120)}` : "";
  switch (response.status) {
    case 400:
      return `400 bad request (the relay rejected the packet)${detail}`;
    case 409:
    case 428:
      return `${response.status} not the most recent (the relay holds a newer record)`;
    case 429: {
      const retry = response.headers.get("retry-after");
      return `429 rate limited${retry ? ` (retry after ${retry} s)` : ""}`;
    }
    default:
      return `HTTP ${response.status}${response.statusText ? ` ${response.statusText}` : ""}${detail}`;
  }
}

/** The body as bytes, refusing more than `limit` (a relay cannot have a larger packet). */
async function readLimited(response: Response, limit: number, signal: AbortSignal): Promise<Uint8Array> {
  const declared = Number(response.headers.get("content-length") ?? Number.NaN);
  if (declared > limit) {
    await response.body?.cancel();
    // Junk, not an outage: counts as a rejected record (exit 5), like a bad signature.
    throw new IntegrityError(`answered ${declared} bytes, more than a signed packet can hold`);
  }
  if (!response.body) return new Uint8Array(0);
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  const read = async (): Promise<Uint8Array> => {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return Buffer.concat(chunks, size);
      size += value.length;
      if (size > limit) {
        await reader.cancel();
        throw new IntegrityError(`answered more than ${limit} bytes, more than a signed packet can hold`);
      }
      chunks.push(value);
    }
  };
  try {
    return await abortable(read(), signal);
  } catch (err) {
    reader.cancel().catch(() => {});
    throw err;
  }
}

async function readText(response: Response, signal: AbortSignal): Promise<string> {
  try {
    return Buffer.from(await readLimited(response, 4096, signal)).toString("utf8");
  } catch {
    return "";
  }
}
