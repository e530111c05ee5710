import { createHash } from "node:crypto";
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { type FileIdentity, fileIdentity, sameFile } from "../file-identity.js";
import { scratch } from "./scratch.js";

/**
 * Reading a transcript that Claude Code may still be appending to: we fix the
 * size at the start, then keep only whole lines up to it, so a line being
 * written is never torn. One pass both hashes those bytes and pulls out what
 * the manifest wants to know (cwd, title, plan slugs, git branch).
 *
 * Speed: transcripts are most of a config dir's bytes, and this pass runs for
 * every session a push or backup touches. Decoding each line to a string and
 * running regexes over it measured ~300 MB/s on the bench corpus; here lines
 * stay Buffers, keys are found with Buffer#indexOf (native memmem), and only
 * the few bytes of a matched value are decoded. JSON.parse runs only on the
 * lines that can hold the cwd or first prompt (at the start) and on title lines.
 */

export interface TranscriptScan {
  /** Bytes of whole lines, from the start of the file. */
  size: number;
  sha256: string;
  cwd: string | undefined;
  title: string | undefined;
  slugs: Set<string>;
  gitBranch: string | undefined;
  claudeVersion: string | undefined;
  firstTimestamp: string | undefined;
  lastTimestamp: string | undefined;
  /** The file as stat saw it while it was read; undefined if it was written to meanwhile. */
  hashedAt: FileIdentity | undefined;
}

const TITLE_MAX = 100;
/** Lines looked at in search of the first real prompt before we give up on it (subagents have none). */
const PROMPT_SEARCH_LINES = 50;
const NEWLINE = 0x0a;

/**
 * `summary` and `custom-title` lines are short (a title and an id), and Claude
 * Code writes `type` first; a line longer than this is looked at only up to
 * here, which spares a full search of every big tool-output line for them.
 */
const TITLE_LINE_HEAD = 1024;

function isTitleLine(line: Buffer): boolean {
  const head = line.length <= TITLE_LINE_HEAD ? line : line.subarray(0, 128);
  return TITLE_KEYS.some((key) => head.indexOf(key) >= 0);
}

/** Subagent lines say so among their first keys; they never hold the session's first prompt. */
const SIDECHAIN_KEY = Buffer.from('"isSidechain":true');

function isSidechainLine(line: Buffer): boolean {
  return line.subarray(0, 512).indexOf(SIDECHAIN_KEY) >= 0;
}

/** A top-level key Claude Code writes on lines, and what its value must look like. */
interface Field {
  key: Buffer;
  valid: RegExp;
  encoding: BufferEncoding;
}
const field = (name: string, valid: RegExp, encoding: BufferEncoding = "latin1"): Field => ({
  key: Buffer.from(`"${name}":"`),
  valid,
  encoding,
});
const SLUG = field("slug", /^[\w.-]{1,200}$/);
const TIMESTAMP = field("timestamp", /^[0-9TZ:.+-]{10,40}$/);
const BRANCH = field("gitBranch", /^[^"\\]{1,200}$/, "utf8");
const VERSION = field("version", /^[0-9][\w.+-]{0,40}$/);
const CWD_KEY = Buffer.from('"cwd":');
const USER_KEY = Buffer.from('"type":"user"');
const TITLE_KEYS = [Buffer.from('"type":"summary"'), Buffer.from('"type":"custom-title"')];

/** The first valid value of `f` in `line` (values never contain quotes). */
function findValue(line: Buffer, f: Field): string | undefined {
  let at = line.indexOf(f.key);
  while (at >= 0) {
    const start = at + f.key.length;
    const end = line.indexOf(0x22, start);
    if (end < 0) return undefined;
    const value = line.toString(f.encoding, start, Math.min(end, start + 800));
    if (end - start <= 800 && f.valid.test(value)) return value;
    at = line.indexOf(f.key, end);
  }
  return undefined;
}

/**
 * Reads with synchronous calls, as packing does (core/bundle/pack.ts): a
 * config dir is thousands of files in the page cache, and a thread-pool round
 * trip per open/stat/read/close made collecting 300 sessions take seconds.
 */
/**
 * `onLines` gets the whole lines hashed, in file order (views of a reused buffer: use them
 * before returning); push compresses them as they go by (see collectSession).
 */
export async function scanTranscript(file: string, onLines?: (whole: Buffer) => void): Promise<TranscriptScan> {
  const fd = openSync(file, "r");
  try {
    const before = fileIdentity(fstatSync(fd));
    const limit = before.size;
    const scan: TranscriptScan = {
      size: 0,
      sha256: "",
      cwd: undefined,
      title: undefined,
      slugs: new Set(),
      gitBranch: undefined,
      claudeVersion: undefined,
      firstTimestamp: undefined,
      lastTimestamp: undefined,
      hashedAt: undefined,
    };
    const hash = createHash("sha256");
    const titles: { custom?: string; summary?: string } = {};
    const prompt = { text: undefined as string | undefined, tries: 0 };
    // Bytes of a line not yet ended by a newline, kept until it is (joined once).
    let pending: Buffer[] = [];
    let position = 0;
    /** Whole lines, in file order: hash them and look at them. */
    const take = (whole: Buffer) => {
      hash.update(whole);
      onLines?.(whole);
      scan.size += whole.length;
      scanLines(whole, scan, prompt, titles);
      scanLast(whole, scan);
    };
    // The thread's read buffer, reused: only the tail of an unfinished line is copied out of it.
    const buffer = scratch(limit);
    while (position < limit) {
      const bytesRead = readSync(fd, buffer, 0, Math.min(buffer.length, limit - position), position);
      if (bytesRead === 0) break;
      position += bytesRead;
      const read = buffer.subarray(0, bytesRead);
      let from = 0;
      if (pending.length > 0) {
        // Finish the line carried over from the last read: join just that line, not the whole chunk.
        const newline = read.indexOf(NEWLINE);
        if (newline < 0) {
          pending.push(Buffer.from(read));
          continue;
        }
        take(Buffer.concat([...pending, read.subarray(0, newline + 1)]));
        pending = [];
        from = newline + 1;
      }
      const lastNewline = read.lastIndexOf(NEWLINE);
      if (lastNewline >= from) take(read.subarray(from, lastNewline + 1));
      const tail = Math.max(from, lastNewline + 1);
      if (tail < read.length) pending.push(Buffer.from(read.subarray(tail)));
    }
    scan.sha256 = hash.digest("hex");
    const after = fileIdentity(fstatSync(fd));
    if (sameFile(after, before)) scan.hashedAt = before;
    const title = titles.custom ?? titles.summary ?? prompt.text;
    scan.title = title === undefined ? undefined : oneLine(title);
    return scan;
  } finally {
    closeSync(fd);
  }
}

/** The first `bytes` of `file` (fewer if it is shorter), or undefined when it cannot be read. */
export function readHead(file: string, bytes: number): Buffer | undefined {
  try {
    const fd = openSync(file, "r");
    try {
      const buffer = Buffer.allocUnsafe(bytes);
      return buffer.subarray(0, readSync(fd, buffer, 0, bytes, 0));
    } finally {
      closeSync(fd);
    }
  } catch {
    return undefined;
  }
}

/** How much of a transcript leadingCwd looks at. */
const LEADING_BYTES = 64 * 1024;

/**
 * The cwd scanTranscript will find (the first whole line with a `"cwd":` key that parses with a
 * string cwd), if that line is within the first LEADING_BYTES: a guess read before the scan, so
 * push can start git early; it checks the guess against the scan.
 */
export function leadingCwd(transcript: string): string | undefined {
  const head = readHead(transcript, LEADING_BYTES);
  if (!head) return undefined;
  for (let start = 0; ; ) {
    const end = head.indexOf(NEWLINE, start);
    if (end < 0) return undefined;
    const line = head.subarray(start, end);
    start = end + 1;
    if (line.indexOf(CWD_KEY) < 0) continue;
    const cwd = parseLine(line)?.cwd;
    if (typeof cwd === "string") return cwd;
  }
}

/** Forward over every line: plan slugs, the first timestamp, cwd, first prompt and title lines. */
function scanLines(
  whole: Buffer,
  scan: TranscriptScan,
  prompt: { text: string | undefined; tries: number },
  titles: { custom?: string; summary?: string },
): void {
  for (let start = 0; start < whole.length; ) {
    const end = whole.indexOf(NEWLINE, start);
    const line = whole.subarray(start, end);
    start = end + 1;
    const slug = findValue(line, SLUG);
    if (slug) scan.slugs.add(slug);
    if (scan.firstTimestamp === undefined) scan.firstTimestamp = findValue(line, TIMESTAMP);
    if (isTitleLine(line)) {
      const record = parseLine(line);
      if (record?.type === "custom-title" && typeof record.customTitle === "string") titles.custom = record.customTitle;
      if (record?.type === "summary" && typeof record.summary === "string") titles.summary = record.summary;
    }
    const wantCwd = scan.cwd === undefined && line.indexOf(CWD_KEY) >= 0;
    let wantPrompt = false;
    if (prompt.text === undefined && prompt.tries < PROMPT_SEARCH_LINES) {
      // Every line looked at counts: a subagent transcript has no prompt of its own to find.
      prompt.tries++;
      wantPrompt = !isSidechainLine(line) && line.indexOf(USER_KEY) >= 0;
    }
    if (!wantCwd && !wantPrompt) continue;
    const record = parseLine(line);
    if (!record) continue;
    if (typeof record.cwd === "string" && scan.cwd === undefined) scan.cwd = record.cwd;
    if (wantPrompt && record.type === "user" && !record.isMeta && !record.isSidechain) {
      prompt.text = promptText(record.message);
    }
  }
}

/** Backward from the end of the chunk: the last timestamp, git branch and Claude Code version. */
function scanLast(whole: Buffer, scan: TranscriptScan): void {
  let timestamp: string | undefined;
  let branch: string | undefined;
  let version: string | undefined;
  for (let end = whole.length - 1; end > 0 && !(timestamp && branch && version); ) {
    const start = whole.lastIndexOf(NEWLINE, end - 1) + 1;
    const line = whole.subarray(start, end);
    timestamp ??= findValue(line, TIMESTAMP);
    branch ??= findValue(line, BRANCH);
    version ??= findValue(line, VERSION);
    end = start - 1;
  }
  if (timestamp) scan.lastTimestamp = timestamp;
  if (branch) scan.gitBranch = branch;
  if (version) scan.claudeVersion = version;
}

type LineRecord = Record<string, unknown>;

function parseLine(line: Buffer): LineRecord | undefined {
  try {
    const value = JSON.parse(line.toString("utf8")) as unknown;
    return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as LineRecord) : undefined;
  } catch {
    return undefined;
  }
}

function promptText(message: unknown): string | undefined {
  if (typeof message !== "object" || message === null) return undefined;
  const content = (message as { content?: unknown }).content;
  let text: string | undefined;
  if (typeof content === "string") text = content;
  else if (Array.isArray(content)) {
    const part = content.find(
      (item): item is { type: "text"; text: string } =>
        typeof item === "object" && item !== null && item.type === "text" && typeof item.text === "string",
    );
    text = part?.text;
  }
  if (text === undefined) return undefined;
  // Slash-command wrappers and caveats are not what the user would call the title.
  if (text.startsWith("<command-") || text.startsWith("<local-command") || text.startsWith("Caveat:")) return undefined;
  return text;
}

function oneLine(text: string): string {
  const flat = text.replace(/\s+/g, " ").trim();
  return flat.length > TITLE_MAX ? `${flat.slice(0, TITLE_MAX - 1)}…` : flat;
}
