import { spawn } from "node:child_process";
import { mkdir, open, realpath, rename, stat } from "node:fs/promises";
import path from "node:path";
import type { Argv } from "yargs";
import type { BackupResult } from "../../core/backup/backup.js";
import { isSessionId } from "../../core/claude/paths.js";
import { shellQuote } from "../../core/claude/resume.js";
import { ccbundleHome, homeDir } from "../../core/config.js";
import { isEncryptedIdentity, readIdentityBytes } from "../../core/crypto/identity-file.js";
import { formatBytes, parseDuration } from "../../core/duration.js";
import { CcbError, describeFailure, ExitCode, UsageError } from "../../core/errors.js";
import type { PublishRecordReport } from "../../core/publish.js";
import { Context, type GlobalArgs } from "../context.js";
import { count, Output } from "../output.js";
import { PhaseBars } from "../progress.js";

/** `backup` and `hook install|uninstall`: scripted backups (cron, systemd, launchd, Claude Code's SessionEnd). */

export function backupCommands(cli: Argv<GlobalArgs>): Argv<GlobalArgs> {
  return cli
    .command(
      "backup",
      "Back up your sessions to the store: only what changed since the last backup is read and uploaded",
      (y) =>
        y
          .option("all", { type: "boolean", describe: "Every session (the default)" })
          .option("project", { type: "string", describe: "Only this project directory's sessions" })
          .option("since", { type: "string", describe: "Only sessions written to within this long (e.g. 2h, 7d)" })
          .option("session", { type: "string", describe: "Only this session (id or unique prefix)" })
          .option("hook", {
            type: "boolean",
            default: false,
            describe: "Read Claude Code's SessionEnd hook JSON on stdin and back up that session in the background",
          })
          .option("detach", {
            type: "boolean",
            default: true,
            hidden: true,
            describe: "With --hook: return at once and back up in a detached process",
          })
          .option("publish", {
            type: "boolean",
            default: false,
            describe: "Point your record at the new snapshot, so `restore --all` finds it with the identity alone",
          })
          .option("concurrency", { type: "number", default: 3, describe: "Bundles uploaded at once" })
          .option("verbose", {
            alias: "v",
            type: "boolean",
            default: false,
            describe: "Print the summary even without a terminal (cron prints nothing on success)",
          })
          .conflicts("all", ["project", "session", "since"])
          .conflicts("session", ["project", "since"]),
      async (args) => {
        if (args.hook) return runHook(args);
        const ctx = new Context(args);
        // Quiet by default without a terminal: cron mails whatever a job prints.
        const out = new Output(!!args.json, !!args.quiet || (!process.stdout.isTTY && !args.verbose));
        if (!Number.isInteger(args.concurrency) || args.concurrency < 1 || args.concurrency > 16) {
          throw new UsageError("--concurrency takes a whole number from 1 to 16", { hint: "e.g. --concurrency 3" });
        }
        const sinceSeconds = args.since === undefined ? undefined : parseDuration(args.since, "--since");
        const key = await ctx.userKey();
        const store = await ctx.store();
        const bars = new PhaseBars(out);
        const { backupSessions } = await import("../../core/backup/backup.js");
        let result: BackupResult;
        let published: PublishOutcome | undefined;
        try {
          result = await backupSessions({
            settings: ctx.settings,
            key,
            store,
            scope: { sessionId: args.session, project: args.project, sinceSeconds },
            cwd: process.cwd(),
            concurrency: args.concurrency,
            lockWaitMs: args.session ? 10 * 60_000 : 60_000,
            onProgress: bars.listener(),
          });
          bars.stop();
          if (args.publish && result.snapshot) published = await publish(ctx, store, result.snapshot);
        } finally {
          bars.stop();
          await store.close?.();
        }
        reportBackup(out, result, published);
      },
    )
    .command("hook", "Back up each session when it ends, through Claude Code's SessionEnd hook", (y) =>
      y
        .command(
          "install",
          "Add the SessionEnd hook to Claude Code's settings.json (other settings are kept)",
          (z) => z.option("publish", { type: "boolean", default: false, describe: "The hook also runs --publish" }),
          async (args) => {
            const ctx = new Context(args);
            // A hook that cannot open the identity would fail at every session end, seen by nobody.
            if (ctx.args.passphraseFile) await ctx.userKey();
            const command = await hookCommand(ctx, args.publish);
            const { installHook } = await import("../../core/claude/settings-hook.js");
            const change = await installHook(ctx.settings.claudeDir, command);
            const warnings = await hookWarnings(ctx);
            ctx.out.result({ ok: true, ...change, warnings });
            ctx.out.line(
              change.changed
                ? `Added a SessionEnd hook to ${change.settingsFile}: every session is backed up when it ends.`
                : `The SessionEnd hook is already in ${change.settingsFile}.`,
            );
            if (change.backup) ctx.out.line(`  previous settings kept in ${change.backup}`);
            ctx.out.line(`  command: ${command}`);
            ctx.out.line(`  log: ${path.join(ctx.settings.home, "logs", "hook.log")}`);
            for (const warning of warnings) ctx.out.warn(warning);
          },
        )
        .command(
          "uninstall",
          "Remove ccbundle's SessionEnd hook from Claude Code's settings.json",
          (z) => z,
          async (args) => {
            const ctx = new Context(args);
            const { uninstallHook } = await import("../../core/claude/settings-hook.js");
            const change = await uninstallHook(ctx.settings.claudeDir);
            ctx.out.result({ ok: true, ...change });
            ctx.out.line(
              change.changed
                ? `Removed the SessionEnd hook from ${change.settingsFile}.`
                : `No ccbundle hook in ${change.settingsFile}: nothing to do.`,
            );
            if (change.backup) ctx.out.line(`  previous settings kept in ${change.backup}`);
          },
        )
        .demandCommand(1, "say install or uninstall"),
    );
}

interface BackupArgs extends GlobalArgs {
  session?: string | undefined;
  detach: boolean;
  publish: boolean;
}

interface PublishOutcome {
  /** deferred: the record is full with live handoffs; the next run after they expire publishes. */
  status: "published" | "deferred" | "failed";
  snapshot: string;
  report?: PublishRecordReport;
  error?: { message: string; hint: string | undefined };
}

async function publish(
  ctx: Context,
  store: Awaited<ReturnType<Context["store"]>>,
  snapshot: string,
): Promise<PublishOutcome> {
  const { publishSnapshotSlot } = await import("../../core/backup/slot.js");
  const transports = await ctx.transports(store);
  try {
    const outcome = await publishSnapshotSlot({
      settings: ctx.settings,
      key: await ctx.userKey(),
      storeUrl: store.url,
      snapshot,
      transports,
    });
    return outcome.status === "published"
      ? { status: "published", snapshot, report: outcome.report }
      : { status: "deferred", snapshot, error: { message: outcome.reason, hint: undefined } };
  } catch (err) {
    // The backup itself is complete; only the pointer to it did not go out.
    const { message, hint } = describeFailure(err);
    return { status: "failed", snapshot, error: { message, hint } };
  } finally {
    await Promise.all(transports.map((t) => t.close?.()));
  }
}

function reportBackup(out: Output, result: BackupResult, published: PublishOutcome | undefined): void {
  const counts = result.sessions;
  const succeeded = counts.uploaded + counts.unchanged + counts.resumed;
  const allFailed = counts.failed > 0 && succeeded === 0;
  const exitCode: ExitCode = allFailed
    ? (result.failures[0]?.exitCode ?? ExitCode.failure)
    : counts.failed > 0
      ? ExitCode.partial
      : published?.status === "failed"
        ? ExitCode.failure
        : ExitCode.ok;
  const firstFailure = result.failures[0];
  out.result({
    ok: exitCode === ExitCode.ok,
    partial: exitCode === ExitCode.partial,
    ...result,
    // As every failing command's document has: what failed, in one line.
    ...(exitCode === ExitCode.ok
      ? {}
      : {
          error: firstFailure
            ? {
                message:
                  counts.failed === 1
                    ? `session ${firstFailure.session} was not backed up: ${firstFailure.message}`
                    : `${counts.failed} sessions were not backed up`,
                hint: firstFailure.hint,
                exitCode,
              }
            : {
                message: `the snapshot was not published: ${published?.error?.message ?? "unknown error"}`,
                hint: published?.error?.hint,
                exitCode,
              },
        }),
    published: published
      ? {
          status: published.status,
          snapshot: published.snapshot,
          ...(published.report
            ? {
                summary: published.report.summary,
                failures: published.report.failures,
                recordBytes: published.report.dnsBytes,
              }
            : {}),
          ...(published.error ? { error: published.error } : {}),
        }
      : null,
  });
  const seconds = (result.durationMs / 1000).toFixed(1);
  // Resumed: uploaded by a run that was interrupted before its snapshot; not "unchanged".
  const resumed = counts.resumed > 0 ? `, ${counts.resumed} uploaded by the interrupted run before` : "";
  out.line(
    `Backed up ${count(counts.uploaded, "session")} (${formatBytes(result.bytes.read)} → ${formatBytes(result.bytes.uploaded)} encrypted)${resumed}, ${counts.unchanged} unchanged, in ${seconds} s`,
  );
  if (result.snapshot) {
    out.line(
      result.wroteSnapshot
        ? `Snapshot ${result.snapshot} lists ${count(counts.inSnapshot, "session")} in ${result.store}`
        : `Nothing new: snapshot ${result.snapshot} (${count(counts.inSnapshot, "session")}) is current`,
    );
  }
  if (published?.status === "published") {
    out.line(`Your record points at snapshot ${published.snapshot}: ${published.report?.summary}`);
  }
  if (published?.status === "deferred") {
    out.warn(`your record was not pointed at the snapshot: ${published.error?.message}`);
  }
  for (const failure of published?.report?.failures ?? []) out.warn(`not published: ${failure}`);
  for (const warning of result.warnings) out.warn(warning);
  // Failures reach stderr even when quiet: a cron job's mail must say what went wrong.
  if (!out.json) {
    for (const failure of result.failures) {
      process.stderr.write(`ccbundle: session ${failure.session} was not backed up: ${failure.message}\n`);
      if (failure.hint) process.stderr.write(`hint: ${failure.hint}\n`);
    }
    if (published?.status === "failed") {
      process.stderr.write(
        `ccbundle: the backup is complete (snapshot ${published.snapshot}) but your record was not updated: ${published.error?.message}\n`,
      );
      if (published.error?.hint) process.stderr.write(`hint: ${published.error.hint}\n`);
    }
  }
  if (exitCode !== ExitCode.ok) process.exitCode = exitCode;
}

// ---------------------------------------------------------------- SessionEnd hook

/** What Claude Code writes on a hook's stdin (the fields we use). */
interface HookInput {
  session_id?: unknown;
  transcript_path?: unknown;
  hook_event_name?: unknown;
}

/**
 * `backup --hook`: Claude Code runs it when a session ends and waits for it
 * (1.5 s in all, unless settings ask for more). So: read the session id from
 * stdin, start a detached `backup --session <id>` that logs to
 * `$CCBUNDLE_HOME/logs/hook.log`, and return at once.
 */
async function runHook(args: BackupArgs): Promise<void> {
  const input = await readHookInput();
  const sessionId = input.session_id;
  if (typeof sessionId !== "string" || !isSessionId(sessionId)) {
    throw new UsageError(
      typeof sessionId === "string"
        ? `the hook input's session_id ${JSON.stringify(sessionId.slice(0, 80))} is not a session id`
        : "the hook input names no session id",
      {
        hint: "backup --hook is run by Claude Code's SessionEnd hook with its JSON on stdin",
      },
    );
  }
  const env = { ...process.env };
  // The transcript says exactly which config dir the session lives in.
  const transcript = typeof input.transcript_path === "string" ? input.transcript_path : "";
  if (path.isAbsolute(transcript) && path.basename(transcript) === `${sessionId}.jsonl`) {
    const projects = path.dirname(path.dirname(transcript));
    if (path.basename(projects) === "projects") env.CLAUDE_CONFIG_DIR = path.dirname(projects);
  }
  const passOn = [
    ...(args.store ? ["--store", args.store] : []),
    ...(args.passphraseFile ? ["--passphrase-file", path.resolve(args.passphraseFile)] : []),
    ...(args.dht === false ? ["--no-dht"] : []),
    ...(args.relay ?? []).flatMap((relay) => ["--relay", relay]),
    ...(args.publish ? ["--publish"] : []),
  ];
  const backupArgs = ["backup", "--session", sessionId, ...passOn];
  if (!args.detach) {
    const child = spawn(process.execPath, [process.argv[1]!, ...backupArgs], { env, stdio: "inherit" });
    const code = await new Promise<number>((resolve) => child.on("close", (c) => resolve(c ?? 1)));
    if (code !== 0) process.exitCode = code;
    return;
  }
  const ctx = new Context(args, env);
  const log = await openHookLog(ctx.settings.home);
  try {
    await log.write(`${new Date().toISOString()} SessionEnd ${sessionId}: backing up\n`);
    const child = spawn(process.execPath, [process.argv[1]!, ...backupArgs, "--verbose"], {
      env,
      detached: true,
      stdio: ["ignore", log.fd, log.fd],
    });
    child.unref();
  } finally {
    await log.close();
  }
}

async function readHookInput(): Promise<HookInput> {
  if (process.stdin.isTTY) {
    throw new UsageError("--hook reads Claude Code's hook JSON on stdin", {
      hint: "use `ccbundle backup --session <id>` to back up one session by hand",
    });
  }
  const chunks: Buffer[] = [];
  let size = 0;
  const reading = (async () => {
    for await (const chunk of process.stdin) {
      chunks.push(chunk as Buffer);
      size += (chunk as Buffer).length;
      if (size > 1 << 20) throw new UsageError("the hook input is larger than 1 MB", { hint: "is this a hook?" });
    }
  })();
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new UsageError("no hook input on stdin within 5 s", { hint: "Claude Code passes it" })),
      5000,
    );
  });
  try {
    await Promise.race([reading, timeout]);
  } finally {
    clearTimeout(timer);
    process.stdin.destroy();
  }
  try {
    const value = JSON.parse(Buffer.concat(chunks).toString("utf8")) as unknown;
    if (typeof value === "object" && value !== null && !Array.isArray(value)) return value as HookInput;
  } catch {
    // fall through
  }
  throw new UsageError("the hook input on stdin is not a JSON object", { hint: "Claude Code passes it" });
}

/** Append-only log of hook runs, 0600, rolled over at 1 MB. */
async function openHookLog(home: string) {
  const dir = path.join(home, "logs");
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const file = path.join(dir, "hook.log");
  if (((await stat(file).catch(() => undefined))?.size ?? 0) > 1 << 20) await rename(file, `${file}.1`);
  return open(file, "a", 0o600);
}

/**
 * The command the hook runs: this very ccbundle by absolute path, so it works whatever PATH Claude
 * Code has, with what install was told that the hook's environment may lack: the store, DHT and
 * relay flags and variables, and an identity folder other than the default (else the hook would back up with
 * another identity, or fail for want of one, with nobody watching).
 */
async function hookCommand(ctx: Context, withPublish: boolean): Promise<string> {
  const script = await realpath(process.argv[1]!);
  const store = hookStore(ctx);
  const defaultHome = ccbundleHome({ HOME: homeDir(ctx.settings.env) });
  // Settings from the environment the hook's may lack (Claude Code starts it with its own; from an
  // IDE or a desktop launcher, without what a shell profile exports). For an S3 store, where to
  // find its credentials too (names and paths only: keys themselves never go in settings.json).
  const names = [
    "CCBUNDLE_BOOTSTRAP",
    "CCBUNDLE_RELAYS",
    ...(store?.startsWith("s3:") ? AWS_CREDENTIAL_PLACES : []),
  ] as const;
  const carried = names.flatMap((name) => {
    const value = ctx.settings.env[name];
    return value ? [`${name}=${shellQuote(value)}`] : [];
  });
  return [
    ...(ctx.settings.home !== defaultHome ? [`CCBUNDLE_HOME=${shellQuote(ctx.settings.home)}`] : []),
    ...carried,
    shellQuote(process.execPath),
    shellQuote(script),
    "backup --hook",
    ...(store ? ["--store", shellQuote(store)] : []),
    ...(ctx.args.passphraseFile ? ["--passphrase-file", shellQuote(path.resolve(ctx.args.passphraseFile))] : []),
    ...(ctx.args.dht === false ? ["--no-dht"] : []),
    ...(ctx.args.relay ?? []).flatMap((relay) => ["--relay", shellQuote(relay)]),
    ...(withPublish ? ["--publish"] : []),
  ].join(" ");
}

/** The store the hook is told (--store, else CCBUNDLE_STORE; config.json's the hook reads itself). */
function hookStore(ctx: Context): string | undefined {
  return ctx.args.store ?? ctx.settings.env.CCBUNDLE_STORE;
}

/** Where the AWS chain looks for S3 credentials: a profile name and the files' paths. */
const AWS_CREDENTIAL_PLACES = ["AWS_PROFILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"] as const;

async function hookWarnings(ctx: Context): Promise<string[]> {
  const warnings: string[] = [];
  const store = hookStore(ctx);
  const { env } = ctx.settings;
  if (store?.startsWith("s3:") && env.AWS_ACCESS_KEY_ID && !env.AWS_PROFILE && !/[?&]profile=/.test(store)) {
    warnings.push(
      "this shell's S3 keys (AWS_ACCESS_KEY_ID) are not written into the hook, which may run without them: put them in a profile in ~/.aws/credentials and add profile=NAME to the store URL",
    );
  }
  let encrypted = false;
  try {
    encrypted = isEncryptedIdentity(await readIdentityBytes(ctx.settings.home));
  } catch (err) {
    if (err instanceof CcbError) warnings.push(`${err.message}; the hook needs an identity (ccbundle init)`);
    else throw err;
  }
  if (encrypted && !ctx.args.passphraseFile) {
    warnings.push(
      "your identity is passphrase-protected and the hook runs without a terminal: install with --passphrase-file <file> (mode 0600), or use an identity made with `init --no-passphrase` on this machine",
    );
  }
  return warnings;
}
