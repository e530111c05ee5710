import { isUtf8 } from "node:buffer";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { createRemapper, type PathMapping, remapJsonl, type TextForm } from "../../core/claude/remap.js";
import { fuzzRuns, fuzzTimeout } from "./runs.js";

/**
 * The byte fast path (`Remapper.rewrite`, remap-bytes.ts) against the line
 * rewrite it replaces (`Remapper.line`, with its JSON parse check): on
 * many-line texts full of near misses (paths after escapes, dots, name
 * characters, colour codes; Windows rests with spaces and non-ASCII
 * whitespace; `\/` escapes; lines that parse and lines that do not) both give
 * the same bytes, and text that is not valid UTF-8 is decoded as before.
 */

const segment = fc.constantFrom("a", "app", "My Proj", "ü", "中文", "x.y", "my-app", "a b", "𝒜", "q_1", ".claude");
const posixPath = fc.array(segment, { minLength: 1, maxLength: 3 }).map((parts) => `/${parts.join("/")}`);
const windowsPath = fc
  .tuple(fc.constantFrom("C:", "c:", "D:"), fc.array(segment, { minLength: 1, maxLength: 3 }))
  .map(([drive, parts]) => `${drive}\\${parts.join("\\")}`);
const uncPath = fc.array(segment, { minLength: 2, maxLength: 3 }).map((parts) => `\\\\${parts.join("\\")}`);
// Not absolute: these can match outside a JSON string (`1` in `"u":1`), where only the parse check saves the line.
const oddPath = fc.constantFrom("rel/dir", "~/x", "a", "file:x", "/", "\\", "1", "1.5", "null", "true");
const anyPath = fc.oneof(
  { weight: 4, arbitrary: posixPath },
  { weight: 3, arbitrary: windowsPath },
  { weight: 1, arbitrary: uncPath },
  { weight: 1, arbitrary: oddPath },
);
const mappings = fc.array(fc.record({ from: anyPath, to: anyPath }), { minLength: 1, maxLength: 3 });

/** Pieces that sit around paths in real and hostile lines. */
const filler = fc.constantFrom(
  " ",
  "  ",
  "/",
  "\\",
  "\\\\",
  ".",
  ".x",
  "x",
  "é",
  "中",
  "𝒜",
  "\u00a0",
  "\u3000",
  "\u2028",
  '"',
  ":",
  "<",
  "|",
  "*",
  "?",
  "-",
  "~",
  "@",
  "7",
  "\u001b[0m",
  "\u001b[1;31m",
  "\t",
  "\r",
  "n",
  "b",
  "src",
  "\\src\\x.ts",
  "\\my dir\\f.ts",
  "/child",
);

/** Raw text pieces: the paths themselves in the forms they take, and filler. */
function pieces(paths: string[]): fc.Arbitrary<string> {
  const forms = paths.flatMap((p) => [
    p,
    p.replace(/\\/g, "/"),
    p.toUpperCase(),
    encodeURI(p),
    `file://${encodeURI(p)}`,
    `file:///${encodeURI(p.replace(/\\/g, "/"))}`,
  ]);
  return fc.oneof({ weight: 2, arbitrary: fc.constantFrom(...forms) }, { weight: 3, arbitrary: filler });
}

/** A line: JSON of a text made of pieces, a JSON skeleton around raw JSON-ish text, or raw text. */
function lineOf(paths: string[]): fc.Arbitrary<string> {
  const text = fc.array(pieces(paths), { maxLength: 12 }).map((parts) => parts.join(""));
  const jsonish = fc
    .array(
      fc.oneof(
        pieces(paths).map((piece) => JSON.stringify(piece).slice(1, -1)),
        fc.constantFrom("\\/", "\\n", "\\\\", "\\u004C", "\\u001b[0m", "\\t", "\\b", "\\f", "\\r", '\\"'),
        pieces(paths),
      ),
      { maxLength: 12 },
    )
    .map((parts) => parts.join(""));
  return fc.oneof(
    text.map((t) => JSON.stringify({ t, n: 1.5 })),
    fc.tuple(text, text).map(([a, b]) => JSON.stringify([a, { b }, null, true, 1])),
    jsonish.map((t) => `{"t":"${t}","u":1}`),
    jsonish,
    text,
  );
}

const caseOf = fc.tuple(mappings, fc.constantFrom<TextForm>("json", "text")).chain(([maps, form]) =>
  fc.record({
    maps: fc.constant(maps),
    form: fc.constant(form),
    lines: fc.array(lineOf(maps.flatMap((m) => [m.from, m.to])), { maxLength: 8 }),
  }),
);

function byLines(text: string, line: (text: string) => string): Buffer {
  return Buffer.from(text.split("\n").map(line).join("\n"));
}

/** The line rewrite of bytes that may not be UTF-8: a line that is not valid UTF-8 keeps its bytes. */
function byLinesKeepingBadOnes(bytes: Buffer, line: (text: string) => string): Buffer {
  const pieces: Buffer[] = [];
  let start = 0;
  for (let i = 0; i <= bytes.length; i++) {
    if (i < bytes.length && bytes[i] !== 0x0a) continue;
    const piece = bytes.subarray(start, i);
    pieces.push(isUtf8(piece) ? Buffer.from(line(piece.toString())) : piece);
    start = i + 1;
  }
  return Buffer.concat(pieces.flatMap((piece, i) => (i === 0 ? [piece] : [Buffer.from("\n"), piece])));
}

function check(maps: PathMapping[], form: TextForm, bytes: Buffer): void {
  const remapper = createRemapper(maps, form);
  if (!remapper.rewrite) return;
  const expected = isUtf8(bytes)
    ? byLines(bytes.toString(), remapper.line)
    : byLinesKeepingBadOnes(bytes, remapper.line);
  const actual = remapper.rewrite(bytes);
  if (!actual.equals(expected)) {
    // A readable diff: the first differing line.
    const a = actual.toString().split("\n");
    const e = expected.toString().split("\n");
    const i = a.findIndex((l, k) => l !== e[k]);
    expect({ maps, form, line: bytes.toString().split("\n")[i], got: a[i] }).toEqual({
      maps,
      form,
      line: bytes.toString().split("\n")[i],
      got: e[i],
    });
  }
}

describe("fuzz: byte fast path of the path remapper", () => {
  it(
    "gives the bytes of the line rewrite on many-line texts",
    () => {
      fc.assert(
        fc.property(caseOf, fc.boolean(), ({ maps, form, lines }, trailingNewline) => {
          check(maps, form, Buffer.from(lines.join("\n") + (trailingNewline ? "\n" : "")));
        }),
        fuzzRuns(3000),
      );
    },
    fuzzTimeout(3000, 2),
  );

  it(
    "keeps the bytes of lines that are not valid UTF-8 and rewrites the others",
    () => {
      fc.assert(
        fc.property(
          caseOf,
          fc.array(fc.constantFrom(0x80, 0xc3, 0xe2, 0xff, 0xed, 0xa0), { minLength: 1, maxLength: 3 }),
          fc.nat(),
          ({ maps, form, lines }, bad, where) => {
            const good = Buffer.from(lines.join("\n"));
            const at = good.length === 0 ? 0 : where % good.length;
            const bytes = Buffer.concat([good.subarray(0, at), Buffer.from(bad), good.subarray(at)]);
            check(maps, form, bytes);
            const remapper = createRemapper(maps, form);
            expect(remapJsonl(bytes, remapper).equals(byLinesKeepingBadOnes(bytes, remapper.line))).toBe(true);
          },
        ),
        fuzzRuns(1000),
      );
    },
    fuzzTimeout(1000, 2),
  );
});
