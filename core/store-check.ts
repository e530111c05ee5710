import { randomBytes } from "node:crypto";
import type { BlobStore } from "../storage-adapters/blob-store.js";
import { isCcbError } from "./errors.js";
import { randomId, storeLayout } from "./store-layout.js";

/** One line of `ccbundle doctor` about the store. */
export interface StoreCheck {
  name: "reachable" | "writable" | "readable" | "listable" | "deletable";
  ok: boolean;
  detail: string;
  hint?: string;
}

/** Probe objects live here, apart from blobs, records and snapshots, so a lifecycle rule never matters. */
export const DOCTOR_PREFIX = storeLayout.doctorPrefix;
/**
 * 2 MiB: more than nginx's default request limit (1 MB), the reverse proxy a homelab puts in front
 * of MinIO, whose 413 otherwise met the first real upload; small enough for a slow uplink.
 */
const PROBE_BYTES = 2 * 1024 * 1024;

/**
 * Check that `store` can do what push, pull and backup need, in the order they
 * need it: reachable (list), writable (put a small probe object), readable
 * (read it back, byte for byte), listable (list finds it), deletable (delete,
 * then it is gone). A check that cannot run because an earlier one failed is
 * reported as not ok with "skipped" in its detail. The probe is always removed.
 */
export async function checkStore(store: BlobStore): Promise<StoreCheck[]> {
  const checks: StoreCheck[] = [];
  const key = `${DOCTOR_PREFIX}${randomId()}`;
  const probe = randomBytes(PROBE_BYTES);
  let written = false;
  let deleted = false;

  const run = async (name: StoreCheck["name"], fn: () => Promise<string>): Promise<boolean> => {
    const start = performance.now();
    try {
      const detail = await fn();
      checks.push({ name, ok: true, detail: `${detail} (${Math.round(performance.now() - start)} ms)` });
      return true;
    } catch (err) {
      checks.push(failure(name, err));
      return false;
    }
  };
  const skip = (names: StoreCheck["name"][], because: string) => {
    for (const name of names) checks.push({ name, ok: false, detail: `skipped: ${because}` });
  };

  try {
    if (
      !(await run("reachable", async () => {
        // Listing an empty prefix touches the bucket or folder and nothing else.
        for await (const _ of store.list(DOCTOR_PREFIX)) break;
        // Which keys the store saw: with several AWS profiles around, "answers" alone says too little.
        const source = await store.credentialSource?.();
        return `${store.url} answers${source ? `, with the credentials from ${source}` : ""}`;
      }))
    ) {
      skip(["writable", "readable", "listable", "deletable"], "the store is not reachable");
      return checks;
    }
    if (
      !(await run("writable", async () => {
        await store.put(key, probe, { size: probe.length });
        written = true;
        return `wrote a ${PROBE_BYTES / (1024 * 1024)} MiB probe`;
      }))
    ) {
      skip(["readable", "listable", "deletable"], "nothing could be written");
      return checks;
    }
    await run("readable", async () => {
      const back = await store.getBytes(key);
      if (!Buffer.from(back).equals(probe)) {
        throw new ProbeMismatch(
          `read back ${back.length} bytes that differ from the ${PROBE_BYTES} written`,
          "the store or a proxy alters objects; for S3-compatible servers, make sure they store the bytes sent",
        );
      }
      return "read the probe back unchanged";
    });
    await run("listable", async () => {
      for await (const info of store.list(DOCTOR_PREFIX)) {
        if (info.key === key) return "list shows the probe";
      }
      throw new ProbeMismatch(
        "list does not show the probe that was just written",
        "the store's listing is stale or restricted (s3:ListBucket on this prefix)",
      );
    });
    await run("deletable", async () => {
      await store.delete(key);
      deleted = true;
      if (await store.stat(key)) {
        throw new ProbeMismatch("the probe is still there after delete", "check s3:DeleteObject or folder permissions");
      }
      return "deleted the probe";
    });
  } finally {
    if (written && !deleted) await store.delete(key).catch(() => undefined);
  }
  return checks;
}

class ProbeMismatch extends Error {
  constructor(
    message: string,
    readonly hint: string,
  ) {
    super(message);
  }
}

function failure(name: StoreCheck["name"], err: unknown): StoreCheck {
  if (isCcbError(err) || err instanceof ProbeMismatch) {
    return { name, ok: false, detail: err.message, ...(err.hint ? { hint: err.hint } : {}) };
  }
  const message = err instanceof Error ? err.message : String(err);
  return { name, ok: false, detail: message.split("\n")[0] ?? message };
}
