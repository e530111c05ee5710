/**
 * Rewriting absolute paths inside restored transcripts. Claude Code stores
 * paths in `cwd`, tool inputs, tool results, `toolUseResult`, worktree state…
 * all as JSON strings on JSONL lines. We rewrite the raw line text instead of
 * parsing and re-serialising it, so every byte outside a replaced path stays as
 * it was; a path only matches on component boundaries (`/home/bob/app` never
 * rewrites `/home/bob/app2`), and in its JSON-escaped form (Windows paths have
 * doubled backslashes on disk).
 */

export interface PathMapping {
  from: string;
  to: string;
}

export interface Remapper {
  /** Rewrite one line (or any JSON text). */
  line(text: string): string;
  /** True if the mapping changes nothing. */
  readonly identity: boolean;
}

/** A character that would continue a file name: the match is not a whole path component. */
const NAME_CHAR = String.raw`[\p{L}\p{N}_\-~+@]`;

export function createRemapper(mappings: PathMapping[]): Remapper {
  const variants = new Map<string, string>();
  for (const { from, to } of mappings) {
    const cleanFrom = stripTrailingSeparator(from);
    const cleanTo = stripTrailingSeparator(to);
    if (!cleanFrom || cleanFrom === cleanTo) continue;
    for (const [needle, replacement] of pathVariants(cleanFrom, cleanTo)) {
      if (!variants.has(needle)) variants.set(needle, replacement);
    }
  }
  if (variants.size === 0) return { identity: true, line: (text) => text };
  // Longest first, so a project path wins over the home directory that contains it.
  const needles = [...variants.keys()].sort((a, b) => b.length - a.length);
  const pattern = new RegExp(
    `(?<!${NAME_CHAR}|\\.)(?:${needles.map(escapeRegExp).join("|")})(?!${NAME_CHAR}|\\.${NAME_CHAR})`,
    "gu",
  );
  // Fast pre-filter: a line that contains none of the needles is returned untouched.
  const firstChars = needles.map((needle) => needle.slice(0, Math.min(needle.length, 8)));
  return {
    identity: false,
    line(text: string): string {
      if (!firstChars.some((prefix) => text.includes(prefix))) return text;
      const rewritten = text.replace(pattern, (match) => variants.get(match) ?? match);
      if (rewritten === text) return text;
      // A rewrite must never break a line that parsed before.
      if (!parses(rewritten) && parses(text)) return text;
      return rewritten;
    },
  };
}

/**
 * The forms a path takes inside JSON text, each with its replacement:
 * as JSON-escaped (what is on disk) and, for Windows paths, with forward slashes too.
 */
function pathVariants(from: string, to: string): [string, string][] {
  const json = (text: string) => JSON.stringify(text).slice(1, -1);
  const out: [string, string][] = [[json(from), json(to)]];
  if (isWindowsPath(from)) {
    const forward = from.replace(/\\/g, "/");
    out.push([json(forward), json(isWindowsPath(to) ? to.replace(/\\/g, "/") : to)]);
  }
  return out;
}

function isWindowsPath(text: string): boolean {
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

/** Apply a remapper to a whole JSONL buffer, line by line, keeping line endings. */
export function remapJsonl(content: Buffer, remapper: Remapper): Buffer {
  if (remapper.identity) return content;
  const text = content.toString("utf8");
  const lines = text.split("\n");
  let changed = false;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const next = remapper.line(line);
    if (next !== line) {
      lines[i] = next;
      changed = true;
    }
  }
  return changed ? Buffer.from(lines.join("\n")) : content;
}
