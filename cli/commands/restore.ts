import type { Argv } from "yargs";
import { lastActivity } from "../../core/backup/filter.js";
import type { RestoredSession } from "../../core/backup/restore.js";
import type { SnapshotSession } from "../../core/backup/snapshot.js";
import { parseMaps } from "../../core/claude/target.js";
import { formatBytes, parseDuration } from "../../core/duration.js";
import { ExitCode, UsageError } from "../../core/errors.js";
import { onInterrupt } from "../../core/interrupt.js";
import { Context, type GlobalArgs } from "../context.js";
import { count, Output } from "../output.js";
import { PhaseBars } from "../progress.js";
import {
  gatherWarnings,
  maybeResume,
  printGathered,
  printRecovered,
  printRestored,
  RESUME_HELP,
  sessionJson,
} from "./handoff.js";

/** `list`, `restore`, `prune`: reading and looking after backup snapshots. */

export function restoreCommands(cli: Argv<GlobalArgs>): Argv<GlobalArgs> {
  return cli
    .command(
      "list",
      "Show backup snapshots and the sessions of the newest one (or --snapshot)",
      (y) =>
        y
          .option("snapshot", { type: "string", describe: "Show the sessions of this snapshot (id or prefix)" })
          .option("project", { type: "string", describe: "Only sessions of this project directory (or below it)" })
          .option("since", { type: "string", describe: "Only sessions active since: a duration (7d) or a date" })
          .option("until", { type: "string", describe: "Only sessions active until: a duration (7d) or a date" })
          .option("machine", { type: "string", describe: MACHINE_HELP }),
      async (args) => {
        const ctx = new Context(args);
        const key = await ctx.userKey();
        const filter = {
          project: args.project,
          machine: args.machine,
          since: args.since === undefined ? undefined : parseTime(args.since, "--since"),
          until: args.until === undefined ? undefined : parseTime(args.until, "--until"),
        };
        const { locateBackups } = await import("../../core/backup/locate.js");
        const { listBackups } = await import("../../core/backup/list.js");
        const location = await locateBackups(ctx.settings, key);
        try {
          const result = await listBackups({ store: location.store, key, snapshot: args.snapshot, filter });
          ctx.out.result({ ok: true, via: location.via, ...result });
          // --quiet: what a script loops over, the ids of the sessions (`ccbundle restore <id>` takes them).
          if (ctx.out.quiet) for (const entry of result.sessions) ctx.out.essential(entry.id);
          ctx.out.line(`Snapshots in ${result.store} (${result.snapshots.length}):`);
          for (const s of result.snapshots) {
            ctx.out.line(
              s.damaged
                ? `  ${s.id}  damaged: ${s.damaged}`
                : `  ${s.id}  ${shortDate(Date.parse(s.created))}  ${s.host}  ${count(s.sessions, "session")}  ${formatBytes(s.bytes)}`,
            );
          }
          if (!result.snapshot) {
            ctx.out.line(
              "No backups here yet: `ccbundle backup` writes the first (a mistyped bucket, prefix or folder looks the same).",
            );
            return;
          }
          ctx.out.line("");
          ctx.out.line(`Sessions in snapshot ${result.snapshot} (${result.sessions.length}):`);
          for (const entry of result.sessions) ctx.out.line(`  ${sessionLine(entry)}`);
        } finally {
          await location.store.close?.();
        }
      },
    )
    .command(
      "restore [session]",
      "Restore one session (id prefix) or --all from a backup snapshot",
      (y) =>
        y
          .positional("session", { type: "string", describe: "Session id or unique prefix" })
          .option("all", { type: "boolean", default: false, describe: "Every session of the snapshot" })
          .option("snapshot", { type: "string", describe: "Snapshot id or prefix (default: the newest)" })
          .option("project", {
            type: "string",
            describe: "With a session: restore into this project. With --all: only this project's sessions",
          })
          .option("machine", { type: "string", describe: MACHINE_HELP })
          .option("map", { type: "string", array: true, describe: "Move a path prefix <old>=<new> (repeatable)" })
          .option("resume", { type: "boolean", describe: RESUME_HELP })
          .option("rewrite", { type: "boolean", default: true, describe: "Rewrite paths (--no-rewrite keeps bytes)" })
          .option("force", { type: "boolean", default: false, describe: "Replace diverged local copies (backed up)" })
          .option("verbose", {
            type: "boolean",
            default: false,
            describe: `With --all: a line for every session (above ${LIST_EACH_UP_TO}, only those that need a word)`,
          }),
      async (args) => {
        if (args.all && args.session) {
          throw new UsageError("give a session or --all, not both", {
            hint: "ccbundle restore <session-id-prefix>  or  ccbundle restore --all (see `ccbundle list`)",
          });
        }
        if (!args.all && !args.session) {
          throw new UsageError("say which session to restore, or --all", {
            hint: "ccbundle restore <session-id-prefix>  or  ccbundle restore --all (see `ccbundle list`)",
          });
        }
        const ctx = new Context(args);
        const maps = parseMaps(args.map);
        const key = await ctx.userKey();
        const bars = new PhaseBars(ctx.out);
        const { locateBackups } = await import("../../core/backup/locate.js");
        const { restoreBackup } = await import("../../core/backup/restore.js");
        const location = await locateBackups(ctx.settings, key);
        let result: Awaited<ReturnType<typeof restoreBackup>>;
        // Ctrl-C half-way through thousands of sessions: say how far it got and how to go on.
        let tally: { restored: number; of: number } | undefined;
        const forgetTally = args.all
          ? onInterrupt(
              () => {
                if (!tally || ctx.out.json) return;
                process.stderr.write(
                  `ccbundle: restored ${tally.restored} of ${count(tally.of, "session")} before the interrupt\nhint: run the same command again to restore the rest (what is restored is not downloaded again)\n`,
                );
              },
              { last: true },
            )
          : undefined;
        // The same, as --json's document.
        if (args.all) {
          ctx.out.interruptDetail = () =>
            tally
              ? {
                  restored: tally.restored,
                  of: tally.of,
                  hint: "run the same command again to restore the rest (what is restored is not downloaded again)",
                }
              : {};
        }
        try {
          result = await restoreBackup({
            settings: ctx.settings,
            key,
            store: location.store,
            snapshot: args.snapshot,
            select: args.all
              ? { all: true, project: args.project, machine: args.machine }
              : { all: false, prefix: args.session!, project: args.project, machine: args.machine },
            cwd: process.cwd(),
            maps,
            rewrite: args.rewrite,
            force: args.force,
            onProgress: bars.listener(),
            onRestored: (restored, of) => {
              tally = { restored, of };
            },
          });
        } finally {
          forgetTally?.();
          bars.stop();
          await location.store.close?.();
        }
        const partial = result.failures.length > 0 && result.restored.length > 0;
        const failed = result.failures.length > 0 && result.restored.length === 0;
        const total = result.restored.length + result.failures.length + result.notAttempted;
        const first = result.failures[0];
        ctx.out.result({
          ok: result.failures.length === 0,
          partial,
          ...(first
            ? {
                error: {
                  message:
                    result.failures.length === 1
                      ? `session ${first.session} was not restored: ${first.message}`
                      : `${result.failures.length} of ${total} sessions were not restored`,
                  hint: runHint(first.hint, partial),
                  exitCode: partial ? ExitCode.partial : first.exitCode,
                },
              }
            : {}),
          store: result.store,
          via: location.via,
          snapshot: result.snapshot,
          sessions: result.restored.map((session) => ({
            ...sessionJson(session),
            host: session.host,
            backedUp: session.backedUp,
            ...(session.alreadyRestored ? { alreadyRestored: true } : {}),
          })),
          failures: result.failures,
          notAttempted: result.notAttempted,
          ...(result.warnings.length > 0 ? { warnings: result.warnings } : {}),
        });
        for (const warning of result.warnings) ctx.out.warn(warning);
        ctx.out.line(`Restoring from snapshot ${result.snapshot} in ${result.store}`);
        printRecovered(ctx, result);
        // Many sessions often share a warning (300 "uncommitted changes" lines said nothing 300 times).
        const gathered = result.restored.length > 1 ? new Map<string, string[]>() : undefined;
        // A restore of thousands printed three lines each: past a few dozen, the sessions that went
        // back as they were backed up are counted by project, and the others get their lines.
        const each = !args.all || args.verbose || result.restored.length <= LIST_EACH_UP_TO;
        const byProject = new Map<string, number>();
        for (const session of result.restored) {
          if (!each && isRoutine(session)) {
            byProject.set(session.targetCwd, (byProject.get(session.targetCwd) ?? 0) + 1);
            if (gathered) gatherWarnings(gathered, session);
            continue;
          }
          ctx.out.line(
            `Session ${session.originalId}${session.title ? ` "${session.title}"` : ""} from ${session.host}`,
          );
          printRestored(ctx, session, gathered);
        }
        if (byProject.size > 0) {
          const routine = [...byProject.values()].reduce((a, b) => a + b, 0);
          ctx.out.line(`${count(routine, "session")} went back as backed up (--verbose lists each):`);
          for (const [project, n] of [...byProject].sort(([a], [b]) => a.localeCompare(b)))
            ctx.out.line(`  ${project}: ${count(n, "session")}`);
        }
        if (gathered) printGathered(ctx, gathered);
        for (const failure of result.failures) {
          if (!ctx.out.json) {
            process.stderr.write(`ccbundle: session ${failure.session} was not restored: ${failure.message}\n`);
            if (failure.hint) process.stderr.write(`hint: ${failure.hint}\n`);
          }
        }
        if (result.notAttempted > 0 && !ctx.out.json) {
          process.stderr.write(
            `ccbundle: the disk is full: stopped with ${count(result.notAttempted, "session")} not tried\nhint: free some space and run the same command again (what was restored is skipped, not downloaded again)\n`,
          );
        }
        if (partial) {
          process.exitCode = ExitCode.partial;
          ctx.out.line(
            `Restored ${result.restored.length} of ${total} sessions; ${result.failures.length} failed (see above)${result.notAttempted > 0 ? `, ${result.notAttempted} not tried` : ""}.`,
          );
        } else if (failed) process.exitCode = result.failures[0]!.exitCode;
        else if (!args.all && result.restored[0]) await maybeResume(ctx, result.restored[0], args.resume);
        else {
          ctx.out.line(summaryLine(result.restored));
        }
      },
    )
    .command(
      "prune",
      "Forget snapshots outside the keep policy and delete blobs no kept snapshot needs",
      (y) =>
        y
          .option("keep-last", { type: "number", describe: "Keep the newest N snapshots" })
          .option("keep-daily", { type: "number", describe: "Keep the newest snapshot of each of the last N days" })
          .option("keep-within", { type: "string", describe: "Keep every snapshot made within this long (e.g. 7d)" })
          .option("grace", {
            type: "string",
            default: "1h",
            describe: "Never delete a blob younger than this (a backup may be running)",
          })
          .option("expired", { type: "boolean", default: false, describe: "Also delete expired handoff blobs" })
          .option("unreferenced", {
            type: "boolean",
            default: false,
            describe: "Also delete every blob nothing of yours names (only in a store no one else uses)",
          })
          .option("forget-machine", {
            type: "string",
            describe: "A machine you retired (host name or machine id): its sessions leave the newest snapshot",
          })
          .option("dry-run", { type: "boolean", default: false, describe: "Say what would go; delete nothing" })
          .option("verbose", {
            alias: "v",
            type: "boolean",
            default: false,
            describe: "Print even without a terminal",
          }),
      async (args) => {
        const ctx = new Context(args);
        const out = new Output(!!args.json, !!args.quiet || (!process.stdout.isTTY && !args.verbose && !args.dryRun));
        for (const flag of ["keepLast", "keepDaily"] as const) {
          const value = args[flag];
          if (value !== undefined && (!Number.isInteger(value) || value < 0)) {
            throw new UsageError(`--${flag === "keepLast" ? "keep-last" : "keep-daily"} takes a whole number`, {
              hint: "e.g. --keep-last 24 --keep-daily 30",
            });
          }
        }
        const withinSeconds =
          args.keepWithin === undefined ? undefined : parseDuration(args.keepWithin, "--keep-within");
        const hasPolicy = args.keepLast !== undefined || args.keepDaily !== undefined || withinSeconds !== undefined;
        if (!hasPolicy && !args.expired && !args.unreferenced && args.forgetMachine === undefined) {
          throw new UsageError("say which snapshots to keep", {
            hint: "e.g. ccbundle prune --keep-last 24 --keep-daily 30 --keep-within 7d",
          });
        }
        // 0 is a valid grace period here (nothing else is backing up), unlike most durations.
        const graceSeconds = /^\s*0+\s*[smhdw]?\s*$/i.test(args.grace) ? 0 : parseDuration(args.grace, "--grace");
        const key = await ctx.userKey();
        const { locateBackups } = await import("../../core/backup/locate.js");
        const { pruneBackups } = await import("../../core/backup/prune.js");
        const location = await locateBackups(ctx.settings, key);
        const transports = await ctx.transports(undefined);
        let result: Awaited<ReturnType<typeof pruneBackups>>;
        try {
          result = await pruneBackups({
            settings: ctx.settings,
            key,
            store: location.store,
            // Without keep flags (only --expired / --unreferenced / --forget-machine) every snapshot stays.
            policy: hasPolicy
              ? { last: args.keepLast, daily: args.keepDaily, withinSeconds }
              : { last: Number.MAX_SAFE_INTEGER },
            graceSeconds,
            dryRun: args.dryRun,
            expired: args.expired,
            unreferenced: args.unreferenced,
            forgetMachine: args.forgetMachine,
            transports,
          });
        } finally {
          await Promise.all(transports.map((t) => t.close?.()));
          await location.store.close?.();
        }
        out.result({ ok: true, ...result });
        const verb = result.dryRun ? "Would remove" : "Removed";
        if (result.forgot) {
          const { host, machine, sessions } = result.forgot;
          out.line(
            result.dryRun
              ? `Would forget ${count(sessions, "session")} of ${host} (${machine.slice(0, 8)})`
              : `Forgot ${count(sessions, "session")} of ${host} (${machine.slice(0, 8)}): snapshot ${result.forgot.snapshot} lists the rest`,
          );
        }
        out.line(
          `${verb} ${result.snapshots.removed.length} snapshot(s), kept ${result.snapshots.kept.length}, in ${result.store}`,
        );
        for (const id of result.snapshots.removed) out.line(`  - ${id}`);
        out.line(
          `${verb} ${result.blobs.removed} blob(s), ${formatBytes(result.blobs.removedBytes)}; kept ${result.blobs.young} younger than ${args.grace}, ${result.blobs.liveHandoffs} of live handoffs`,
        );
        if (result.blobs.unknown > 0) {
          out.line(`Left ${result.blobs.unknown} blob(s) that nothing of yours names (--unreferenced deletes them)`);
        }
        for (const warning of result.warnings) out.warn(warning);
      },
    );
}

const MACHINE_HELP = "Only what this machine backed up: its host name or machine id (`ccbundle list` shows them)";

/** A duration back from now ("7d") or a date ("2026-11-01"), as ms. */
function parseTime(text: string, flag: string): number {
  if (/^\s*\d+\s*[smhdw]/i.test(text)) return Date.now() - parseDuration(text, flag) * 1000;
  const time = Date.parse(text);
  if (Number.isNaN(time)) {
    throw new UsageError(`${flag}: cannot read "${text}" as a duration or a date`, {
      hint: "use e.g. 7d, 24h or 2026-11-01",
    });
  }
  return time;
}

function sessionLine(entry: SnapshotSession): string {
  const when = shortDate(lastActivity(entry));
  const title = entry.title ? ` "${entry.title.length > 48 ? `${entry.title.slice(0, 47)}…` : entry.title}"` : "";
  return `${when}  ${entry.id.slice(0, 8)}  ${entry.project}${title}  ${formatBytes(entry.bytes)}  ${entry.host}`;
}

function shortDate(time: number): string {
  if (Number.isNaN(time)) return "????-??-?? ??:??";
  const date = new Date(time);
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

/** restore --all prints every session up to this many; past it, only those that need a word. */
const LIST_EACH_UP_TO = 30;

/**
 * Restored as it was backed up, with nothing to say: new, or already here and identical with
 * nothing brought in; no conflict, no fork, no local file saved or backed up.
 */
function isRoutine(session: RestoredSession): boolean {
  const plain = session.outcome === "new" || (session.outcome === "identical" && session.filesWritten === 0);
  return (
    plain &&
    session.conflicts.length === 0 &&
    session.saved.length === 0 &&
    session.sessionId === session.originalId &&
    !session.backupDir
  );
}

/**
 * The last line of a restore --all that went through: what was written, what was already here
 * (and how much of that was not even downloaded, see core/backup/restore-memo.ts), what was kept.
 */
function summaryLine(restored: RestoredSession[]): string {
  const same = restored.filter((session) => session.outcome === "identical").length;
  const kept = restored.filter((session) => session.outcome === "kept-local").length;
  const wrote = restored.length - same - kept;
  const before = restored.filter((session) => session.alreadyRestored && session.outcome === "identical").length;
  const notFetched =
    before > 0 ? ` (${before} as an earlier restore left ${before === 1 ? "it" : "them"}: not downloaded again)` : "";
  const parts: string[] = [];
  if (same > 0) {
    const who =
      wrote === 0 && kept === 0
        ? same === 1
          ? "the session is"
          : `all ${same} sessions are`
        : `${same} ${same === 1 ? "was" : "were"}`;
    parts.push(`${who} already here as backed up${notFetched}`);
  }
  if (kept > 0) parts.push(`${kept} kept as ${kept === 1 ? "it is" : "they are"} (the local copy is ahead)`);
  if (wrote === 0 && restored.length > 0) return `Nothing to restore: ${parts.join("; ")}.`;
  return `${[`Restored ${count(wrote, "session")}`, ...parts].join("; ")}.`;
}

/**
 * The hint for a whole run from its first failure's: when other sessions were restored, that
 * session's "nothing was changed" is not true of the run, which the same command finishes.
 */
export function runHint(hint: string | undefined, partial: boolean): string | undefined {
  if (!partial) return hint;
  const fix = hint?.replace(/;? ?nothing was changed\.?$/, "");
  const again = "run the same command again to restore the rest (what was restored is not downloaded again)";
  return fix ? `${fix}; then ${again}` : again;
}
