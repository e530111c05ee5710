import { createHash } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { scanTranscript } from "../core/claude/transcript.js";

/**
 * scanTranscript reads in 128 KiB pieces, joins lines split between reads,
 * and looks backwards from each piece's end for the last values. The oracle
 * here applies the same rules to one whole line at a time, with no reads to
 * get wrong: on random transcripts full of near misses (invalid values before
 * valid ones, unterminated values, title keys deep in long lines, lines of
 * 100-300 KB, bytes that are not UTF-8), both must find the same things.
 */

let root: string;
beforeAll(() => {
  root = mkdtempSync(path.join(os.tmpdir(), "ccb-scan-"));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

// ---------------------------------------------------------------- the line-by-line oracle
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
const SIDECHAIN_KEY = Buffer.from('"isSidechain":true');
const TITLE_KEYS = [Buffer.from('"type":"summary"'), Buffer.from('"type":"custom-title"')];

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
function parseLine(line: Buffer): Record<string, unknown> | undefined {
  try {
    const value = JSON.parse(line.toString("utf8")) as unknown;
    return typeof value === "object" && value !== null && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined;
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
  if (text.startsWith("<command-") || text.startsWith("<local-command") || text.startsWith("Caveat:")) return undefined;
  return text;
}
const oneLine = (text: string) => {
  const flat = text.replace(/\s+/g, " ").trim();
  return flat.length > 100 ? `${flat.slice(0, 99)}…` : flat;
};

function lineByLine(bytes: Buffer) {
  const whole = bytes.subarray(0, bytes.lastIndexOf(0x0a) + 1);
  const out = {
    size: whole.length,
    sha256: createHash("sha256").update(whole).digest("hex"),
    cwd: undefined as string | undefined,
    slugs: new Set<string>(),
    firstTimestamp: undefined as string | undefined,
    lastTimestamp: undefined as string | undefined,
    gitBranch: undefined as string | undefined,
    claudeVersion: undefined as string | undefined,
    title: undefined as string | undefined,
  };
  const titles: { custom?: string; summary?: string } = {};
  let prompt: string | undefined;
  let tries = 0;
  for (let start = 0; start < whole.length; ) {
    const end = whole.indexOf(0x0a, start);
    const line = whole.subarray(start, end);
    start = end + 1;
    const slug = findValue(line, SLUG);
    if (slug) out.slugs.add(slug);
    out.firstTimestamp ??= findValue(line, TIMESTAMP);
    out.lastTimestamp = findValue(line, TIMESTAMP) ?? out.lastTimestamp;
    out.gitBranch = findValue(line, BRANCH) ?? out.gitBranch;
    out.claudeVersion = findValue(line, VERSION) ?? out.claudeVersion;
    const head = line.length <= 1024 ? line : line.subarray(0, 128);
    if (TITLE_KEYS.some((key) => head.indexOf(key) >= 0)) {
      const record = parseLine(line);
      if (record?.type === "custom-title" && typeof record.customTitle === "string") titles.custom = record.customTitle;
      if (record?.type === "summary" && typeof record.summary === "string") titles.summary = record.summary;
    }
    const wantCwd = out.cwd === undefined && line.indexOf(CWD_KEY) >= 0;
    let wantPrompt = false;
    if (prompt === undefined && tries < 50) {
      tries++;
      wantPrompt = line.subarray(0, 512).indexOf(SIDECHAIN_KEY) < 0 && line.indexOf(USER_KEY) >= 0;
    }
    if (!wantCwd && !wantPrompt) continue;
    const record = parseLine(line);
    if (!record) continue;
    if (typeof record.cwd === "string" && out.cwd === undefined) out.cwd = record.cwd;
    if (wantPrompt && record.type === "user" && !record.isMeta && !record.isSidechain)
      prompt = promptText(record.message);
  }
  const title = titles.custom ?? titles.summary ?? prompt;
  out.title = title === undefined ? undefined : oneLine(title);
  return out;
}

// ---------------------------------------------------------------- random transcripts full of near misses
function rng(seed: number) {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

function randomTranscript(seed: number): Buffer {
  const r = rng(seed);
  const pick = <T>(items: T[]): T => items[Math.floor(r() * items.length)]!;
  const pad = (n: number) => "x".repeat(n);
  const lines: Buffer[] = [];
  const count = 20 + Math.floor(r() * 140);
  for (let i = 0; i < count; i++) {
    const kind = Math.floor(r() * 16);
    const stamp = `2026-0${1 + (i % 9)}-1${i % 10}T10:00:00.${String(i).padStart(3, "0")}Z`;
    let text: string;
    switch (kind) {
      case 0:
        text = JSON.stringify({ type: "summary", summary: `summary ${i}`, leafUuid: "u" });
        break;
      case 1:
        text = JSON.stringify({ type: "custom-title", customTitle: `  named\n${i}  `, sessionId: "s" });
        break;
      case 2:
        // A title key deep in a long line (not a title line) or in its first 128 bytes (one).
        text =
          r() < 0.5
            ? `{"pad":"${pad(1100)}","type":"summary","summary":"deep ${i}"}`
            : `{"type":"summary","summary":"long ${i}","pad":"${pad(1100)}"}`;
        break;
      case 3:
        text = JSON.stringify({
          type: "user",
          isSidechain: r() < 0.3,
          isMeta: r() < 0.2,
          cwd: r() < 0.5 ? `/home/al/p${i}` : undefined,
          message: {
            content: pick([`prompt ${i}`, "<command-name>/x</command-name>", [{ type: "text", text: `part ${i}` }], 7]),
          },
          timestamp: stamp,
        });
        break;
      case 4:
        // Keys with values that fail their rules, then good ones on the same line.
        text = `{"slug":"has space","timestamp":"nope","x":{"slug":"plan-${i % 5}","timestamp":"${stamp}"},"gitBranch":"a\\"b","version":"v1","version":"2.${i}.0"}`;
        break;
      case 5:
        // A key whose value runs to the end of the line with no closing quote.
        text = `{"junk":1,"slug":"unterminated-${i}`;
        break;
      case 6:
        text = `{"cwd":null,"cwd2":"${pad(3)}","type":"assistant"}`;
        break;
      case 7:
        text = `{"cwd":"/broken/${i}", not json`;
        break;
      case 8:
        // Long lines that cross the 128 KiB reads.
        text = JSON.stringify({
          type: "assistant",
          slug: `big-${i % 3}`,
          cwd: "/big",
          blob: pad(100_000 + Math.floor(r() * 200_000)),
        });
        break;
      case 9:
        text = Buffer.concat([
          Buffer.from(`{"slug":"bin-${i % 2}","raw":"`),
          Buffer.from([0xff, 0xfe, 0x80]),
          Buffer.from('"}'),
        ]).toString("latin1");
        break;
      case 10:
        text = "";
        break;
      case 11:
        text = `{"slug":"${pad(801)}","slug":"after-long"}`;
        break;
      case 12: {
        // A title key ending right at, or one byte past, the 128 bytes looked at in a long line.
        const lead = `{"p":"${pad(128 - 16 - 8 + (r() < 0.5 ? 0 : 1))}",`;
        text = `${lead}"type":"summary","summary":"edge ${i}","pad":"${pad(1100)}"}`;
        break;
      }
      case 13: {
        // Lines of exactly 1024 and 1025 bytes with the title key near their end.
        const body = `"type":"custom-title","customTitle":"at ${i}"}`;
        text = `{"p":"${pad(1024 + (r() < 0.5 ? 0 : 1) - body.length - 8)}",${body}`;
        break;
      }
      case 14:
        // A slug whose value's quote is only on the next line; a line that starts with a key; two
        // valid slugs on one line (only the first counts).
        text = pick([
          `{"slug":"no-quote-here ${i}`,
          `"slug":"first-${i % 3}","type":"summary"`,
          `{"slug":"one-${i}","slug":"two-${i}"}`,
        ]);
        break;
      default:
        text = JSON.stringify({
          parentUuid: null,
          isSidechain: false,
          cwd: `/home/al/app${i % 3}`,
          version: `2.1.${i % 7}`,
          gitBranch: i % 5 === 0 ? "feature/ü" : "main",
          slug: i % 3 === 0 ? `plan-${i % 4}` : undefined,
          type: i % 4 === 0 ? "user" : "assistant",
          message: { role: "user", content: `work ${i} ${pad(Math.floor(r() * 3000))}` },
          timestamp: stamp,
        });
    }
    lines.push(Buffer.from(text, kind === 9 ? "latin1" : "utf8"));
  }
  const tail = r() < 0.5 ? Buffer.from('{"type":"assistant","slug":"partial') : Buffer.alloc(0);
  return Buffer.concat([...lines.flatMap((line) => [line, Buffer.from("\n")]), tail]);
}

describe("scanTranscript against the line-by-line scan", () => {
  it("finds the same on 60 random transcripts", async () => {
    let titled = 0;
    let slugged = 0;
    for (let seed = 1; seed <= 60; seed++) {
      const bytes = randomTranscript(seed);
      const file = path.join(root, `t${seed}.jsonl`);
      writeFileSync(file, bytes);
      const scan = await scanTranscript(file);
      const want = lineByLine(bytes);
      const got = {
        size: scan.size,
        sha256: scan.sha256,
        cwd: scan.cwd,
        slugs: scan.slugs,
        firstTimestamp: scan.firstTimestamp,
        lastTimestamp: scan.lastTimestamp,
        gitBranch: scan.gitBranch,
        claudeVersion: scan.claudeVersion,
        title: scan.title,
      };
      expect(got, `seed ${seed}`).toEqual(want);
      if (want.title) titled++;
      if (want.slugs.size > 1) slugged++;
    }
    // The generator reaches the interesting cases.
    expect(titled).toBeGreaterThan(40);
    expect(slugged).toBeGreaterThan(40);
  });

  it("takes the cwd of a line past the first 50 when none came before", async () => {
    const lines = Array.from({ length: 80 }, (_, i) => JSON.stringify({ type: "assistant", n: i }));
    lines.push('{"cwd":7}', '{"cwd":"/late"}', '{"cwd":"/later"}');
    const file = path.join(root, "late.jsonl");
    writeFileSync(file, `${lines.join("\n")}\n`);
    const scan = await scanTranscript(file);
    expect(scan.cwd).toBe("/late");
  });
});
