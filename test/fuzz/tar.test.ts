import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import type { Manifest } from "../../core/bundle/manifest.js";
import { unpackBundle } from "../../core/bundle/unpack.js";
import { manifestOf, tarOf } from "../helpers/hostile.js";
import { fuzzRuns, fuzzTimeout, onlyTyped } from "./runs.js";

/**
 * The tar reader against mutated bundles: flipped bytes anywhere (headers,
 * checksums, sizes, names, type flags), truncation, junk appended or spliced
 * in. Only typed errors come out, nothing is written outside the staging
 * folder, and an accepted bundle leaves exactly the manifest's files.
 */

const root = mkdtempSync(path.join(os.tmpdir(), "ccb-fuzz-tar-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const ID = "0b7e6a52-8c1d-4e0f-9a3b-2c4d5e6f7a8b";
const files = [
  { path: `claude/projects/-p/${ID}.jsonl`, content: Buffer.from('{"type":"user","cwd":"/p"}\n'.repeat(3)) },
  { path: `claude/file-history/${ID}/f@v1`, content: Buffer.from("export const x = 1;\n") },
  { path: "claude/plans/plan.md", content: Buffer.alloc(0) },
];
const manifest = manifestOf([{ id: ID, folder: "-p", cwd: "/p", files }]);
const goodTar = tarOf([
  { name: "ccbundle.json", content: Buffer.from(JSON.stringify(manifest)) },
  ...files.map((f) => ({ name: f.path, content: f.content })),
]);

function listAll(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) out.push(path.relative(dir, path.join(entry.parentPath, entry.name)));
    else if (!entry.isDirectory()) out.push(`!${entry.name}`); // anything but files and folders is a failure
  }
  return out.sort();
}

const mutation = fc.oneof(
  fc.record({
    kind: fc.constant("flip" as const),
    edits: fc.array(fc.record({ at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }), {
      minLength: 1,
      maxLength: 6,
    }),
  }),
  fc.record({ kind: fc.constant("truncate" as const), at: fc.nat() }),
  fc.record({
    kind: fc.constant("splice" as const),
    at: fc.nat(),
    junk: fc.uint8Array({ minLength: 1, maxLength: 1536 }),
  }),
  fc.record({ kind: fc.constant("append" as const), junk: fc.uint8Array({ minLength: 1, maxLength: 2048 }) }),
  // Header fields where it hurts: name (0), mode (100), size (124), checksum (148), type flag (156), link name (157).
  fc.record({
    kind: fc.constant("header" as const),
    block: fc.nat(8),
    offset: fc.constantFrom(0, 100, 124, 130, 148, 156, 157, 257, 345),
    bytes: fc.uint8Array({ minLength: 1, maxLength: 12 }),
  }),
);

function apply(tar: Buffer, m: typeof mutation extends fc.Arbitrary<infer T> ? T : never): Buffer {
  const out = Buffer.from(tar);
  switch (m.kind) {
    case "flip":
      for (const edit of m.edits) out[edit.at % out.length] = edit.value;
      return out;
    case "truncate":
      return out.subarray(0, m.at % out.length);
    case "splice": {
      const at = m.at % out.length;
      return Buffer.concat([out.subarray(0, at), Buffer.from(m.junk), out.subarray(at)]);
    }
    case "append":
      return Buffer.concat([out, Buffer.from(m.junk)]);
    case "header": {
      const at = (m.block * 512 + m.offset) % out.length;
      out.set(m.bytes.subarray(0, out.length - at), at);
      return out;
    }
  }
}

describe("fuzz: tar reader", () => {
  it(
    "mutated bundles: typed errors only, nothing outside staging, accepted means exactly the manifest's files",
    async () => {
      const tar = await goodTar;
      let accepted = 0;
      await fc.assert(
        fc.asyncProperty(mutation, async (m) => {
          const box = mkdtempSync(path.join(root, "c-"));
          const staging = path.join(box, "staging");
          const { mkdirSync } = await import("node:fs");
          mkdirSync(staging);
          try {
            const result = (await onlyTyped(() => unpackBundle(Readable.from([apply(tar, m)]), staging))) as
              | Manifest
              | undefined;
            // Nothing beside the staging folder, ever.
            expect(readdirSync(box)).toEqual(["staging"]);
            if (result) {
              accepted++;
              const listed = result.sessions.flatMap((s) => s.files.map((f) => f.path)).sort();
              expect(listAll(staging)).toEqual(listed);
            }
          } finally {
            rmSync(box, { recursive: true, force: true });
          }
        }),
        fuzzRuns(1000),
      );
      // Some mutations are harmless (padding, trailing junk): the property saw both outcomes.
      expect(accepted).toBeGreaterThan(0);
    },
    fuzzTimeout(1000, 40),
  );
});
