import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";

/**
 * Running and timing commands for the bench. Every command runs under GNU
 * `time` so we get its CPU seconds and peak RSS (of the whole process tree it
 * waited for); wall time is measured here. Children are spawned
 * asynchronously: the bench process hosts the loopback DHT, which must keep
 * answering while a command runs.
 */

export interface Timing {
  wall: number;
  cpu: number;
  /** Peak resident set of the largest process, in MB. */
  rssMB: number;
  stdout: string;
  stderr: string;
  code: number;
}

const TIME = "/usr/bin/time";

export async function run(
  argv: string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string; input?: string; allowFail?: boolean } = {},
): Promise<Timing> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "ccb-bench-time-"));
  const report = path.join(dir, "time");
  try {
    const start = performance.now();
    const result = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve, reject) => {
      const child = spawn(TIME, ["-o", report, "-f", "%U %S %M", ...argv], {
        env: options.env ?? process.env,
        cwd: options.cwd,
        stdio: ["pipe", "pipe", "pipe"],
      });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (d) => {
        stdout += d;
      });
      child.stderr.on("data", (d) => {
        stderr += d;
      });
      child.on("error", reject);
      child.on("close", (code) => resolve({ code: code ?? -1, stdout, stderr }));
      child.stdin.end(options.input ?? "");
    });
    const wall = (performance.now() - start) / 1000;
    const [user, sys, rss] = readFileSync(report, "utf8").trim().split("\n").pop()!.split(" ").map(Number);
    if (result.code !== 0 && !options.allowFail) {
      throw new Error(`${argv.join(" ")} exited ${result.code}\n${result.stdout}\n${result.stderr}`);
    }
    return { wall, cpu: (user ?? 0) + (sys ?? 0), rssMB: (rss ?? 0) / 1024, ...result };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export function shell(command: string, options: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<Timing> {
  return run(["sh", "-c", `set -e; ${command}`], options);
}

/** The best (fastest) of `runs` timings of each side, alternating sides so both see the same machine load. */
export async function alternate(
  runs: number,
  sides: { a: () => Promise<Timing>; b: () => Promise<Timing>; between?: () => Promise<void> | void },
): Promise<{ a: Timing; b: Timing }> {
  let a: Timing | undefined;
  let b: Timing | undefined;
  for (let i = 0; i < runs; i++) {
    await sides.between?.();
    settleDisk();
    const ta = await sides.a();
    if (!a || ta.wall < a.wall) a = ta;
    await sides.between?.();
    settleDisk();
    const tb = await sides.b();
    if (!b || tb.wall < b.wall) b = tb;
  }
  return { a: a!, b: b! };
}

/**
 * Write back what earlier runs (and `between`'s deletions) left dirty before
 * the next timed run, untimed. Without it a run paid for its predecessor's
 * 300 MB of writeback: on this VM's disk the same `tar -x` took 0.8 s after
 * a `sync` and 3.7 s after ccbundle's restore, so each side's time depended
 * on which side ran before it.
 */
function settleDisk(): void {
  spawnSync("sync");
}

export function requireTools(tools: string[]): void {
  const missing = tools.filter((tool) => spawnSync("sh", ["-c", `command -v ${tool}`]).status !== 0);
  if (missing.length > 0) {
    process.stderr.write(
      `bench: missing ${missing.join(", ")}: the bench compares against Debian's tools\n` +
        "hint: apt-get update && apt-get install -y age zstd time\n",
    );
    process.exit(1);
  }
}

export function loadAverage(): string {
  return os
    .loadavg()
    .map((n) => n.toFixed(2))
    .join(" ");
}

export const MB = 1e6;
export const mbps = (bytes: number, seconds: number) => bytes / MB / seconds;

/**
 * What timed runs leave behind (restored config dirs, stores, staging) is moved
 * here between runs and deleted only when the bench ends.
 *
 * Why not delete it between runs: this machine's root file system is ext4
 * without a journal, where the inode allocator skips inodes freed in the last
 * 60 s (360 s while their inode table block is dirty; `recently_deleted` in
 * fs/ext4/ialloc.c), checking each one on every create. After an `rm -rf` of
 * 300 MB of sessions, each create in the next run cost ~0.9 ms instead of
 * ~0.1 ms, and whichever side ran next paid for the other's deletions:
 * `import` took 2.7, 4.2 then 4.6 s in three rounds of the same command, and
 * the inode allocation functions were a third of the samples. A rename frees
 * no inode. Deletions a command makes itself (ccbundle's staging folders) still
 * count against it.
 */
export class Trash {
  #count = 0;

  constructor(private readonly dir: string) {
    this.empty();
    mkdirSync(dir, { recursive: true });
  }

  /** Move `target` out of the way (same file system), if it exists. */
  setAside(target: string): void {
    if (existsSync(target)) renameSync(target, `${this.dir}/${this.#count++}`);
  }

  /** Delete everything set aside (untimed: at the start and the end of the bench). */
  empty(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}
