import { randomBytes } from "node:crypto";
import { appendFile, readFile, realpath, rm, stat } from "node:fs/promises";
import path from "node:path";
import type { ManifestSession } from "../bundle/manifest.js";
import { errnoCode } from "../errors.js";
import { backupFile, type Comparison, compareFiles, installFile, remapFile } from "./files.js";
import { type Fork, forkRelativePath, planFork } from "./fork.js";
import { claudeLayout, projectFolderName } from "./paths.js";
import { createRemapper, type PathMapping, rewriteFormFor } from "./remap.js";

/**
 * Moving a verified, staged session into the Claude Code config dir.
 *
 * Conflicts with what is already there (DESIGN.md, issue "Session fidelity"):
 * identical → nothing to do; local is a prefix of incoming → fast-forward;
 * incoming is a prefix of local → keep local; diverged → keep local untouched
 * and restore incoming as a fork with a new session id, or with `force`, back
 * the local copy up under CCBUNDLE_HOME and replace it. Every write is a
 * rename of a finished file from the staging folder (same filesystem), the
 * transcript last, so Claude Code never sees a half-restored session.
 */

export type RestoreOutcome = "new" | "identical" | "fast-forward" | "kept-local" | "forked" | "replaced";

export interface RestoreOptions {
  claudeDir: string;
  /** CCBUNDLE_HOME: where replaced local files are backed up. */
  home: string;
  /** Folder that holds the staged `claude/…` tree. */
  stagedRoot: string;
  session: ManifestSession;
  /** The project directory the session should belong to on this machine. */
  targetCwd: string;
  /** Path rewrites (source project → target project, source home → target home, --map pairs). */
  mappings: PathMapping[];
  /** false keeps every file byte-identical (`--no-rewrite`). */
  rewrite: boolean;
  force: boolean;
}

export interface RestoreResult {
  /** The id to resume: the original, or a fork's new id. */
  sessionId: string;
  originalId: string;
  outcome: RestoreOutcome;
  targetCwd: string;
  transcript: string;
  filesWritten: number;
  filesKept: number;
  /** Local files that differed and were kept (no --force). */
  conflicts: string[];
  backupDir: string | undefined;
}

export async function restoreSession(options: RestoreOptions): Promise<RestoreResult> {
  const { claudeDir, session } = options;
  const targetReal = await realpath(options.targetCwd).catch(() => path.resolve(options.targetCwd));
  const folder = projectFolderName(targetReal);
  const mappings = options.rewrite ? options.mappings : [];
  const remappers = { json: createRemapper(mappings, "json"), text: createRemapper(mappings, "text") };
  const staged = (bundlePath: string) => path.join(options.stagedRoot, ...bundlePath.split("/"));

  // Rewrite paths in every text file first (into new staged files), so comparisons see final bytes.
  const transcriptPath = `claude/projects/${session.folder}/${session.id}.jsonl`;
  const prepared = new Map<string, string>();
  for (const file of session.files) {
    const source = staged(file.path);
    const form = rewriteFormFor(file.path);
    const remapper = form && remappers[form];
    if (remapper && !remapper.identity) {
      const target = `${source}.remapped`;
      await remapFile(source, target, remapper);
      prepared.set(file.path, target);
    } else {
      prepared.set(file.path, source);
    }
  }

  // Decide on the transcript first: it determines whether this is a fork.
  let sessionId = session.id;
  let outcome: RestoreOutcome = "new";
  let backupDir: string | undefined;
  const localTranscript = claudeLayout(claudeDir).transcript(folder, session.id);
  const comparison = await compareIfExists(localTranscript, prepared.get(transcriptPath)!);
  if (comparison === "identical") outcome = "identical";
  else if (comparison === "local-prefix") outcome = "fast-forward";
  else if (comparison === "incoming-prefix") outcome = "kept-local";
  else if (comparison === "diverged") outcome = options.force ? "replaced" : "forked";

  let fork: Fork | undefined;
  if (outcome === "forked") {
    // A new session id and new plan slugs: the fork shares no file with the local session.
    const jsonl = session.files.filter((file) => file.path.endsWith(".jsonl") && file.path !== "claude/history.jsonl");
    const plans = session.files.filter((file) => file.path.startsWith("claude/plans/"));
    fork = await planFork(
      session.id,
      jsonl.map((file) => prepared.get(file.path)!),
      plans.map((file) => file.path.slice("claude/plans/".length)),
    );
    sessionId = fork.newId;
    for (const file of jsonl) {
      const target = `${staged(file.path)}.forked`;
      await remapFile(prepared.get(file.path)!, target, fork.rewriter);
      prepared.set(file.path, target);
    }
  }

  const destination = (bundlePath: string): string => {
    let rel = bundlePath.slice("claude/".length);
    rel = rel.replace(`projects/${session.folder}/`, `projects/${folder}/`);
    if (fork) rel = forkRelativePath(rel, fork);
    return path.join(claudeDir, ...rel.split("/"));
  };

  const conflicts: string[] = [];
  let filesWritten = 0;
  let filesKept = 0;
  const ensureBackupDir = () => {
    backupDir ??= path.join(
      options.home,
      "backups",
      `${new Date().toISOString().replace(/[:.]/g, "-")}-${randomBytes(3).toString("hex")}`,
    );
    return backupDir;
  };

  const installOne = async (bundlePath: string, isTranscript: boolean) => {
    const source = prepared.get(bundlePath)!;
    const target = destination(bundlePath);
    if (isTranscript) {
      if (outcome === "identical" || outcome === "kept-local") {
        filesKept++;
        return;
      }
      if (outcome === "replaced") {
        await backupFile(target, ensureBackupDir(), path.relative(claudeDir, target));
      }
      await installFile(source, target);
      filesWritten++;
      return;
    }
    const relation = await compareIfExists(target, source);
    if (relation === "identical" || relation === "incoming-prefix") {
      filesKept++;
      return;
    }
    if (relation === "diverged" && !options.force && outcome !== "forked") {
      conflicts.push(path.relative(claudeDir, target));
      filesKept++;
      return;
    }
    if (relation === "diverged") await backupFile(target, ensureBackupDir(), path.relative(claudeDir, target));
    await installFile(source, target);
    filesWritten++;
  };

  for (const file of session.files) {
    if (file.path === transcriptPath || file.path === "claude/history.jsonl") continue;
    await installOne(file.path, false);
  }
  const history = session.files.find((file) => file.path === "claude/history.jsonl");
  if (history) {
    const historySource = prepared.get(history.path)!;
    await mergeHistory(
      claudeLayout(claudeDir).history,
      historySource,
      sessionId === session.id ? null : remapIds(session.id, sessionId),
    );
  }
  await installOne(transcriptPath, true);

  return {
    sessionId,
    originalId: session.id,
    outcome,
    targetCwd: targetReal,
    transcript: destination(transcriptPath),
    filesWritten,
    filesKept,
    conflicts,
    backupDir,
  };
}

async function compareIfExists(local: string, incoming: string): Promise<Comparison | undefined> {
  try {
    await stat(local);
  } catch (err) {
    if (errnoCode(err) === "ENOENT") return undefined;
    throw err;
  }
  return compareFiles(local, incoming);
}

function remapIds(oldId: string, newId: string): (line: string) => string {
  return (line) => line.split(oldId).join(newId);
}

/** Append the bundle's prompt-history lines that `history.jsonl` does not have yet. */
async function mergeHistory(historyFile: string, incomingFile: string, rewrite: ((line: string) => string) | null) {
  const incoming = (await readFile(incomingFile, "utf8")).split("\n").filter((line) => line.length > 0);
  let existing = "";
  try {
    existing = await readFile(historyFile, "utf8");
  } catch (err) {
    if (errnoCode(err) !== "ENOENT") throw err;
  }
  const have = new Set(existing.split("\n"));
  const fresh = incoming.map((line) => (rewrite ? rewrite(line) : line)).filter((line) => !have.has(line));
  if (fresh.length === 0) return;
  const prefix = existing.length > 0 && !existing.endsWith("\n") ? "\n" : "";
  await appendFile(historyFile, `${prefix}${fresh.join("\n")}\n`, { mode: 0o600 });
}

/** Remove a staging folder, whatever state it is in. */
export async function removeStaging(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
}
