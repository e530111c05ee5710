import { createHash } from "node:crypto";
import { open } from "node:fs/promises";

/**
 * Reading a transcript that Claude Code may still be appending to: we fix the
 * size at the start, then keep only whole lines up to it, so a line being
 * written is never torn. One pass both hashes those bytes and pulls out what
 * the manifest wants to know (cwd, title, plan slugs, git branch).
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
  lines: number;
}

const CHUNK = 1 << 20;
const TITLE_MAX = 100;
// Top-level keys Claude Code writes on every line; values never contain quotes.
const SLUG_RE = /"slug":"([\w.-]{1,200})"/;
const TIMESTAMP_RE = /"timestamp":"([0-9TZ:.+-]{10,40})"/;
const BRANCH_RE = /"gitBranch":"([^"\\]{1,200})"/;
const VERSION_RE = /"version":"([0-9][\w.+-]{0,40})"/;

export async function scanTranscript(file: string): Promise<TranscriptScan> {
  const handle = await open(file, "r");
  try {
    const limit = (await handle.stat()).size;
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
      lines: 0,
    };
    const hash = createHash("sha256");
    let customTitle: string | undefined;
    let summary: string | undefined;
    let firstPrompt: string | undefined;
    let carry = Buffer.alloc(0);
    let position = 0;
    const buffer = Buffer.allocUnsafe(CHUNK);
    while (position < limit) {
      const { bytesRead } = await handle.read(buffer, 0, Math.min(CHUNK, limit - position), position);
      if (bytesRead === 0) break;
      position += bytesRead;
      const data =
        carry.length > 0 ? Buffer.concat([carry, buffer.subarray(0, bytesRead)]) : buffer.subarray(0, bytesRead);
      const lastNewline = data.lastIndexOf(0x0a);
      if (lastNewline < 0) {
        carry = Buffer.from(data);
        continue;
      }
      const whole = data.subarray(0, lastNewline + 1);
      hash.update(whole);
      scan.size += whole.length;
      carry = Buffer.from(data.subarray(lastNewline + 1));
      let start = 0;
      while (start < whole.length) {
        const end = whole.indexOf(0x0a, start);
        const line = whole.toString("utf8", start, end);
        start = end + 1;
        scan.lines++;
        // Full JSON.parse only while we still need the first cwd/prompt, or for the
        // rare title lines; the rest are huge payloads where a regex is far cheaper.
        const slug = SLUG_RE.exec(line)?.[1];
        if (slug) scan.slugs.add(slug);
        const timestamp = TIMESTAMP_RE.exec(line)?.[1];
        if (timestamp) {
          scan.firstTimestamp ??= timestamp;
          scan.lastTimestamp = timestamp;
        }
        const needParse =
          scan.cwd === undefined ||
          firstPrompt === undefined ||
          line.includes('"type":"summary"') ||
          line.includes('"type":"custom-title"');
        if (!needParse) {
          const branch = BRANCH_RE.exec(line)?.[1];
          if (branch) scan.gitBranch = branch;
          const version = VERSION_RE.exec(line)?.[1];
          if (version) scan.claudeVersion = version;
          continue;
        }
        const record = parseLine(line);
        if (!record) continue;
        if (typeof record.cwd === "string" && scan.cwd === undefined) scan.cwd = record.cwd;
        if (typeof record.gitBranch === "string" && record.gitBranch) scan.gitBranch = record.gitBranch;
        if (typeof record.version === "string") scan.claudeVersion = record.version;
        if (record.type === "custom-title" && typeof record.customTitle === "string") customTitle = record.customTitle;
        if (record.type === "summary" && typeof record.summary === "string") summary = record.summary;
        if (firstPrompt === undefined && record.type === "user" && !record.isMeta && !record.isSidechain) {
          firstPrompt = promptText(record.message);
        }
      }
    }
    scan.sha256 = hash.digest("hex");
    const title = customTitle ?? summary ?? firstPrompt;
    scan.title = title === undefined ? undefined : oneLine(title);
    return scan;
  } finally {
    await handle.close();
  }
}

type LineRecord = Record<string, unknown>;

function parseLine(line: string): LineRecord | undefined {
  try {
    const value = JSON.parse(line) as unknown;
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
