import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

/**
 * `--json` + a signal while the bin is still loading the bundle (before main's own handling)
 * left stdout empty. The bin catches signals from its first line (cli/early-signal.ts). Node's
 * own start-up before any JavaScript runs (~0.1 s) stays uncovered: nothing of ours runs there.
 */
const dist = path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "dist", "cli");
const earlySignal = path.join(dist, "early-signal.js");

function runChild(body: string) {
  const script = `import { catchEarlySignals, releaseEarlySignals } from ${JSON.stringify(earlySignal)};\n${body}\nsetTimeout(() => {}, 5000);`;
  return spawnSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8", timeout: 10_000 });
}

describe("a signal before main's handling", () => {
  it("with --json prints the interrupted document and ends by that signal", () => {
    const child = runChild(`catchEarlySignals(["push", "--json"]); process.kill(process.pid, "SIGTERM");`);
    expect(child.signal).toBe("SIGTERM");
    expect(JSON.parse(child.stdout)).toEqual({ ok: false, error: { message: "interrupted (SIGTERM)", exitCode: 143 } });
  });

  it("once main took over, or without --json, is not ours", () => {
    const released = runChild(
      `catchEarlySignals(["--json"]); releaseEarlySignals(); process.kill(process.pid, "SIGINT");`,
    );
    expect(released.signal).toBe("SIGINT");
    expect(released.stdout).toBe("");
    const plain = runChild(`catchEarlySignals(["push"]); process.kill(process.pid, "SIGINT");`);
    expect(plain.signal).toBe("SIGINT");
    expect(plain.stdout).toBe("");
  });

  it("the bin catches them before it loads the bundle", () => {
    const bin = readFileSync(path.join(dist, "main.js"), "utf8");
    expect(bin).toMatch(/catchEarlySignals\(\);\s*runWithCodeCache\(/);
  });
});
