import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import type { PointerPayload } from "../core/pointer/record.js";
import { blobPickedUp } from "../core/publish.js";

/**
 * Whether a --burn handoff was picked up by a receiver is read off its store: the blob is gone.
 * A store folder that is not there, or empty (a NAS not mounted on this machine), tells nothing.
 */

const root = mkdtempSync(path.join(os.tmpdir(), "ccb-picked-up-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function burnHandoff(store: string, key: string, extra: Partial<PointerPayload> = {}): PointerPayload {
  return {
    kind: "handoff",
    burn: true,
    created: Math.floor(Date.now() / 1000),
    expires: Math.floor(Date.now() / 1000) + 3600,
    blob: { store: pathToFileURL(store).href, key, size: 1, sha256: "0".repeat(64), age: "" },
    ...extra,
  } as PointerPayload;
}

describe("a --burn handoff picked up by a receiver", () => {
  it("is one whose blob is gone from a store that is otherwise there", async () => {
    const store = path.join(root, "nas");
    mkdirSync(path.join(store, "ccbundle", "v1", "blobs"), { recursive: true });
    writeFileSync(path.join(store, "ccbundle", "v1", "blobs", "kept"), "x");
    expect(await blobPickedUp(burnHandoff(store, "ccbundle/v1/blobs/gone"))).toBe(true);
    expect(await blobPickedUp(burnHandoff(store, "ccbundle/v1/blobs/kept"))).toBe(false);
    // Not a burn handoff, or expired: not asked.
    expect(await blobPickedUp(burnHandoff(store, "ccbundle/v1/blobs/gone2", { burn: false }))).toBe(false);
    expect(await blobPickedUp(burnHandoff(store, "ccbundle/v1/blobs/gone3", { expires: 1 }))).toBe(false);
  });

  it("is not told by a store folder that is empty or missing here (a NAS not mounted)", async () => {
    const empty = path.join(root, "mnt-nas");
    mkdirSync(empty);
    expect(await blobPickedUp(burnHandoff(empty, "ccbundle/v1/blobs/x"))).toBe(false);
    expect(await blobPickedUp(burnHandoff(path.join(root, "no-such-mount"), "ccbundle/v1/blobs/x"))).toBe(false);
  });
});
