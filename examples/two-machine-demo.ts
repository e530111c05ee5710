/**
 * A two-machine handoff on one computer: a real Mainline DHT of 8 nodes on
 * 127.0.0.1, a "NAS" folder as the store, and two simulated machines (their own
 * HOME, identity dir and Claude Code config dir, different users and project
 * paths). The laptop pushes; the desktop, with no store configured, finds the
 * handoff on the DHT and restores it. Run with `npm run demo`.
 */
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { projectFolderName } from "../core/claude/paths.js";
import { writeSession } from "../test/helpers/fixture.js";
import { startTestnet } from "../test/helpers/testnet.js";

const CLI = fileURLToPath(new URL("../cli/main.js", import.meta.url));

interface Box {
  name: string;
  home: string;
  env: NodeJS.ProcessEnv;
}

function machine(root: string, name: string, user: string, bootstrap: string[]): Box {
  const home = path.join(root, name, "home", user);
  mkdirSync(home, { recursive: true });
  return {
    name,
    home,
    env: {
      PATH: process.env.PATH,
      HOME: home,
      CCBUNDLE_HOME: path.join(home, ".config", "ccbundle"),
      CLAUDE_CONFIG_DIR: path.join(home, ".claude"),
      XDG_DATA_HOME: path.join(home, ".local", "share"),
      CCBUNDLE_BOOTSTRAP: bootstrap.join(","),
      CCBUNDLE_RELAYS: "none",
    },
  };
}

/** Run the CLI as a child process. Asynchronously: the DHT nodes live in this process and must keep answering. */
async function run(box: Box, args: string[], cwd = box.home): Promise<{ ms: number; stdout: string }> {
  console.log(`\n[${box.name}] $ ccbundle ${args.join(" ")}`);
  const start = performance.now();
  const child = spawn(process.execPath, [CLI, ...args], { cwd, env: box.env, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let output = "";
  child.stdout.on("data", (d: Buffer) => {
    stdout += d;
    output += d;
  });
  child.stderr.on("data", (d: Buffer) => {
    output += d;
  });
  const code = await new Promise<number>((resolve) => child.on("close", (c) => resolve(c ?? 1)));
  const ms = performance.now() - start;
  const text = output.trimEnd();
  if (text) console.log(text.replace(/^/gm, "    "));
  if (code !== 0) throw new Error(`ccbundle ${args[0]} failed on ${box.name} (exit ${code})`);
  return { ms, stdout };
}

async function main() {
  const root = realpathSync(mkdtempSync(path.join(os.tmpdir(), "ccbundle-demo-")));
  const testnet = await startTestnet(8);
  console.log(`A Mainline DHT of 8 nodes is running on 127.0.0.1 (bootstrap ${testnet.bootstrap[0]}).`);
  try {
    const laptop = machine(root, "laptop", "alice", testnet.bootstrap);
    const desktop = machine(root, "desktop", "bob", testnet.bootstrap);
    const nas = path.join(root, "nas");
    mkdirSync(nas);

    await run(laptop, ["init", "--no-passphrase"]);
    const keyFile = path.join(root, "alice-key.txt");
    await run(laptop, ["key", "export", keyFile]);
    await run(desktop, ["key", "import", keyFile]);

    const laptopProject = path.join(laptop.home, "work", "webapp");
    mkdirSync(laptopProject, { recursive: true });
    const session = writeSession({
      claudeDir: laptop.env.CLAUDE_CONFIG_DIR!,
      projectDir: laptopProject,
      home: laptop.home,
      turns: 12,
      title: "Add rate limiting to the login endpoint",
    });
    console.log(`\nThe laptop has a Claude Code session ${session.id} in ${laptopProject}.`);

    const push = await run(laptop, ["push", "--store", nas], laptopProject);
    const desktopProject = path.join(desktop.home, "code", "webapp");
    mkdirSync(desktopProject, { recursive: true });
    // The desktop has no store configured: the blob's location comes from the DHT record.
    const pull = await run(desktop, ["pull", "--project", desktopProject, "--no-resume"], desktopProject);

    const restored = path.join(
      desktop.env.CLAUDE_CONFIG_DIR!,
      "projects",
      projectFolderName(realpathSync(desktopProject)),
      `${session.id}.jsonl`,
    );
    const firstLine = JSON.parse(readFileSync(restored, "utf8").split("\n")[0]!) as { cwd: string };
    console.log(`\nRestored ${restored}`);
    console.log(`  cwd in the transcript is now ${firstLine.cwd}`);
    console.log(
      `\nHandoff latency on loopback: push ${push.ms.toFixed(0)} ms, pull ${pull.ms.toFixed(0)} ms (each includes Node start-up).`,
    );
    console.log(
      `With Claude Code installed, the desktop would now run: cd ${desktopProject} && claude --resume ${session.id}`,
    );
  } finally {
    await testnet.close();
    rmSync(root, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
});
