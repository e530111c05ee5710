import type { Argv } from "yargs";
import { findOnPath, resumeCommandLine, runClaudeResume } from "../../core/claude/resume.js";
import { parseMaps } from "../../core/claude/target.js";
import { parseRecipient } from "../../core/crypto/keys.js";
import { formatBytes, formatDuration, parseDuration } from "../../core/duration.js";
import type { ReceivedSession, ReceiveResult } from "../../core/receive.js";
import { Context, type GlobalArgs } from "../context.js";

/** `push`, `pull`, `export`, `import`: moving one session. */

const DEFAULT_TTL = "24h";

export function handoffCommands(cli: Argv<GlobalArgs>): Argv<GlobalArgs> {
  return cli
    .command(
      "push",
      "Send this project's latest session (or --session) to your store and publish a pointer",
      (y) =>
        y
          .option("session", { type: "string", describe: "Session id or unique prefix (default: newest of --project)" })
          .option("project", { type: "string", describe: "Project directory (default: current directory)" })
          .option("to", {
            type: "string",
            array: true,
            describe: "Also readable by this z32 key or age1… recipient (repeatable)",
          })
          .option("ttl", { type: "string", default: DEFAULT_TTL, describe: "How long the handoff stays valid" })
          .option("burn", { type: "boolean", default: false, describe: "Delete after the first successful pull" }),
      async (args) => {
        const ctx = new Context(args);
        const ttlSeconds = parseDuration(args.ttl, "--ttl");
        const recipients = (args.to ?? []).map(parseRecipient);
        const key = await ctx.userKey();
        const store = await ctx.store();
        const { pushSession } = await import("../../core/push.js");
        try {
          const transports = await ctx.transports(store);
          const result = await pushSession({
            settings: ctx.settings,
            key,
            projectDir: args.project ?? process.cwd(),
            sessionId: args.session,
            store,
            transports,
            recipients,
            ttlSeconds,
            burn: args.burn,
          });
          await Promise.all(transports.map((t) => t.close?.()));
          ctx.out.result({ ok: true, ...result, key: key.z32 });
          ctx.out.line(`Pushed session ${result.sessionId}${result.title ? ` "${result.title}"` : ""}`);
          ctx.out.line(
            `  ${result.files} files, ${formatBytes(result.bytes)} → ${formatBytes(result.blobBytes)} encrypted in ${result.store}`,
          );
          ctx.out.line(
            `  record ${result.recordBytes}/1000 bytes, ${result.publishedTo}; expires in ${formatDuration(ttlSeconds)}${args.burn ? ", burn after reading" : ""}`,
          );
          for (const failure of result.publishFailures) ctx.out.warn(`not published: ${failure}`);
          for (const warning of result.warnings) ctx.out.warn(warning);
          if (!ctx.settings.store) {
            ctx.out.warn(
              `the bundle is in the default store, a folder on this machine (${ctx.settings.defaultStore}); another machine can pull it only if it can read that folder. Set CCBUNDLE_STORE (or --store) to a NAS path or s3://… store`,
            );
          }
          ctx.out.line("");
          ctx.out.line("On the other machine run:");
          ctx.out.line(`  ccbundle pull${recipients.length > 0 ? ` ${key.z32}` : ""}`);
        } finally {
          await store.close?.();
        }
      },
    )
    .command(
      "pull [key]",
      "Fetch the latest handoff for you, restore it and resume it in Claude Code",
      (y) =>
        y
          .positional("key", { type: "string", describe: "The sender's z32 key (default: your own)" })
          .option("project", { type: "string", describe: "Restore into this project directory" })
          .option("map", { type: "string", array: true, describe: "Rewrite a path prefix <old>=<new> (repeatable)" })
          .option("resume", {
            type: "boolean",
            default: true,
            describe: "Run `claude --resume` afterwards (--no-resume to skip)",
          })
          .option("rewrite", {
            type: "boolean",
            default: true,
            describe: "Rewrite paths in the transcript (--no-rewrite keeps bytes identical)",
          })
          .option("force", {
            type: "boolean",
            default: false,
            describe: "Replace a diverged local copy (backed up first)",
          }),
      async (args) => {
        const ctx = new Context(args);
        const key = await ctx.userKey();
        const store = ctx.settings.store ? await ctx.store() : undefined;
        const transports = await ctx.transports(store);
        const { pullSession } = await import("../../core/pull.js");
        let result: Awaited<ReturnType<typeof pullSession>>;
        try {
          result = await pullSession({
            settings: ctx.settings,
            key,
            publisher: args.key ?? key.z32,
            transports,
            storeOverride: ctx.settings.store,
            project: args.project,
            cwd: process.cwd(),
            maps: parseMaps(args.map),
            rewrite: args.rewrite,
            force: args.force,
          });
        } finally {
          await Promise.all(transports.map((t) => t.close?.()));
          await store?.close?.();
        }
        const session = result.sessions[0]!;
        ctx.out.result({
          ok: true,
          publisher: result.payload.pub,
          signer: result.signer,
          resolvedFrom: result.resolvedFrom,
          burned: result.burned,
          sessions: result.sessions.map(sessionJson),
        });
        ctx.out.line(
          `Pulled session ${session.originalId}${session.title ? ` "${session.title}"` : ""} (signed by ${result.signer}, via ${result.resolvedFrom.join(", ")})`,
        );
        printRecovered(ctx, result);
        printRestored(ctx, session);
        if (result.burned)
          ctx.out.line(
            "This was a burn-after-read handoff: the blob is deleted and the record replaced by a tombstone.",
          );
        await maybeResume(ctx, session, args.resume);
      },
    )
    .command(
      "export",
      "Write a session bundle to a file (USB stick, mail)",
      (y) =>
        y
          .option("session", { type: "string", describe: "Session id or unique prefix (default: newest of --project)" })
          .option("project", { type: "string", describe: "Project directory (default: current directory)" })
          .option("to", {
            type: "string",
            array: true,
            describe: "Also readable by this z32 key or age1… recipient (repeatable)",
          })
          .option("out", { type: "string", demandOption: true, describe: "The bundle file to write" }),
      async (args) => {
        const ctx = new Context(args);
        const recipients = (args.to ?? []).map(parseRecipient);
        const key = await ctx.userKey();
        const { exportSession } = await import("../../core/transfer.js");
        const result = await exportSession({
          settings: ctx.settings,
          key,
          projectDir: args.project ?? process.cwd(),
          sessionId: args.session,
          recipients,
          out: args.out,
        });
        ctx.out.result({ ok: true, ...result });
        ctx.out.line(`Exported session ${result.sessionId}${result.title ? ` "${result.title}"` : ""}`);
        ctx.out.line(
          `  ${result.files} files, ${formatBytes(result.bytes)} → ${formatBytes(result.fileBytes)} in ${result.out}`,
        );
        ctx.out.line(
          `On the other machine: ccbundle import ${result.out}${recipients.length > 0 ? ` --from ${key.z32}` : ""}`,
        );
      },
    )
    .command(
      "import <file>",
      "Restore a session bundle file and resume it",
      (y) =>
        y
          .positional("file", { type: "string", demandOption: true })
          .option("project", { type: "string", describe: "Restore into this project directory" })
          .option("from", {
            type: "string",
            array: true,
            describe: "Accept bundles signed by this z32 key (repeatable)",
          })
          .option("allow-unknown-signer", {
            type: "boolean",
            default: false,
            describe: "Accept a bundle signed by anyone",
          })
          .option("map", { type: "string", array: true, describe: "Rewrite a path prefix <old>=<new> (repeatable)" })
          .option("resume", { type: "boolean", default: true, describe: "Run `claude --resume` afterwards" })
          .option("rewrite", {
            type: "boolean",
            default: true,
            describe: "Rewrite paths (--no-rewrite keeps bytes identical)",
          })
          .option("force", {
            type: "boolean",
            default: false,
            describe: "Replace a diverged local copy (backed up first)",
          }),
      async (args) => {
        const ctx = new Context(args);
        const key = await ctx.userKey();
        const { importBundle } = await import("../../core/transfer.js");
        const result = await importBundle({
          settings: ctx.settings,
          key,
          file: args.file,
          from: args.from ?? [],
          allowUnknownSigner: args.allowUnknownSigner,
          project: args.project,
          cwd: process.cwd(),
          maps: parseMaps(args.map),
          rewrite: args.rewrite,
          force: args.force,
        });
        ctx.out.result({ ok: true, signer: result.signer, sessions: result.sessions.map(sessionJson) });
        const session = result.sessions[0]!;
        ctx.out.line(
          `Imported session ${session.originalId}${session.title ? ` "${session.title}"` : ""} (signed by ${result.signer})`,
        );
        printRecovered(ctx, result);
        printRestored(ctx, session);
        await maybeResume(ctx, session, args.resume);
      },
    );
}

export function sessionJson(session: ReceivedSession) {
  return {
    sessionId: session.sessionId,
    originalId: session.originalId,
    title: session.title,
    outcome: session.outcome,
    project: session.targetCwd,
    targetReason: session.target.reason,
    transcript: session.transcript,
    filesWritten: session.filesWritten,
    filesKept: session.filesKept,
    conflicts: session.conflicts,
    saved: session.saved,
    backupDir: session.backupDir,
    warnings: session.warnings,
  };
}

/** An earlier run was killed during its install phase; this run finished it first. */
export function printRecovered(ctx: Context, result: ReceiveResult): void {
  for (const recovered of result.recovered) {
    const done = recovered.finished.filter((step) => step.result === "written").length;
    if (done > 0) ctx.out.warn(`finished an interrupted restore of an earlier run (${done} files moved into place)`);
  }
}

export function printRestored(ctx: Context, session: ReceivedSession): void {
  const what: Record<string, string> = {
    new: "restored",
    identical: "already here, identical: nothing to do",
    "fast-forward": "fast-forwarded (the local copy was behind)",
    "kept-local": "kept the local copy: it is ahead of the incoming one",
    forked: `the local copy had diverged: kept it, restored the incoming one as a fork ${session.sessionId}`,
    replaced: `replaced the diverged local copy (backup in ${session.backupDir})`,
  };
  ctx.out.line(`  ${what[session.outcome]} → ${session.targetCwd}`);
  ctx.out.line(`  ${session.filesWritten} files written, ${session.filesKept} kept`);
  for (const conflict of session.conflicts)
    ctx.out.warn(`kept local ${conflict} (differs from the incoming one; --force replaces it)`);
  for (const file of session.saved)
    ctx.out.warn(`a local file changed while it was being replaced; its last state is saved in ${file}`);
  for (const warning of session.warnings) ctx.out.warn(warning);
  if (session.outcome === "forked")
    ctx.out.line(`  local session: ${session.originalId}   incoming fork: ${session.sessionId}`);
}

export async function maybeResume(ctx: Context, session: ReceivedSession, resume: boolean): Promise<void> {
  const command = resumeCommandLine(session.sessionId, session.targetCwd);
  if (!resume || ctx.out.json) {
    ctx.out.line(`Resume with: ${command}`);
    return;
  }
  const claude = await findOnPath("claude", ctx.settings.env);
  if (!claude) {
    ctx.out.line("claude is not on PATH here. Resume with:");
    ctx.out.essential(`  ${command}`);
    return;
  }
  ctx.out.line(`Resuming: ${command}`);
  const code = await runClaudeResume(claude, session.sessionId, session.targetCwd, ctx.settings.env);
  if (code !== 0) process.exitCode = code;
}
