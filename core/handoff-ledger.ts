import { readFile } from "node:fs/promises";
import path from "node:path";
import { writeFileAtomic } from "./claude/files.js";

/**
 * What this machine has handed off, kept in `<home>/state/handoffs-<z32>.json`:
 * where each handoff blob went and when it expires, and who a "to:" slot was
 * for. The record forgets an expired slot at the next publish, so without
 * this list nobody could find the blob again to delete it (`prune --expired`
 * uses expiredHandoffs); `status` uses the names to show who a slot is for.
 * Local notes only: nothing here is published.
 */

export interface HandoffEntry {
  slot: string;
  /** Store URL and object key of the blob. */
  store: string;
  key: string;
  created: number;
  expires: number;
  /** For "to:" slots: the recipients as the user typed them (z32 or age1…), in slot-id order. */
  recipients?: string[];
}

/** Entries this build cannot read (a newer ccbundle's): kept apart, written back unchanged. */
const OTHER_ENTRIES = Symbol("other entries");

interface Ledger {
  [OTHER_ENTRIES]?: unknown[];
  version: number;
  handoffs: HandoffEntry[];
  /** Recipient names by slot id; kept after their handoffs are gone, for status. */
  names: Record<string, string>;
}

function ledgerFile(home: string, z32: string): string {
  return path.join(home, "state", `handoffs-${z32}.json`);
}

async function read(home: string, z32: string): Promise<Ledger> {
  try {
    const parsed = JSON.parse(await readFile(ledgerFile(home, z32), "utf8")) as Partial<Ledger>;
    const names: Record<string, string> = {};
    for (const [id, name] of Object.entries(parsed.names ?? {})) if (typeof name === "string") names[id] = name;
    // What a later ccbundle added (its version, other fields, entries of a shape this build does
    // not know) is written back as it was read.
    const entries: unknown[] = Array.isArray(parsed.handoffs) ? parsed.handoffs : [];
    return {
      ...parsed,
      version: typeof parsed.version === "number" ? parsed.version : 1,
      handoffs: entries.filter(isEntry),
      names,
      [OTHER_ENTRIES]: entries.filter((entry) => !isEntry(entry)),
    };
  } catch {
    return { version: 1, handoffs: [], names: {} };
  }
}

async function write(home: string, z32: string, ledger: Ledger): Promise<void> {
  const { [OTHER_ENTRIES]: others = [], ...rest } = ledger;
  const file = { ...rest, handoffs: [...ledger.handoffs, ...others] };
  await writeFileAtomic(ledgerFile(home, z32), `${JSON.stringify(file, null, 2)}\n`, 0o600);
}

export async function readLedger(home: string, z32: string): Promise<HandoffEntry[]> {
  return (await read(home, z32)).handoffs;
}

export async function addHandoff(home: string, z32: string, entry: HandoffEntry): Promise<void> {
  const ledger = await read(home, z32);
  ledger.handoffs.push(entry);
  const ids = entry.slot.startsWith("to:") ? entry.slot.slice(3).split(",") : [];
  entry.recipients?.forEach((name, i) => {
    if (ids[i]) ledger.names[ids[i]] = name;
  });
  await write(home, z32, ledger);
}

/** Handoffs past their expiry: their blobs can go (`ccbundle prune --expired`). */
export async function expiredHandoffs(home: string, z32: string, now = Date.now() / 1000): Promise<HandoffEntry[]> {
  return (await readLedger(home, z32)).filter((entry) => entry.expires < now);
}

/** Drop entries whose blobs were deleted (revoke, burn, prune). */
export async function forgetHandoffs(home: string, z32: string, objectKeys: string[]): Promise<void> {
  const ledger = await read(home, z32);
  const left = ledger.handoffs.filter((entry) => !objectKeys.includes(entry.key));
  if (left.length !== ledger.handoffs.length) await write(home, z32, { ...ledger, handoffs: left });
}

/** Recipient names by slot id, from the handoffs this machine made. */
export async function recipientNames(home: string, z32: string): Promise<Map<string, string>> {
  return new Map(Object.entries((await read(home, z32)).names));
}

function isEntry(value: unknown): value is HandoffEntry {
  const e = value as HandoffEntry;
  return (
    typeof e === "object" &&
    e !== null &&
    typeof e.slot === "string" &&
    typeof e.store === "string" &&
    typeof e.key === "string" &&
    typeof e.expires === "number" &&
    typeof e.created === "number"
  );
}
