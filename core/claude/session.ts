import { createHash } from "node:crypto";
import {
  closeSync,
  type Dirent,
  fstatSync,
  lstatSync,
  openSync,
  readdirSync,
  readSync,
  type Stats,
  statSync,
} from "node:fs";
import { readdir, realpath, stat } from "node:fs/promises";
import path from "node:path";
import { CcbError, errnoCode, NotFoundError, UsageError } from "../errors.js";
import { type FileIdentity, fileIdentity, sameFile } from "../file-identity.js";
import { claudeLayout, isSessionId, projectFolderName } from "./paths.js";
import { scratch } from "./scratch.js";
import { derivedFromFile, sortedNames } from "./stable-cache.js";
import { scanTranscript } from "./transcript.js";

/**
 * Finding a session and everything that belongs to it in a Claude Code config
 * dir (DESIGN.md lists the artefacts). Nothing outside those artefacts is ever
 * collected: not credentials, not `sessions/`, `ide/`, `statsig/`, `backups/`,
 * and not other sessions.
 */

/** One file to put in a bundle: where it is here, where it goes in the bundle, and what it holds. */
export interface SessionFile {
  /** Absolute path on this machine; undefined for synthesized content (history lines). */
  source: string | undefined;
  /** Bundle path, `claude/…` mirroring the config dir, forward slashes. */
  path: string;
  size: number;
  sha256: string;
  /** Content held in memory instead of read from `source`. */
  content?: Buffer;
  /** The file when it was hashed (lets packing skip a second hash if it is untouched). */
  hashedAt?: FileIdentity | undefined;
  /** Its hashed bytes as zstd frames, when they were compressed as they were read (PackFile.compressed). */
  compressed?: Buffer[] | undefined;
}

export interface CollectedSession {
  id: string;
  /** The project folder name under `projects/`. */
  folder: string;
  cwd: string | undefined;
  title: string | undefined;
  gitBranch: string | undefined;
  claudeVersion: string | undefined;
  firstTimestamp: string | undefined;
  lastTimestamp: string | undefined;
  /** Modification time of the transcript (ms). */
  modified: number;
  files: SessionFile[];
}

export interface SessionRef {
  id: string;
  folder: string;
  transcript: string;
  modified: number;
  size: number;
}

/**
 * Sessions in one project folder, newest first. Synchronous listing and lstat
 * calls, as in collectSession: `backup --all` lists every folder, and an
 * awaited lstat per transcript was a thread-pool round trip each, one after another.
 */
export async function sessionsInFolder(claudeDir: string, folder: string): Promise<SessionRef[]> {
  const dir = claudeLayout(claudeDir).projectDir(folder);
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (err) {
    if (errnoCode(err) === "ENOENT") return [];
    throw err;
  }
  const refs: SessionRef[] = [];
  for (const name of names) {
    if (!name.endsWith(".jsonl")) continue;
    const id = name.slice(0, -".jsonl".length);
    if (!isSessionId(id)) continue;
    const transcript = path.join(dir, name);
    let info: Stats | undefined;
    try {
      info = lstatSync(transcript, { throwIfNoEntry: false });
    } catch {
      continue;
    }
    if (!info?.isFile()) continue;
    refs.push({ id, folder, transcript, modified: info.mtimeMs, size: info.size });
  }
  return refs.sort((a, b) => b.modified - a.modified);
}

/** Every session in the config dir, newest first. */
export async function allSessions(claudeDir: string): Promise<SessionRef[]> {
  let folders: string[];
  try {
    folders = readdirSync(claudeLayout(claudeDir).projects);
  } catch (err) {
    if (errnoCode(err) === "ENOENT") return [];
    throw err;
  }
  const all: SessionRef[] = [];
  for (const folder of folders) all.push(...(await sessionsInFolder(claudeDir, folder)));
  return all.sort((a, b) => b.modified - a.modified);
}

/** The folder name Claude Code uses for a project directory (resolving symlinks as it does). */
export async function folderForProject(projectDir: string): Promise<string> {
  let real: string;
  try {
    real = await realpath(projectDir);
  } catch {
    real = path.resolve(projectDir);
  }
  return projectFolderName(real);
}

/**
 * The session to push: `sessionId` (a full id or a unique prefix) anywhere in the
 * config dir, else the most recently written session of `projectDir`.
 */
export async function findSession(claudeDir: string, projectDir: string, sessionId?: string): Promise<SessionRef> {
  if (sessionId !== undefined) {
    // `--session $UNSET` must not quietly mean the newest session.
    if (sessionId.trim() === "") {
      throw new UsageError("--session needs a session id", {
        hint: "give the id (or 4+ of its first hex digits), or leave --session out for the project's newest",
      });
    }
    if (!/^[0-9a-fA-F-]{4,36}$/.test(sessionId)) {
      throw new UsageError(`not a session id: ${sessionId}`, {
        hint: `session ids look like 1b2c3d4e-…: give at least 4 of their hex digits (the .jsonl names in ${claudeLayout(claudeDir).projects}/<project>/)`,
      });
    }
    const matches = (await allSessions(claudeDir)).filter((ref) => ref.id.startsWith(sessionId.toLowerCase()));
    const ids = new Set(matches.map((ref) => ref.id));
    if (ids.size === 0) {
      throw new NotFoundError(`no session ${sessionId} in ${claudeDir}`, {
        hint: "check the id, or set CLAUDE_CONFIG_DIR to the config dir that holds it",
      });
    }
    if (ids.size > 1) {
      const some = [...ids].slice(0, 4);
      throw new UsageError(`session prefix ${sessionId} matches ${ids.size} sessions`, {
        hint: `give more characters: ${some.join(", ")}${ids.size > some.length ? ", …" : ""}`,
      });
    }
    if (matches.length === 1) return matches[0]!;
    // Filed under two projects (pulled into both): the one of --project / the current directory,
    // else the copy written to last.
    const here = await folderForProject(projectDir);
    return matches.find((ref) => ref.folder === here) ?? matches.sort((a, b) => b.modified - a.modified)[0]!;
  }
  const folder = await folderForProject(projectDir);
  const newest = (await sessionsInFolder(claudeDir, folder))[0];
  if (!newest) {
    throw new NotFoundError(`no Claude Code session for ${projectDir}`, {
      hint: `run claude in that directory first, pass --project <dir> or --session <id> (looked in ${claudeLayout(claudeDir).projectDir(folder)})`,
    });
  }
  return newest;
}

/** An empty transcript: a session just started, or an empty file left behind. */
export class EmptySessionError extends CcbError {
  constructor(id: string) {
    super(`session ${id} is empty`, 1, { hint: "wait until Claude Code has written to it" });
    this.name = "EmptySessionError";
  }
}

/** Collect a session's files, hashing each (whole lines only for JSONL being written). */
export async function collectSession(
  claudeDir: string,
  ref: SessionRef,
  /** Gets the transcript's hashed bytes as they are read (see scanTranscript). */
  onTranscriptLines?: (whole: Buffer) => void,
): Promise<CollectedSession> {
  const files: SessionFile[] = [];
  const scan = await scanTranscript(ref.transcript, onTranscriptLines);
  if (scan.size === 0) {
    // An empty file is a session with nothing in it yet; a first line still being written is one to wait for.
    if (statSync(ref.transcript).size === 0) throw new EmptySessionError(ref.id);
    throw new CcbError(`session ${ref.id} has no complete lines yet`, 1, {
      hint: "wait until Claude Code has written to it",
    });
  }
  files.push({
    source: ref.transcript,
    path: bundlePath(claudeDir, ref.transcript),
    size: scan.size,
    sha256: scan.sha256,
    hashedAt: scan.hashedAt,
  });
  const slugs = new Set(scan.slugs);

  const kept: KeptBytes = { bytes: 0 };
  const sessionDir = path.join(claudeLayout(claudeDir).projectDir(ref.folder), ref.id);
  for (const file of walkFiles(sessionDir)) {
    if (file.endsWith(".jsonl")) {
      // Subagent transcripts are appended to like the main one, and name plans too.
      const sub = await scanTranscript(file);
      for (const slug of sub.slugs) slugs.add(slug);
      files.push({
        source: file,
        path: bundlePath(claudeDir, file),
        size: sub.size,
        sha256: sub.sha256,
        hashedAt: sub.hashedAt,
      });
    } else {
      files.push(await hashedFile(claudeDir, file, kept));
    }
  }
  // file-history snapshots are written once; tasks, todos, plans and .meta.json are rewritten in place.
  for (const file of walkFiles(path.join(claudeDir, "file-history", ref.id))) {
    files.push(await hashedFile(claudeDir, file));
  }
  for (const file of walkFiles(path.join(claudeDir, "tasks", ref.id)))
    files.push(await hashedFile(claudeDir, file, kept));
  for (const plan of planFiles(claudeDir, slugs)) files.push(await hashedFile(claudeDir, plan, kept));
  const todosDir = path.join(claudeDir, "todos");
  for (const name of grouped(todoOwners, sortedNames(todosDir), todoOwner).get(ref.id) ?? []) {
    const file = path.join(todosDir, name);
    if (isRegularFile(file)) files.push(await hashedFile(claudeDir, file, kept));
  }
  const history = sessionHistoryLines(claudeDir, ref.id);
  if (history.length > 0) {
    files.push({
      source: undefined,
      path: "claude/history.jsonl",
      size: history.length,
      sha256: createHash("sha256").update(history).digest("hex"),
      content: history,
    });
  }
  return {
    id: ref.id,
    folder: ref.folder,
    cwd: scan.cwd,
    title: scan.title,
    gitBranch: scan.gitBranch,
    claudeVersion: scan.claudeVersion,
    firstTimestamp: scan.firstTimestamp,
    lastTimestamp: scan.lastTimestamp,
    modified: ref.modified,
    files,
  };
}

/**
 * The plans the session's lines name: `plans/<slug>.md`, and the plans of its
 * subagents, which Claude Code writes as `plans/<slug>-agent-<agentId>.md`.
 */
function planFiles(claudeDir: string, slugs: Set<string>): string[] {
  if (slugs.size === 0) return [];
  const dir = path.join(claudeDir, "plans");
  const bySlug = grouped(planOwners, sortedNames(dir), planOwner);
  const owned = new Set<string>();
  for (const slug of slugs) for (const name of bySlug.get(slug) ?? []) owned.add(name);
  return [...owned]
    .sort()
    .map((name) => path.join(dir, name))
    .filter(isRegularFile);
}

/** `<slug>.md` belongs to that slug; `<slug>-agent-<id>.md` to the slug too (a subagent's plan). */
function planOwner(name: string): string[] {
  if (!name.endsWith(".md")) return [];
  const stem = name.slice(0, -".md".length);
  const agent = stem.lastIndexOf("-agent-");
  return agent > 0 ? [stem, stem.slice(0, agent)] : [stem];
}

/** `<session id>-agent-<id>.json` belongs to that session. */
function todoOwner(name: string): string[] {
  const agent = name.indexOf("-agent-");
  return agent > 0 && name.endsWith(".json") ? [name.slice(0, agent)] : [];
}

/**
 * A folder listing's names by owner, built once per listing: sortedNames hands out the same array
 * while the folder is unchanged, and going through all of plans/ or todos/ for each session made
 * a backup of 4,500 sessions quadratic (~1 s per thread).
 */
function grouped(
  cache: WeakMap<string[], Map<string, string[]>>,
  names: string[],
  owners: (name: string) => string[],
): Map<string, string[]> {
  let byOwner = cache.get(names);
  if (!byOwner) {
    byOwner = new Map();
    for (const name of names) {
      for (const owner of owners(name)) {
        const list = byOwner.get(owner);
        if (list) list.push(name);
        else byOwner.set(owner, [name]);
      }
    }
    cache.set(names, byOwner);
  }
  return byOwner;
}
const planOwners = new WeakMap<string[], Map<string, string[]>>();
const todoOwners = new WeakMap<string[], Map<string, string[]>>();

/**
 * The lines of `history.jsonl` (the prompt history) that belong to this
 * session: those that hold `"sessionId":"<id>"` and end in `}`. The file is
 * indexed by session once per thread while it stays unchanged (stable-cache.ts).
 */
function sessionHistoryLines(claudeDir: string, sessionId: string): Buffer {
  const index = derivedFromFile("history-by-session", claudeLayout(claudeDir).history, historyBySession);
  const lines = index?.get(sessionId);
  return lines ? Buffer.from(lines.map((line) => `${line}\n`).join("")) : Buffer.alloc(0);
}

const SESSION_ID_KEY = '"sessionId":"';

/** Whole lines ending in `}`, under every session id they name (a line naming two is under both). */
function historyBySession(text: string): Map<string, string[]> {
  const index = new Map<string, string[]>();
  // Whole lines only: Claude Code may be appending a prompt right now.
  const whole = text.slice(0, text.lastIndexOf("\n") + 1);
  for (const line of whole.split("\n")) {
    if (!line.endsWith("}")) continue;
    const named = new Set<string>();
    for (let at = line.indexOf(SESSION_ID_KEY); at >= 0; ) {
      const start = at + SESSION_ID_KEY.length;
      const end = line.indexOf('"', start);
      if (end < 0) break;
      named.add(line.slice(start, end));
      at = line.indexOf(SESSION_ID_KEY, end);
    }
    for (const id of named) {
      const lines = index.get(id);
      if (lines) lines.push(line);
      else index.set(id, [line]);
    }
  }
  return index;
}

function bundlePath(claudeDir: string, file: string): string {
  return `claude/${path.relative(claudeDir, file).split(path.sep).join("/")}`;
}

/**
 * Small side files Claude Code rewrites in place (a task's status, a todo list, a plan) are kept as
 * read, so the bytes packed are the bytes hashed: packing reads files again after the whole
 * transcript, and one rewritten meanwhile failed every push of a big session it was working in.
 * At most KEEP_BUDGET bytes per session stay in memory.
 */
const KEEP_MAX = 64 << 10;
const KEEP_BUDGET = 4 << 20;
interface KeptBytes {
  bytes: number;
}

/** Hash a side file. Synchronous reads on purpose: see scanTranscript (small files, page cache, no thread-pool waits). */
async function hashedFile(claudeDir: string, file: string, kept?: KeptBytes): Promise<SessionFile> {
  const fd = openSync(file, "r");
  try {
    const before = fileIdentity(fstatSync(fd));
    const hash = createHash("sha256");
    let size = 0;
    const buffer = scratch(before.size);
    for (;;) {
      const bytesRead = readSync(fd, buffer, 0, buffer.length, size);
      if (bytesRead === 0) break;
      hash.update(buffer.subarray(0, bytesRead));
      size += bytesRead;
    }
    const hashedAt = sameFile(fileIdentity(fstatSync(fd)), before) && before.size === size ? before : undefined;
    const sha256 = hash.digest("hex");
    if (kept && hashedAt && size <= Math.min(KEEP_MAX, buffer.length) && kept.bytes + size <= KEEP_BUDGET) {
      kept.bytes += size;
      const content = Buffer.from(buffer.subarray(0, size));
      return { source: file, path: bundlePath(claudeDir, file), size, sha256, hashedAt, content };
    }
    return { source: file, path: bundlePath(claudeDir, file), size, sha256, hashedAt };
  } finally {
    closeSync(fd);
  }
}

/** Synchronous, like the reads (see hashedFile): one small lstat, no thread-pool round trip. */
function isRegularFile(file: string): boolean {
  try {
    return lstatSync(file, { throwIfNoEntry: false })?.isFile() ?? false;
  } catch {
    return false;
  }
}

/**
 * Regular files below `dir`, sorted; symlinks and special files are never followed or packed.
 * Synchronous: on a worker thread each awaited readdir left the thread idle for a round trip.
 */
function walkFiles(dir: string): string[] {
  const out: string[] = [];
  let entries: Dirent[];
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch (err) {
    if (errnoCode(err) === "ENOENT" || errnoCode(err) === "ENOTDIR") return out;
    throw err;
  }
  for (const entry of entries.sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...walkFiles(full));
    else if (entry.isFile()) out.push(full);
  }
  return out;
}

/**
 * A warning when the session just restored as `transcript` is also filed under
 * other project folders: Claude Code 2.1.329 resumes an id that sits in two
 * projects only when started in one of them, no longer from anywhere.
 */
export async function otherCopiesWarning(
  claudeDir: string,
  transcript: string,
  targetCwd: string,
  /** The project folders that may hold a copy (a restore run's index); default: all of them. */
  candidates?: string[],
): Promise<string[]> {
  const projects = claudeLayout(claudeDir).projects;
  const name = path.basename(transcript);
  const folder = path.basename(path.dirname(transcript));
  const others: string[] = [];
  for (const other of (candidates ?? (await readdir(projects).catch(() => [] as string[]))).sort()) {
    if (other !== folder && isRegularFile(path.join(projects, other, name))) others.push(`projects/${other}`);
  }
  if (others.length === 0) return [];
  return [
    `session ${name.slice(0, -".jsonl".length)} is also filed under ${others.join(", ")} here; Claude Code then resumes it only when started in ${targetCwd}`,
  ];
}

export async function exists(file: string): Promise<boolean> {
  return (await stat(file).catch(() => undefined)) !== undefined;
}
