import { createHash } from "node:crypto";
import type { Remapper } from "./remap.js";
import { scanTranscript } from "./transcript.js";

/**
 * Turning an incoming session into a fork beside a diverged local copy: a new
 * session id, and new plan slugs, so the fork shares no file with the local
 * session (Claude Code names plans `plans/<slug>.md` and subagent plans
 * `plans/<slug>-agent-<agentId>.md`; two sessions with one slug would write
 * the same plan). Claude Code's own fork does the same (new id, plan copied
 * under a new slug).
 */
export interface Fork {
  oldId: string;
  newId: string;
  /** Old slug → new slug. */
  slugs: Map<string, string>;
  /** Rewrites a line of the fork: the session id everywhere, slugs in `slug` fields and plan paths. */
  rewriter: Remapper;
}

/**
 * The fork's session id: a name-based UUID (version 5) of the session, the incoming transcript's
 * hash and where it lands. The same bundle restored twice over the same diverged copy makes the
 * same fork, so the second time finds it there (identical, or resumed since) instead of adding
 * another fork, another plan copy and more history lines.
 */
export function forkId(oldId: string, incomingSha256: string, folder: string): string {
  const hash = createHash("sha1").update(FORK_NAMESPACE).update(`${oldId}/${incomingSha256}/${folder}`).digest();
  hash[6] = (hash[6]! & 0x0f) | 0x50;
  hash[8] = (hash[8]! & 0x3f) | 0x80;
  const hex = hash.subarray(0, 16).toString("hex");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** The UUID namespace of fork ids (a random UUID, fixed once). */
const FORK_NAMESPACE = Buffer.from("6c0f6e3a8b2d4f1e9a7c5d3b1e0f2a4c", "hex");

/** Plan the fork (as `newId`) of a session whose staged (already remapped) transcripts are given. */
export async function planFork(
  oldId: string,
  newId: string,
  transcripts: string[],
  planFiles: string[],
): Promise<Fork> {
  return forkWithSlugs(oldId, newId, await forkSlugs(transcripts, planFiles));
}

/** The plan slugs a session's transcripts and plan files use: what a fork of it renames (see forkWithSlugs). */
export async function forkSlugs(transcripts: string[], planFiles: string[]): Promise<Set<string>> {
  const found = new Set<string>();
  for (const file of transcripts) for (const slug of (await scanTranscript(file)).slugs) found.add(slug);
  for (const name of planFiles) found.add(name.replace(/\.md$/, "").replace(/-agent-[\w-]+$/, ""));
  return found;
}

/**
 * planFork with the session's slugs found already: a restore that tries several fork ids (an
 * earlier fork to go on with, else a new one) scans the transcripts for them once.
 */
export function forkWithSlugs(oldId: string, newId: string, found: ReadonlySet<string>): Fork {
  const slugs = new Map([...found].sort().map((slug) => [slug, `${slug}-fork-${newId.slice(0, 8)}`]));
  const patterns = [...slugs].map(
    ([from, to]) =>
      [new RegExp(`(?<="slug":"|plans(?:/|\\\\\\\\))${escapeRegExp(from)}(?="|\\.md|-agent-)`, "g"), to] as const,
  );
  const line = (text: string) => {
    let out = text.includes(oldId) ? text.split(oldId).join(newId) : text;
    for (const [pattern, to] of patterns) out = out.replace(pattern, to);
    return out;
  };
  const rewriter: Remapper = {
    identity: false,
    line,
    // Ids and slugs are ASCII: through latin1 every other byte comes back as it was, so lines
    // that are not valid UTF-8 get the fork's id too (the line-by-line path keeps those as they are).
    rewrite: (bytes) => Buffer.from(line(bytes.toString("latin1")), "latin1"),
  };
  return { oldId, newId, slugs, rewriter };
}

/** Where a bundle file of the fork goes, relative to the config dir. */
export function forkRelativePath(rel: string, fork: Fork): string {
  let out = rel.split(fork.oldId).join(fork.newId);
  const plan = /^plans\/(.+?)(\.md|-agent-[\w-]+\.md)$/.exec(out);
  const renamed = plan ? fork.slugs.get(plan[1]!) : undefined;
  if (plan && renamed) out = `plans/${renamed}${plan[2]}`;
  return out;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
}
