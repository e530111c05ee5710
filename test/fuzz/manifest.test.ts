import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { BUNDLE_FORMAT, isAllowedPath, type Manifest, parseManifest } from "../../core/bundle/manifest.js";
import { verifyManifestSignature } from "../../core/bundle/signature.js";
import { fuzzRuns, fuzzTimeout, onlyTyped } from "./runs.js";

/**
 * The manifest parser against arbitrary bytes, arbitrary JSON and one-field
 * mutations of a real manifest. Only typed errors come out, and whatever it
 * accepts names only files inside the session's allowed places.
 */

const ID = "0b7e6a52-8c1d-4e0f-9a3b-2c4d5e6f7a8b";
const base: Manifest = {
  format: BUNDLE_FORMAT,
  created: "2026-11-20T10:00:00.000Z",
  tool: { name: "ccbundle", version: "0.1.0" },
  source: { host: "h", user: "u", platform: "linux", home: "/home/u", claudeDir: "/home/u/.claude" },
  publisher: "yry4ez5hd3pphb1rxdhrw1gkrbw6ehftqqxb7jdb8ep6i4zjfs8o",
  sessions: [
    {
      id: ID,
      cwd: "/home/u/app",
      folder: "-home-u-app",
      title: "t",
      git: { remote: "git@github.com:u/app.git", branch: "main", head: "a".repeat(40), dirty: false, subdir: "" },
      files: [
        { path: `claude/projects/-home-u-app/${ID}.jsonl`, size: 10, sha256: "b".repeat(64) },
        { path: `claude/file-history/${ID}/x@v1`, size: 3, sha256: "c".repeat(64) },
        { path: "claude/plans/p.md", size: 3, sha256: "d".repeat(64) },
      ],
    },
  ],
  signature: "A".repeat(86),
};

/** A path-like string: pieces attackers like, joined by slashes. */
const pathPiece = fc.oneof(
  fc.constantFrom(
    "claude",
    "projects",
    "-home-u-app",
    ID,
    `${ID}.jsonl`,
    "..",
    ".",
    "",
    "file-history",
    "plans",
    "x.md",
  ),
  fc.constantFrom(
    "todos",
    `${ID}-agent-1.json`,
    "tasks",
    "history.jsonl",
    "/",
    "\\",
    "C:",
    "\u0000",
    "~",
    ".credentials.json",
  ),
  fc.string({ maxLength: 12 }),
);
const pathLike = fc.array(pathPiece, { minLength: 1, maxLength: 7 }).map((parts) => parts.join("/"));

function mutate(value: unknown, pathKeys: (string | number)[], replacement: unknown): unknown {
  if (pathKeys.length === 0) return replacement;
  const [head, ...rest] = pathKeys;
  if (Array.isArray(value)) {
    const copy = [...value];
    const index = Number(head) % Math.max(1, copy.length);
    copy[index] = mutate(copy[index], rest, replacement);
    return copy;
  }
  if (value && typeof value === "object") {
    return {
      ...(value as object),
      [String(head)]: mutate((value as Record<string, unknown>)[String(head)], rest, replacement),
    };
  }
  return replacement;
}

const fieldPaths: (string | number)[][] = [
  ["format"],
  ["created"],
  ["source"],
  ["source", "home"],
  ["publisher"],
  ["signature"],
  ["sessions"],
  ["sessions", 0],
  ["sessions", 0, "id"],
  ["sessions", 0, "cwd"],
  ["sessions", 0, "folder"],
  ["sessions", 0, "title"],
  ["sessions", 0, "git"],
  ["sessions", 0, "git", "head"],
  ["sessions", 0, "git", "subdir"],
  ["sessions", 0, "git", "branch"],
  ["sessions", 0, "files"],
  ["sessions", 0, "files", 0],
  ["sessions", 0, "files", 0, "path"],
  ["sessions", 0, "files", 1, "path"],
  ["sessions", 0, "files", 2, "path"],
  ["sessions", 0, "files", 0, "size"],
  ["sessions", 0, "files", 0, "sha256"],
];

function checkAccepted(manifest: Manifest): void {
  for (const session of manifest.sessions) {
    for (const file of session.files) {
      expect(isAllowedPath(file.path, session)).toBe(true);
      expect(file.path.startsWith("claude/")).toBe(true);
      expect(file.path.split("/")).not.toContain("..");
      expect(Number.isSafeInteger(file.size)).toBe(true);
    }
  }
}

describe("fuzz: manifest parser", () => {
  it(
    "arbitrary bytes and arbitrary JSON",
    async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.oneof(
            fc.uint8Array({ maxLength: 400 }),
            fc.jsonValue({ maxDepth: 3 }).map((v) => Buffer.from(JSON.stringify(v) ?? "")),
            fc.object({ maxDepth: 2 }).map((v) => Buffer.from(JSON.stringify(v) ?? "")),
          ),
          async (bytes) => {
            const manifest = (await onlyTyped(() => parseManifest(bytes))) as Manifest | undefined;
            if (manifest) checkAccepted(manifest);
          },
        ),
        fuzzRuns(2000),
      );
    },
    fuzzTimeout(2000, 2),
  );

  it(
    "one field of a real manifest replaced by anything",
    async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.constantFrom(...fieldPaths),
          fc.oneof(fc.jsonValue({ maxDepth: 2 }), pathLike, fc.constant(undefined)),
          async (where, replacement) => {
            const bytes = Buffer.from(JSON.stringify(mutate(base, where, replacement)));
            const manifest = (await onlyTyped(() => parseManifest(bytes))) as Manifest | undefined;
            if (!manifest) return;
            checkAccepted(manifest);
            await onlyTyped(() => verifyManifestSignature(manifest));
          },
        ),
        fuzzRuns(2000),
      );
    },
    fuzzTimeout(2000, 2),
  );

  it(
    "isAllowedPath only lets through the session's own places",
    () => {
      fc.assert(
        fc.property(pathLike, (p) => {
          if (!isAllowedPath(p, { id: ID, folder: "-home-u-app" })) return;
          const parts = p.split("/");
          expect(parts[0]).toBe("claude");
          for (const part of parts) {
            expect(part === "" || part === "." || part === ".." || /[\\\u0000]/.test(part)).toBe(false);
          }
          expect(["projects", "file-history", "tasks", "plans", "todos", "history.jsonl"]).toContain(parts[1]);
          if (parts[1] !== "plans" && parts[1] !== "history.jsonl") expect(p).toContain(ID);
        }),
        fuzzRuns(3000),
      );
    },
    fuzzTimeout(3000, 1),
  );
});
