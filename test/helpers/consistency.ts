import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { expect } from "vitest";
import { readBundle } from "../../core/bundle/blob.js";
import type { UserKey } from "../../core/crypto/keys.js";
import { NotFoundError } from "../../core/errors.js";
import { verifyPayload } from "../../core/pointer/packet.js";
import { openSlots } from "../../core/pointer/record.js";
import { storeLayout } from "../../core/store-layout.js";
import type { BlobStore } from "../../storage-adapters/blob-store.js";
import { LocalStore } from "../../storage-adapters/local.js";
import type { Machine, RunResult } from "./machine.js";
import { snapshotTree } from "./tree.js";

/**
 * The kill harness: run a CLI command, SIGKILL it at a chosen moment, then
 * check that what it leaves is consistent. New commands (backup, prune) plug
 * in by giving `killDuring` their args and checking with the same helpers.
 */

/** Run `args` on `machine` and SIGKILL it after `delayMs` (if it is still running). */
export async function killDuring(
  machine: Machine,
  args: string[],
  delayMs: number,
  options: { cwd?: string } = {},
): Promise<{ killed: boolean; result: RunResult; elapsedMs: number }> {
  const started = Date.now();
  const { child, done } = machine.start(args, options);
  let killed = false;
  const timer = setTimeout(() => {
    if (child.exitCode === null && child.signalCode === null) {
      killed = true;
      child.kill("SIGKILL");
    }
  }, delayMs);
  const result = await done;
  clearTimeout(timer);
  return { killed, result, elapsedMs: Date.now() - started };
}

/** A config dir's files, without ccbundle's own staging folders. */
export function claudeFiles(claudeDir: string): Record<string, string> {
  const all = snapshotTree(claudeDir);
  return Object.fromEntries(Object.entries(all).filter(([p]) => !p.startsWith(".ccbundle-staging-")));
}

/** Every file is as it was before, or as a complete run leaves it: never a third, torn version. */
export function expectEachFileBeforeOrAfter(
  now: Record<string, string>,
  before: Record<string, string>,
  after: Record<string, string>,
): void {
  for (const file of new Set([...Object.keys(now), ...Object.keys(before), ...Object.keys(after)])) {
    const ok = now[file] === before[file] || now[file] === after[file];
    expect(ok, `${file} is neither as before nor as restored`).toBe(true);
  }
}

/** Put a config dir back to a snapshot (content only). */
export function resetTree(dir: string, snapshot: Record<string, string>): void {
  rmSync(dir, { recursive: true, force: true });
  for (const [rel, content] of Object.entries(snapshot)) {
    const full = path.join(dir, rel);
    mkdirSync(path.dirname(full), { recursive: true });
    writeFileSync(full, Buffer.from(content, "base64"));
  }
}

/**
 * A store holds nothing a later command would trust wrongly: every object
 * under blobs/ is a complete bundle that decrypts and unpacks (push encrypts
 * every blob to its owner too), and the record, if any, points at a blob that
 * is there with the size and hash it claims.
 */
export async function expectStoreTrustworthy(store: BlobStore | string, owner: UserKey): Promise<void> {
  const blobs = typeof store === "string" ? new LocalStore(store) : store;
  const prefix = storeLayout.blob("x").slice(0, -1);
  for await (const object of blobs.list(prefix)) {
    const staging = mkdtempSync(path.join(os.tmpdir(), "ccb-check-"));
    try {
      await readBundle(await blobs.get(object.key), { identities: [owner.ageIdentity()], stagingDir: staging });
    } catch (err) {
      throw new Error(`${object.key} in the store is not a complete bundle: ${(err as Error).message}`);
    } finally {
      rmSync(staging, { recursive: true, force: true });
    }
  }
  let record: Uint8Array;
  try {
    record = await blobs.getBytes(storeLayout.record(owner.z32));
  } catch (err) {
    if (err instanceof NotFoundError) return;
    throw err;
  }
  const verified = verifyPayload(owner.publicKey, record);
  for (const slot of await openSlots(verified, owner.z32, [owner.ageIdentity()])) {
    const blob = slot.payload.blob;
    if (!blob || slot.payload.kind !== "handoff") continue;
    const info = await blobs.stat(blob.key);
    expect(info, `the record points at ${blob.key}, which is not in the store`).toBeDefined();
    const hash = createHash("sha256");
    let size = 0;
    for await (const chunk of await blobs.get(blob.key)) {
      hash.update(chunk as Buffer);
      size += (chunk as Buffer).length;
    }
    expect(size).toBe(blob.size);
    expect(hash.digest("hex")).toBe(blob.sha256);
  }
}
