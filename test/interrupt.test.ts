import { randomBytes } from "node:crypto";
import { existsSync, readdirSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { lockPath } from "../core/lock.js";
import { writeSession } from "./helpers/fixture.js";
import { type Machine, sameUserOnTwoMachines } from "./helpers/machine.js";
import { snapshotTree, stagingLeftovers } from "./helpers/tree.js";

/**
 * Ctrl-C in the middle of a push or a pull (core/interrupt.ts): the command
 * ends by SIGINT, as a shell expects, and what it had half-made is gone at
 * once: no temp upload in the store, no decrypted staging in the config dir,
 * no lock file.
 */

let alice: Machine;
let bob: Machine;
let nas: string;
let aliceProject: string;
let bobProject: string;

beforeAll(async () => {
  ({ alice, bob, nas } = await sameUserOnTwoMachines("int", { nas: true }));
  aliceProject = alice.project("app");
  bobProject = bob.project("app");
  const session = writeSession({ claudeDir: alice.claudeDir, projectDir: aliceProject, home: alice.home });
  // Something that does not compress, so both commands spend a while moving it.
  const big = path.join(alice.claudeDir, "projects", session.folder, session.id, "tool-results", "big.txt");
  writeFileSync(big, randomBytes(120 << 20).toString("base64"));
}, 60_000);

afterAll(() => {
  alice?.cleanup();
  bob?.cleanup();
});

/** Bytes in the files directly in `dir` whose names pass `keep`, or 0 if it is not there. */
function bytesIn(dir: string, keep: (name: string) => boolean = () => true): number {
  if (!existsSync(dir)) return 0;
  let total = 0;
  for (const name of readdirSync(dir).filter(keep)) {
    try {
      total += statSync(path.join(dir, name)).size;
    } catch {
      // gone meanwhile
    }
  }
  return total;
}

describe("Ctrl-C", () => {
  it("during a push's upload: ends by SIGINT, and the store holds no temp file and no blob", async () => {
    const partials = () => bytesIn(path.join(nas, ".tmp"), (name) => name.endsWith(".partial"));
    const r = await alice.interruptWhen(["push"], () => partials() > 0, { cwd: aliceProject });
    expect(r.sent, "the push ended before its upload was seen").toBe(true);
    expect(r.signal).toBe("SIGINT");
    expect(r.stderr).toContain("ccbundle: interrupted");
    expect(readdirSync(path.join(nas, ".tmp"))).toEqual([]);
    const blobs = path.join(nas, "ccbundle", "v1", "blobs");
    const stored = existsSync(blobs) ? readdirSync(blobs, { recursive: true, withFileTypes: true }) : [];
    expect(stored.filter((entry) => entry.isFile())).toEqual([]);
    expect(existsSync(lockPath(alice.ccbHome, "push"))).toBe(false);
    // The next push is not held up by anything the interrupted one left (its lock included).
    await alice.runOk(["push"], { cwd: aliceProject });
  }, 120_000);

  it("during a pull's unpacking: ends by SIGINT, and the config dir is as it was, with no staging left", async () => {
    await bob.runOk(["pull", "--project", bobProject, "--no-resume"]);
    const before = snapshotTree(bob.claudeDir);
    // Pull the same again, into a fresh project folder, so it stages everything once more.
    const other = bob.project("other");
    const staged = () =>
      readdirSync(bob.claudeDir)
        .filter((name) => name.startsWith(".ccbundle-staging-"))
        .some((name) => bytesIn(path.join(bob.claudeDir, name), (file) => file.startsWith("f-")) > 1 << 20);
    const r = await bob.interruptWhen(["pull", "--project", other, "--no-resume"], staged);
    expect(r.sent, "the pull ended before its staging was seen").toBe(true);
    expect(r.signal).toBe("SIGINT");
    expect(r.stderr).toContain("ccbundle: interrupted");
    expect(stagingLeftovers(bob.claudeDir)).toEqual([]);
    expect(snapshotTree(bob.claudeDir)).toEqual(before);
  }, 120_000);
});
