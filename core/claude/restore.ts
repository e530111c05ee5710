import { randomBytes } from "node:crypto";
import { statSync } from "node:fs";
import { readdir, stat } from "node:fs/promises";
import path from "node:path";
import type { ManifestSession } from "../bundle/manifest.js";
import { errnoCode } from "../errors.js";
import { backupFile, type Comparison, compareFiles, remapFile } from "./files.js";
import { type Fork, forkId, forkRelativePath, forkSlugs, forkWithSlugs } from "./fork.js";
import type { FsyncQueue } from "./fsync-queue.js";
import type { InstallStep, StepReport } from "./install-journal.js";
import { claudeLayout, projectFolderName } from "./paths.js";
import { createRemapper, type PathMapping, rewriteFormFor } from "./remap.js";
import { readHead } from "./transcript.js";

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
  /** Folder that holds the staged files (and the journal). */
  stagedRoot: string;
  /** Where a bundle file was staged (unpackBundle's stagedPath). */
  stagedPath: (bundlePath: string) => string;
  session: ManifestSession;
  /** The real path of the project directory the session should belong to on this machine. */
  targetReal: string;
  /** Its folder under projects/ when not the one targetReal names (TargetChoice.folder). */
  targetFolder?: string | undefined;
  /** Path rewrites (source project → target project, source home → target home, --map pairs). */
  mappings: PathMapping[];
  /** false keeps every file byte-identical (`--no-rewrite`). */
  rewrite: boolean;
  force: boolean;
  /**
   * Where the staged files are being fsynced (the unpacked ones already handed to it);
   * the rewritten copies made here join it, and the journal waits for all of them.
   */
  durable: FsyncQueue;
  /** Bundle paths staged already rewritten with these mappings (ReceiveRun.stage): not remapped again. */
  rewritten: ReadonlySet<string>;
  /** Where replaced files go (newBackupDir); the sessions installed under one journal share it. */
  backupDir: string;
}

/** A session decided and staged, its moves not done yet. */
export interface PreparedRestore {
  sessionId: string;
  steps: InstallStep[];
  /** The result, from what the journal did with `steps` (its reports for them, in order). */
  finish(reports: StepReport[]): RestoreResult;
}

/** Where replaced local files are backed up: a fresh folder under CCBUNDLE_HOME/backups. */
export function newBackupDir(home: string): string {
  return path.join(
    home,
    "backups",
    `${new Date().toISOString().replace(/[:.]/g, "-")}-${randomBytes(3).toString("hex")}`,
  );
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
  /** Local files that Claude Code wrote to during the rename: their last state, saved in the backup folder. */
  saved: string[];
  backupDir: string | undefined;
  /** Where each of the session's files is here now (its prompt-history lines aside). */
  files: string[];
}

/**
 * Everything before the moves: rewrite paths, decide the outcome and every
 * step, back up what will be replaced. The config dir is unchanged. The caller
 * commits the steps with an install journal (several sessions may share one).
 */
export async function prepareRestore(options: RestoreOptions): Promise<PreparedRestore> {
  const { claudeDir, session, backupDir } = options;
  const { targetReal } = options;
  const folder = options.targetFolder ?? projectFolderName(targetReal);
  const mappings = options.rewrite ? options.mappings : [];
  const remappers = { json: createRemapper(mappings, "json"), text: createRemapper(mappings, "text") };
  const staged = options.stagedPath;

  // Rewrite paths in every text file first (into new staged files), so comparisons see final bytes.
  const transcriptPath = `claude/projects/${session.folder}/${session.id}.jsonl`;
  const prepared = new Map<string, string>();
  for (const file of session.files) {
    const source = staged(file.path);
    const form = rewriteFormFor(file.path);
    const remapper = form && remappers[form];
    if (remapper && !remapper.identity && !options.rewritten.has(file.path)) {
      const target = `${source}.remapped`;
      await remapFile(source, target, remapper, { handOver: (fd) => options.durable.add(fd) });
      prepared.set(file.path, target);
    } else {
      prepared.set(file.path, source);
    }
  }

  // Decide on the transcript first: it determines whether this is a fork.
  let sessionId = session.id;
  let outcome: RestoreOutcome = "new";
  const localTranscript = claudeLayout(claudeDir).transcript(folder, session.id);
  const comparison = await compareIfExists(localTranscript, prepared.get(transcriptPath)!);
  if (comparison === "identical") outcome = "identical";
  else if (comparison === "local-prefix") outcome = "fast-forward";
  else if (comparison === "incoming-prefix") outcome = "kept-local";
  else if (comparison === "diverged") outcome = options.force ? "replaced" : "forked";

  let fork: Fork | undefined;
  /** The incoming session goes on an earlier fork of it (see below): that fork's files follow it. */
  let followingFork = false;
  if (outcome === "forked") {
    // A new session id and new plan slugs: the fork shares no file with the local session.
    const jsonl = session.files.filter((file) => file.path.endsWith(".jsonl") && file.path !== "claude/history.jsonl");
    const plans = session.files.filter((file) => file.path.startsWith("claude/plans/"));
    // The fork's prompt-history lines carry its new id too (the journal appends them as they are).
    const historyFile = session.files.filter((file) => file.path === "claude/history.jsonl");
    // Found once, whichever fork ids are tried below.
    const slugs = await forkSlugs(
      jsonl.map((file) => prepared.get(file.path)!),
      plans.map((file) => file.path.slice("claude/plans/".length)),
    );
    const forkAs = async (newId: string) => {
      const planned = forkWithSlugs(session.id, newId, slugs);
      const files = new Map<string, string>();
      for (const file of [...jsonl, ...historyFile]) {
        const target = `${staged(file.path)}.fork-${newId.slice(0, 8)}`;
        await remapFile(prepared.get(file.path)!, target, planned.rewriter, {
          handOver: (fd) => options.durable.add(fd),
        });
        files.set(file.path, target);
      }
      const existing = await compareIfExists(
        claudeLayout(claudeDir).transcript(folder, newId),
        files.get(transcriptPath)!,
      );
      return { planned, files, existing };
    };
    const incoming = session.files.find((file) => file.path === transcriptPath)!.sha256;
    let chosen = await forkAs(forkId(session.id, incoming, folder));
    if (chosen.existing === undefined) {
      // The other machine went on with the session since an earlier pull forked it here: that fork
      // is a prefix of this one. Going on with it beats a new fork per pull, each a full copy.
      for (const earlier of await earlierForks(
        path.dirname(localTranscript),
        session.id,
        prepared.get(transcriptPath)!,
      )) {
        const attempt = await forkAs(earlier);
        // identical: this version was pulled before, onto that fork (a retried pull).
        if (
          attempt.existing === "local-prefix" ||
          attempt.existing === "incoming-prefix" ||
          attempt.existing === "identical"
        ) {
          chosen = attempt;
          // Its other files go on with it; a fork that is ahead already keeps what it has.
          followingFork = attempt.existing === "local-prefix";
          break;
        }
      }
    }
    fork = chosen.planned;
    sessionId = fork.newId;
    for (const [bundlePath, file] of chosen.files) prepared.set(bundlePath, file);
    // This very fork made by an earlier pull of the same bundle: nothing to do, or resumed since.
    if (chosen.existing === "identical") outcome = "identical";
    else if (chosen.existing === "incoming-prefix") outcome = "kept-local";
    else if (chosen.existing === "local-prefix") outcome = "fast-forward";
  }

  const destination = (bundlePath: string): string => {
    let rel = bundlePath.slice("claude/".length);
    rel = rel.replace(`projects/${session.folder}/`, `projects/${folder}/`);
    if (fork) rel = forkRelativePath(rel, fork);
    return path.join(claudeDir, ...rel.split("/"));
  };

  const rel = (target: string) => path.relative(claudeDir, target);
  let backupUsed = false;

  // Prepare: decide every move and back up what will be replaced, before anything in the
  // config dir changes. A failure here (disk full for the backup) leaves it as it was.
  const steps: InstallStep[] = [];
  const conflicts: string[] = [];
  let filesKept = 0;
  const plan = async (bundlePath: string, isTranscript: boolean) => {
    const source = prepared.get(bundlePath)!;
    const target = destination(bundlePath);
    let replace: boolean;
    let diverged: boolean;
    if (isTranscript) {
      if (outcome === "identical" || outcome === "kept-local") {
        filesKept++;
        return;
      }
      replace = diverged = outcome === "replaced";
    } else {
      const relation = await compareIfExists(target, source);
      if (relation === "identical" || relation === "incoming-prefix") {
        filesKept++;
        return;
      }
      replace = options.force || outcome === "forked" || followingFork;
      diverged = relation === "diverged";
      if (diverged && !replace) {
        conflicts.push(rel(target));
        filesKept++;
        return;
      }
    }
    let backedUp: InstallStep["backedUp"];
    if (diverged) {
      const info = await stat(target);
      await backupFile(target, backupDir, rel(target));
      backupUsed = true;
      backedUp = { size: info.size, mtimeMs: info.mtimeMs };
    }
    steps.push({ source: path.relative(options.stagedRoot, source), target, kind: "file", replace, backedUp });
  };

  for (const file of session.files) {
    if (file.path === transcriptPath || file.path === "claude/history.jsonl") continue;
    await plan(file.path, false);
  }
  const history = session.files.find((file) => file.path === "claude/history.jsonl");
  if (history) {
    steps.push({
      source: path.relative(options.stagedRoot, prepared.get(history.path)!),
      target: claudeLayout(claudeDir).history,
      kind: "history",
      replace: false,
    });
  }
  await plan(transcriptPath, true);

  const finish = (reports: StepReport[]): RestoreResult => {
    let filesWritten = 0;
    const saved: string[] = [];
    const transcriptTarget = destination(transcriptPath);
    for (const report of reports) {
      if (report.step.kind === "history") continue;
      if (report.savedTo) saved.push(report.savedTo);
      if (report.result === "written") filesWritten++;
      else filesKept++;
      if (report.result === "conflict") conflicts.push(rel(report.step.target));
      if (report.step.target === transcriptTarget && report.result !== "written" && outcome !== "replaced") {
        // Claude Code wrote to the transcript while we restored: the local copy is now ahead or diverged.
        outcome = "kept-local";
        if (report.result === "conflict") conflicts.push(rel(transcriptTarget));
      }
    }
    if (saved.length > 0) backupUsed = true;

    return {
      sessionId,
      originalId: session.id,
      outcome,
      targetCwd: targetReal,
      transcript: transcriptTarget,
      filesWritten,
      filesKept,
      conflicts: [...new Set(conflicts)],
      saved,
      backupDir: backupUsed ? backupDir : undefined,
      files: session.files.filter((file) => file.path !== "claude/history.jsonl").map((file) => destination(file.path)),
    };
  };
  return { sessionId, steps, finish };
}

/** Fork ids are version-5 UUIDs (forkId); Claude Code's own session ids are version 4. */
const FORK_TRANSCRIPT = /^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\.jsonl$/;
/** Most earlier forks tried per restore (each try rewrites the incoming transcript once). */
const MAX_EARLIER_FORKS = 4;
const FIRST_LINE_BYTES = 64 * 1024;

/**
 * Forks that an earlier pull made of session `oldId` in `folderDir`, newest first: fork
 * transcripts whose first line is the incoming one's with the fork's id in place of `oldId`.
 * A cheap filter; the caller compares whole files.
 */
async function earlierForks(folderDir: string, oldId: string, incomingTranscript: string): Promise<string[]> {
  const names = await readdir(folderDir).catch(() => [] as string[]);
  const candidates = names.filter((name) => FORK_TRANSCRIPT.test(name));
  if (candidates.length === 0) return [];
  const first = firstLine(incomingTranscript);
  if (first === undefined) return [];
  const found: { id: string; mtime: number }[] = [];
  for (const name of candidates) {
    const id = name.slice(0, -".jsonl".length);
    const file = path.join(folderDir, name);
    const line = firstLine(file);
    if (line === undefined || line.split(id).join(oldId) !== first) continue;
    found.push({ id, mtime: statSync(file).mtimeMs });
  }
  return found
    .sort((a, b) => b.mtime - a.mtime)
    .slice(0, MAX_EARLIER_FORKS)
    .map((fork) => fork.id);
}

/** A file's first line (without its newline), if it ends within FIRST_LINE_BYTES. */
function firstLine(file: string): string | undefined {
  const head = readHead(file, FIRST_LINE_BYTES);
  const end = head?.indexOf(0x0a) ?? -1;
  return end < 0 ? undefined : head!.toString("utf8", 0, end);
}

async function compareIfExists(local: string, incoming: string): Promise<Comparison | undefined> {
  try {
    // Sync: usually absent (a fresh restore), and an ENOENT through the threadpool costs a round trip per file.
    statSync(local);
  } catch (err) {
    if (errnoCode(err) === "ENOENT") return undefined;
    throw err;
  }
  return compareFiles(local, incoming);
}
