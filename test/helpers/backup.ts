import { existsSync, mkdirSync, readdirSync, rmSync, statSync } from "node:fs";
import path from "node:path";
import { LocalStore } from "../../storage-adapters/local.js";
import { Machine } from "./machine.js";

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

/** A machine with an identity (no passphrase, as for cron) that backs up to a "NAS" folder of its own. */
export async function backupMachine(
  name: string,
  env: NodeJS.ProcessEnv = {},
): Promise<{ machine: Machine; nas: string }> {
  const machine = new Machine(name, env);
  const nas = path.join(machine.root, "nas");
  mkdirSync(nas);
  machine.env.CCBUNDLE_STORE = nas;
  await machine.runOk(["init", "--no-passphrase"]);
  return { machine, nas };
}

/** Another machine holding the same identity (key export + import), e.g. a new laptop. */
export async function withSameIdentity(from: Machine, name: string, env: NodeJS.ProcessEnv = {}): Promise<Machine> {
  const keyFile = path.join(from.root, `key-for-${name}.txt`);
  await from.runOk(["key", "export", keyFile]);
  const machine = new Machine(name, env);
  await machine.runOk(["key", "import", keyFile]);
  rmSync(keyFile); // as the CLI tells users to (and key export never overwrites a file)
  return machine;
}

/**
 * A local store that runs `during` once, just before the first snapshot-write announcement is
 * stored (core/backup/write-announcement.ts): the backup using it has read the newest snapshot
 * once, at its start, and not yet written.
 */
export class StoreWithInterruption extends LocalStore {
  constructor(
    root: string,
    private during: (() => Promise<unknown>) | undefined,
  ) {
    super(root);
  }

  override async put(...args: Parameters<LocalStore["put"]>) {
    const run = this.during;
    if (run && args[0].includes("/snapshot-writes/")) {
      this.during = undefined;
      await run();
    }
    return super.put(...args);
  }
}
