import { readFile } from "node:fs/promises";
import path from "node:path";
import type { BlobStore } from "../../storage-adapters/blob-store.js";
import { writeFileAtomic } from "../claude/files.js";
import type { Settings } from "../config.js";
import { CcbError, errnoCode, IntegrityError, NotFoundError, UsageError } from "../errors.js";
import { abortable, describeError, TimeoutReason } from "./abort.js";
import { DhtTransport, type DhtTransportOptions } from "./dht.js";
import { type VerifiedPacket, verifyPayload } from "./packet.js";
import { RelayTransport, type RelayTransportOptions } from "./relay.js";
import { StoreMirrorTransport } from "./store-mirror.js";
import type { PointerTransport, RelayPayload } from "./transport.js";
import { encodePublicKey } from "./z32.js";

/**
 * Publishing to and resolving from every transport at once, and the small
 * per-key state that makes the pointer monotonic on this machine:
 * `<home>/state/seen.json` remembers, per z32 key, the newest timestamp this
 * machine has verified (`seen`, the replay floor) and the newest seq it has
 * handed out for publishing (`issued`).
 */

// ---------------------------------------------------------------- seq / seen state

interface SeenState {
  version: 1;
  /** Newest verified record timestamp (µs) resolved per key. */
  seen: Record<string, number>;
  /** Newest seq (µs) handed out by nextSeq per key. */
  issued: Record<string, number>;
}

export function seenStatePath(home: string): string {
  return path.join(home, "state", "seen.json");
}

async function readState(home: string): Promise<SeenState> {
  const file = seenStatePath(home);
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    if (errnoCode(err) === "ENOENT") return { version: 1, seen: {}, issued: {} };
    throw err;
  }
  try {
    const parsed = JSON.parse(text) as Partial<SeenState>;
    return { version: 1, seen: numbers(parsed.seen), issued: numbers(parsed.issued) };
  } catch (err) {
    throw new CcbError(`state file ${file} is not valid JSON`, 1, {
      hint: "delete it; it only remembers the newest record seen per key (replay protection)",
      cause: err,
    });
  }
}

function numbers(value: unknown): Record<string, number> {
  const out: Record<string, number> = {};
  if (typeof value !== "object" || value === null) return out;
  for (const [key, n] of Object.entries(value)) if (Number.isSafeInteger(n)) out[key] = n as number;
  return out;
}

/** Write atomically (writeFileAtomic: a 0600 temp file, removed on Ctrl-C, then renamed over). */
async function writeState(home: string, state: SeenState): Promise<void> {
  await writeFileAtomic(seenStatePath(home), `${JSON.stringify(state, null, 2)}\n`, 0o600);
}

/**
 * The seq (µs timestamp) to sign the next packet for `z32` with:
 * `max(now, newest seen or issued + 1)`, so two publishes in the same
 * microsecond, or after a clock step back, still go forward (JS DHT nodes
 * answer 302 to a repeated seq). The value is recorded as issued.
 */
export async function nextSeq(home: string, z32: string): Promise<number> {
  const state = await readState(home);
  const last = Math.max(state.seen[z32] ?? 0, state.issued[z32] ?? 0);
  const seq = Math.max(Date.now() * 1000, last + 1);
  state.issued[z32] = seq;
  await writeState(home, state);
  return seq;
}

/** The newest timestamp this machine has verified for `z32`, if any. */
export async function lastSeen(home: string, z32: string): Promise<number | undefined> {
  return (await readState(home)).seen[z32];
}

// ---------------------------------------------------------------- publish

export interface TransportOutcome {
  transport: string;
  ok: boolean;
  /** Success detail, e.g. "stored on 8 DHT nodes". */
  detail?: string;
  /** Failure reason, e.g. "429 rate limited". */
  reason?: string;
}

export interface PublishReport {
  /** True when at least one transport took the record. */
  ok: boolean;
  results: TransportOutcome[];
  /** One line: `stored on 8 DHT nodes, 2 relays, store; failed: relay https://x: 429 rate limited`. */
  summary: string;
}

/** The transports that did not take a record, as `name: reason` lines. */
export function publishFailures(report: PublishReport): string[] {
  return report.results.filter((r) => !r.ok).map((r) => `${r.transport}: ${r.reason ?? "failed"}`);
}

/**
 * Publish one signed packet to every transport at once. Succeeds when any of
 * them took it; throws CcbError (exit 1) when none did.
 */
export async function publishAll(transports: PointerTransport[], payload: RelayPayload): Promise<PublishReport> {
  if (transports.length === 0) {
    throw new CcbError("nowhere to publish the record: the DHT, relays and store mirror are all disabled", 1, {
      hint: "enable the DHT (CCBUNDLE_BOOTSTRAP), a relay (--relay) or pass --store",
    });
  }
  const settled = await Promise.allSettled(transports.map((transport) => transport.publish(payload)));
  const results = settled.map((outcome, index): TransportOutcome => {
    const transport = transports[index]!.name;
    return outcome.status === "fulfilled"
      ? { transport, ok: true, detail: outcome.value }
      : { transport, ok: false, reason: describeError(outcome.reason) };
  });
  const stored = storedSummary(results.filter((result) => result.ok));
  const failed = results.filter((result) => !result.ok).map((result) => `${result.transport}: ${result.reason}`);
  if (stored === undefined) {
    throw new CcbError(`could not publish the record anywhere: ${failed.join("; ")}`, 1, {
      hint: "check the network and the DHT bootstrap (CCBUNDLE_BOOTSTRAP), relays (--relay) and --store, then run `ccbundle republish`",
    });
  }
  const summary = failed.length > 0 ? `${stored}; failed: ${failed.join("; ")}` : stored;
  return { ok: true, results, summary };
}

function storedSummary(ok: TransportOutcome[]): string | undefined {
  if (ok.length === 0) return undefined;
  const parts: string[] = [];
  const relays = ok.filter((result) => result.transport.startsWith("relay ")).length;
  const stores = ok.filter((result) => result.transport.startsWith("store ")).length;
  for (const result of ok) {
    if (result.transport.startsWith("relay ") || result.transport.startsWith("store ")) continue;
    parts.push((result.detail ?? result.transport).replace(/^stored on /, ""));
  }
  if (relays > 0) parts.push(`${relays} relay${relays === 1 ? "" : "s"}`);
  if (stores > 0) parts.push(stores === 1 ? "store" : `${stores} stores`);
  return `stored on ${parts.join(", ")}`;
}

// ---------------------------------------------------------------- resolve

export interface TransportFailure {
  transport: string;
  reason: string;
}

export interface ResolveResult {
  /** The newest verified packet. */
  payload: VerifiedPacket;
  /** Transports that served that newest packet. */
  from: string[];
  /** Transports that failed, timed out or served something that did not verify. */
  failures: TransportFailure[];
}

export interface ResolveOptions {
  /** CCBUNDLE_HOME, for `state/seen.json`. */
  home: string;
  /** Per-transport budget, ms (all run at once). Default 4000. */
  timeoutMs?: number;
  /**
   * Told of each record that verifies, as its transport answers, before the others have: a pull
   * starts fetching the blob the first one names while the DHT is still being asked. Which record
   * is the newest is known only once resolveNewest returns. Must not throw.
   */
  onRecord?: (record: VerifiedPacket) => void;
}

/**
 * Ask every transport at once for the record of `publicKey`, verify each answer,
 * and return the newest. Throws NotFoundError (exit 4) when no transport had a
 * record, IntegrityError (exit 5) when every record found was forged or
 * malformed, or when the newest is older than one this machine has already seen
 * for that key (a replay).
 */
export async function resolveNewest(
  transports: PointerTransport[],
  publicKey: Uint8Array,
  options: ResolveOptions,
): Promise<ResolveResult> {
  const z32 = encodePublicKey(publicKey);
  const timeoutMs = options.timeoutMs ?? 4000;
  if (transports.length === 0) {
    // Pull reads a store's record mirror only from a store it was given: the default store holds
    // this machine's own, older record, whose blob would be staged for nothing.
    // Usage: no answer can come from this command line; only another one (or the environment) helps.
    throw new UsageError(`no record found for ${z32}: nowhere to look (the DHT and relays are off, no store given)`, {
      hint: "turn the DHT on (CCBUNDLE_BOOTSTRAP), add a relay (--relay), or pass --store with the store it was pushed to",
    });
  }
  // Each answer is verified as it comes in, so onRecord hears of it before the slower transports answer.
  const answers = await Promise.all(
    transports.map(async (transport): Promise<Answer | { transport: string; packet: VerifiedPacket }> => {
      const answer = await ask(transport, publicKey, timeoutMs);
      if (!("bytes" in answer) || answer.bytes === undefined) return answer;
      let packet: VerifiedPacket;
      try {
        packet = verifyPayload(publicKey, answer.bytes);
      } catch (err) {
        return { transport: answer.transport, reason: `rejected record: ${describeError(err)}`, junk: true };
      }
      options.onRecord?.(packet);
      return { transport: answer.transport, packet };
    }),
  );

  const failures: TransportFailure[] = [];
  /** Hints of typed failures, which say more than "check the key" (a NAS not mounted). */
  const hints: string[] = [];
  const empty: string[] = [];
  const valid: Array<{ transport: string; packet: VerifiedPacket }> = [];
  let rejected = 0;
  let lookedAndFoundNothing = 0;
  for (const answer of answers) {
    if ("packet" in answer) valid.push(answer);
    else if ("reason" in answer) {
      if (answer.notFound) lookedAndFoundNothing++;
      if (answer.junk) rejected++;
      else if (answer.hint) hints.push(answer.hint);
      failures.push({ transport: answer.transport, reason: answer.reason });
    } else empty.push(answer.transport);
  }

  if (valid.length === 0) {
    const failed = failures.map((failure) => `${failure.transport}: ${failure.reason}`).join("; ");
    if (rejected > 0) {
      throw new IntegrityError(`no valid record for ${z32}: ${failed}`, {
        hint: "what was found is not signed by this key (forged or corrupted); check the key, or ask its owner to push again",
      });
    }
    const parts = [
      empty.length > 0 ? `no record on ${empty.join(", ")}` : undefined,
      failures.length > 0 ? `failed: ${failed}` : undefined,
    ].filter((part) => part !== undefined);
    const lookElsewhere =
      "check the key and that its owner has pushed; the DHT drops records after a few hours unless republished — pass the publisher's --store or --relay to look there";
    if (empty.length === 0 && lookedAndFoundNothing === 0) {
      // Nothing answered at all (network down, NAS not mounted): not "no record", which a script
      // would read as "nothing was pushed" (exit 4). The README files this under 1.
      throw new CcbError(`could not look up the record of ${z32}: ${failed}`, 1, {
        hint:
          hints.length > 0
            ? hints[0]
            : "check the network and the DHT bootstrap (CCBUNDLE_BOOTSTRAP), relays (--relay) and --store, then run the command again",
      });
    }
    throw new NotFoundError(`no record found for ${z32} (${parts.join("; ")})`, {
      hint: hints.length > 0 ? `${hints[0]}; else ${lookElsewhere}` : lookElsewhere,
    });
  }

  let newest = valid[0]!.packet;
  for (const candidate of valid) if (candidate.packet.timestamp > newest.timestamp) newest = candidate.packet;
  const from = valid
    .filter((candidate) => candidate.packet.timestamp === newest.timestamp)
    .map((candidate) => candidate.transport);

  const state = await readState(options.home);
  const seen = state.seen[z32];
  if (seen !== undefined && newest.timestamp < seen) {
    throw new IntegrityError(
      `replayed record: older than one already seen for ${z32} (got ${isoMicros(newest.timestamp)}, already saw ${isoMicros(seen)})`,
      {
        hint: "the DHT, a relay or the store is serving an old record; ask the publisher to run `ccbundle republish`, or try other --relay/--store",
      },
    );
  }
  if (seen === undefined || newest.timestamp > seen) {
    state.seen[z32] = newest.timestamp;
    await writeState(options.home, state);
  }
  return { payload: newest, from, failures };
}

type Answer =
  | { transport: string; bytes: Uint8Array | undefined }
  /** `hint`: what a typed failure told the user to do (a store folder that is missing or empty). */
  | { transport: string; reason: string; junk: boolean; hint?: string | undefined; notFound?: boolean };

/** One transport's answer within its own time budget; never rejects. */
async function ask(transport: PointerTransport, publicKey: Uint8Array, timeoutMs: number): Promise<Answer> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new TimeoutReason(timeoutMs)), timeoutMs);
  try {
    // abortable(): a transport that ignores its signal still cannot stall the others.
    const bytes = await abortable(
      Promise.resolve().then(() => transport.resolve(publicKey, controller.signal)),
      controller.signal,
    );
    return { transport: transport.name, bytes };
  } catch (err) {
    // A transport that answered with junk (not an outage) counts like a forged record.
    const hint = err instanceof CcbError ? err.hint : undefined;
    // notFound: it looked and found nothing there (an empty store folder), which is no outage.
    return {
      transport: transport.name,
      reason: describeError(err),
      junk: err instanceof IntegrityError,
      hint,
      notFound: err instanceof NotFoundError,
    };
  } finally {
    clearTimeout(timer);
    if (!controller.signal.aborted) controller.abort(new Error("resolution finished"));
  }
}

function isoMicros(micros: number): string {
  return new Date(Math.floor(micros / 1000)).toISOString();
}

// ---------------------------------------------------------------- wiring

export interface TransportOptions {
  dht?: DhtTransportOptions;
  relay?: RelayTransportOptions;
}

/** The transports Settings enable: the DHT (unless bootstrap is empty), each relay, the store mirror. */
export function transportsFor(
  settings: Pick<Settings, "bootstrap" | "relays">,
  store: BlobStore | undefined,
  options: TransportOptions = {},
): PointerTransport[] {
  const transports: PointerTransport[] = [];
  if (settings.bootstrap.length > 0) transports.push(new DhtTransport(settings.bootstrap, options.dht));
  for (const relay of settings.relays) transports.push(new RelayTransport(relay, options.relay));
  if (store) transports.push(new StoreMirrorTransport(store));
  return transports;
}

/** Close every transport (DHT sockets); never throws. */
export async function closeTransports(transports: PointerTransport[]): Promise<void> {
  await Promise.allSettled(transports.map((transport) => transport.close?.()));
}
