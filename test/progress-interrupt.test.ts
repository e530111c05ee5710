import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";

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
