import {
  appendFileSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import path from "node:path";
import { projectFolderName } from "../core/claude/paths.js";

/**
 * A seeded, realistic Claude Code config dir for the bench: the same on-disk
 * shapes as test/helpers/fixture.ts (user/assistant lines with tool_use and
 * tool_result, toolUseResult, file-history snapshots, subagents, tool-results,
 * file-history, plans, tasks, todos, prompt history), at hundreds of MB.
 *
 * The fixture builder writes a few KB per session with JSON.stringify of fresh
 * objects and random UUIDs; this generator writes ~1 MB/session, so it draws
 * code, tool output and prose from a seeded pool (real transcripts repeat the
 * same files and outputs many times, which is what makes them compress ~5x),
 * and mixes in pasted screenshots as base64 (incompressible). Same seed, same
 * bytes: runs compare like with like.
 */

export interface CorpusOptions {
  /** Folder that gets `home/<user>/…` (HOME, projects, `.claude`). */
  root: string;
  seed: number;
  sessions: number;
  /** Approximate bytes of all session files together. */
  totalBytes: number;
  projects?: number;
  user?: string;
}

export interface CorpusSession {
  id: string;
  cwd: string;
  transcript: string;
  bytes: number;
}

export interface Corpus {
  home: string;
  claudeDir: string;
  sessions: CorpusSession[];
  bytes: number;
}

const FORMAT = 6;

/** Generate the corpus, or reuse it when `root` already holds one made with the same options. */
export function ensureCorpus(options: CorpusOptions): Corpus {
  const stamp = path.join(options.root, "corpus.json");
  const wanted = JSON.stringify({ format: FORMAT, ...options });
  if (existsSync(stamp) && existsSync(path.join(options.root, "home"))) {
    const saved = JSON.parse(readFileSync(stamp, "utf8")) as { options: string; corpus: Corpus };
    if (saved.options === wanted && existsSync(saved.corpus.claudeDir)) return saved.corpus;
  }
  rmSync(options.root, { recursive: true, force: true });
  const corpus = generateCorpus(options);
  writeFileSync(stamp, JSON.stringify({ options: wanted, corpus }));
  return corpus;
}

export function generateCorpus(options: CorpusOptions): Corpus {
  const rng = mulberry32(options.seed);
  const user = options.user ?? "al";
  const home = path.join(options.root, "home", user);
  const claudeDir = path.join(home, ".claude");
  const pool = new ContentPool(rng);
  const projectCount = options.projects ?? Math.max(1, Math.round(options.sessions / 15));
  const projects: string[] = [];
  for (let i = 0; i < projectCount; i++) {
    const dir = path.join(home, "code", `${pick(rng, PROJECT_WORDS)}-${pick(rng, PROJECT_WORDS)}-${i}`);
    mkdirSync(dir, { recursive: true });
    projects.push(dir);
  }
  // Log-normal session sizes: many small sessions, a few big ones, like a real config dir.
  const weights = Array.from({ length: options.sessions }, () => Math.exp(gaussian(rng) * 1.1));
  const sum = weights.reduce((a, b) => a + b, 0);
  const sessions: CorpusSession[] = [];
  let bytes = 0;
  let clock = Date.UTC(2026, 9, 1, 9, 0, 0);
  for (let i = 0; i < options.sessions; i++) {
    clock += Math.floor(rng() * 6 * 3600_000);
    const written = writeSessionFiles({
      rng,
      pool,
      claudeDir,
      cwd: projects[Math.floor(rng() * projects.length)]!,
      bytes: Math.max(8 * 1024, Math.round((options.totalBytes * weights[i]!) / sum)),
      start: clock,
    });
    sessions.push(written);
    bytes += written.bytes;
  }
  return { home, claudeDir, sessions, bytes };
}

/** One session of about `bytes` bytes in all its files; returns where its transcript is. */
export function writeSessionFiles(options: {
  rng: () => number;
  pool: ContentPool;
  claudeDir: string;
  cwd: string;
  bytes: number;
  start: number;
  id?: string;
}): CorpusSession {
  const { rng, pool, claudeDir, cwd } = options;
  const id = options.id ?? uuid(rng);
  const folder = projectFolderName(cwd);
  const projectDir = path.join(claudeDir, "projects", folder);
  mkdirSync(projectDir, { recursive: true });
  const slug = `${pick(rng, SLUG_WORDS)}-${pick(rng, SLUG_WORDS)}-${pick(rng, SLUG_WORDS)}`;
  let clock = options.start;
  const ts = () => {
    clock += 500 + Math.floor(rng() * 20_000);
    return new Date(clock).toISOString();
  };
  let written = 0;
  const files: string[] = [];
  const put = (rel: string, content: string) => {
    const full = path.join(claudeDir, rel);
    mkdirSync(path.dirname(full), { recursive: true });
    writeFileSync(full, content);
    written += Buffer.byteLength(content);
    files.push(full);
  };

  // Side files: ~12% of the session in subagent transcripts, a few tool results and file-history checkpoints.
  const withSubagent = rng() < 0.6;
  const subBytes = withSubagent ? Math.floor(options.bytes * 0.12) : 0;
  if (withSubagent) {
    const agentId = hex(rng, 8);
    const sub = new TranscriptWriter(rng, pool, { id, cwd, slug, agentId, ts });
    put(`projects/${folder}/${id}/subagents/agent-${agentId}.jsonl`, sub.text(subBytes));
    put(
      `projects/${folder}/${id}/subagents/agent-${agentId}.meta.json`,
      JSON.stringify({ agentType: pick(rng, ["Explore", "general-purpose", "Plan"]), description: pool.prose(40) }),
    );
  }
  const toolResults = rng() < 0.4 ? 1 + Math.floor(rng() * 3) : 0;
  for (let i = 0; i < toolResults; i++) {
    put(`projects/${folder}/${id}/tool-results/toolu_${hex(rng, 24)}.txt`, pool.output(cwd, 4000 + rng() * 30_000));
  }
  const checkpoints = 1 + Math.floor(rng() * 6);
  for (let i = 0; i < checkpoints; i++)
    put(`file-history/${id}/${hex(rng, 16)}@v${1 + i}`, pool.code(600 + rng() * 6000));
  put(
    `plans/${slug}.md`,
    `# Plan\n\n${pool.prose(300)}\n\n1. Read ${cwd}/src/${pick(rng, FILE_WORDS)}.ts\n2. ${pool.prose(80)}\n`,
  );
  if (rng() < 0.5)
    put(`tasks/${id}/1.json`, JSON.stringify({ id: "1", subject: pool.prose(30), status: "in_progress" }));
  if (rng() < 0.3) {
    put(
      `todos/${id}-agent-${id}.json`,
      JSON.stringify([{ content: pool.prose(40), status: "in_progress", activeForm: pool.prose(20) }]),
    );
  }

  // The main transcript gets the rest, written in pieces so a 1 GB session never sits in memory.
  const transcript = path.join(projectDir, `${id}.jsonl`);
  const writer = new TranscriptWriter(rng, pool, { id, cwd, slug, ts });
  const fd = openSync(transcript, "w");
  let remaining = Math.max(2048, options.bytes - written);
  let first = true;
  while (remaining > 0) {
    const piece = writer.text(Math.min(remaining, 8 << 20), first);
    first = false;
    const buffer = Buffer.from(piece);
    writeSync(fd, buffer);
    written += buffer.length;
    remaining -= buffer.length;
  }
  writeSync(fd, `${JSON.stringify({ type: "summary", summary: pool.prose(50), leafUuid: uuid(rng) })}\n`);
  const historyLine = JSON.stringify({
    display: writer.firstPrompt,
    pastedContents: {},
    timestamp: clock,
    project: cwd,
    sessionId: id,
  });
  appendFileSync(path.join(claudeDir, "history.jsonl"), `${historyLine}\n`);
  return { id, cwd, transcript, bytes: written };
}

/** Writes transcript lines in the shapes Claude Code 2.1.x uses. */
class TranscriptWriter {
  firstPrompt = "";
  private parent: string | null = null;
  private turn = 0;

  constructor(
    private readonly rng: () => number,
    private readonly pool: ContentPool,
    private readonly session: { id: string; cwd: string; slug: string; agentId?: string; ts: () => string },
  ) {}

  /** About `bytes` of whole lines. */
  text(bytes: number, first = true): string {
    const lines: string[] = [];
    let size = 0;
    if (first) {
      this.firstPrompt = this.pool.prose(60 + this.rng() * 200);
      const line = this.line({ type: "user", message: { role: "user", content: this.firstPrompt } });
      lines.push(line);
      size += line.length;
    }
    while (size < bytes) {
      for (const line of this.exchange()) {
        lines.push(line);
        size += line.length + 1;
      }
    }
    return `${lines.join("\n")}\n`;
  }

  private base() {
    const { id, cwd, agentId } = this.session;
    return {
      parentUuid: this.parent,
      isSidechain: agentId !== undefined,
      userType: "external",
      cwd,
      sessionId: id,
      version: "2.1.197",
      gitBranch: "main",
      ...(agentId ? { agentId } : {}),
      slug: this.session.slug,
    };
  }

  private line(fields: Record<string, unknown>): string {
    const uuidValue = uuid(this.rng);
    const text = JSON.stringify({ ...this.base(), ...fields, uuid: uuidValue, timestamp: this.session.ts() });
    this.parent = uuidValue;
    return text;
  }

  /** One tool round trip: the assistant asks for a tool, the user line carries its result. */
  private exchange(): string[] {
    const { rng, pool } = this;
    const { cwd } = this.session;
    const turn = this.turn++;
    const toolId = `toolu_${hex(rng, 24)}`;
    const kind = rng();
    const out: string[] = [];
    const assistant = (content: unknown[], stopReason = "tool_use") =>
      this.line({
        type: "assistant",
        message: {
          id: `msg_${hex(rng, 24)}`,
          type: "message",
          role: "assistant",
          model: "claude-opus-4-5",
          content,
          stop_reason: stopReason,
          usage: { input_tokens: 1000 + Math.floor(rng() * 90_000), output_tokens: 20 + Math.floor(rng() * 900) },
        },
        requestId: `req_${hex(rng, 20)}`,
      });
    const result = (content: unknown, toolUseResult: unknown) =>
      this.line({
        type: "user",
        message: { role: "user", content: [{ tool_use_id: toolId, type: "tool_result", content }] },
        toolUseResult,
      });
    if (kind < 0.45) {
      const file = `${cwd}/src/${pick(rng, FILE_WORDS)}/${pick(rng, FILE_WORDS)}.ts`;
      const code = pool.code(800 + rng() * 9000);
      out.push(
        assistant([
          { type: "text", text: pool.prose(40 + rng() * 200) },
          { type: "tool_use", id: toolId, name: "Read", input: { file_path: file } },
        ]),
      );
      out.push(
        result(numbered(code), {
          type: "text",
          file: { filePath: file, content: code, numLines: code.split("\n").length, startLine: 1 },
        }),
      );
    } else if (kind < 0.75) {
      const command = `cd ${cwd} && ${pick(rng, COMMANDS)}`;
      const stdout = pool.output(cwd, 300 + rng() * 5000);
      out.push(
        assistant([{ type: "tool_use", id: toolId, name: "Bash", input: { command, description: pool.prose(30) } }]),
      );
      out.push(result(stdout, { stdout, stderr: "", interrupted: false, isImage: false }));
    } else if (kind < 0.98) {
      const file = `${cwd}/src/${pick(rng, FILE_WORDS)}.ts`;
      const oldString = pool.code(100 + rng() * 600);
      const newString = pool.code(100 + rng() * 800);
      out.push(
        assistant([
          { type: "text", text: pool.prose(30 + rng() * 300) },
          {
            type: "tool_use",
            id: toolId,
            name: "Edit",
            input: { file_path: file, old_string: oldString, new_string: newString },
          },
        ]),
      );
      out.push(
        result(`The file ${file} has been updated.`, { filePath: file, oldString, newString, userModified: false }),
      );
      out.push(
        JSON.stringify({
          type: "file-history-snapshot",
          messageId: uuid(rng),
          snapshot: {
            messageId: uuid(rng),
            trackedFileBackups: {
              [file.slice(cwd.length + 1)]: {
                backupFileName: `${hex(rng, 16)}@v${turn}`,
                version: turn,
                backupTime: this.session.ts(),
              },
            },
            timestamp: this.session.ts(),
          },
          isSnapshotUpdate: true,
        }),
      );
    } else {
      // A pasted screenshot: base64 PNG data, the one incompressible part of real transcripts.
      const prompt = pool.prose(40 + rng() * 120);
      out.push(
        this.line({
          type: "user",
          message: {
            role: "user",
            content: [
              { type: "text", text: prompt },
              {
                type: "image",
                source: { type: "base64", media_type: "image/png", data: pool.base64(3000 + rng() * 25_000) },
              },
            ],
          },
        }),
      );
      out.push(assistant([{ type: "text", text: pool.prose(100 + rng() * 600) }], "end_turn"));
    }
    return out;
  }
}

/**
 * Seeded snippets that sessions draw from. Real sessions re-read the same files
 * and re-run the same commands; a finite pool reproduces that redundancy.
 */
export class ContentPool {
  private readonly codeLines: string[] = [];
  private readonly words: string[];
  private readonly noise: Buffer;

  constructor(private readonly rng: () => number) {
    this.words = Array.from({ length: 3000 }, () => word(rng));
    for (let i = 0; i < 12000; i++) this.codeLines.push(this.codeLine());
    this.noise = Buffer.alloc(1 << 20);
    for (let i = 0; i < this.noise.length; i += 4) this.noise.writeUInt32LE((rng() * 2 ** 32) >>> 0, i);
  }

  prose(chars: number): string {
    const out: string[] = [];
    let n = 0;
    while (n < chars) {
      const w = this.words[Math.floor(this.rng() ** 2 * this.words.length)]!;
      out.push(w);
      n += w.length + 1;
    }
    return `${out.join(" ")}.`;
  }

  code(chars: number): string {
    // Contiguous runs of pool lines: files read twice look alike, as they do in real sessions.
    const out: string[] = [];
    let n = 0;
    let at = Math.floor(this.rng() * this.codeLines.length);
    while (n < chars) {
      if (this.rng() < 0.15) at = Math.floor(this.rng() * this.codeLines.length);
      const line = this.codeLines[at++ % this.codeLines.length]!;
      out.push(line);
      n += line.length + 1;
    }
    return `${out.join("\n")}\n`;
  }

  output(cwd: string, chars: number): string {
    const out: string[] = [];
    let n = 0;
    while (n < chars) {
      const r = this.rng();
      const line =
        r < 0.4
          ? `${cwd}/src/${pick(this.rng, FILE_WORDS)}.ts:${1 + Math.floor(this.rng() * 400)}:${this.codeLines[Math.floor(this.rng() * this.codeLines.length)]!.trim()}`
          : r < 0.7
            ? `${this.rng() < 0.9 ? "  ✓" : "  ✗"} ${this.prose(30 + this.rng() * 50)} (${Math.floor(this.rng() * 90)} ms)`
            : this.codeLines[Math.floor(this.rng() * this.codeLines.length)]!;
      out.push(line);
      n += line.length + 1;
    }
    return out.join("\n");
  }

  base64(bytes: number): string {
    const start = Math.floor(this.rng() * (this.noise.length - bytes));
    return this.noise.subarray(start, start + Math.floor(bytes)).toString("base64");
  }

  private codeLine(): string {
    const rng = this.rng;
    const id = () => this.words[Math.floor(rng() * 400)]!;
    const indent = "  ".repeat(Math.floor(rng() * 4));
    const r = rng();
    if (r < 0.2) return `${indent}const ${id()}${cap(id())} = await ${id()}.${id()}(${id()}, "${id()}");`;
    if (r < 0.35) return `${indent}if (${id()} === undefined || ${id()}.length > ${Math.floor(rng() * 1000)}) {`;
    if (r < 0.45) return `${indent}return { ${id()}: ${id()}, ${id()}: ${id()}.${id()} };`;
    if (r < 0.55) return `${indent}}`;
    if (r < 0.65) return `${indent}// ${this.prose(20 + rng() * 60)}`;
    if (r < 0.75)
      return `${indent}export function ${id()}${cap(id())}(${id()}: ${cap(id())}, ${id()}: number): ${cap(id())} {`;
    if (r < 0.85) return `${indent}import { ${cap(id())}, ${id()} } from "./${id()}.js";`;
    return `${indent}${id()}.${id()}(${JSON.stringify(this.prose(10 + rng() * 40))});`;
  }
}

function numbered(code: string): string {
  return code
    .split("\n")
    .map((line, i) => `${String(i + 1).padStart(6)}\t${line}`)
    .join("\n");
}

export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function gaussian(rng: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - rng())) * Math.cos(2 * Math.PI * rng());
}

function pick<T>(rng: () => number, items: readonly T[]): T {
  return items[Math.floor(rng() * items.length)]!;
}

function hex(rng: () => number, n: number): string {
  let out = "";
  while (out.length < n)
    out += Math.floor(rng() * 2 ** 32)
      .toString(16)
      .padStart(8, "0");
  return out.slice(0, n);
}

export function uuid(rng: () => number): string {
  const h = hex(rng, 32);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

function word(rng: () => number): string {
  const syllables = ["ka", "lo", "mi", "ne", "ra", "to", "su", "vi", "de", "po", "an", "el", "or", "is", "um", "ex"];
  let w = "";
  const n = 1 + Math.floor(rng() * 3);
  for (let i = 0; i < n; i++) w += syllables[Math.floor(rng() * syllables.length)];
  return w;
}

function cap(w: string): string {
  return w.charAt(0).toUpperCase() + w.slice(1);
}

const PROJECT_WORDS = ["api", "web", "core", "billing", "search", "infra", "mobile", "auth", "data", "tools"];
const SLUG_WORDS = ["gentle", "purring", "quiet", "brave", "lunar", "amber", "swift", "mossy", "tidal", "rusty"];
const FILE_WORDS = ["index", "server", "client", "store", "config", "routes", "models", "utils", "worker", "queue"];
const COMMANDS = ["npm test", "npx tsc --noEmit", "git status", "git diff --stat", "ls -la src", "rg -n TODO src"];
