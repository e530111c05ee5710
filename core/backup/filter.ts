import { realpath } from "node:fs/promises";
import path from "node:path";
import type { PathMapping } from "../claude/remap.js";
import { applyMaps } from "../claude/target.js";
import { UsageError } from "../errors.js";
import type { SnapshotSession } from "./snapshot.js";

/** Which snapshot entries `list` shows and `restore --all` restores: by project and by time. */
export interface EntryFilter {
  /** A project directory: entries of that project or below it. */
  project?: string | undefined;
  /** Last activity at or after this time (ms). */
  since?: number | undefined;
  /** Last activity at or before this time (ms). */
  until?: number | undefined;
  /** One backing-up machine: its host name, or a prefix of its machine id (see machineMatcher). */
  machine?: string | undefined;
}

/** When the session was last written to: its last line's timestamp, else the transcript's mtime. */
export function lastActivity(entry: SnapshotSession): number {
  const last = entry.last ? Date.parse(entry.last) : Number.NaN;
  return Number.isNaN(last) ? entry.modified : last;
}

/**
 * The entries that pass. With `maps` (restore --map), a project matches by its
 * original path or by where the mapping moves it.
 */
export async function filterEntries(
  entries: SnapshotSession[],
  filter: EntryFilter,
  maps: PathMapping[] = [],
): Promise<SnapshotSession[]> {
  let projects: string[] = [];
  if (filter.project) {
    // The path as typed and its realpath here (/tmp vs /private/tmp); the entry keeps the source path.
    const typed = path.resolve(filter.project);
    projects = [...new Set([typed, await realpath(typed).catch(() => typed)])];
  }
  const fromMachine = filter.machine === undefined ? undefined : machineMatcher(entries, filter.machine);
  return entries.filter((entry) => {
    if (fromMachine && !fromMachine(entry)) return false;
    if (projects.length > 0) {
      const places = [entry.project, applyMaps(entry.project, maps)].filter((p): p is string => p !== undefined);
      if (!projects.some((dir) => places.some((place) => isAtOrBelow(place, dir)))) return false;
    }
    const when = lastActivity(entry);
    if (filter.since !== undefined && when < filter.since) return false;
    if (filter.until !== undefined && when > filter.until) return false;
    return true;
  });
}

/**
 * Which entries `--machine <name>` means: the machine whose host name is `name` (any case), or
 * whose machine id starts with it (4+ hex digits: two machines may share a host name). Refused
 * when it names no machine of the snapshot, or two machines, with the snapshot's machines listed,
 * so a typo is not an empty list or a restore of nothing.
 */
export function machineMatcher(entries: SnapshotSession[], name: string): (entry: SnapshotSession) => boolean {
  const machines = new Map<string, string>();
  for (const entry of entries) machines.set(entry.machine, entry.host);
  const wanted = name.trim().toLowerCase();
  const byId = /^[0-9a-f]{4,}$/.test(wanted) ? [...machines.keys()].filter((id) => id.startsWith(wanted)) : [];
  const byHost = [...machines].filter(([, host]) => host.toLowerCase() === wanted).map(([id]) => id);
  const matched = new Set(byId.length > 0 ? byId : byHost);
  const known = [...machines].map(([id, host]) => `${host} (${id.slice(0, 8)})`).join(", ");
  if (matched.size === 0) {
    throw new UsageError(`no machine "${name}" in this snapshot`, {
      hint: machines.size > 0 ? `its sessions come from: ${known}` : "the snapshot has no sessions",
    });
  }
  if (matched.size > 1) {
    throw new UsageError(`"${name}" names ${matched.size} machines in this snapshot`, {
      hint: `give the machine id instead (4+ of its digits): ${known}`,
    });
  }
  return (entry) => matched.has(entry.machine);
}

function isAtOrBelow(candidate: string, dir: string): boolean {
  const base = dir.replace(/[\\/]+$/, "");
  return candidate === base || candidate.startsWith(`${base}/`) || candidate.startsWith(`${base}\\`);
}
