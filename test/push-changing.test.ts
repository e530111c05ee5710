import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import type { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadSettings } from "../core/config.js";
import { StoreMirrorTransport } from "../core/pointer/store-mirror.js";
import { pushSession } from "../core/push.js";
import type { PutOptions, PutResult } from "../storage-adapters/blob-store.js";
import { LocalStore } from "../storage-adapters/local.js";
import { type FixtureSession, writeSession } from "./helpers/fixture.js";
import { machineKey } from "./helpers/hostile.js";
import { Machine } from "./helpers/machine.js";

/**
 * A session file changes while `push` packs it. The store below rewrites the
 * file right before it reads the bundle, so it changes between the hash the
 * manifest took and the bytes the pack reads, every time. Small files Claude
 * Code rewrites in place (a task's status) were kept as they were hashed, so
 * the push goes through; any other file that changes fails the push with one
 * CcbError (the CLI prints it as one line) and leaves nothing in the store,
 * instead of crashing on an unhandled stream error.
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

function pushRewriting(file: string, storeDir: string) {
  return pushSession({
    settings: loadSettings({ ...alice.env, CCBUNDLE_STORE: storeDir }, {}),
    key: machineKey(alice.ccbHome),
    projectDir: project,
    sessionId: session.id,
    store: new RewritingStore(storeDir, () => writeFileSync(file, '{"id":"1","subject":"rewritten meanwhile"}')),
    transports: [new StoreMirrorTransport(new LocalStore(storeDir))],
    ttlSeconds: 3600,
    burn: false,
  });
}

describe("a session file rewritten while push packs it", () => {
  it("a task file (rewritten in place by Claude Code): packed as it was hashed, the push goes through", async () => {
    const task = path.join(alice.claudeDir, "tasks", session.id, "1.json");
    const before = readFileSync(task);
    const storeDir = path.join(alice.root, "nas-task");
    mkdirSync(storeDir);
    const pushed = await pushRewriting(task, storeDir);
    expect(pushed.sessionId).toBe(session.id);
    expect(readFileSync(task, "utf8")).toContain("rewritten meanwhile");
    const blob = readFileSync(path.join(storeDir, pushed.blobKey));
    expect(blob.length).toBe(pushed.blobBytes);
    expect(before.toString()).not.toContain("rewritten meanwhile");
  });

  it("any other file: fails the push with one error naming it, and leaves no blob or temp file in the store", async () => {
    const snapshot = readdirSync(path.join(alice.claudeDir, "file-history", session.id))[0]!;
    const changing = path.join(alice.claudeDir, "file-history", session.id, snapshot);
    mkdirSync(store);
    const unhandled: unknown[] = [];
    const onUnhandled = (err: unknown) => unhandled.push(err);
    process.on("uncaughtException", onUnhandled);
    try {
      await expect(pushRewriting(changing, store)).rejects.toThrow(
        `claude/file-history/${session.id}/${snapshot} changed while it was being packed`,
      );
    } finally {
      process.off("uncaughtException", onUnhandled);
    }
    expect(unhandled).toEqual([]);
    const left = readdirSync(store, { recursive: true }).map(String);
    expect(left.filter((name) => name.includes("blobs/") || name.endsWith(".partial"))).toEqual([]);
  });
});
