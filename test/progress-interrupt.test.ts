import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { writeSession } from "./helpers/fixture.js";
import { type Machine, sameUserOnTwoMachines } from "./helpers/machine.js";

/**
 * A progress bar hides the cursor and turns line wrap off while it draws.
 * Ctrl-C in the middle of a long backup or restore must give both back: the
 * user's shell was left with no cursor until `reset`. On a pseudo-terminal
 * (util-linux `script`), with the built modules.
 */

const dist = (file: string) => fileURLToPath(new URL(`../dist/cli/${file}`, import.meta.url));
const scratch = mkdtempSync(path.join(os.tmpdir(), "ccb-bars-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe("Ctrl-C while a bar is drawn", () => {
  it("shows the cursor and turns line wrap back on", () => {
    const program = path.join(scratch, "bar.mjs");
    writeFileSync(
      program,
      `const { PhaseBars } = await import(${JSON.stringify(dist("progress.js"))});
const { Output } = await import(${JSON.stringify(dist("output.js"))});
const listen = new PhaseBars(new Output(false, false)).listener();
listen({ phase: "scan", unit: "sessions", done: 1, total: 2 });
listen({ phase: "upload", unit: "bytes", done: 10, total: 100 });
// A cleanup that takes a while (an S3 upload being aborted), and events that still arrive meanwhile.
const { onInterrupt } = await import(${JSON.stringify(fileURLToPath(new URL("../dist/core/interrupt.js", import.meta.url)))});
onInterrupt(() => new Promise((resolve) => setTimeout(resolve, 500)));
let done = 10;
setInterval(() => listen({ phase: "upload", unit: "bytes", done: Math.min(100, ++done), total: 100 }), 50);
setTimeout(() => process.kill(process.pid, "SIGINT"), 300);
setTimeout(() => {}, 10_000);
`,
    );
    const command = `'${process.execPath}' '${program}'; echo "exit=$?"`;
    const output = execFileSync("script", ["-qec", command, "/dev/null"], {
      encoding: "utf8",
      env: { PATH: process.env.PATH, TERM: "xterm" },
      timeout: 20_000,
    });
    expect(output).toContain("ccbundle: interrupted");
    expect(output).toMatch(/exit=130/);
    // Each bar hid the cursor; the last thing said about it before the message is "show".
    const hidden = output.split("\x1b[?25l").length - 1;
    const shown = output.split("\x1b[?25h").length - 1;
    expect(hidden).toBe(2);
    expect(shown).toBe(hidden);
    expect(output.lastIndexOf("\x1b[?7h")).toBeGreaterThan(output.lastIndexOf("\x1b[?7l"));
  });
});

describe("push and pull on a terminal", () => {
  const CLI = dist("main.js");
  /** The command run on a pseudo-terminal, everything it wrote. */
  const onTerminal = (machine: Machine, args: string[], cwd: string) =>
    execFileSync(
      "script",
      ["-qec", [process.execPath, CLI, ...args].map((part) => `'${part}'`).join(" "), "/dev/null"],
      {
        env: machine.env,
        cwd,
        encoding: "utf8",
        timeout: 60_000,
      },
    );

  it("draw a bar for a big session (bytes, rate, ETA) and none for a small one", async () => {
    const { alice, bob } = await sameUserOnTwoMachines("bars", { nas: true });
    try {
      const project = alice.project("app");
      const small = writeSession({ claudeDir: alice.claudeDir, projectDir: project, home: alice.home });
      const quiet = onTerminal(alice, ["push", "--session", small.id], project);
      expect(quiet).toMatch(/Pushed session/);
      expect(quiet).not.toMatch(/upload\s+\[/);

      const big = writeSession({ claudeDir: alice.claudeDir, projectDir: project, home: alice.home });
      const file = `${alice.claudeDir}/projects/${big.folder}/${big.id}/tool-results/big.txt`;
      mkdirSync(file.slice(0, file.lastIndexOf("/")), { recursive: true });
      // Random: the blob stays as big as the files (over the 16 MiB a bar needs).
      writeFileSync(file, randomBytes(20 << 20).toString("base64"));
      const pushed = onTerminal(alice, ["push", "--session", big.id], project);
      expect(pushed).toMatch(/upload\s+\[.*\] \d+% \| [\d.]+ [KMG]?B \/ [\d.]+ MB \| [\d.]+ [KMG]?B\/s \| ETA/);
      expect(pushed).toMatch(/Pushed session/);
      const pulled = onTerminal(bob, ["pull", "--project", bob.project("app"), "--no-resume"], bob.home);
      expect(pulled).toMatch(/download\s+\[.*\] \d+% \| [\d.]+ [KMG]?B \/ [\d.]+ MB/);
      expect(pulled).toMatch(/Pulled session|restored/);
    } finally {
      alice.cleanup();
      bob.cleanup();
    }
  });
});
