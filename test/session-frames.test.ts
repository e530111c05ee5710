import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import tar from "tar-stream";
import { afterAll, describe, expect, it } from "vitest";
import { sealFrames } from "../core/bundle/blob-encoder.js";
import { createDecompressor, zstdEncoder } from "../core/bundle/codec.js";
import { fileEntries, tarEntry, tarTime } from "../core/bundle/pack.js";
import { frameSessions } from "../core/bundle/session-frames.js";
import { END_OF_ARCHIVE } from "../core/bundle/tar-header.js";
import { sessionsInFolder } from "../core/claude/session.js";
import { createDecryptStream } from "../core/crypto/age/index.js";
import { UserKey } from "../core/crypto/keys.js";
import { writeSession } from "./helpers/fixture.js";

/**
 * bench/engine.ts makes one blob of many sessions from zstd frames compressed
 * on worker threads (core/bundle/session-frames.ts) and sealed in order
 * (sealFrames): the blob must decrypt and decompress to one tar holding every
 * file once, with the bytes on disk.
 */

const root = mkdtempSync(path.join(os.tmpdir(), "ccb-frames-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe("frameSessions + sealFrames", () => {
  it("make a blob that reads as one tar of every session's files", async () => {
    const claudeDir = path.join(root, ".claude");
    const projectDir = path.join(root, "code", "app");
    mkdirSync(projectDir, { recursive: true });
    // Two sessions name the same plan: the bundle carries it once.
    for (const slug of ["shared-plan-one", "shared-plan-one", "own-plan-two"]) {
      writeSession({ claudeDir, projectDir, home: root, slug, padding: 2000 });
    }
    const [projectFolder] = readdirSync(path.join(claudeDir, "projects"));
    const refs = await sessionsInFolder(claudeDir, projectFolder!);
    expect(refs).toHaveLength(3);

    const mtime = tarTime();
    const compression = { codec: "zstd" as const, level: 3 };
    const job = { claudeDir, compression, mtime, leaveOut: ["claude/history.jsonl"], apart: "claude/plans/" };
    // The two sessions that share the plan go to different jobs (the case the engine packs plans apart for).
    const [sharing, other] = [true, false].map((shares) =>
      refs.filter((ref) => readFileSync(ref.transcript, "utf8").includes("shared-plan-one") === shares),
    );
    expect(sharing).toHaveLength(2);
    const first = await frameSessions({ ...job, refs: [sharing![0]!, ...other!] });
    const rest = await frameSessions({ ...job, refs: [sharing![1]!] });
    expect(first.packed[0]!.some((p) => p.startsWith("claude/plans/"))).toBe(false);

    // As the engine does: plans apart, once, after each job's frame.
    const taken = new Set<string>();
    const plansOf = (sessions: typeof first.sessions) =>
      sessions
        .flatMap((s) => s.files)
        .filter((f) => f.path.startsWith("claude/plans/") && !taken.has(f.path) && taken.add(f.path));
    const compress = (chunks: Iterable<Buffer>) => {
      const encoder = zstdEncoder({ ...compression, workers: 0 })!;
      const out: Buffer[] = [];
      for (const chunk of chunks) encoder.write(chunk, (b) => out.push(Buffer.from(b)));
      encoder.end((b) => out.push(Buffer.from(b)));
      return out;
    };
    const manifestJson = Buffer.from('{"stand-in":"manifest"}');
    const frames = [
      ...compress([tarEntry("ccbundle.json", manifestJson, mtime)]),
      ...first.frame,
      ...compress(fileEntries(plansOf(first.sessions), mtime)),
      ...rest.frame,
      ...compress(fileEntries(plansOf(rest.sessions), mtime)),
      ...compress([END_OF_ARCHIVE]),
    ];
    const key = UserKey.generate();
    const blob: Buffer[] = [];
    for await (const list of sealFrames([key.ageRecipient()], frames)) blob.push(...list);

    const entries = new Map<string, Buffer>();
    const extract = tar.extract();
    extract.on("entry", (header, stream, next) => {
      const parts: Buffer[] = [];
      stream.on("data", (b: Buffer) => parts.push(b));
      stream.on("end", () => {
        expect(entries.has(header.name)).toBe(false);
        entries.set(header.name, Buffer.concat(parts));
        next();
      });
    });
    const done = new Promise((resolve, reject) => {
      extract.on("finish", resolve);
      extract.on("error", reject);
    });
    Readable.from([Buffer.concat(blob)])
      .pipe(createDecryptStream([key.ageIdentity()]))
      .pipe(createDecompressor())
      .pipe(extract);
    await done;

    expect([...entries.keys()][0]).toBe("ccbundle.json");
    const all = new Set(
      [...first.sessions, ...rest.sessions]
        .flatMap((s) => s.files.map((f) => f.path))
        .filter((p) => p !== "claude/history.jsonl"),
    );
    expect(new Set([...entries.keys()].slice(1))).toEqual(all);
    // Both sessions name the shared plan; the tar holds it once (the entry handler refuses a second).
    const naming = [...first.sessions, ...rest.sessions].filter((s) =>
      s.files.some((f) => f.path === "claude/plans/shared-plan-one.md"),
    );
    expect(naming).toHaveLength(2);
    expect(entries.has("claude/plans/shared-plan-one.md")).toBe(true);
    for (const name of all) {
      expect(entries.get(name)!.equals(readFileSync(path.join(claudeDir, name.slice("claude/".length))))).toBe(true);
    }
  });
});
