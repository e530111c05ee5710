import { spawn } from "node:child_process";
import {
  appendFileSync,
  chmodSync,
  createWriteStream,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bundleStream } from "../core/bundle/blob.js";
import { prepareBundle } from "../core/bundle/build.js";
import { signableBytes } from "../core/bundle/manifest.js";
import { projectFolderName } from "../core/claude/paths.js";
import { findSession } from "../core/claude/session.js";
import { parseRecipient, UserKey } from "../core/crypto/keys.js";
import { type FixtureSession, writeSession } from "./helpers/fixture.js";
import { CLI, type Machine, twoMachines } from "./helpers/machine.js";
import { expectedRewrite, parseLines } from "./helpers/rewrite-oracle.js";

/**
 * Session fidelity across machines (issue 5), end to end through the built
 * CLI: a session with every artefact kind moves to a machine with another
 * user, home and project path, and everything Claude Code reads comes out in
 * the right place with the right paths.
 */

// biome-ignore lint/suspicious/noExplicitAny: parsed JSONL lines, probed field by field
type Line = Record<string, any>;

let alice: Machine;
let bob: Machine;

/** Every file under `dir`, relative, forward slashes, with its content. */
function tree(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (rel: string) => {
    const full = path.join(dir, rel);
    if (!existsSync(full)) return;
    for (const entry of readdirSync(full, { withFileTypes: true })) {
      const child = rel ? `${rel}/${entry.name}` : entry.name;
      if (entry.isDirectory()) walk(child);
      else out.set(child, readFileSync(path.join(dir, child), "latin1"));
    }
  };
  walk("");
  return out;
}

function lines(file: string): Line[] {
  return parseLines(readFileSync(file, "utf8")) as Line[];
}

function historyLinesOf(claudeDir: string, sessionId: string): Line[] {
  const file = path.join(claudeDir, "history.jsonl");
  return existsSync(file) ? lines(file).filter((line) => line.sessionId === sessionId) : [];
}

/** Where a fixture file lands on the target: the project folder renamed. */
function landed(claudeDir: string, s: FixtureSession, target: string, rel: string): string {
  return path.join(claudeDir, rel.replace(`projects/${s.folder}/`, `projects/${projectFolderName(target)}/`));
}

beforeAll(async () => {
  ({ alice, bob } = await twoMachines("alice", "bob"));
  // Bob already has prompt history of his own: it must survive every merge.
  mkdirSync(bob.claudeDir, { recursive: true });
  writeFileSync(
    path.join(bob.claudeDir, "history.jsonl"),
    `${JSON.stringify({ display: "bob's own prompt", project: bob.home, sessionId: "00000000-0000-4000-8000-000000000000" })}\n`,
  );
});

afterAll(() => {
  alice?.cleanup();
  bob?.cleanup();
});

describe.each([
  { name: "spaces, dots, underscores and unicode", from: "work/My Proj.v2_ü 😀", to: "src/другой проект/app_1.0" },
  {
    name: "paths over 200 characters",
    from: `deep/${"a-very-long-directory-name-".repeat(9)}end`,
    to: `x/${"another long directory name ".repeat(8)}tail`,
  },
])("a session restored under another user, home and project path: $name", ({ from, to }) => {
  let session: FixtureSession;
  let aliceProject: string;
  let bobProject: string;
  let bobFolder: string;

  beforeAll(async () => {
    aliceProject = alice.project(from);
    bobProject = bob.project(to);
    bobFolder = projectFolderName(bobProject);
    session = writeSession({ claudeDir: alice.claudeDir, projectDir: aliceProject, home: alice.home, turns: 3 });
    await alice.runOk(["push", "--session", session.id], { cwd: aliceProject });
    const doc = JSON.parse((await bob.runOk(["pull", "--project", bobProject, "--no-resume", "--json"])).stdout);
    expect(doc.sessions[0].outcome).toBe("new");
    expect(doc.sessions[0].project).toBe(bobProject);
  });

  it("every artefact lands in place, byte for byte except the rewritten paths", () => {
    if (from.length > 200) expect(bobFolder).toMatch(/-[0-9a-z]+$/); // Claude Code's hashed long-folder form
    const pairs: [string, string][] = [
      [`${alice.claudeDir}/projects/${session.folder}`, `${bob.claudeDir}/projects/${bobFolder}`],
      [alice.claudeDir, bob.claudeDir],
      [aliceProject, bobProject],
      [alice.home, bob.home],
    ];
    const kinds = new Set<string>();
    for (const rel of session.files) {
      const original = readFileSync(path.join(alice.claudeDir, rel), "utf8");
      const restored = readFileSync(landed(bob.claudeDir, session, bobProject, rel), "utf8");
      kinds.add(rel.split("/")[0] === "projects" ? (rel.split("/")[3] ?? "transcript") : rel.split("/")[0]!);
      if (rel.startsWith("file-history/")) {
        expect(restored, rel).toBe(original); // checkpoints put back exactly what the file was
        continue;
      }
      expect(restored, rel).not.toContain(alice.root);
      if (rel.endsWith(".jsonl")) parseLines(restored);
      const form = rel.endsWith(".md") || rel.endsWith(".txt") ? "text" : "json";
      expect(restored, rel).toBe(expectedRewrite(original, pairs, form));
    }
    expect([...kinds].sort()).toEqual(
      ["file-history", "plans", "subagents", "tasks", "todos", "tool-results", "transcript"].sort(),
    );
  });

  it("what Claude Code reads back points at this machine", () => {
    const dir = path.join(bob.claudeDir, "projects", bobFolder);
    const main = lines(path.join(dir, `${session.id}.jsonl`));
    const withCwd = main.filter((line) => "cwd" in line);
    expect(withCwd.length).toBeGreaterThan(5);
    for (const line of withCwd) expect(line.cwd).toBe(bobProject);

    // Persisted tool output: the path in the line and in the text is the restored file.
    const persisted = main.find((line) => line.toolUseResult?.persistedOutputPath)!;
    const output = persisted.toolUseResult.persistedOutputPath as string;
    expect(output.startsWith(path.join(dir, session.id, "tool-results"))).toBe(true);
    expect(readFileSync(output, "utf8")).toContain(`PASS ${bobProject}/src/module_0.test.ts`);
    expect(persisted.message.content[0].content).toContain(`Full output saved to: ${output}`);

    // /rewind: every checkpoint names a backup that is here; keys inside the project stay relative.
    const snapshots = main.filter((line) => line.type === "file-history-snapshot");
    expect(snapshots.length).toBe(3);
    const keys: string[] = [];
    for (const line of snapshots) {
      for (const [key, backup] of Object.entries<Line>(line.snapshot.trackedFileBackups)) {
        keys.push(key);
        expect(existsSync(path.join(bob.claudeDir, "file-history", session.id, backup.backupFileName))).toBe(true);
      }
    }
    expect(keys).toContain("src/module_0.ts");
    expect(keys).toContain(`${bob.home}/.config/app/settings.json`);

    const [entered, left] = main.filter((line) => line.type === "worktree-state");
    expect(entered!.worktreeSession.originalCwd).toBe(bobProject);
    expect(entered!.worktreeSession.worktreePath).toBe(`${bobProject}/.claude/worktrees/fix-tests`);
    expect(left!.worktreeSession).toBeNull();
    expect(main.find((line) => line.type === "relocated")!.relocatedCwd).toBe(bobProject);
    const link = main.find((line) => JSON.stringify(line).includes("file://"))!;
    expect(link.message.content[0].text).toContain(`(file://${encodeURI(bobProject)}/src/module_0.ts)`);

    // The subagent, its own plan and todos.
    const agent = lines(path.join(dir, session.id, "subagents", `agent-${session.agentId}.jsonl`));
    const agentPlan = path.join(bob.claudeDir, "plans", `${session.slug}-agent-${session.agentId}.md`);
    for (const line of agent) expect(line.cwd).toBe(bobProject);
    expect(agent[1]!.message.content[0].text).toContain(agentPlan);
    expect(readFileSync(agentPlan, "utf8")).toContain(`${bobProject}/src/index.ts`);
    expect(readFileSync(path.join(bob.claudeDir, "plans", `${session.slug}.md`), "utf8")).toContain(
      `Read ${bobProject}/src/module_0.ts`,
    );
    expect(existsSync(path.join(bob.claudeDir, "todos", `${session.id}-agent-${session.agentId}.json`))).toBe(true);
    const task = JSON.parse(readFileSync(path.join(bob.claudeDir, "tasks", session.id, "1.json"), "utf8"));
    expect(task.description).toBe(`Fix ${bobProject}/src`);
  });

  it("the session's history line is merged once, next to the target's own", async () => {
    const before = readFileSync(path.join(bob.claudeDir, "history.jsonl"), "utf8");
    expect(before).toContain("bob's own prompt");
    const mine = historyLinesOf(bob.claudeDir, session.id);
    expect(mine).toHaveLength(1);
    expect(mine[0]!.project).toBe(bobProject);
    expect(mine[0]!.display).toBe(session.prompt);

    const config = tree(bob.claudeDir);
    const again = JSON.parse((await bob.runOk(["pull", "--project", bobProject, "--no-resume", "--json"])).stdout);
    expect(again.sessions[0].outcome).toBe("identical");
    expect(tree(bob.claudeDir)).toEqual(config);
    expect(historyLinesOf(bob.claudeDir, session.id)).toHaveLength(1);
  });

  it("--no-rewrite keeps every file byte-identical", async () => {
    const raw = path.join(bob.root, `claude-raw-${from.length}`);
    await bob.runOk(["pull", "--project", bobProject, "--no-resume", "--no-rewrite"], {
      env: { CLAUDE_CONFIG_DIR: raw },
    });
    for (const rel of session.files) {
      const original = readFileSync(path.join(alice.claudeDir, rel));
      expect(readFileSync(landed(raw, session, bobProject, rel)).equals(original), rel).toBe(true);
    }
    const history = readFileSync(path.join(raw, "history.jsonl"), "utf8");
    const aliceHistory = readFileSync(path.join(alice.claudeDir, "history.jsonl"), "utf8");
    expect(aliceHistory.split("\n")).toContain(history.trimEnd());
  });
});

describe("a diverged local copy", () => {
  it("is kept untouched; the incoming session becomes a fork sharing no file with it", async () => {
    const aliceProject = alice.project("fork-src");
    const bobProject = bob.project("fork-dst");
    const folder = projectFolderName(bobProject);
    const s = writeSession({ claudeDir: alice.claudeDir, projectDir: aliceProject, home: alice.home, turns: 2 });
    await alice.runOk(["push", "--session", s.id], { cwd: aliceProject });
    await bob.runOk(["pull", "--project", bobProject, "--no-resume"]);
    // Bob went on working differently: his transcript and his plan diverge.
    const localTranscript = path.join(bob.claudeDir, "projects", folder, `${s.id}.jsonl`);
    const restoredLines = readFileSync(localTranscript, "utf8").split("\n");
    writeFileSync(
      localTranscript,
      `${restoredLines.slice(0, 3).join("\n")}\n${JSON.stringify({ type: "user", sessionId: s.id, message: { role: "user", content: "bob's turn" } })}\n`,
    );
    writeFileSync(path.join(bob.claudeDir, "plans", `${s.slug}.md`), "# Bob's plan\n");
    const before = tree(bob.claudeDir);

    const result = await bob.runOk(["pull", "--project", bobProject, "--no-resume"]);
    const forkId = /incoming fork: ([0-9a-f-]{36})/.exec(result.stdout)?.[1];
    expect(forkId, result.stdout).toBeDefined();
    expect(result.stdout).toContain(`local session: ${s.id}`);
    const after = tree(bob.claudeDir);
    for (const [rel, content] of before) {
      if (rel === "history.jsonl") continue; // appended to, checked below
      expect(after.get(rel), rel).toBe(content);
    }

    const fork = [...after.keys()].filter((rel) => !before.has(rel));
    const forkSlug = `${s.slug}-fork-${forkId!.slice(0, 8)}`;
    expect(fork.sort()).toEqual(
      s.files
        .map((rel) => rel.replace(`projects/${s.folder}/`, `projects/${folder}/`))
        .map((rel) => rel.split(s.id).join(forkId!).replace(`plans/${s.slug}`, `plans/${forkSlug}`))
        .sort(),
    );
    for (const rel of fork) {
      const text = after.get(rel)!;
      expect(text, rel).not.toContain(s.id);
      if (!rel.endsWith(".jsonl")) continue;
      for (const line of parseLines(Buffer.from(text, "latin1").toString("utf8")) as Line[]) {
        if ("sessionId" in line) expect(line.sessionId).toBe(forkId);
        if ("slug" in line) expect(line.slug).toBe(forkSlug);
      }
    }
    const persisted = lines(path.join(bob.claudeDir, "projects", folder, `${forkId}.jsonl`)).find(
      (line) => line.toolUseResult?.persistedOutputPath,
    )!;
    expect(existsSync(persisted.toolUseResult.persistedOutputPath)).toBe(true);
    expect(historyLinesOf(bob.claudeDir, forkId!)).toHaveLength(1);
    expect(historyLinesOf(bob.claudeDir, s.id)).toHaveLength(1);
  });
});

describe("a transcript Claude Code is still appending to", () => {
  it("is packed as whole lines up to the size seen at the start, and the bundle verifies", async () => {
    const project = alice.project("live");
    const s = writeSession({ claudeDir: alice.claudeDir, projectDir: project, home: alice.home, turns: 200 });
    const startSize = statSync(s.transcript).size;
    // Claude Code writes a line in pieces: the file often ends in half a line.
    let n = 0;
    const writer = setInterval(() => {
      const line = JSON.stringify({ type: "user", sessionId: s.id, cwd: project, n: n++, pad: "x".repeat(3000) });
      appendFileSync(s.transcript, line.slice(0, 1000));
      setImmediate(() => appendFileSync(s.transcript, `${line.slice(1000)}\n`));
    }, 2);
    let pushed: Line;
    try {
      pushed = JSON.parse((await alice.runOk(["push", "--session", s.id, "--json"], { cwd: project })).stdout);
    } finally {
      clearInterval(writer);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(pushed.sessionId).toBe(s.id);
    expect(n).toBeGreaterThan(3);
    const target = bob.project("live");
    const raw = path.join(bob.root, "claude-live");
    await bob.runOk(["pull", "--project", target, "--no-resume", "--no-rewrite"], { env: { CLAUDE_CONFIG_DIR: raw } });
    const restored = readFileSync(path.join(raw, "projects", projectFolderName(target), `${s.id}.jsonl`));
    const final = readFileSync(s.transcript);
    expect(restored.length).toBeGreaterThanOrEqual(startSize);
    expect(restored.length).toBeLessThan(final.length);
    expect(restored[restored.length - 1]).toBe(0x0a);
    expect(final.subarray(0, restored.length).equals(restored)).toBe(true);
    parseLines(restored.toString("utf8"));
  });
});

describe("a session from a Windows machine", () => {
  it("lands on POSIX paths, separators included", async () => {
    const signer = UserKey.generate();
    const winClaude = path.join(alice.root, "win-claude");
    const source = {
      cwd: "C:\\Users\\alice\\My Proj",
      home: "C:\\Users\\alice",
      claudeDir: "C:\\Users\\alice\\.claude",
    };
    const s = writeSession({
      claudeDir: winClaude,
      projectDir: alice.home,
      home: alice.home,
      turns: 2,
      source,
      history: false,
    });
    expect(s.folder).toBe("C--Users-alice-My-Proj");
    // Build the bundle as ccbundle on Windows would: source paths are Windows paths.
    const ref = await findSession(winClaude, alice.home, s.id);
    const prepared = await prepareBundle({ claudeDir: winClaude, ref, key: signer, env: { HOME: source.home } });
    prepared.manifest.source = { ...prepared.manifest.source, claudeDir: source.claudeDir, platform: "win32" };
    delete prepared.manifest.signature;
    prepared.manifest.signature = Buffer.from(signer.sign(signableBytes(prepared.manifest))).toString("base64");
    const file = path.join(alice.root, "windows.ccb");
    const me = (await bob.runOk(["whoami"])).stdout.trim();
    await pipeline(
      bundleStream({
        manifestJson: Buffer.from(JSON.stringify(prepared.manifest)),
        files: prepared.files,
        recipients: [parseRecipient(me)],
        compression: { codec: "zstd", level: 3 },
      }),
      createWriteStream(file),
    );

    const target = bob.project("from-windows/app");
    const folder = projectFolderName(target);
    await bob.runOk(["import", file, "--from", signer.z32, "--project", target, "--no-resume"]);
    const dir = path.join(bob.claudeDir, "projects", folder);
    const text = readFileSync(path.join(dir, `${s.id}.jsonl`), "utf8");
    expect(text).not.toContain("alice");
    const main = parseLines(text) as Line[];
    for (const line of main.filter((l) => "cwd" in l)) expect(line.cwd).toBe(target);
    const toolUses = main.flatMap((l) => (Array.isArray(l.message?.content) ? l.message.content : []));
    expect(toolUses.find((c: Line) => c.name === "Read").input.file_path).toBe(`${target}/src/module_0.ts`);
    expect(toolUses.find((c: Line) => c.name === "Bash").input.command).toBe(
      `cd ${target} && npm test -- src/module_0.ts`,
    );
    const bash = main.find((l) => l.toolUseResult?.persistedOutputPath)!.toolUseResult;
    expect(bash.stdout).toBe(
      `PASS ${target}/src/module_0.test.ts\n${target}/src/index.ts:3:1 ok\n\u001b[32m${target}/src/module_0.ts\u001b[0m 100%\n`,
    );
    expect(bash.persistedOutputPath).toBe(
      path.join(dir, s.id, "tool-results", path.basename(bash.persistedOutputPath)),
    );
    expect(existsSync(bash.persistedOutputPath)).toBe(true);
    const tracked = main.find((l) => l.type === "file-history-snapshot")!.snapshot.trackedFileBackups;
    expect(Object.keys(tracked).sort()).toEqual([`${bob.home}/.config/app/settings.json`, "src/module_0.ts"].sort());
    expect(text).toContain(`(file://${encodeURI(target)}/src/module_0.ts)`);
    const plan = readFileSync(path.join(bob.claudeDir, "plans", `${s.slug}.md`), "utf8");
    expect(plan).toContain(`Read ${target}/src/module_0.ts`);
    const agent = readFileSync(path.join(dir, s.id, "subagents", `agent-${s.agentId}.jsonl`), "utf8");
    expect(agent).toContain(path.join(bob.claudeDir, "plans", `${s.slug}-agent-${s.agentId}.md`));
    expect(agent).not.toContain("alice");
  });
});

describe("resuming", () => {
  let bin: string;
  let record: string;

  beforeAll(() => {
    bin = path.join(bob.root, "fake-bin");
    mkdirSync(bin, { recursive: true });
    record = path.join(bob.root, "claude-record.txt");
    // A stand-in for claude that says where it ran, takes Ctrl-C the way claude does
    // (interrupts, keeps running), and exits 7 once told to.
    writeFileSync(
      path.join(bin, "claude"),
      `#!/bin/sh
trap 'echo INT >> "${record}"' INT
echo "$(pwd -P) $*" > "${record}"
while [ ! -e "${record}.go" ]; do sleep 0.05; done
echo done >> "${record}"
exit 7
`,
    );
    chmodSync(path.join(bin, "claude"), 0o755);
  });

  it("runs in the real path of the project, where every Claude Code version looks", async () => {
    const aliceProject = alice.project("resume-src");
    const s = writeSession({ claudeDir: alice.claudeDir, projectDir: aliceProject, home: alice.home, turns: 1 });
    await alice.runOk(["push", "--session", s.id], { cwd: aliceProject });
    const real = bob.project("resume-real");
    const link = path.join(bob.home, "resume-link");
    symlinkSync(real, link);
    writeFileSync(`${record}.go`, "");
    const result = await bob.run(["pull", "--project", link, "--resume"], {
      env: { PATH: `${bin}:${process.env.PATH}` },
    });
    expect(result.code).toBe(7); // claude's exit code is ours
    expect(readFileSync(record, "utf8").split("\n")[0]).toBe(`${real} --resume ${s.id}`);
    expect(existsSync(path.join(bob.claudeDir, "projects", projectFolderName(real), `${s.id}.jsonl`))).toBe(true);
  });

  it("warns when the same session is filed under a second project, and refuses a --project that is not there", async () => {
    const first = bob.project("resume-real");
    const second = bob.project("resume-second");
    const doc = JSON.parse((await bob.runOk(["pull", "--project", second, "--no-resume", "--json"])).stdout);
    expect(doc.sessions[0].warnings).toContainEqual(
      `session ${doc.sessions[0].sessionId} is also filed under projects/${projectFolderName(first)} here; Claude Code then resumes it only when started in ${second}`,
    );
    const before = tree(bob.claudeDir);
    const missing = await bob.run(["pull", "--project", path.join(bob.home, "no-such-dir"), "--no-resume"]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/^ccbundle: .*--project .*no-such-dir is not a directory here\nhint: create it/);
    expect(tree(bob.claudeDir)).toEqual(before);
  });

  it("hands the terminal over: Ctrl-C goes to claude, and ccbundle waits for it", async () => {
    const { rmSync } = await import("node:fs");
    rmSync(`${record}.go`, { force: true });
    rmSync(record, { force: true });
    const project = bob.project("resume-real");
    // Our own process group, like a shell job, so a Ctrl-C can reach ccbundle and claude at once.
    const child = spawn(process.execPath, [CLI, "pull", "--project", project, "--resume"], {
      cwd: project,
      env: { ...bob.env, PATH: `${bin}:${process.env.PATH}` },
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
    });
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child.on("exit", (code, signal) => resolve({ code, signal })),
    );
    for (let i = 0; i < 400 && !existsSync(record); i++) await new Promise((r) => setTimeout(r, 25));
    expect(existsSync(record)).toBe(true);
    process.kill(-child.pid!, "SIGINT");
    await new Promise((r) => setTimeout(r, 300));
    expect(child.exitCode).toBeNull(); // still waiting for claude
    writeFileSync(`${record}.go`, "");
    expect(await exited).toEqual({ code: 7, signal: null });
    expect(readFileSync(record, "utf8").split("\n").slice(1, 3)).toEqual(["INT", "done"]);
  });
});
