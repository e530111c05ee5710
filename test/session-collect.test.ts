import { createHash } from "node:crypto";
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { projectFolderName } from "../core/claude/paths.js";
import { collectSession, findSession } from "../core/claude/session.js";
import { scanTranscript } from "../core/claude/transcript.js";
import { writeDecoys, writeSession } from "./helpers/fixture.js";

let root: string;
let claudeDir: string;
let project: string;

beforeAll(() => {
  root = realpathSync(mkdtempSync(path.join(os.tmpdir(), "ccb-collect-")));
  claudeDir = path.join(root, ".claude");
  project = path.join(root, "proj");
  mkdirSync(project);
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe("collecting a session", () => {
  it("takes every artefact of the session and nothing else", async () => {
    writeDecoys(claudeDir);
    const other = writeSession({ claudeDir, projectDir: project, home: root, start: new Date("2026-01-01T00:00:00Z") });
    const s = writeSession({ claudeDir, projectDir: project, home: root, title: "the one" });
    // Make `s` the newest by mtime.
    const later = new Date(Date.now() + 5000);
    const { utimesSync } = await import("node:fs");
    utimesSync(s.transcript, later, later);
    const ref = await findSession(claudeDir, project);
    expect(ref.id).toBe(s.id);
    const collected = await collectSession(claudeDir, ref);
    const paths = collected.files.map((f) => f.path).sort();
    const expected = [...s.files.map((f) => `claude/${f}`), "claude/history.jsonl"].sort();
    expect(paths).toEqual(expected);
    for (const p of paths) {
      expect(p).not.toContain(other.id);
      expect(p).not.toMatch(/credentials|statsig|ide\/|sessions\/|backups\//);
    }
    expect(collected.title).toBe("the one");
    expect(collected.cwd).toBe(realpathSync(project));
    const history = collected.files.find((f) => f.path === "claude/history.jsonl")!;
    expect(history.content!.toString()).toContain(s.id);
    expect(history.content!.toString()).not.toContain(other.id);
  });

  it("finds a session by unique id prefix anywhere, and says when a prefix is ambiguous or unknown", async () => {
    const s = writeSession({
      claudeDir,
      projectDir: project,
      home: root,
      sessionId: "abcdef01-0000-4000-8000-000000000001",
    });
    writeSession({ claudeDir, projectDir: project, home: root, sessionId: "abcdef02-0000-4000-8000-000000000002" });
    expect((await findSession(claudeDir, "/elsewhere", "abcdef01")).id).toBe(s.id);
    await expect(findSession(claudeDir, "/elsewhere", "abcdef0")).rejects.toMatchObject({ exitCode: 2 });
    await expect(findSession(claudeDir, "/elsewhere", "ffffffff")).rejects.toMatchObject({ exitCode: 4 });
    await expect(findSession(claudeDir, "/elsewhere", "../../etc")).rejects.toMatchObject({ exitCode: 2 });
  });
});

describe("a transcript being appended to", () => {
  it("takes whole lines only, up to the size seen at the start", async () => {
    const file = path.join(root, "live.jsonl");
    const lines = Array.from({ length: 1000 }, (_, i) =>
      JSON.stringify({ type: "user", i, cwd: "/p", pad: "x".repeat(i % 300) }),
    );
    writeFileSync(file, `${lines.join("\n")}\n{"type":"assistant","partial":tr`);
    const scan = await scanTranscript(file);
    const content = readFileSync(file);
    expect(scan.size).toBe(content.lastIndexOf(0x0a) + 1);
    expect(scan.sha256).toBe(
      createHash("sha256")
        .update(`${lines.join("\n")}\n`)
        .digest("hex"),
    );

    // Appending while scanning never yields a torn line.
    const writer = setInterval(
      () => appendFileSync(file, `ue}\n${JSON.stringify({ type: "user", more: "y".repeat(5000) })}\n{"partial":`),
      1,
    );
    try {
      for (let i = 0; i < 20; i++) {
        const during = await scanTranscript(file);
        const bytes = readFileSync(file).subarray(0, during.size);
        expect(bytes[bytes.length - 1]).toBe(0x0a);
      }
    } finally {
      clearInterval(writer);
    }
  });
});

describe("what belongs to a session", () => {
  it("plans named by its subagents' lines and its subagents' plans, not another session's", async () => {
    const dir = path.join(root, "plans-case");
    const claude = path.join(dir, ".claude");
    mkdirSync(path.join(dir, "p"), { recursive: true });
    const s = writeSession({ claudeDir: claude, projectDir: path.join(dir, "p"), home: dir, history: false });
    // A subagent with a slug of its own, and another session whose slug starts like ours.
    appendFileSync(
      path.join(claude, "projects", s.folder, s.id, "subagents", `agent-${s.agentId}.jsonl`),
      `${JSON.stringify({ type: "user", sessionId: s.id, slug: "own-agent-slug", message: { role: "user", content: "x" } })}\n`,
    );
    writeFileSync(path.join(claude, "plans", "own-agent-slug.md"), "# agent's own plan\n");
    writeFileSync(path.join(claude, "plans", `${s.slug}x.md`), "# not ours\n");
    writeFileSync(path.join(claude, "plans", `${s.slug}x-agent-a1.md`), "# not ours either\n");
    const collected = await collectSession(claude, await findSession(claude, path.join(dir, "p")));
    const plans = collected.files.map((f) => f.path).filter((p) => p.startsWith("claude/plans/"));
    expect(plans.sort()).toEqual(
      [
        `claude/plans/${s.slug}.md`,
        `claude/plans/${s.slug}-agent-${s.agentId}.md`,
        "claude/plans/own-agent-slug.md",
      ].sort(),
    );
  });

  it("history lines of the session only, whole lines only", async () => {
    const dir = path.join(root, "history-case");
    const claude = path.join(dir, ".claude");
    mkdirSync(path.join(dir, "p"), { recursive: true });
    const s = writeSession({ claudeDir: claude, projectDir: path.join(dir, "p"), home: dir });
    // Claude Code is writing the next prompt of this session right now: half a line, ending in "}".
    appendFileSync(path.join(claude, "history.jsonl"), `{"display":"half {x}","sessionId":"${s.id}","pasted":{}}`);
    const collected = await collectSession(claude, await findSession(claude, path.join(dir, "p")));
    const history = collected.files.find((f) => f.path === "claude/history.jsonl")!.content!.toString();
    expect(history.split("\n").filter(Boolean)).toHaveLength(1);
    expect(JSON.parse(history).display).toBe(s.prompt);
  });
});

describe("findSession --session when the id is filed under two projects", () => {
  it("takes the copy of --project (or the current directory), else the one written to last", async () => {
    const root = realpathSync(mkdtempSync(path.join(os.tmpdir(), "ccb-twice-")));
    try {
      const claudeDir = path.join(root, ".claude");
      const [one, two, elsewhere] = ["one", "two", "elsewhere"].map((name) => {
        const dir = path.join(root, name);
        mkdirSync(dir);
        return dir;
      }) as [string, string, string];
      const id = "3c1d2e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f";
      const file = (dir: string) => {
        const folder = path.join(claudeDir, "projects", projectFolderName(dir));
        mkdirSync(folder, { recursive: true });
        const transcript = path.join(folder, `${id}.jsonl`);
        writeFileSync(transcript, `${JSON.stringify({ type: "user", cwd: dir, sessionId: id })}\n`);
        return transcript;
      };
      file(one);
      const later = file(two);
      const { utimesSync } = await import("node:fs");
      utimesSync(later, new Date(), new Date(Date.now() + 60_000));
      expect((await findSession(claudeDir, one, id.slice(0, 8))).folder).toBe(projectFolderName(one));
      expect((await findSession(claudeDir, two, id)).folder).toBe(projectFolderName(two));
      expect((await findSession(claudeDir, elsewhere, id)).folder).toBe(projectFolderName(two));
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
