import { realpath } from "node:fs/promises";
import path from "node:path";
import type { PathMapping } from "../claude/remap.js";
import { applyMaps } from "../claude/target.js";
import type { SnapshotSession } from "./snapshot.js";

/** Which snapshot entries `list` shows and `restore --all` restores: by project and by time. */
export interface EntryFilter {
  /** A project directory: entries of that project or below it. */
  project?: string | undefined;
  /** Last activity at or after this time (ms). */
  since?: number | undefined;
  /** Last activity at or before this time (ms). */
  until?: number | undefined;
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
  return entries.filter((entry) => {
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

function isAtOrBelow(candidate: string, dir: string): boolean {
  const base = dir.replace(/[\\/]+$/, "");
  return candidate === base || candidate.startsWith(`${base}/`) || candidate.startsWith(`${base}\\`);
}
