/**
 * How incremental backups scale: a config dir of N realistic sessions is backed
 * up once (everything read, packed, uploaded), then again after one session
 * changed. The second run must cost a small fraction of the first and stay
 * flat as N (the unchanged bytes) grows: only stat calls scale with N.
 *
 *     npm run bench:backup            # N = 100, 200, 400 sessions of ~0.5 MB
 *     BENCH_SESSIONS=50,500 npm run bench:backup
 */
import { spawn } from "node:child_process";
import { appendFileSync, mkdirSync, mkdtempSync, realpathSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { writeSession } from "../test/helpers/fixture.js";

const CLI = fileURLToPath(new URL("../cli/main.js", import.meta.url));

function run(args: string[], env: NodeJS.ProcessEnv): Promise<{ ms: number; stdout: string }> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { env, stdio: ["ignore", "pipe", "inherit"] });
    let stdout = "";
    child.stdout.on("data", (d: Buffer) => {
      stdout += d;
    });
    child.on("close", (code) =>
      code === 0 ? resolve({ ms: performance.now() - started, stdout }) : reject(new Error(`exit ${code}`)),
    );
  });
}

async function measure(sessions: number): Promise<void> {
  const root = realpathSync(mkdtempSync(path.join(os.tmpdir(), "ccb-bench-backup-")));
  try {
    const home = path.join(root, "home");
    const store = path.join(root, "store");
    mkdirSync(store, { recursive: true });
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      HOME: home,
      CCBUNDLE_HOME: path.join(home, ".config", "ccbundle"),
      CLAUDE_CONFIG_DIR: path.join(home, ".claude"),
      CCBUNDLE_STORE: store,
      CCBUNDLE_BOOTSTRAP: "none",
      CCBUNDLE_RELAYS: "none",
    };
    await run(["init", "--no-passphrase"], env);
    const written = [];
    for (let i = 0; i < sessions; i++) {
      const project = path.join(home, "code", `project-${i % 20}`);
      mkdirSync(project, { recursive: true });
      written.push(
        writeSession({
          claudeDir: env.CLAUDE_CONFIG_DIR!,
          projectDir: project,
          home,
          turns: 8,
          padding: 30_000,
        }),
      );
    }
    const first = await run(["backup", "--json"], env);
    const doc = JSON.parse(first.stdout);
    appendFileSync(written[0]!.transcript, `${JSON.stringify({ type: "user", message: "one more" })}\n`);
    const second = await run(["backup", "--json"], env);
    const unchanged = await run(["backup", "--json"], env);
    const mb = doc.bytes.read / 1e6;
    console.log(
      `${String(sessions).padStart(5)} sessions ${mb.toFixed(0).padStart(5)} MB | first ${(first.ms / 1000).toFixed(2)} s (${(mb / (first.ms / 1000)).toFixed(0)} MB/s) | one changed ${(second.ms / 1000).toFixed(2)} s = ${((100 * second.ms) / first.ms).toFixed(1)} % | none changed ${(unchanged.ms / 1000).toFixed(2)} s`,
    );
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

const counts = (process.env.BENCH_SESSIONS ?? "100,200,400").split(",").map(Number);
for (const n of counts) await measure(n);
