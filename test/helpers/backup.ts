import { existsSync, readdirSync, statSync } from "node:fs";
import path from "node:path";

/** Looking into a local store from tests: which objects a backup wrote. */

export function storeObjects(store: string, sub: string): string[] {
  const dir = path.join(store, "ccbundle", "v1", sub);
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  const walk = (d: string) => {
    for (const entry of readdirSync(d, { withFileTypes: true })) {
      const full = path.join(d, entry.name);
      if (entry.isDirectory()) walk(full);
      else out.push(path.relative(dir, full));
    }
  };
  walk(dir);
  return out.sort();
}

export const blobNames = (store: string) => storeObjects(store, "blobs");
export const snapshotNames = (store: string) => storeObjects(store, "snapshots");

/** Every object name in the store, for checking that none reveals a session, host or path. */
export function allObjectNames(store: string): string[] {
  return storeObjects(store, "").filter((name) => statSync(path.join(store, "ccbundle", "v1", name)).isFile());
}
