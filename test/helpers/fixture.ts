import { createHash, randomUUID } from "node:crypto";
import { mkdirSync, realpathSync, writeFileSync } from "node:fs";
import path from "node:path";
import { projectFolderName } from "../../core/claude/paths.js";

/**
 * Writes realistic Claude Code sessions (the on-disk shapes DESIGN.md lists,
 * as Claude Code 2.1.x writes them) into a config dir, for tests and the bench.
 */

export interface FixtureOptions {
  claudeDir: string;
  /** The project directory (must exist: its realpath names the project folder). */
  projectDir: string;
  /** The user's home on this "machine" (paths under it appear in lines). */
  home: string;
  sessionId?: string;
  turns?: number;
  slug?: string;
  subagent?: boolean;
  toolResults?: boolean;
  fileHistory?: boolean;
  tasks?: boolean;
  todos?: boolean;
  history?: boolean;
  title?: string;
  /** Extra payload bytes per assistant turn (tool output), to make big sessions. */
  padding?: number;
  version?: string;
  /** Start time for timestamps. */
  start?: Date;
}

export interface FixtureSession {
  id: string;
  folder: string;
  cwd: string;
  transcript: string;
  /** Every file that belongs to the session, relative to claudeDir. */
  files: string[];
  slug: string;
}

export function writeSession(options: FixtureOptions): FixtureSession {
  const id = options.sessionId ?? randomUUID();
  const cwd = realpathSync(options.projectDir);
  const folder = projectFolderName(cwd);
  const claude = options.claudeDir;
  const projectFolder = path.join(claude, "projects", folder);
  const slug = options.slug ?? `gentle-purring-${id.slice(0, 6)}`;
  const version = options.version ?? "2.1.197";
  const turns = options.turns ?? 4;
  const files: string[] = [];
  let clock = (options.start ?? new Date("2026-11-20T10:00:00.000Z")).getTime();
  const ts = () => {
    clock += 1500;
    return new Date(clock).toISOString();
  };
  mkdirSync(projectFolder, { recursive: true });

  const base = (parentUuid: string | null) => ({
    parentUuid,
    isSidechain: false,
    userType: "external",
    cwd,
    sessionId: id,
    version,
    gitBranch: "main",
  });
  const lines: Record<string, unknown>[] = [];
  let parent: string | null = null;
  const push = (line: Record<string, unknown>) => {
    lines.push(line);
    if (typeof line.uuid === "string") parent = line.uuid;
  };

  const firstPrompt = options.title ?? "Fix the failing test in src/app.ts and explain the cause";
  push({
    ...base(parent),
    type: "user",
    message: { role: "user", content: firstPrompt },
    uuid: randomUUID(),
    timestamp: ts(),
  });
  const toolResultsDir = path.join(projectFolder, id, "tool-results");
  for (let turn = 0; turn < turns; turn++) {
    const file = path.join(cwd, "src", `module_${turn}.ts`);
    const readId = `toolu_${hash(`${id}r${turn}`).slice(0, 24)}`;
    push({
      ...base(parent),
      slug,
      message: {
        id: `msg_${hash(`${id}m${turn}`).slice(0, 24)}`,
        type: "message",
        role: "assistant",
        model: "claude-opus-4-5",
        content: [
          { type: "text", text: `Let me look at ${file} first.` },
          { type: "tool_use", id: readId, name: "Read", input: { file_path: file } },
        ],
        stop_reason: "tool_use",
        usage: { input_tokens: 1200 + turn, output_tokens: 80 },
      },
      requestId: `req_${hash(`${id}q${turn}`).slice(0, 20)}`,
      type: "assistant",
      uuid: randomUUID(),
      timestamp: ts(),
    });
    const content = `export function f${turn}(x: number) {\n  return x * ${turn};\n}\n// ${"lorem ipsum ".repeat(Math.max(1, (options.padding ?? 0) / 12))}\n`;
    push({
      ...base(parent),
      slug,
      type: "user",
      message: { role: "user", content: [{ tool_use_id: readId, type: "tool_result", content: `     1\t${content}` }] },
      uuid: randomUUID(),
      timestamp: ts(),
      toolUseResult: { type: "text", file: { filePath: file, content, numLines: 4, startLine: 1, totalLines: 4 } },
    });
    const bashId = `toolu_${hash(`${id}b${turn}`).slice(0, 24)}`;
    push({
      ...base(parent),
      slug,
      message: {
        id: `msg_${hash(`${id}n${turn}`).slice(0, 24)}`,
        type: "message",
        role: "assistant",
        model: "claude-opus-4-5",
        content: [
          {
            type: "tool_use",
            id: bashId,
            name: "Bash",
            input: { command: `cd ${cwd} && npm test -- src/module_${turn}.ts`, description: "Run the tests" },
          },
        ],
        stop_reason: "tool_use",
        usage: { input_tokens: 1300 + turn, output_tokens: 40 },
      },
      type: "assistant",
      uuid: randomUUID(),
      timestamp: ts(),
    });
    const persisted = path.join(toolResultsDir, `${bashId}.txt`);
    const bashResult: Record<string, unknown> = {
      stdout: `PASS ${cwd}/src/module_${turn}.test.ts\n`,
      stderr: "",
      interrupted: false,
    };
    if (options.toolResults !== false && turn === 0) bashResult.persistedOutputPath = persisted;
    push({
      ...base(parent),
      slug,
      type: "user",
      message: {
        role: "user",
        content: [{ tool_use_id: bashId, type: "tool_result", content: `PASS ${cwd}/src/module_${turn}.test.ts` }],
      },
      uuid: randomUUID(),
      timestamp: ts(),
      toolUseResult: bashResult,
    });
    if (options.fileHistory !== false) {
      push({
        type: "file-history-snapshot",
        messageId: randomUUID(),
        snapshot: {
          messageId: randomUUID(),
          trackedFileBackups: {
            [`src/module_${turn}.ts`]: {
              backupFileName: `${hash(file).slice(0, 16)}@v1`,
              version: 1,
              backupTime: ts(),
            },
          },
          timestamp: ts(),
        },
        isSnapshotUpdate: false,
      });
    }
  }
  push({ type: "summary", summary: options.title ?? "Fix failing module tests", leafUuid: parent });

  const transcript = path.join(projectFolder, `${id}.jsonl`);
  writeFileSync(transcript, `${lines.map((l) => JSON.stringify(l)).join("\n")}\n`);
  files.push(path.relative(claude, transcript));

  const put = (rel: string, content: string) => {
    const full = path.join(claude, rel);
    mkdirSync(path.dirname(full), { recursive: true });
    writeFileSync(full, content);
    files.push(rel);
  };
  if (options.toolResults !== false) {
    const bashId = `toolu_${hash(`${id}b0`).slice(0, 24)}`;
    put(
      path.relative(claude, path.join(toolResultsDir, `${bashId}.txt`)),
      `PASS ${cwd}/src/module_0.test.ts\n${"ok\n".repeat(50)}`,
    );
  }
  if (options.subagent !== false) {
    const agentId = hash(`${id}agent`).slice(0, 8);
    const sub = [
      {
        parentUuid: null,
        isSidechain: true,
        userType: "external",
        cwd,
        sessionId: id,
        version,
        gitBranch: "main",
        agentId,
        slug,
        type: "user",
        message: { role: "user", content: `Search ${cwd} for callers of f0` },
        uuid: randomUUID(),
        timestamp: ts(),
      },
      {
        parentUuid: null,
        isSidechain: true,
        userType: "external",
        cwd,
        sessionId: id,
        version,
        gitBranch: "main",
        agentId,
        slug,
        type: "assistant",
        message: { role: "assistant", content: [{ type: "text", text: `Found callers in ${cwd}/src/index.ts` }] },
        uuid: randomUUID(),
        timestamp: ts(),
      },
    ];
    put(
      `projects/${folder}/${id}/subagents/agent-${agentId}.jsonl`,
      `${sub.map((l) => JSON.stringify(l)).join("\n")}\n`,
    );
    put(
      `projects/${folder}/${id}/subagents/agent-${agentId}.meta.json`,
      JSON.stringify({ agentType: "Explore", description: "find callers" }),
    );
  }
  if (options.fileHistory !== false) {
    for (let turn = 0; turn < turns; turn++) {
      const file = path.join(cwd, "src", `module_${turn}.ts`);
      put(
        `file-history/${id}/${hash(file).slice(0, 16)}@v1`,
        `export function f${turn}(x: number) {\n  return x;\n}\n`,
      );
    }
  }
  put(`plans/${slug}.md`, `# Plan\n\n1. Read ${cwd}/src/module_0.ts\n2. Fix it\n`);
  if (options.tasks !== false)
    put(`tasks/${id}/1.json`, JSON.stringify({ id: "1", subject: "Fix tests", status: "in_progress" }));
  if (options.todos !== false) {
    put(
      `todos/${id}-agent-${id}.json`,
      JSON.stringify([{ content: "Fix tests", status: "in_progress", activeForm: "Fixing tests" }]),
    );
  }
  if (options.history !== false) {
    const line = JSON.stringify({
      display: firstPrompt,
      pastedContents: {},
      timestamp: clock,
      project: cwd,
      sessionId: id,
    });
    const historyFile = path.join(claude, "history.jsonl");
    writeFileSync(historyFile, `${line}\n`, { flag: "a" });
  }
  return { id, folder, cwd, transcript, files, slug };
}

/** Things a session must never carry: credentials and other per-machine state. */
export function writeDecoys(claudeDir: string): string[] {
  const decoys = [
    ".credentials.json",
    "sessions/x.json",
    "ide/1234.lock",
    "statsig/cache",
    "backups/old.json",
    "settings.json",
  ];
  for (const rel of decoys) {
    const full = path.join(claudeDir, rel);
    mkdirSync(path.dirname(full), { recursive: true });
    writeFileSync(full, `secret-${rel}`);
  }
  return decoys;
}

function hash(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}
