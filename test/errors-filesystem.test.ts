import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { BackupStateFile } from "../core/backup/state.js";
import { describeFailure, fileSystemError } from "../core/errors.js";
import { acquireLock } from "../core/lock.js";

/**
 * A full disk is the user's to fix, not "a bug in ccbundle": writes to an open descriptor fail
 * without a path, and they used to fall through to "unexpected error". /dev/full answers every
 * write with ENOSPC, a real one from the kernel.
 */
const root = mkdtempSync(path.join(os.tmpdir(), "ccb-enospc-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const hasDevFull = existsSync("/dev/full");

describe("a full disk says so, and names the file", () => {
  it("an ENOSPC without a path is still a file-system error with a hint", () => {
    const err = Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" });
    const known = fileSystemError(err);
    expect(known?.message).toBe("no space left on the device (ENOSPC)");
    expect(known?.hint).toContain("free some space");
    // Other path-less errors stay unexpected: they are bugs until shown otherwise.
    expect(fileSystemError(Object.assign(new Error("x"), { code: "EBADF" }))).toBeUndefined();
  });

  it.runIf(hasDevFull)("the backup state journal's append names the journal", async () => {
    const home = path.join(root, "journal");
    const state = await BackupStateFile.open(home, "z32key", "file:///store");
    // The journal is opened for appending on the first record: make that /dev/full.
    const name = createHash("sha256").update("z32key\nfile:///store").digest("hex").slice(0, 20);
    const journal = path.join(home, "state", "backup", `${name}.journal`);
    mkdirSync(path.dirname(journal), { recursive: true });
    symlinkSync("/dev/full", journal);
    const failure = await state
      .record("session", { fingerprint: {}, slugs: [], recipients: "r", entry: {} as never })
      .then(
        () => undefined,
        (err: unknown) => describeFailure(err),
      );
    await state.closeJournal();
    expect(failure?.message).toBe(`${journal}: no space left on the device (ENOSPC)`);
    expect(failure?.hint).toContain("free some space");
  });

  it("a lock taken on a full disk names the lock file", async () => {
    // A lock file is written before anything else: it was the one full-disk error without a file.
    const disk = path.join(root, "full-disk");
    mkdirSync(disk);
    // Needs root (CI and the dev machines run as root); failing here is a real failure, not a skip.
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", disk]);
    try {
      const home = path.join(disk, "home");
      mkdirSync(path.join(home, "locks"), { recursive: true });
      const free = Number(execFileSync("df", ["-B1", "--output=avail", disk]).toString().split("\n")[1]);
      writeFileSync(path.join(disk, "filler"), Buffer.alloc(free));
      const failure = await acquireLock(home, "backup").then(
        () => undefined,
        (err: unknown) => describeFailure(err),
      );
      expect(failure?.message).toMatch(
        new RegExp(`^${path.join(home, "locks")}/backup\\.lock: no space left on the device`),
      );
      expect(failure?.hint).toContain("free some space");
    } finally {
      execFileSync("umount", ["-l", disk]);
    }
  });
});
