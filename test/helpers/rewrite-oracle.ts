/**
 * What a restored file must hold, computed independently of core/claude/remap:
 * the original with each source path replaced by its target in every form a
 * path takes on disk (JSON-escaped, raw, percent-encoded; a `file://` link stays a
 * percent-encoded URL),
 * longest path first, and no other byte changed. Plain substring replacement
 * is right here because the fixtures' source and target roots never occur
 * inside other words; component boundaries are tested in remap.test.ts.
 */
export function expectedRewrite(text: string, pairs: [from: string, to: string][], form: "json" | "text"): string {
  const forms = new Map<string, string>();
  for (const [from, to] of pairs) {
    const encoded = form === "json" ? JSON.stringify(from).slice(1, -1) : from;
    const encodedTo = form === "json" ? JSON.stringify(to).slice(1, -1) : to;
    if (!forms.has(encoded)) forms.set(encoded, encodedTo);
    if (!forms.has(encodeURI(from))) forms.set(encodeURI(from), encodeURI(to));
    // A link is a URL on the target too, however plain the source path was.
    forms.set(`file://${encodeURI(from)}`, `file://${encodeURI(to)}`);
  }
  const needles = [...forms.keys()].sort((a, b) => b.length - a.length);
  const pattern = new RegExp(needles.map((n) => n.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("|"), "g");
  return text.replace(pattern, (match) => forms.get(match) ?? match);
}

/** Every line of a JSONL text parses; returns the parsed lines. */
export function parseLines(text: string): unknown[] {
  return text
    .split("\n")
    .filter((line) => line.length > 0)
    .map((line, i) => {
      try {
        return JSON.parse(line) as unknown;
      } catch {
        throw new Error(`line ${i + 1} does not parse: ${line.slice(0, 200)}`);
      }
    });
}
