import {
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { type Corpus, ensureCorpus } from "./corpus.js";
import { alternate, loadAverage, MB, mbps, requireTools, run, shell, type Timing, Trash } from "./measure.js";

/**
 * `npm run bench`: ccbundle against the shell pipeline it replaces
 * (`tar | zstd -3 | age`), on the same files in the same run, alternating
 * sides and keeping each side's best of RUNS so both see the same machine
 * load. Writes bench/RESULTS.md. Talks to 127.0.0.1 only (a loopback DHT and
 * s3rver started here).
 */

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "../..");
const work = path.join(repo, "bench", ".work");
const CLI = path.join(repo, "dist", "cli", "main.js");
const RUNS = Number(process.env.CCBUNDLE_BENCH_RUNS ?? 3);
const quick = process.env.CCBUNDLE_BENCH_QUICK === "1";

requireTools(["tar", "zstd", "age", "age-keygen", "/usr/bin/time"]);

interface Row {
  what: string;
  ccbundle: string;
  reference: string;
  ratio: string;
  target: string;
  verdict: "PASS" | "FAIL" | "n/a" | "info";
}
const rows: Row[] = [];
const notes: string[] = [];
const fmt = (n: number, digits = 2) => n.toFixed(digits);
const seconds = (t: Timing) => `${fmt(t.wall)} s`;
function row(r: Omit<Row, "verdict">, pass: boolean | undefined): void {
  rows.push({ ...r, verdict: pass === undefined ? "info" : pass ? "PASS" : "FAIL" });
  console.log(
    `${r.what}: ${r.ccbundle} vs ${r.reference} → ${r.ratio} (${r.target}) ${pass === undefined ? "" : pass ? "PASS" : "FAIL"}`,
  );
}
function na(what: string, target: string, why: string): void {
  rows.push({ what, ccbundle: why, reference: "", ratio: "", target, verdict: "n/a" });
  console.log(`${what}: ${why}`);
}

/** A simulated machine for the CLI: its own HOME, CCBUNDLE_HOME, config dir, loopback only. */
function machine(home: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    HOME: home,
    CCBUNDLE_HOME: path.join(home, ".config", "ccbundle"),
    CLAUDE_CONFIG_DIR: path.join(home, ".claude"),
    XDG_CONFIG_HOME: path.join(home, ".config"),
    XDG_DATA_HOME: path.join(home, ".local", "share"),
    CCBUNDLE_BOOTSTRAP: "none",
    CCBUNDLE_RELAYS: "none",
    ...extra,
  };
}
const ccb = (args: string[], env: NodeJS.ProcessEnv, options: { cwd?: string; allowFail?: boolean } = {}) =>
  run([process.execPath, CLI, ...args], { env, ...options });

/** An identity without passphrase in `env`'s CCBUNDLE_HOME, and its age recipient / identity file for the shell side. */
async function identity(env: NodeJS.ProcessEnv): Promise<{ recipient: string; identityFile: string }> {
  const home = env.CCBUNDLE_HOME!;
  const identityFile = path.join(path.dirname(home), "age-identity.txt");
  if (!existsSync(path.join(home, "identity"))) {
    await ccb(["init", "--no-passphrase"], env);
  }
  rmSync(identityFile, { force: true });
  await ccb(["key", "export", identityFile, "--age-identity"], env);
  const recipient = (await ccb(["whoami", "--age-recipient"], env)).stdout.trim();
  return { recipient, identityFile };
}

function dirBytes(dir: string): number {
  let total = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) total += statSync(path.join(entry.parentPath, entry.name)).size;
  }
  return total;
}

const trash = new Trash(path.join(work, "trash"));
/** An empty `dir`, whatever was there set aside (see Trash). */
const fresh = (dir: string) => {
  trash.setAside(dir);
  mkdirSync(dir, { recursive: true });
  return dir;
};

// ---------------------------------------------------------------- corpus
const loadAtStart = loadAverage();
console.log(`bench: ${os.availableParallelism()} cores, node ${process.version}, load ${loadAtStart}`);
const started = performance.now();
const corpus: Corpus = ensureCorpus({
  root: path.join(work, quick ? "corpus-quick" : "corpus"),
  seed: 1,
  sessions: quick ? 60 : 300,
  totalBytes: (quick ? 60 : 300) * MB,
});
console.log(`corpus: ${corpus.sessions.length} sessions, ${fmt(corpus.bytes / MB, 0)} MB`);
const home = corpus.home;
// A bench that died mid-restore left the corpus config dir aside: put it back.
const aside = `${corpus.claudeDir}.bench-aside`;
if (existsSync(aside)) {
  rmSync(corpus.claudeDir, { recursive: true, force: true });
  renameSync(aside, corpus.claudeDir);
}
const store = path.join(work, "store");
const env = machine(home, { CCBUNDLE_STORE: store });
mkdirSync(store, { recursive: true });
const me = await identity(env);
const blobs = path.join(work, "blobs");
mkdirSync(blobs, { recursive: true });
const shellBlob = path.join(blobs, "shell.age");
const engineBlob = path.join(blobs, "engine.ccb");

// ---------------------------------------------------------------- 1. whole config dir
const shellBackup = () =>
  shell(`tar -cf - -C ${JSON.stringify(home)} .claude | zstd -3 -q | age -r ${me.recipient} > ${shellBlob}`);
// An unknown command with --help prints the top-level help and exits 0: look for the command's own usage line.
const backupHelp = await ccb(["backup", "--help"], env, { allowFail: true });
const hasBackup = backupHelp.code === 0 && /^ccbundle backup/m.test(backupHelp.stdout);

const engine = await alternate(RUNS, {
  a: () => shellBackup(),
  b: () => run([process.execPath, path.join(repo, "dist", "bench", "engine.js"), engineBlob], { env }),
});
const shellRatio = corpus.bytes / statSync(shellBlob).size;
const engineRatio = corpus.bytes / statSync(engineBlob).size;
row(
  {
    what: "pipeline, whole config dir (library: scan + tar + zstd + age, one blob) vs `tar | zstd -3 | age -r`",
    ccbundle: `${fmt(mbps(corpus.bytes, engine.b.wall), 0)} MB/s (${seconds(engine.b)}, ${fmt(engine.b.cpu)} s CPU)`,
    reference: `${fmt(mbps(corpus.bytes, engine.a.wall), 0)} MB/s (${seconds(engine.a)}, ${fmt(engine.a.cpu)} s CPU)`,
    ratio: `${fmt(engine.a.wall / engine.b.wall)}×`,
    target: "≥ 1.0 (same as backup)",
  },
  engine.a.wall / engine.b.wall >= 1,
);

if (hasBackup) {
  const backupStore = path.join(work, "backup-store");
  const backup = await alternate(RUNS, {
    a: () => shellBackup(),
    b: () => ccb(["backup", "--all"], { ...env, CCBUNDLE_STORE: backupStore }),
    between: () => {
      fresh(backupStore);
      trash.setAside(path.join(env.CCBUNDLE_HOME!, "state"));
    },
  });
  row(
    {
      what: "`ccbundle backup --all` to a local store vs `tar | zstd -3 | age -r`",
      ccbundle: `${fmt(mbps(corpus.bytes, backup.b.wall), 0)} MB/s (${seconds(backup.b)})`,
      reference: `${fmt(mbps(corpus.bytes, backup.a.wall), 0)} MB/s (${seconds(backup.a)})`,
      ratio: `${fmt(backup.a.wall / backup.b.wall)}×`,
      target: "≥ 1.0",
    },
    backup.a.wall / backup.b.wall >= 1,
  );
  row(
    {
      what: "peak RSS of `backup --all`",
      ccbundle: `${fmt(backup.b.rssMB, 0)} MB`,
      reference: "",
      ratio: "",
      target: "≤ 200 MB",
    },
    backup.b.rssMB <= 200,
  );
  const stored = dirBytes(backupStore);
  row(
    {
      what: "backup bytes stored vs corpus bytes (compression ratio)",
      ccbundle: `${fmt(corpus.bytes / stored)}× (${fmt(stored / MB, 1)} MB)`,
      reference: `zstd -3: ${fmt(shellRatio)}×`,
      ratio: `${fmt(corpus.bytes / stored / shellRatio)}`,
      target: "close to zstd -3",
    },
    undefined,
  );
} else {
  na("`ccbundle backup --all` vs `tar | zstd -3 | age -r`", "≥ 1.0", "n/a: backup command not in this build");
  na("peak RSS of `backup --all`", "≤ 200 MB", "n/a: backup command not in this build");
}
row(
  {
    what: "bytes stored vs corpus bytes (pipeline above)",
    ccbundle: `${fmt(engineRatio)}× (${fmt(statSync(engineBlob).size / MB, 1)} MB)`,
    reference: `zstd -3: ${fmt(shellRatio)}× (${fmt(statSync(shellBlob).size / MB, 1)} MB)`,
    ratio: fmt(engineRatio / shellRatio),
    target: "≈ 1 (same level)",
  },
  undefined,
);

// ---------------------------------------------------------------- 2. restore everything
// Disaster recovery on the same machine: the config dir is gone, restore it in place.
const restoreDir = path.join(work, "restore-shell");
/** Set the real config dir aside (once), and clear whatever an earlier restore put in its place. */
const clearForRestore = () => {
  if (!existsSync(aside)) renameSync(corpus.claudeDir, aside);
  else trash.setAside(corpus.claudeDir);
};
const putBack = () => {
  if (!existsSync(aside)) return;
  trash.setAside(corpus.claudeDir);
  renameSync(aside, corpus.claudeDir);
};
const shellRestoreCommand = `age -d -i ${me.identityFile} ${shellBlob} | zstd -d -q | tar -xf - -C ${JSON.stringify(restoreDir)}`;
const shellRestore = () => shell(shellRestoreCommand);
try {
  const restore = await alternate(RUNS, {
    a: () => shellRestore(),
    b: () => ccb(["import", engineBlob, "--no-resume"], env, { cwd: home }),
    between: () => {
      fresh(restoreDir);
      clearForRestore();
    },
  });
  const restored = dirBytes(corpus.claudeDir);
  row(
    {
      what: "`ccbundle import` of that blob (verify, restore all sessions in place) vs `age -d | zstd -d | tar -x`",
      ccbundle: `${fmt(mbps(corpus.bytes, restore.b.wall), 0)} MB/s (${seconds(restore.b)}, ${fmt(restore.b.cpu)} s CPU)`,
      reference: `${fmt(mbps(corpus.bytes, restore.a.wall), 0)} MB/s (${seconds(restore.a)}, ${fmt(restore.a.cpu)} s CPU)`,
      ratio: `${fmt(restore.a.wall / restore.b.wall)}×`,
      target: "≥ 1.0 (same as restore --all)",
    },
    restore.a.wall / restore.b.wall >= 1 && restored >= corpus.bytes * 0.99,
  );
  // The shell's files are not on disk when `tar -x` exits; ccbundle's are (each is fsynced before the
  // install journal names it). This row gives the shell the same durability: its restore, then `sync -f`.
  const durable = await alternate(RUNS, {
    a: () => shell(`${shellRestoreCommand} && sync -f ${JSON.stringify(restoreDir)}`),
    b: () => ccb(["import", engineBlob, "--no-resume"], env, { cwd: home }),
    between: () => {
      fresh(restoreDir);
      clearForRestore();
    },
  });
  row(
    {
      what: "`ccbundle import` (as above) vs the same shell restore followed by `sync -f` (its files on disk too)",
      ccbundle: `${fmt(mbps(corpus.bytes, durable.b.wall), 0)} MB/s (${seconds(durable.b)})`,
      reference: `${fmt(mbps(corpus.bytes, durable.a.wall), 0)} MB/s (${seconds(durable.a)})`,
      ratio: `${fmt(durable.a.wall / durable.b.wall)}×`,
      target: "what durability costs the shell",
    },
    undefined,
  );
  if (hasBackup) {
    const backupStore = path.join(work, "backup-store");
    const viaRestore = await alternate(RUNS, {
      a: () => shellRestore(),
      b: () => ccb(["restore", "--all", "--no-resume"], { ...env, CCBUNDLE_STORE: backupStore }, { cwd: home }),
      between: () => {
        fresh(restoreDir);
        clearForRestore();
      },
    });
    row(
      {
        what: "`ccbundle restore --all` vs `age -d | zstd -d | tar -x`",
        ccbundle: `${fmt(mbps(corpus.bytes, viaRestore.b.wall), 0)} MB/s (${seconds(viaRestore.b)})`,
        reference: `${fmt(mbps(corpus.bytes, viaRestore.a.wall), 0)} MB/s (${seconds(viaRestore.a)})`,
        ratio: `${fmt(viaRestore.a.wall / viaRestore.b.wall)}×`,
        target: "≥ 1.0",
      },
      viaRestore.a.wall / viaRestore.b.wall >= 1,
    );
  } else {
    na("`ccbundle restore --all` vs `age -d | zstd -d | tar -x`", "≥ 1.0", "n/a: backup command not in this build");
  }
} finally {
  putBack();
  trash.setAside(restoreDir);
}

// ---------------------------------------------------------------- 3. incremental backup
if (hasBackup) {
  await incrementalRows();
} else {
  na(
    "second `backup` after one session changed / first",
    "≤ 0.15, flat at 2× bytes",
    "n/a: backup command not in this build",
  );
}

async function incrementalRows(): Promise<void> {
  const ratios: string[] = [];
  let pass = true;
  for (const scale of quick ? [1] : [1, 2]) {
    const big =
      scale === 1
        ? corpus
        : ensureCorpus({ root: path.join(work, "corpus-2x"), seed: 2, sessions: 600, totalBytes: 600 * MB });
    const bigEnv = machine(big.home, { CCBUNDLE_STORE: fresh(path.join(work, `incr-store-${scale}`)) });
    // The 1× corpus is the one the identity was made in: nothing to copy there.
    if (bigEnv.CCBUNDLE_HOME !== env.CCBUNDLE_HOME) {
      cpSync(path.join(env.CCBUNDLE_HOME!, "identity"), path.join(bigEnv.CCBUNDLE_HOME!, "identity"));
    }
    trash.setAside(path.join(bigEnv.CCBUNDLE_HOME!, "state"));
    const first = await ccb(["backup", "--all"], bigEnv);
    const changed = big.sessions[0]!.transcript;
    const line = `${JSON.stringify({ type: "user", message: { role: "user", content: "one more turn" }, uuid: `bench-${Date.now()}` })}\n`;
    writeFileSync(changed, line, { flag: "a" });
    const second = await ccb(["backup", "--all"], bigEnv);
    const ratio = second.wall / first.wall;
    ratios.push(`${fmt(big.bytes / MB, 0)} MB: ${fmt(second.wall)} s / ${fmt(first.wall)} s = ${fmt(ratio)}`);
    pass &&= ratio <= 0.15;
  }
  row(
    {
      what: "second `backup` after one session changed / first",
      ccbundle: ratios.join("; "),
      reference: "",
      ratio: "",
      target: "≤ 0.15, flat as bytes grow",
    },
    pass,
  );
}

// ---------------------------------------------------------------- 4. handoff over a loopback DHT
await handoffRow();

async function handoffRow(): Promise<void> {
  const { startTestnet } = await import("../test/helpers/testnet.js");
  const net = await startTestnet(8);
  try {
    const one = ensureCorpus({
      root: path.join(work, "handoff"),
      seed: 3,
      sessions: 1,
      totalBytes: 50 * MB,
      projects: 1,
    });
    const handoffStore = fresh(path.join(work, "handoff-store"));
    const dht = { CCBUNDLE_BOOTSTRAP: net.bootstrap.join(","), CCBUNDLE_STORE: handoffStore };
    const a = machine(one.home, dht);
    const bHome = path.join(work, "handoff-b", "home", "al");
    const b = machine(bHome, dht);
    await identity(a);
    const exported = path.join(work, "handoff-key");
    rmSync(exported, { force: true });
    await ccb(["key", "export", exported], a);
    rmSync(b.CCBUNDLE_HOME!, { recursive: true, force: true });
    await ccb(["key", "import", exported], b);
    const project = path.join(bHome, "code", "app");
    const shellDir = path.join(work, "handoff-shell");
    const pair = await alternate(RUNS, {
      a: async () => {
        // tar | zstd | age to a file, cp to the store, then the reverse on the other side.
        const blob = path.join(shellDir, "out.age");
        return shell(
          `tar -cf - -C ${JSON.stringify(one.home)} .claude | zstd -3 -q | age -r ${me.recipient} > ${blob}` +
            ` && cp ${blob} ${handoffStore}/shell.age` +
            ` && age -d -i ${me.identityFile} ${handoffStore}/shell.age | zstd -d -q | tar -xf - -C ${shellDir}/x`,
        );
      },
      b: async () => {
        const push = await ccb(["push", "--session", one.sessions[0]!.id], a);
        const pull = await ccb(["pull", "--no-resume", "--project", project], b, { cwd: project });
        return { ...pull, wall: push.wall + pull.wall, cpu: push.cpu + pull.cpu };
      },
      between: () => {
        fresh(path.join(shellDir, "x"));
        trash.setAside(b.CLAUDE_CONFIG_DIR!);
        mkdirSync(project, { recursive: true });
      },
    });
    row(
      {
        what: `handoff of a ${fmt(one.bytes / MB, 0)} MB session: \`push\` + \`pull\` over a loopback DHT and a local store vs shell pipeline + cp + reverse`,
        ccbundle: `${seconds(pair.b)} (${fmt(pair.b.cpu)} s CPU)`,
        reference: `${seconds(pair.a)} (${fmt(pair.a.cpu)} s CPU)`,
        ratio: `${fmt(pair.b.wall / pair.a.wall)}× the time`,
        target: "≤ 3.0",
      },
      pair.b.wall / pair.a.wall <= 3,
    );
  } finally {
    await net.close();
  }
}

// ---------------------------------------------------------------- 5. peak RSS of a single big session push
await bigPushRows();

async function bigPushRows(): Promise<void> {
  const sizes = quick ? [64, 256] : [256, 1024];
  const results: string[] = [];
  let worst = 0;
  for (const size of sizes) {
    const big = ensureCorpus({
      root: path.join(work, `big-${size}`),
      seed: 10 + size,
      sessions: 1,
      totalBytes: size * MB,
      projects: 1,
    });
    const bigEnv = machine(big.home, { CCBUNDLE_STORE: fresh(path.join(work, "big-store")) });
    // The 1× corpus is the one the identity was made in: nothing to copy there.
    if (bigEnv.CCBUNDLE_HOME !== env.CCBUNDLE_HOME) {
      cpSync(path.join(env.CCBUNDLE_HOME!, "identity"), path.join(bigEnv.CCBUNDLE_HOME!, "identity"));
    }
    const push = await ccb(["push", "--session", big.sessions[0]!.id], bigEnv);
    worst = Math.max(worst, push.rssMB);
    results.push(
      `${fmt(big.bytes / MB, 0)} MB: ${fmt(push.rssMB, 0)} MB RSS, ${fmt(mbps(big.bytes, push.wall), 0)} MB/s`,
    );
    trash.setAside(path.join(work, "big-store"));
  }
  row(
    {
      what: "peak RSS of `push` of one big session, at two sizes",
      ccbundle: results.join("; "),
      reference: "",
      ratio: "",
      target: "≤ 200 MB, flat",
    },
    worst <= 200,
  );
}

// ---------------------------------------------------------------- s3rver: store adapter vs plain PutObject/GetObject
await s3Row();

async function s3Row(): Promise<void> {
  const { startS3rver } = await import("../test/helpers/s3rver.js");
  const server = await startS3rver({ buckets: ["bench"] });
  const saved = { ...process.env };
  try {
    for (const name of Object.keys(process.env)) if (name.startsWith("AWS_")) delete process.env[name];
    Object.assign(process.env, {
      AWS_ACCESS_KEY_ID: "S3RVER",
      AWS_SECRET_ACCESS_KEY: "S3RVER",
      AWS_EC2_METADATA_DISABLED: "true",
      AWS_CONFIG_FILE: path.join(work, "no-aws-config"),
      AWS_SHARED_CREDENTIALS_FILE: path.join(work, "no-aws-credentials"),
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true", // as the CLI does (cli/main.ts)
    });
    const { S3Client, PutObjectCommand, GetObjectCommand } = await import("@aws-sdk/client-s3");
    const { openStore } = await import("../storage-adapters/index.js");
    const { Readable, Writable } = await import("node:stream");
    const { pipeline } = await import("node:stream/promises");
    const bytes = readFileSync(engineBlob).subarray(0, quick ? 16 * MB : 50 * MB);
    const storeUrl = server.url("bench", "b");
    const drain = async (body: NodeJS.ReadableStream) => {
      let n = 0;
      await pipeline(
        body,
        new Writable({
          write(chunk: Buffer, _e, cb) {
            n += chunk.length;
            cb();
          },
        }),
      );
      return n;
    };
    const time = async (fn: () => Promise<unknown>): Promise<Timing> => {
      const start = performance.now();
      await fn();
      return { wall: (performance.now() - start) / 1000, cpu: 0, rssMB: 0, stdout: "", stderr: "", code: 0 };
    };
    const client = new S3Client({
      endpoint: server.endpoint,
      region: "us-east-1",
      forcePathStyle: true,
      requestChecksumCalculation: "WHEN_REQUIRED",
    });
    const pair = await alternate(RUNS, {
      a: () =>
        time(async () => {
          await client.send(new PutObjectCommand({ Bucket: "bench", Key: "plain", Body: bytes }));
          const got = await client.send(new GetObjectCommand({ Bucket: "bench", Key: "plain" }));
          if ((await drain(got.Body as NodeJS.ReadableStream)) !== bytes.length) throw new Error("short read");
        }),
      b: () =>
        time(async () => {
          const s3 = await openStore(storeUrl);
          await s3.put("ccbundle/v1/blobs/bench", Readable.from([bytes]), { size: bytes.length });
          if ((await drain(await s3.get("ccbundle/v1/blobs/bench"))) !== bytes.length) throw new Error("short read");
          await s3.close?.();
        }),
    });
    client.destroy();
    row(
      {
        what: `S3 store adapter put + get of ${fmt(bytes.length / MB, 0)} MB to s3rver vs plain PutObject + GetObject`,
        ccbundle: `${fmt(mbps(bytes.length, pair.b.wall), 0)} MB/s (${seconds(pair.b)})`,
        reference: `${fmt(mbps(bytes.length, pair.a.wall), 0)} MB/s (${seconds(pair.a)})`,
        ratio: `${fmt(pair.a.wall / pair.b.wall)}×`,
        target: "≈ 1 (no adapter overhead)",
      },
      undefined,
    );
  } finally {
    process.env = saved;
    await server.stop();
  }
}

// ---------------------------------------------------------------- start-up
{
  const best = async (args: string[]) => {
    let t: Timing | undefined;
    for (let i = 0; i < 5; i++) {
      const r = await ccb(args, env);
      if (!t || r.wall < t.wall) t = r;
    }
    return t!;
  };
  const nodeOnly = await (async () => {
    let t: Timing | undefined;
    for (let i = 0; i < 5; i++) {
      const r = await run([process.execPath, "-e", "0"]);
      if (!t || r.wall < t.wall) t = r;
    }
    return t!;
  })();
  const help = await best(["--help"]);
  const whoami = await best(["whoami"]);
  row(
    {
      what: "start-up: `ccbundle --help` / `ccbundle whoami` (best of 5)",
      ccbundle: `${fmt(help.wall * 1000, 0)} ms / ${fmt(whoami.wall * 1000, 0)} ms`,
      reference: `\`node -e 0\`: ${fmt(nodeOnly.wall * 1000, 0)} ms`,
      ratio: "",
      target: "fast (no AWS SDK, DHT, tar or zstd loaded)",
    },
    undefined,
  );
}

// ---------------------------------------------------------------- RESULTS.md
const total = (performance.now() - started) / 1000;
const cell = (text: string) => text.replace(/\|/g, "\\|");
const table = [
  "| what | ccbundle | reference | ratio | target | |",
  "| --- | --- | --- | --- | --- | --- |",
  ...rows.map((r) => `| ${[r.what, r.ccbundle, r.reference, r.ratio, r.target, r.verdict].map(cell).join(" | ")} |`),
].join("\n");
const report = `# Bench results

\`npm run bench\` on ${new Date().toISOString().slice(0, 10)}: ${os.availableParallelism()} cores (${os.cpus()[0]?.model ?? "unknown CPU"}), ${fmt(os.totalmem() / 2 ** 30, 0)} GiB, Node ${process.version}, load average ${loadAtStart} at the start and ${loadAverage()} at the end (other processes share these cores: compare ccbundle with the reference in the same row, and CPU seconds as well as wall time).
Corpus: ${corpus.sessions.length} seeded sessions, ${fmt(corpus.bytes / MB, 0)} MB of Claude Code JSONL and side files (bench/corpus.ts). Each comparison alternates ccbundle and the reference ${RUNS} times and keeps each side's fastest run; before each timed run, \`sync\` writes back what earlier runs left dirty (untimed), and what earlier runs left is set aside, deleted only at the end (bench/measure.ts Trash: deleting it made the next run's creates slow on this file system); wall times include process start-up. Shell side: Debian's \`tar\`, \`zstd -3\`, \`age\`.

${table}

${notes.map((n) => `- ${n}`).join("\n")}
Whole run: ${fmt(total, 0)} s.
`;
if (!quick) writeFileSync(path.join(repo, "bench", "RESULTS.md"), report);
trash.empty();
console.log(
  `\n${table}\n\n${quick ? "(quick run: RESULTS.md not written)" : "wrote bench/RESULTS.md"} in ${fmt(total, 0)} s`,
);
const failed = rows.filter((r) => r.verdict === "FAIL").length;
process.exitCode = failed > 0 ? 1 : 0;
