import { readdir, rm, stat } from "node:fs/promises";
import path from "node:path";

/**
 * Remove the files in `dir` whose name `matches` and that nobody has written for `olderThanMs`:
 * what a killed process left mid-step (an upload's temp file, a lock's temp or ticket file).
 * Best effort: whatever fails (an unreadable folder, a file gone meanwhile) is left, and the
 * caller goes on; these are leftovers, never what it is doing.
 */
export async function removeOldFiles(
  dir: string,
  matches: (name: string) => boolean,
  olderThanMs: number,
): Promise<void> {
  const now = Date.now();
  try {
    for (const name of await readdir(dir)) {
      if (!matches(name)) continue;
      const file = path.join(dir, name);
      const info = await stat(file).catch(() => undefined);
      if (info?.isFile() && now - info.mtimeMs > olderThanMs) await rm(file, { force: true }).catch(() => undefined);
    }
  } catch {
    // Leftovers stay; the caller's own work reports what matters.
  }
}
