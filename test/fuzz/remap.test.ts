import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { createRemapper, remapJsonl } from "../../core/claude/remap.js";
import { fuzzRuns, fuzzTimeout } from "./runs.js";

/**
 * The path remapper on arbitrary lines and mappings: it never throws, never
 * breaks a line that parsed, leaves lines without the old path untouched,
 * rewrites whole components only, and maps a path and its children exactly.
 */

const segment = fc.stringMatching(/^[A-Za-z0-9._ -]{1,8}$/).filter((s) => s !== "." && s !== "..");
const absPath = fc.array(segment, { minLength: 1, maxLength: 4 }).map((parts) => `/${parts.join("/")}`);
const winPath = fc.array(segment, { minLength: 1, maxLength: 3 }).map((parts) => `C:\\${parts.join("\\")}`);
const anyPath = fc.oneof(absPath, absPath, winPath);
/**
 * Names that start and end with a name character. Text-level rewriting cannot
 * tell `/p/x,/p` (a child named `x,` then `p`) from two paths in a sentence,
 * so the exact-children property holds for names that do not end in a space
 * or punctuation right before the old path again.
 */
const plainSegment = fc.stringMatching(/^[A-Za-z0-9_]([A-Za-z0-9._ -]{0,6}[A-Za-z0-9_])?$/);
const plainPath = fc.array(plainSegment, { minLength: 1, maxLength: 4 }).map((parts) => `/${parts.join("/")}`);
const mapping = fc.record({ from: anyPath, to: anyPath });

/** A Claude Code-like line that mentions `p` in the usual places. */
const lineWith = (p: string, extra: string) =>
  JSON.stringify({
    type: "assistant",
    cwd: p,
    message: {
      content: [{ type: "tool_use", input: { file_path: `${p}/src/a.ts`, command: `cd ${p} && ls ${extra}` } }],
    },
    toolUseResult: { filePath: `${p}/x`, stdout: extra },
  });

describe("fuzz: path remapper", () => {
  it(
    "never throws and never breaks a line that parsed",
    () => {
      fc.assert(
        fc.property(
          fc.array(mapping, { maxLength: 4 }),
          fc.oneof(
            fc.string({ maxLength: 200 }),
            fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v) ?? ""),
          ),
          anyPath,
          (mappings, junk, p) => {
            const remapper = createRemapper(mappings);
            for (const line of [junk, lineWith(p, junk)]) {
              const out = remapper.line(line);
              let parsed = true;
              try {
                JSON.parse(line);
              } catch {
                parsed = false;
              }
              if (parsed) expect(() => JSON.parse(out)).not.toThrow();
            }
            const buffer = Buffer.from(`${junk}\n${lineWith(p, junk)}\n`);
            expect(remapJsonl(buffer, remapper).toString().split("\n").length).toBe(3);
          },
        ),
        fuzzRuns(3000),
      );
    },
    fuzzTimeout(3000, 1),
  );

  it(
    "rewrites the old path and its children exactly, and only on component boundaries",
    () => {
      fc.assert(
        fc.property(plainPath, plainPath, plainSegment, segment, (from, to, child, suffix) => {
          fc.pre(from !== to && !to.startsWith(`${from}/`) && !from.startsWith(`${to}/`));
          const remapper = createRemapper([{ from, to }]);
          const value = (line: string) => JSON.parse(remapper.line(line));
          expect(value(JSON.stringify({ cwd: from })).cwd).toBe(to);
          expect(value(JSON.stringify({ p: `${from}/${child}` })).p).toBe(`${to}/${child}`);
          // A longer name that merely starts with the old path is another path.
          const sibling = `${from}${suffix.replace(/^[ ./-]+/, "") || "x"}`;
          expect(value(JSON.stringify({ p: sibling })).p).toBe(sibling);
          // Lines that never mention it come back as the same string.
          const other = JSON.stringify({ p: `/elsewhere/${child}` });
          if (!other.includes(from)) expect(remapper.line(other)).toBe(other);
        }),
        fuzzRuns(3000),
      );
    },
    fuzzTimeout(3000, 1),
  );
});
