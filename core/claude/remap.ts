/**
 * Rewriting absolute paths inside restored session files. Claude Code stores
 * paths in `cwd`, tool inputs, tool results, `toolUseResult`, worktree state,
 * `relocated` lines… all as JSON strings on JSONL lines. We rewrite the raw
 * text instead of parsing and re-serialising it, so every byte outside a
 * replaced path stays as it was.
 *
 * A path matches only as whole components: `/home/bob/app` never rewrites
 * `/home/bob/app2` or `/x/home/bob/app`. It may start a string, follow a JSON
 * escape (`\n/home/bob/app` in tool output is a path at the start of a line)
 * or a terminal colour code, and it is found in the forms it takes on disk:
 * JSON-escaped, percent-encoded in `file://` URLs, and for Windows sources with
 * backslashes, forward slashes and either case of drive letter.
 *
 * Windows source onto a POSIX target: after a matched Windows prefix, the
 * separators of the rest of the same path (`\src\app.ts`) become `/` too, so
 * `C:\Users\al\proj\src\app.ts` becomes `/home/bob/proj/src/app.ts`. The rest
 * of a path runs over components of characters Windows allows in names, with
 * single spaces inside a name (`My Documents`); it ends at whitespace that is
 * not between two name characters, a quote, `<>|?*:` or a JSON escape, so a
 * backslash after that (a regex `\d`, a second path) is never touched.
 *
 * Files are rewritten through `rewrite`, the same rewrite done on the bytes of
 * many lines at once (remap-bytes.ts); `line` is the reference it must match.
 */

import { bytesCanMatch, createByteRewriter, rewriteUtf8Lines, startsInJsonString } from "./remap-bytes.js";

export interface PathMapping {
  from: string;
  to: string;
}

export interface Remapper {
  /** Rewrite one line (or any text of the form the remapper was made for). */
  line(text: string): string;
  /**
   * Rewrite UTF-8 bytes that end at a line end or the end of the text: the bytes of `line` applied to
   * each line of their decoded text. Returns `bytes` itself when that changes nothing; otherwise a
   * buffer that the next call may overwrite (write or copy it first). Optional: without it, callers
   * decode and go line by line.
   */
  rewrite?(bytes: Buffer): Buffer;
  /** True if the mapping changes nothing. */
  readonly identity: boolean;
}

/**
 * How a file's text holds paths: `json` for JSONL and JSON files (paths are
 * JSON-escaped), `text` for plain text such as plans and persisted tool output.
 */
export type TextForm = "json" | "text";

/** A character that would continue a file name: the match is not a whole path component. */
const NAME_CHAR = String.raw`[\p{L}\p{N}_\-~+@]`;
const NAME_CHAR_RE = new RegExp(NAME_CHAR, "u");
/** What may end right before a path although it is a name character: a JSON escape or a colour code. */
const ESCAPE_BEFORE: Record<TextForm, RegExp> = {
  // An odd run of backslashes then b/f/n/r/t is a JSON escape (a newline before the path);
  // `\u001b[…m` is a terminal colour code as JSON writes it.
  json: /(?:^|[^\\])(?:\\\\)*\\[bfnrt]$|\\u001b\[[0-9;]*[A-Za-z]$/,
  text: /\x1b\[[0-9;]*[A-Za-z]$/,
};
/** One component of the rest of a Windows path: name characters, single spaces inside. */
const WINDOWS_NAME_CHAR = String.raw`[^\s\\"<>|?*:]`;
const WINDOWS_NAME_CHAR_RE = new RegExp(WINDOWS_NAME_CHAR, "u");
const WINDOWS_COMPONENT = `${WINDOWS_NAME_CHAR}+(?: ${WINDOWS_NAME_CHAR}+)*`;
/** A Windows separator as it appears in each form (JSON doubles the backslash). */
const WINDOWS_SEPARATOR: Record<TextForm, string> = { json: "\\\\", text: "\\" };

interface Variant {
  replacement: string;
  /** Convert the separators of the rest of the path to `/` (Windows source onto POSIX). */
  toPosix: boolean;
}

export function createRemapper(mappings: PathMapping[], form: TextForm = "json"): Remapper {
  const variants = new Map<string, Variant>();
  for (const { from, to } of mappings) {
    const cleanFrom = stripTrailingSeparator(from);
    const cleanTo = stripTrailingSeparator(to);
    if (!cleanFrom) continue;
    // A path that maps onto itself is kept as a needle: it is longer than the home directory that
    // contains it, so it shields that path from the home's rewrite (a teammate pulling into the
    // sender's own project path on a shared server keeps the project path).
    for (const [needle, variant] of pathVariants(cleanFrom, cleanTo, form)) {
      if (!variants.has(needle)) variants.set(needle, variant);
    }
  }
  const changesSomething = [...variants].some(
    ([needle, { replacement, toPosix }]) => needle !== replacement || toPosix,
  );
  if (!changesSomething) return { identity: true, line: (text) => text, rewrite: (bytes) => bytes };
  // Longest first, so a project path wins over the home directory that contains it.
  const needles = [...variants.keys()].sort((a, b) => b.length - a.length);
  const separator = escapeRegExp(WINDOWS_SEPARATOR[form]);
  // The needles come first so the engine can skip ahead to them; where a path may start is checked
  // per match (a lookbehind in front would be tried at every position, five times slower).
  // Made on first use: `rewrite` rarely needs `line`, and a restore makes two remappers per session.
  const makePattern = () =>
    new RegExp(
      `(${needles.map(escapeRegExp).join("|")})(?!${NAME_CHAR}|\\.${NAME_CHAR})` +
        // The rest of the path up to its last separator: the last name is left for the scan to move
        // over, so a second path that a spaced name ran into is still found.
        `((?:(?:${separator}${WINDOWS_COMPONENT})*${separator}(?=${WINDOWS_NAME_CHAR}))?)`,
      "gu",
    );
  const separatorRun = new RegExp(separator, "g");
  const escapeBefore = ESCAPE_BEFORE[form];
  const startsPath = (text: string, at: number): boolean => {
    if (at === 0) return true;
    const before = text[at - 1]!;
    if (before === ".") return false;
    if (!NAME_CHAR_RE.test(before)) return true;
    return escapeBefore.test(text.slice(Math.max(0, at - 32), at));
  };
  // Fast pre-filter: a line that contains none of the needles is returned untouched.
  const firstChars = [...new Set(needles.map((needle) => needle.slice(0, Math.min(needle.length, 8))))];
  let pattern: RegExp | undefined;
  const line = (text: string): string => {
    if (!firstChars.some((prefix) => text.includes(prefix))) return text;
    pattern ??= makePattern();
    let out = "";
    let copied = 0;
    pattern.lastIndex = 0;
    for (let match = pattern.exec(text); match; match = pattern.exec(text)) {
      if (!startsPath(text, match.index)) {
        pattern.lastIndex = match.index + 1;
        continue;
      }
      const variant = variants.get(match[1]!)!;
      const rest = match[2] ?? "";
      out +=
        text.slice(copied, match.index) +
        variant.replacement +
        (variant.toPosix ? rest.replace(separatorRun, "/") : rest);
      copied = pattern.lastIndex;
    }
    if (copied === 0) return text;
    const rewritten = out + text.slice(copied);
    // A rewrite must never break a line that parsed before.
    if (form === "json" && !parses(rewritten) && parses(text)) return text;
    return rewritten;
  };
  if (!needles.every(bytesCanMatch)) return { identity: false, line };
  const rewrite = createByteRewriter({
    variants: needles.map((needle) => {
      const { replacement, toPosix } = variants.get(needle)!;
      const startsInString = startsInJsonString(needle);
      return { needle: Buffer.from(needle), replacement: Buffer.from(replacement), toPosix, startsInString };
    }),
    form,
    nameChar: NAME_CHAR_RE,
    escapeBefore,
    windowsNameChar: WINDOWS_NAME_CHAR_RE,
    line,
  });
  return { identity: false, line, rewrite };
}

/** The forms a path takes in a file of the given form, each with its replacement. */
function pathVariants(from: string, to: string, form: TextForm): [string, Variant][] {
  const encode = form === "json" ? (text: string) => JSON.stringify(text).slice(1, -1) : (text: string) => text;
  const out: [string, Variant][] = [];
  const add = (needle: string, replacement: string, toPosix = false) =>
    out.push([encode(needle), { replacement: encode(replacement), toPosix }]);
  // Links: file:///home/my%20app/… becomes the target's URL, percent-encoded as a URL must be,
  // even where the source path needed no encoding; other URL schemes keep the encoded path.
  const addUri = (needle: string, replacement: string) => {
    if (encodeURI(needle) !== needle) add(encodeURI(needle), encodeURI(replacement));
    add(`file://${encodeURI(needle)}`, `file://${encodeURI(replacement)}`);
  };
  if (!isWindowsPath(from)) {
    add(from, to);
    if (!isWindowsPath(to)) addUri(from, to);
    return out;
  }
  const posixTarget = !isWindowsPath(to);
  const forwardTo = posixTarget ? to : to.replace(/\\/g, "/");
  for (const drive of driveLetterCases(from)) {
    add(drive, to, posixTarget && drive.includes("\\"));
    const forward = drive.replace(/\\/g, "/");
    if (forward !== drive) add(forward, forwardTo);
    // file:///C:/x is the URL of C:\x; on a POSIX target it becomes file:///home/…, not file:////home/….
    if (posixTarget && /^[A-Za-z]:/.test(forward)) addUri(`/${forward}`, to);
  }
  return out;
}

/** `C:\x` and `c:\x`: Windows tools disagree on the drive letter's case. */
function driveLetterCases(path: string): string[] {
  if (!/^[A-Za-z]:/.test(path)) return [path];
  const rest = path.slice(1);
  return [...new Set([path, path[0]!.toUpperCase() + rest, path[0]!.toLowerCase() + rest])];
}

export function isWindowsPath(text: string): boolean {
  return /^[A-Za-z]:[\\/]/.test(text) || text.startsWith("\\\\");
}

function stripTrailingSeparator(text: string): string {
  return text.length > 1 ? text.replace(/[\\/]+$/, "") : text;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
}

function parses(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

/**
 * Which restored files get their paths rewritten, and in which form. Session
 * lines and JSON side files (subagent meta, tasks, todos) as JSON; plans and
 * persisted tool output as plain text. file-history backups never: they are
 * the user's files as they were at a checkpoint, and /rewind must put back
 * exactly those bytes.
 */
export function rewriteFormFor(bundlePath: string): TextForm | undefined {
  if (bundlePath.startsWith("claude/file-history/")) return undefined;
  if (bundlePath.endsWith(".jsonl") || bundlePath.endsWith(".json")) return "json";
  if (bundlePath.startsWith("claude/plans/") && bundlePath.endsWith(".md")) return "text";
  if (/^claude\/projects\/[^/]+\/[^/]+\/tool-results\/[^/]+\.(txt|md)$/.test(bundlePath)) return "text";
  return undefined;
}

/** Apply a remapper to a whole JSONL buffer, line by line, keeping line endings. */
export function remapJsonl(content: Buffer, remapper: Remapper): Buffer {
  if (remapper.identity) return content;
  // A byte path handles text that is not all UTF-8 itself (createByteRewriter, a fork's rewrite).
  if (remapper.rewrite) {
    const rewritten = remapper.rewrite(content);
    return rewritten === content ? content : Buffer.from(rewritten);
  }
  // A remapper with no byte path: line by line, lines that are not valid UTF-8 kept as they are.
  return rewriteUtf8Lines(content, (line) => remapper.line(line));
}
