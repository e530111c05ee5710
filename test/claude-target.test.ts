import { mkdirSync, mkdtempSync, realpathSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { ManifestSession } from "../core/bundle/manifest.js";
import { chooseTarget } from "../core/claude/target.js";
import { UsageError } from "../core/errors.js";

/** Where a session lands when its own path is not here (chooseTarget's last steps), unit by unit. */

const root = realpathSync(mkdtempSync(path.join(os.tmpdir(), "ccb-target-")));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const session = (cwd: string): ManifestSession => ({
  id: "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9",
  cwd,
  folder: "x",
  files: [],
});
const noGit = {
  checkout: async () => undefined,
} as unknown as Parameters<typeof chooseTarget>[2];

describe("the same place under this home", () => {
  const home = path.join(root, "home", "bob");
  const app = path.join(home, "src", "app");
  mkdirSync(app, { recursive: true });

  it("a POSIX source: /home/al/src/app → ~/src/app here", async () => {
    const target = await chooseTarget(
      session("/home/al/src/app"),
      { cwd: root, maps: [], homes: { source: "/home/al", target: home } },
      noGit,
    );
    expect(target).toMatchObject({ cwd: app, reason: "home-relative" });
  });

  it("a Windows source, any case and either separator: C:\\Users\\Al\\src\\app → ~/src/app here", async () => {
    const target = await chooseTarget(
      session("c:\\users\\al\\src\\app"),
      { cwd: root, maps: [], homes: { source: "C:\\Users\\Al", target: home } },
      noGit,
    );
    expect(target).toMatchObject({ cwd: app, reason: "home-relative" });
  });

  it("from the home folder itself, with no such place: refused, unless the session ran in its home", async () => {
    const err = await chooseTarget(
      session("/home/al/elsewhere"),
      { cwd: home, maps: [], homes: { source: "/home/al", target: home } },
      noGit,
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UsageError);
    expect((err as UsageError).message).toBe(
      "the session ran in /home/al/elsewhere, which is not here, and you are in your home folder",
    );
    const inHome = await chooseTarget(
      session("C:\\Users\\Al\\"),
      { cwd: home, maps: [], homes: { source: "c:\\users\\al", target: home } },
      noGit,
    );
    expect(inHome).toMatchObject({ cwd: home, reason: "current-dir" });
  });
});
