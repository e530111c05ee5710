import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { expect } from "vitest";

/** Every file under `dir` (dot files and staging folders included) with its bytes, base64. */
export function snapshotTree(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    if (!existsSync(d)) return;
    for (const entry of readdirSync(d, { withFileTypes: true })) {
      const full = path.join(d, entry.name);
      if (entry.isDirectory()) walk(full);
      else out[path.relative(dir, full)] = readFileSync(full, "base64");
    }
  };
  walk(dir);
  return out;
}

/** A failure the user can act on: `ccbundle: <message>`, a hint, no stack trace. */
export function expectOneLineError(stderr: string): void {
  const lines = stderr.trim().split("\n");
  expect(lines[0]).toMatch(/^ccbundle: /);
  expect(lines.some((l) => l.startsWith("hint: "))).toBe(true);
  expect(stderr).not.toMatch(/\n\s+at /); // no stack trace
  expect(stderr).not.toMatch(/unexpected error|this is a bug/);
}

/** No staging folder or journal left where a later command or Claude Code would find it. */
export function stagingLeftovers(claudeDir: string): string[] {
  return existsSync(claudeDir) ? readdirSync(claudeDir).filter((name) => name.startsWith(".ccbundle-staging-")) : [];
}

/** Fail if any output contains any of the secrets (passphrases, PINs, seeds, age secret keys). */
export function expectNoSecrets(outputs: string[], secrets: string[]): void {
  const present = secrets.filter((secret) => secret.length >= 6);
  for (const output of outputs) {
    for (const secret of present) {
      if (output.includes(secret)) throw new Error(`a secret leaked into the output: …${secret.slice(0, 4)}…`);
    }
    expect(output).not.toMatch(/AGE-SECRET-KEY-1/);
    expect(output).not.toMatch(/CCBUNDLE-SECRET-KEY:/);
  }
}
