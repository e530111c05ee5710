import { execFile, execFileSync } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { ProbeInput, ProbeResult } from "./claude-probe.js";

/**
 * Real Claude Code for the opt-in test (CCBUNDLE_TEST_CLAUDE=1): installed from
 * the npm registry into a temp prefix, run with a clean environment in a
 * network namespace where only loopback exists (when the machine allows one;
 * otherwise every API URL still points at 127.0.0.1 and non-essential
 * traffic is switched off). It never logs in.
 */

const PROBE = fileURLToPath(new URL("../../dist/test/helpers/claude-probe.js", import.meta.url));

export interface InstalledClaude {
  version: string;
  bin: string;
  /** Milliseconds the install took (0 when an earlier run's install was reused). */
  installMs: number;
}

export function installClaudeCode(version: string): InstalledClaude {
  const prefix = path.join(os.tmpdir(), "ccbundle-claude-code", version);
  const wrapper = path.join(prefix, "node_modules", ".bin", "claude");
  // The platform package holds the native binary; the wrapper's postinstall only links it.
  const platform = `${process.platform}-${process.arch === "x64" ? "x64" : process.arch}`;
  const native = path.join(prefix, "node_modules", "@anthropic-ai", `claude-code-${platform}`, "claude");
  const find = () => [native, wrapper].find((bin) => existsSync(bin) && versionOf(bin) !== undefined);
  let bin = find();
  let installMs = 0;
  if (!bin) {
    mkdirSync(prefix, { recursive: true });
    const started = performance.now();
    execFileSync(
      "npm",
      [
        "install",
        "--prefix",
        prefix,
        "--no-audit",
        "--no-fund",
        "--loglevel=error",
        `@anthropic-ai/claude-code@${version}`,
      ],
      { stdio: ["ignore", "ignore", "inherit"], timeout: 600_000 },
    );
    installMs = performance.now() - started;
    bin = find();
  }
  if (!bin) throw new Error(`@anthropic-ai/claude-code@${version} installed in ${prefix} but no claude binary runs`);
  return { version: versionOf(bin)!, bin, installMs };
}

function versionOf(bin: string): string | undefined {
  try {
    return /^(\d+\.\d+\.\d+)/.exec(execFileSync(bin, ["--version"], { encoding: "utf8", timeout: 30_000 }))?.[1];
  } catch {
    return undefined;
  }
}

/** `unshare` + `ip` give a namespace with only loopback; undefined where the kernel or container refuses. */
export function loopbackOnlySandbox(): string[] | undefined {
  const prefix = ["unshare", "-rn", "sh", "-c", 'ip link set lo up && exec "$0" "$@"'];
  try {
    execFileSync(prefix[0]!, [...prefix.slice(1), "true"], { stdio: "ignore", timeout: 10_000 });
    return prefix;
  } catch {
    return undefined;
  }
}

export interface RunClaudeOptions {
  cwd: string;
  args: string[];
  home: string;
  claudeDir: string;
  /** Answer API calls with a recorder on 127.0.0.1 (and give Claude Code a dummy key). */
  api?: boolean;
  sandbox: string[] | undefined;
}

export function runClaude(claude: string, options: RunClaudeOptions): Promise<ProbeResult> {
  const input: ProbeInput = {
    claude,
    cwd: options.cwd,
    args: options.args,
    api: options.api ?? false,
    env: {
      PATH: "/usr/local/bin:/usr/bin:/bin",
      HOME: options.home,
      CLAUDE_CONFIG_DIR: options.claudeDir,
      DISABLE_AUTOUPDATER: "1",
      DISABLE_TELEMETRY: "1",
      DISABLE_ERROR_REPORTING: "1",
      CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: "1",
    },
  };
  const command = [...(options.sandbox ?? []), process.execPath, PROBE];
  return new Promise((resolve, reject) => {
    execFile(
      command[0]!,
      command.slice(1),
      { env: { PATH: process.env.PATH, CCB_PROBE: JSON.stringify(input) }, maxBuffer: 64 << 20, timeout: 90_000 },
      (err, stdout, stderr) => {
        if (err && !stdout) return reject(new Error(`claude probe failed: ${err.message}\n${stderr}`));
        resolve(JSON.parse(stdout) as ProbeResult);
      },
    );
  });
}
