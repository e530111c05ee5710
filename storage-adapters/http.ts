import { Readable } from "node:stream";
import type { ReadableStream as WebReadableStream } from "node:stream/web";
import { CcbError, errnoCode, IntegrityError, NotFoundError } from "../core/errors.js";
import { countedDownload } from "./download.js";

/**
 * Plain HTTP(S) reads, for `ccbundle pull` of a blob through the presigned URL
 * in a handoff record: no AWS SDK, no credentials, any S3-compatible server.
 * The URL's query string is a bearer secret (the signature): it is never
 * printed, only `describeUrlForDisplay(url)`.
 */

export interface FetchUrlOptions {
  onProgress?: (bytesDone: number) => void;
  signal?: AbortSignal;
}

/** The URL without query string, fragment or user info: safe to print. */
export function describeUrlForDisplay(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.protocol}//${parsed.host}${parsed.pathname}`;
  } catch {
    // Not a URL; still cut at the first "?" or "#" so a signature cannot leak.
    return (url.split(/[?#]/, 1)[0] ?? "").replace(/\/\/[^/@]*@/, "//");
  }
}

/**
 * GET `url` and return the body as a Node stream. Resolves once the response
 * headers say 200; a body that ends short of Content-Length errors the stream.
 */
export async function fetchUrlStream(url: string, options: FetchUrlOptions = {}): Promise<Readable> {
  const shown = describeUrlForDisplay(url);
  let response: Response;
  try {
    // identity: the bytes as stored, so Content-Length can be checked (a presigned URL signs
    // only the host header, so extra headers do not break the signature).
    response = await fetch(url, {
      redirect: "follow",
      headers: { "accept-encoding": "identity" },
      ...(options.signal ? { signal: options.signal } : {}),
    });
  } catch (err) {
    if (options.signal?.aborted) throw options.signal.reason;
    throw networkError(err, shown);
  }
  if (response.status !== 200 || !response.body) {
    throw await statusError(response, url, shown);
  }
  const lengthHeader = response.headers.get("content-length");
  const encoded = (response.headers.get("content-encoding") ?? "identity") !== "identity";
  const expected = !encoded && lengthHeader !== null && /^\d+$/.test(lengthHeader) ? Number(lengthHeader) : undefined;
  const body = Readable.fromWeb(response.body as WebReadableStream<Uint8Array>);
  const out = countedDownload(expected, options.onProgress, `download from ${shown}`);
  body.on("error", (err) => {
    out.destroy(options.signal?.aborted ? asError(options.signal.reason) : networkError(err, shown));
  });
  out.once("close", () => {
    if (!body.readableEnded) body.destroy();
  });
  body.pipe(out);
  return out;
}

function networkError(err: unknown, shown: string): CcbError {
  const code = errnoCode((err as { cause?: unknown })?.cause) ?? errnoCode(err);
  const host = hostOf(shown);
  return new CcbError(`cannot reach ${host}${code ? ` (${code})` : ""} to download ${shown}`, 1, {
    hint: "check the network connection; the link points at the sender's store, which must be reachable from here",
    cause: err,
  });
}

async function statusError(response: Response, url: string, shown: string): Promise<CcbError> {
  const xml = await readSmallText(response);
  const code = xmlField(xml, "Code");
  const message = xmlField(xml, "Message") ?? "";
  if (response.status === 403) {
    if (/expired/i.test(message) || code === "ExpiredToken") {
      const expires = xmlField(xml, "Expires") ?? linkExpiry(url);
      return new IntegrityError(`the download link in this handoff expired${expires ? ` at ${expires}` : ""}`, {
        hint: "ask the sender to push again",
      });
    }
    return new IntegrityError(`the store refused the download link for ${shown} (${code ?? "HTTP 403"})`, {
      hint: "the link may be damaged or its credentials revoked; ask the sender to push again",
    });
  }
  if (response.status === 404) {
    return new NotFoundError(`no blob at ${shown}`, {
      hint: "the sender may have revoked the handoff, or a lifecycle rule removed the blob; ask them to push again",
    });
  }
  return new CcbError(`download from ${shown} failed: HTTP ${response.status}${code ? ` ${code}` : ""}`, 1, {
    hint: response.status >= 500 ? "a server-side problem; retry later" : "ask the sender to push again",
  });
}

/** At most 64 KiB of an error body; S3 error documents are a few hundred bytes. */
async function readSmallText(response: Response): Promise<string> {
  if (!response.body) return "";
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    while (size < 65536) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      size += value.byteLength;
    }
  } catch {
    // An error body we cannot read is still an error with a status.
  } finally {
    await reader.cancel().catch(() => undefined);
  }
  return Buffer.concat(chunks).toString("utf8");
}

function xmlField(xml: string, name: string): string | undefined {
  const match = new RegExp(`<${name}>([^<]*)</${name}>`).exec(xml);
  return match?.[1]?.trim() || undefined;
}

/** When a presigned URL expires, from its own query (SigV4 X-Amz-Date + X-Amz-Expires, or SigV2 Expires). */
function linkExpiry(url: string): string | undefined {
  try {
    const query = new URL(url).searchParams;
    const date = query.get("X-Amz-Date");
    const seconds = Number(query.get("X-Amz-Expires"));
    const m = date ? /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(date) : null;
    if (m && Number.isFinite(seconds)) {
      const start = Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6]));
      return new Date(start + seconds * 1000).toISOString().replace(/\.\d+Z$/, "Z");
    }
    const v2 = Number(query.get("Expires"));
    if (v2) return new Date(v2 * 1000).toISOString().replace(/\.\d+Z$/, "Z");
  } catch {
    // fall through: expiry unknown
  }
  return undefined;
}

function hostOf(shown: string): string {
  try {
    return new URL(shown).host;
  } catch {
    return shown;
  }
}

function asError(reason: unknown): Error {
  return reason instanceof Error ? reason : new Error(String(reason ?? "aborted"));
}
