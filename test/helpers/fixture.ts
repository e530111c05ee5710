import { createHash, randomUUID } from "node:crypto";
import { mkdirSync, realpathSync, writeFileSync } from "node:fs";
import path from "node:path";
import { projectFolderName } from "../../core/claude/paths.js";

/**
 * Writes realistic Claude Code sessions (the on-disk shapes DESIGN.md lists,
 * as Claude Code 2.1.x writes them) into a config dir, for tests and the bench.
 *
 * A session has every artefact kind by default: the transcript with tool
 * calls, persisted tool output (`toolUseResult.persistedOutputPath` and the
 * `<persisted-output>` text that names it), file-history snapshots whose
 * `trackedFileBackups` keys are relative to cwd (and absolute outside it),
 * `worktree-state` and `relocated` lines, a subagent with its `.meta.json`,
 * its own plan (`plans/<slug>-agent-<agentId>.md`) and todos, the session's
 * plan, tasks, legacy todos and its `history.jsonl` line. Paths in text come
 * in the shapes tools print them: after a newline, after a colour code, in a
 * `file://` link.
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
  /** `worktree-state` and `relocated` lines (Claude Code entered and left a worktree). */
  worktree?: boolean;
  title?: string;
  /** Extra payload bytes per assistant turn (tool output), to make big sessions. */
  padding?: number;
  version?: string;
  /** Start time for timestamps. */
  start?: Date;
  /**
   * Write the lines as another machine would have: these paths (e.g. Windows
   * ones) instead of this machine's. The files still go under `claudeDir`, in
   * the project folder Claude Code derives from `source.cwd`.
   */
  source?: { cwd: string; home: string; claudeDir: string };
}

export interface FixtureSession {
  id: string;
  folder: string;
  /** The cwd as written in the lines. */
  cwd: string;
  transcript: string;
  /** Every file that belongs to the session, relative to claudeDir (forward slashes). */
  files: string[];
  slug: string;
  /** The subagent's id, when there is one. */
  agentId: string | undefined;
  /** The first prompt, as the history line holds it. */
  prompt: string;
}

export function writeSession(options: FixtureOptions): FixtureSession {
  const id = options.sessionId ?? randomUUID();
  const source = options.source ?? {
    cwd: realpathSync(options.projectDir),
    home: options.home,
    claudeDir: options.claudeDir,
  };
  const { cwd } = source;
  // Paths as the source machine joins them.
  const sep = /^[A-Za-z]:\\/.test(cwd) ? "\\" : "/";
  const join = (...parts: string[]) => parts.join(sep);
  const folder = projectFolderName(cwd);
  const claude = options.claudeDir;
  const projectFolder = path.join(claude, "projects", folder);
  const slug = options.slug ?? `gentle-purring-${id.slice(0, 6)}`;
  const version = options.version ?? "2.1.197";
  const turns = options.turns ?? 4;
  const agentId = options.subagent === false ? undefined : `a${hash(`${id}agent`).slice(0, 16)}`;
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
  const assistant = (key: string, content: unknown[], extra: Record<string, unknown> = {}) =>
    push({
      ...base(parent),
      slug,
      message: {
        id: `msg_${hash(`${id}${key}`).slice(0, 24)}`,
        type: "message",
        role: "assistant",
        model: "claude-opus-4-5",
        content,
        stop_reason: "tool_use",
        usage: { input_tokens: 1200, output_tokens: 80 },
      },
      type: "assistant",
      uuid: randomUUID(),
      timestamp: ts(),
      ...extra,
    });
  const toolResult = (toolUseId: string, text: string, result: unknown) =>
    push({
      ...base(parent),
      slug,
      type: "user",
      message: { role: "user", content: [{ tool_use_id: toolUseId, type: "tool_result", content: text }] },
      uuid: randomUUID(),
      timestamp: ts(),
      toolUseResult: result,
    });

  const firstPrompt = options.title ?? "Fix the failing test in src/app.ts and explain the cause";
  push({
    ...base(parent),
    type: "user",
    message: { role: "user", content: firstPrompt },
    uuid: randomUUID(),
    timestamp: ts(),
  });
  const toolResultsDir = join(source.claudeDir, "projects", folder, id, "tool-results");
  const persistedName = `toolu_${hash(`${id}b0`).slice(0, 24)}.txt`;
  const backups: { name: string; content: string }[] = [];
  for (let turn = 0; turn < turns; turn++) {
    const file = join(cwd, "src", `module_${turn}.ts`);
    const readId = `toolu_${hash(`${id}r${turn}`).slice(0, 24)}`;
    assistant(`m${turn}`, [
      { type: "text", text: `Let me look at ${file} first.` },
      { type: "tool_use", id: readId, name: "Read", input: { file_path: file } },
    ]);
    const content = `export function f${turn}(x: number) {\n  return x * ${turn};\n}\n// ${"lorem ipsum ".repeat(Math.max(1, (options.padding ?? 0) / 12))}\n`;
    toolResult(readId, `     1\t${content}`, {
      type: "text",
      file: { filePath: file, content, numLines: 4, startLine: 1, totalLines: 4 },
    });
    const bashId = `toolu_${hash(`${id}b${turn}`).slice(0, 24)}`;
    assistant(`n${turn}`, [
      {
        type: "tool_use",
        id: bashId,
        name: "Bash",
        input: { command: `cd ${cwd} && npm test -- src/module_${turn}.ts`, description: "Run the tests" },
      },
    ]);
    const testFile = join(cwd, "src", `module_${turn}.test.ts`);
    // Test runners print paths at the start of lines and in colour.
    const stdout = `PASS ${testFile}\n${join(cwd, "src", "index.ts")}:3:1 ok\n\u001b[32m${file}\u001b[0m 100%\n`;
    const bashResult: Record<string, unknown> = { stdout, stderr: "", interrupted: false };
    let text = stdout;
    if (options.toolResults !== false && turn === 0) {
      const persisted = join(toolResultsDir, persistedName);
      bashResult.persistedOutputPath = persisted;
      bashResult.persistedOutputSize = 4096;
      text = `<persisted-output>\nOutput too large (4.0KB). Full output saved to: ${persisted}\n\nPreview (first 2KB):\n${stdout}...\n</persisted-output>`;
    }
    toolResult(bashId, text, bashResult);
    if (options.fileHistory !== false) {
      const backupName = `${hash(file).slice(0, 16)}@v1`;
      backups.push({ name: backupName, content: `export function f${turn}(x: number) {\n  return x;\n}\n` });
      const tracked: Record<string, unknown> = {
        [`src/module_${turn}.ts`]: { backupFileName: backupName, version: 1, backupTime: ts() },
      };
      if (turn === 0) {
        // A file outside the project is tracked by its absolute path.
        const outside = join(source.home, ".config", "app", "settings.json");
        const outsideName = `${hash(outside).slice(0, 16)}@v1`;
        backups.push({ name: outsideName, content: '{"theme":"dark"}\n' });
        tracked[outside] = { backupFileName: outsideName, version: 1, backupTime: ts() };
      }
      push({
        type: "file-history-snapshot",
        messageId: parent,
        snapshot: { messageId: parent, trackedFileBackups: tracked, timestamp: ts() },
        isSnapshotUpdate: false,
      });
    }
    if (options.worktree !== false && turn === 0) {
      // EnterWorktree, then ExitWorktree: Claude Code records both and stamps where the session went.
      const worktreePath = join(cwd, ".claude", "worktrees", "fix-tests");
      push({
        type: "worktree-state",
        worktreeSession: {
          originalCwd: cwd,
          worktreePath,
          worktreeName: "fix-tests",
          worktreeBranch: "worktree-fix-tests",
          originalBranch: "main",
          originalHeadCommit: hash("head").slice(0, 40),
          sessionId: id,
          hookBased: false,
        },
        sessionId: id,
      });
      assistant("link", [{ type: "text", text: `Done: see [module_0.ts](${fileUrl(file)}).` }]);
      push({ type: "worktree-state", worktreeSession: null, sessionId: id });
      push({ type: "relocated", sessionId: id, relocatedCwd: cwd });
    }
  }
  push({ type: "summary", summary: options.title ?? "Fix failing module tests", leafUuid: parent });

  const transcript = path.join(projectFolder, `${id}.jsonl`);
  writeFileSync(transcript, `${lines.map((l) => JSON.stringify(l)).join("\n")}\n`);
  files.push(`projects/${folder}/${id}.jsonl`);

  const put = (rel: string, content: string) => {
    const full = path.join(claude, ...rel.split("/"));
    mkdirSync(path.dirname(full), { recursive: true });
    writeFileSync(full, content);
    files.push(rel);
  };
  if (options.toolResults !== false) {
    put(
      `projects/${folder}/${id}/tool-results/${persistedName}`,
      `PASS ${join(cwd, "src", "module_0.test.ts")}\n${"ok\n".repeat(50)}`,
    );
  }
  if (agentId) {
    const agentPlan = join(source.claudeDir, "plans", `${slug}-agent-${agentId}.md`);
    const sub = [
      { type: "user", message: { role: "user", content: `Search ${cwd} for callers of f0` } },
      {
        type: "assistant",
        message: {
          role: "assistant",
          content: [
            { type: "text", text: `Found callers in ${join(cwd, "src", "index.ts")}; plan in ${agentPlan}` },
            { type: "tool_use", id: "toolu_sub", name: "Grep", input: { pattern: "f0\\(", path: cwd } },
          ],
        },
      },
    ].map((line) => ({
      parentUuid: null,
      isSidechain: true,
      userType: "external",
      cwd,
      sessionId: id,
      version,
      gitBranch: "main",
      agentId,
      slug,
      uuid: randomUUID(),
      timestamp: ts(),
      ...line,
    }));
    put(
      `projects/${folder}/${id}/subagents/agent-${agentId}.jsonl`,
      `${sub.map((l) => JSON.stringify(l)).join("\n")}\n`,
    );
    put(
      `projects/${folder}/${id}/subagents/agent-${agentId}.meta.json`,
      JSON.stringify({ agentType: "Plan", description: "find callers" }),
    );
    put(`plans/${slug}-agent-${agentId}.md`, `# Callers of f0\n\n- ${join(cwd, "src", "index.ts")}\n`);
    if (options.todos !== false) {
      put(
        `todos/${id}-agent-${agentId}.json`,
        JSON.stringify([{ content: "List callers", status: "completed", activeForm: "Listing callers" }]),
      );
    }
  }
  if (options.fileHistory !== false) {
    for (const backup of backups) put(`file-history/${id}/${backup.name}`, backup.content);
  }
  put(`plans/${slug}.md`, `# Plan\n\n1. Read ${join(cwd, "src", "module_0.ts")}\n2. Fix it\n`);
  if (options.tasks !== false) {
    put(
      `tasks/${id}/1.json`,
      JSON.stringify({ id: "1", subject: "Fix tests", description: `Fix ${join(cwd, "src")}`, status: "in_progress" }),
    );
  }
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
  return { id, folder, cwd, transcript, files, slug, agentId, prompt: firstPrompt };
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

/** A `file://` link as editors and Claude's markdown write it. */
function fileUrl(file: string): string {
  const forward = file.replace(/\\/g, "/");
  return `file://${forward.startsWith("/") ? "" : "/"}${encodeURI(forward)}`;
}

function hash(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}
