import { readdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import type { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadSettings } from "../core/config.js";
import { pushSession } from "../core/push.js";
import type { PutOptions, PutResult } from "../storage-adapters/blob-store.js";
import { LocalStore } from "../storage-adapters/local.js";
import { type FixtureSession, writeSession } from "./helpers/fixture.js";
import { machineKey } from "./helpers/hostile.js";
import { Machine } from "./helpers/machine.js";

/**
 * Claude Code rewrites a session's task file while `push` packs it: the push
 * fails with one CcbError (the CLI prints it as one line) and leaves nothing
 * in the store, instead of crashing on an unhandled stream error. The store
 * rewrites the file right before it reads the bundle, so the file changes
 * between the hash the manifest took and the bytes the pack reads, every time.
 */

let alice: Machine;
let session: FixtureSession;
let project: string;
let store: string;

beforeAll(async () => {
  alice = new Machine("alice-changing");
  await alice.runOk(["init", "--no-passphrase"]);
  project = alice.project("work/app");
  session = writeSession({ claudeDir: alice.claudeDir, projectDir: project, home: alice.home });
  store = path.join(alice.root, "nas");
});
afterAll(() => alice.cleanup());

class RewritingStore extends LocalStore {
  constructor(
    root: string,
    private readonly rewrite: () => void,
  ) {
    super(root);
  }
  override put(key: string, body: Readable | Uint8Array, options?: PutOptions): Promise<PutResult> {
    this.rewrite();
    return super.put(key, body, options);
  }
}

describe("a session file rewritten while push packs it", () => {
  it("fails the push with one error naming the file, and leaves no blob or temp file in the store", async () => {
    const task = path.join(alice.claudeDir, "tasks", session.id, "1.json");
    const { mkdirSync } = await import("node:fs");
    mkdirSync(store);
    const unhandled: unknown[] = [];
    const onUnhandled = (err: unknown) => unhandled.push(err);
    process.on("uncaughtException", onUnhandled);
    try {
      const push = pushSession({
        settings: loadSettings({ ...alice.env, CCBUNDLE_STORE: store }, {}),
        key: machineKey(alice.ccbHome),
        projectDir: project,
        sessionId: session.id,
        store: new RewritingStore(store, () => writeFileSync(task, '{"id":"1","subject":"rewritten meanwhile"}')),
        transports: [],
        ttlSeconds: 3600,
        burn: false,
      });
      await expect(push).rejects.toThrow(`claude/tasks/${session.id}/1.json changed while it was being packed`);
    } finally {
      process.off("uncaughtException", onUnhandled);
    }
    expect(unhandled).toEqual([]);
    const left = readdirSync(store, { recursive: true }).map(String);
    expect(left.filter((name) => name.includes("blobs/") || name.endsWith(".partial"))).toEqual([]);
  });
});
