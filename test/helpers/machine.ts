import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, realpathSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

/** The built CLI the tests run, exactly as a user would. */
export const CLI = fileURLToPath(new URL("../../dist/cli/main.js", import.meta.url));

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * A simulated machine: its own HOME, CCBUNDLE_HOME, CLAUDE_CONFIG_DIR and
 * project dir under a temp folder, and an environment that reaches no public
 * DHT node or relay (tests set their own bootstrap/relays on 127.0.0.1).
 */
export class Machine {
  readonly root: string;
  readonly home: string;
  readonly ccbHome: string;
  readonly claudeDir: string;
  env: NodeJS.ProcessEnv;
  /** Everything every run printed (stdout and stderr), for tests that scan output for secrets. */
  readonly outputs: string[] = [];

  constructor(name: string, extraEnv: NodeJS.ProcessEnv = {}) {
    this.root = realpathSync(mkdtempSync(path.join(os.tmpdir(), `ccb-${name}-`)));
    this.home = path.join(this.root, "home", name);
    this.ccbHome = path.join(this.home, ".config", "ccbundle");
    this.claudeDir = path.join(this.home, ".claude");
    mkdirSync(this.home, { recursive: true });
    this.env = {
      PATH: process.env.PATH,
      HOME: this.home,
      CCBUNDLE_HOME: this.ccbHome,
      CLAUDE_CONFIG_DIR: this.claudeDir,
      XDG_CONFIG_HOME: path.join(this.home, ".config"),
      XDG_DATA_HOME: path.join(this.home, ".local", "share"),
      CCBUNDLE_BOOTSTRAP: "none",
      CCBUNDLE_RELAYS: "none",
      ...extraEnv,
    };
  }

  /** Make a project directory under this machine's home. */
  project(rel: string): string {
    const dir = path.join(this.home, rel);
    mkdirSync(dir, { recursive: true });
    return realpathSync(dir);
  }

  run(
    args: string[],
    options: { cwd?: string; input?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
  ): Promise<RunResult> {
    return this.start(args, options).done;
  }

  /** Start the CLI and return at once: the child (to kill it) and its result. */
  start(
    args: string[],
    options: { cwd?: string; input?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
  ): { child: ChildProcess; done: Promise<RunResult> } {
    const child = spawn(process.execPath, [CLI, ...args], {
      cwd: options.cwd ?? this.home,
      env: { ...this.env, ...options.env },
      stdio: ["pipe", "pipe", "pipe"],
    });
    const done = new Promise<RunResult>((resolve, reject) => {
      let stdout = "";
      let stderr = "";
      child.stdout!.on("data", (d) => {
        stdout += d;
      });
      child.stderr!.on("data", (d) => {
        stderr += d;
      });
      const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 60_000);
      child.on("error", reject);
      child.on("close", (code, signal) => {
        clearTimeout(timer);
        this.outputs.push(stdout, stderr);
        resolve({ code: code ?? (signal === "SIGKILL" ? 137 : -1), stdout, stderr });
      });
      child.stdin!.end(options.input ?? "");
    });
    return { child, done };
  }

  /**
   * Start `args` and send SIGINT (Ctrl-C) once `ready()` says the work is under way (polled every
   * 2 ms); how the command ended, whether the signal went, and the signal that ended it.
   */
  async interruptWhen(
    args: string[],
    ready: () => boolean,
    options: Parameters<Machine["start"]>[1] = {},
  ): Promise<RunResult & { sent: boolean; signal: NodeJS.Signals | null }> {
    const { child, done } = this.start(args, options);
    let sent = false;
    const isReady = () => {
      try {
        return ready();
      } catch {
        // Looking raced the command (a folder removed under readdir): not yet.
        return false;
      }
    };
    const poll = setInterval(() => {
      if (!sent && isReady()) {
        sent = true;
        child.kill("SIGINT");
      }
    }, 2);
    const result = await done.finally(() => clearInterval(poll));
    return { ...result, sent, signal: child.signalCode };
  }

  async runOk(args: string[], options: Parameters<Machine["run"]>[1] = {}): Promise<RunResult> {
    const result = await this.run(args, options);
    if (result.code !== 0) {
      throw new Error(
        `ccbundle ${args.join(" ")} exited ${result.code}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`,
      );
    }
    return result;
  }

  cleanup(): void {
    rmSync(this.root, { recursive: true, force: true });
  }
}

/**
 * One user's two machines named `a` and `b`: `a` makes the identity, `b`
 * imports it, and both use one local "NAS" store folder. Callers clean both up.
 */
export async function twoMachines(a: string, b: string): Promise<{ alice: Machine; bob: Machine; nas: string }> {
  return sharedIdentity(new Machine(a), new Machine(b), true);
}

/**
 * One user on two machines: Alice runs `init --no-passphrase`, Bob imports her
 * identity. With `nas`, both use a local "NAS" folder under Alice's root as store.
 */
export async function sameUserOnTwoMachines(
  name: string,
  options: { env?: NodeJS.ProcessEnv; nas?: boolean } = {},
): Promise<{ alice: Machine; bob: Machine; nas: string }> {
  return sharedIdentity(
    new Machine(`alice-${name}`, options.env),
    new Machine(`bob-${name}`, options.env),
    !!options.nas,
  );
}

async function sharedIdentity(alice: Machine, bob: Machine, withNas: boolean) {
  const nas = path.join(alice.root, "nas");
  if (withNas) {
    mkdirSync(nas);
    alice.env.CCBUNDLE_STORE = nas;
    bob.env.CCBUNDLE_STORE = nas;
  }
  await alice.runOk(["init", "--no-passphrase"]);
  const exported = path.join(alice.root, "key.txt");
  await alice.runOk(["key", "export", exported]);
  await bob.runOk(["key", "import", exported]);
  return { alice, bob, nas };
}
