import { stat } from "node:fs/promises";
import type { Argv } from "yargs";
import { findOnPath, resumeCommandLine, runClaudeResume } from "../../core/claude/resume.js";
import { parseMaps } from "../../core/claude/target.js";
import { NoIdentityError, readPublicKey } from "../../core/crypto/identity-file.js";
import { parseRecipient, type UserKey } from "../../core/crypto/keys.js";
import { checkNewPin, pinBytes, weakPinReason } from "../../core/crypto/pin.js";
import { requireSecret } from "../../core/crypto/secrets.js";
import { formatBytes, formatDuration, parseDuration } from "../../core/duration.js";
import { UsageError } from "../../core/errors.js";
import type { ReceivedSession, ReceiveResult } from "../../core/receive.js";
import { Context, type GlobalArgs } from "../context.js";
import { fileArgument } from "../file-argument.js";
import { keyArgument } from "../key-argument.js";
import { count, Output } from "../output.js";
import { PhaseBars } from "../progress.js";

/** Push and pull draw a bar only for a session this big: a small one is done before a bar shows. */
const BAR_FROM_BYTES = 16 * 1024 * 1024;

/** `push`, `pull`, `export`, `import`: moving one session. */

const DEFAULT_TTL = "24h";
const MAX_TTL_SECONDS = 365 * 86400;

/** Which session, and who besides you can open it: push and export take the same. */
const SESSION_OPTIONS = {
  session: { type: "string", describe: "Session id or unique prefix (default: newest of --project)" },
  project: { type: "string", describe: "Project directory (default: current directory)" },
  to: { type: "string", array: true, describe: "Also readable by this z32 key or age1… recipient (repeatable)" },
} as const;

/** --project of push and export: a directory here (a typo must not quietly mean the current directory's session). */
async function projectDir(project: string | undefined): Promise<string> {
  if (project === undefined) return process.cwd();
  if (!(await stat(project).catch(() => undefined))?.isDirectory()) {
    throw new UsageError(`--project ${project} is not a directory here`, {
      hint: "give the directory the session ran in, or leave --project out for the current directory",
    });
  }
  return project;
}

export function handoffCommands(cli: Argv<GlobalArgs>): Argv<GlobalArgs> {
  return cli
    .command(
      "push",
      "Send this project's latest session (or --session) to your store and publish a pointer",
      (y) =>
        y
          .options(SESSION_OPTIONS)
          // No yargs default: it would stand in for a `--ttl` given no value (`--ttl $UNSET`).
          .option("ttl", { type: "string", describe: `How long the handoff stays valid (default ${DEFAULT_TTL})` })
          .option("burn", { type: "boolean", default: false, describe: "Delete after the first successful pull" })
          .option("pin", {
            type: "boolean",
            default: false,
            describe:
              "Lock the handoff with a PIN (from CCBUNDLE_PIN, --pin-file or a prompt) for someone without a key",
          })
          .option("pin-file", { type: "string", describe: "Read the PIN from this file (implies --pin)" }),
      async (args) => {
        const ctx = new Context(args);
        // A year is longer than any handoff needs.
        const ttlSeconds = parseDuration(args.ttl ?? DEFAULT_TTL, "--ttl", MAX_TTL_SECONDS, "a year (365d)");
        const recipients = toRecipients(args.to).map((text) => ({
          recipient: parseRecipient(text),
          // Named in the ledger and in `status` as `whoami` prints the key, however it was pasted.
          name: text.trim().startsWith("age1") ? text.trim() : keyArgument(text),
        }));
        const usePin = args.pin || args.pinFile !== undefined;
        if (usePin && recipients.length > 0) {
          throw new UsageError("a handoff is either --to people or by --pin, not both", {
            hint: "push twice: once with --to, once with --pin",
          });
        }
        // Printed as they come, and in the JSON document's `warnings` with the push's own.
        const warnings: string[] = [];
        const warn = (text: string) => {
          warnings.push(text);
          ctx.out.warn(text);
        };
        // An age1 key may be a plain age user's, who can open a file but has no way to pull.
        if (recipients.some((r) => r.name.toLowerCase().startsWith("age1"))) {
          warn(
            "an age1… recipient can pull only if it is a ccbundle identity's (`ccbundle whoami --age-recipient`); for someone who uses plain age, send a file: `ccbundle export --to age1… --out <file>`",
          );
        }
        const dir = await projectDir(args.project); // before a PIN or passphrase is asked for
        const pin = usePin ? await readNewPin(ctx, args.pinFile, warn) : undefined;
        const key = await ctx.userKey();
        const store = await ctx.store();
        const { pushSession } = await import("../../core/push.js");
        const bars = new PhaseBars(ctx.out);
        // Closed whatever happens: an open DHT socket kept a failed push running forever.
        let transports: Awaited<ReturnType<Context["transports"]>> = [];
        try {
          transports = await ctx.transports(store);
          const result = await pushSession({
            settings: ctx.settings,
            key,
            projectDir: dir,
            sessionId: args.session,
            store,
            transports,
            recipients,
            pin,
            ttlSeconds,
            burn: args.burn,
            onProgress: bars.listener({ minTotal: BAR_FROM_BYTES }),
          }).finally(() => bars.stop());
          await Promise.all(transports.map((t) => t.close?.()));
          transports = [];
          const defaultStore = ctx.settings.store
            ? undefined
            : `the bundle is in the default store, a folder on this machine (${ctx.settings.defaultStore}); another machine can pull it only if it can read that folder. Set CCBUNDLE_STORE (or --store) to a NAS path or s3://… store`;
          ctx.out.result({
            ok: true,
            ...result,
            warnings: [...warnings, ...result.warnings, ...(defaultStore ? [defaultStore] : [])],
            key: key.z32,
          });
          const to = {
            self: "to yourself",
            shared: `to ${recipients.length} ${recipients.length === 1 ? "person" : "people"}`,
            pin: "locked with a PIN",
          }[result.mode];
          ctx.out.line(`Pushed session ${result.sessionId}${result.title ? ` "${result.title}"` : ""} ${to}`);
          ctx.out.line(
            `  ${result.files} files, ${formatBytes(result.bytes)} → ${formatBytes(result.blobBytes)} encrypted in ${result.store}`,
          );
          ctx.out.line(
            `  record ${result.recordBytes}/1000 bytes (this slot ${result.slotBytes}, ${count(result.slots, "slot")}), ${result.publishedTo}`,
          );
          ctx.out.line(`  expires in ${formatDuration(ttlSeconds)}${args.burn ? ", burn after reading" : ""}`);
          for (const failure of result.publishFailures) ctx.out.warn(`not published: ${failure}`);
          for (const warning of result.warnings) ctx.out.warn(warning);
          if (defaultStore) ctx.out.warn(defaultStore);
          ctx.out.line("");
          if (result.mode === "self") {
            ctx.out.line("On your other machine run:");
            ctx.out.line("  ccbundle pull");
          } else if (result.mode === "shared") {
            ctx.out.line("The recipients run:");
            ctx.out.line(`  ccbundle pull ${key.z32}`);
          } else {
            ctx.out.line(
              "The receiver runs (no ccbundle key needed; tell them the PIN some other way than this line):",
            );
            ctx.out.line(`  ccbundle pull ${key.z32} --pin`);
          }
        } finally {
          pin?.fill(0);
          await Promise.all(transports.map((t) => t.close?.()));
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
          .option("resume", { type: "boolean", describe: RESUME_HELP })
          .option("rewrite", {
            type: "boolean",
            default: true,
            describe: "Rewrite paths in the transcript (--no-rewrite keeps bytes identical)",
          })
          .option("force", {
            type: "boolean",
            default: false,
            describe: "Replace a diverged local copy (backed up first)",
          })
          .option("pin", {
            type: "boolean",
            default: false,
            describe: "Open a PIN handoff (PIN from CCBUNDLE_PIN, --pin-file or a prompt); needs no ccbundle key",
          })
          .option("pin-file", { type: "string", describe: "Read the PIN from this file (implies --pin)" }),
      async (args) => {
        const ctx = new Context(args);
        // Flags are checked before anything asks for a passphrase or a PIN.
        const maps = parseMaps(args.map);
        const sender = args.key === undefined ? undefined : keyArgument(args.key);
        const usePin = args.pin || args.pinFile !== undefined;
        let key: UserKey | undefined;
        let publisher: string;
        if (usePin) {
          // A PIN receiver needs no identity; the owner trying their own PIN handoff uses theirs (to burn it).
          const own = await readPublicKey(ctx.settings.home);
          if (!sender && !own) {
            throw new UsageError("say whose handoff to pull", { hint: "ccbundle pull <the sender's key> --pin" });
          }
          publisher = sender ?? own!;
          key = own === publisher ? await ctx.userKey() : undefined;
        } else {
          key = await ctx.userKey().catch((err: unknown) => {
            // Someone pulling a PIN handoff who forgot --pin has no identity: say that first.
            if (sender && err instanceof NoIdentityError) {
              throw new NoIdentityError(
                ctx.settings.home,
                "a PIN handoff needs no identity: add --pin; for handoffs sent to your key, run `ccbundle init` and give the sender your `ccbundle whoami`",
              );
            }
            throw err;
          });
          publisher = sender ?? key.z32;
        }
        const pin = usePin
          ? pinBytes(await requireSecret(ctx.pinSource(args.pinFile), { message: "PIN for this handoff: " }))
          : undefined;
        const store = ctx.settings.store ? await ctx.store() : undefined;
        const transports = await ctx.transports(store);
        // The DHT starts while the pull code loads (it resolves first thing).
        for (const transport of transports) transport.warm?.();
        const { pullSession } = await import("../../core/pull.js");
        const bars = new PhaseBars(ctx.out);
        let result: Awaited<ReturnType<typeof pullSession>>;
        try {
          result = await pullSession({
            settings: ctx.settings,
            key,
            pin,
            publisher,
            transports,
            storeOverride: ctx.settings.store,
            project: args.project,
            cwd: process.cwd(),
            maps,
            rewrite: args.rewrite,
            force: args.force,
            onProgress: bars.listener({ minTotal: BAR_FROM_BYTES }),
          });
        } finally {
          bars.stop();
          pin?.fill(0);
          await Promise.all(transports.map((t) => t.close?.()));
          await store?.close?.();
        }
        const session = result.sessions[0]!;
        ctx.out.result({
          ok: true,
          publisher: result.payload.pub,
          signer: result.signer,
          resolvedFrom: result.resolvedFrom,
          slot: result.payload.slot,
          burned: result.burned,
          warnings: result.warnings,
          sessions: result.sessions.map(sessionJson),
        });
        ctx.out.line(
          `Pulled session ${session.originalId}${session.title ? ` "${session.title}"` : ""} (signed by ${result.signer}, via ${result.resolvedFrom.join(", ")})`,
        );
        printRecovered(ctx, result);
        printRestored(ctx, session);
        for (const warning of result.warnings) ctx.out.warn(warning);
        if (result.burned === "record")
          ctx.out.line("Burn after reading: the bundle is deleted and the handoff replaced by a tombstone.");
        else if (result.burned === "blob") ctx.out.line("Burn after reading: the bundle is deleted from the store.");
        await maybeResume(ctx, session, args.resume);
      },
    )
    .command(
      "export",
      "Write a session bundle to a file (USB stick, mail)",
      (y) =>
        y.options(SESSION_OPTIONS).option("out", {
          type: "string",
          demandOption: true,
          describe: "The bundle file to write (- for stdout: `… --out - | ssh host ccbundle import -`)",
        }),
      async (args) => {
        const ctx = new Context(args);
        const toStdout = args.out === "-";
        if (toStdout && ctx.out.json) {
          throw new UsageError("--json and `--out -` both want stdout", {
            hint: "leave out --json (the bundle is the output), or export to a file",
          });
        }
        if (toStdout && process.stdout.isTTY) {
          throw new UsageError("not writing a binary bundle to the terminal", {
            hint: "pipe it (`ccbundle export --out - | ssh host ccbundle import -`) or give a file name",
          });
        }
        const recipients = toRecipients(args.to).map(parseRecipient);
        const { exportSession, checkExportTarget } = await import("../../core/transfer.js");
        if (!toStdout) await checkExportTarget(args.out); // before the passphrase is asked for
        const dir = await projectDir(args.project);
        const key = await ctx.userKey();
        const result = await exportSession({
          settings: ctx.settings,
          key,
          projectDir: dir,
          sessionId: args.session,
          recipients,
          out: toStdout ? process.stdout : args.out,
        });
        // With the bundle on stdout, what we say goes to stderr.
        const out = toStdout ? new Output(false, ctx.out.quiet, process.stderr, process.stderr) : ctx.out;
        out.result({ ok: true, ...result });
        out.line(`Exported session ${result.sessionId}${result.title ? ` "${result.title}"` : ""}`);
        out.line(
          `  ${result.files} files, ${formatBytes(result.bytes)} → ${formatBytes(result.fileBytes)}${toStdout ? " to stdout" : ` in ${result.out}`}`,
        );
        if (!toStdout) {
          out.line(
            `On the other machine: ccbundle import ${result.out}${recipients.length > 0 ? ` --from ${key.z32}` : ""}`,
          );
        }
      },
    )
    .command(
      "import <file>",
      "Restore a session bundle file and resume it",
      (y) =>
        y
          // No `type: "string"`: yargs would turn a lone `-` into "" (see fileArgument).
          .positional("file", { demandOption: true, describe: "The bundle file, or - for stdin" })
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
          .option("resume", { type: "boolean", describe: RESUME_HELP })
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
        const maps = parseMaps(args.map);
        const from = signerKeys(args.from);
        const file = fileArgument(args.file);
        const fromStdin = file === "-";
        if (fromStdin && process.stdin.isTTY) {
          throw new UsageError("`import -` reads the bundle from stdin, and stdin is the terminal", {
            hint: "pipe a bundle in (`ccbundle export --out - | ssh host ccbundle import -`) or give a file name",
          });
        }
        const { importBundle, checkImportSource } = await import("../../core/transfer.js");
        if (!fromStdin) await checkImportSource(file); // before the passphrase is asked for
        const key = await ctx.userKey();
        const result = await importBundle({
          settings: ctx.settings,
          key,
          file: fromStdin ? process.stdin : file,
          from,
          allowUnknownSigner: args.allowUnknownSigner,
          project: args.project,
          cwd: process.cwd(),
          maps,
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
export function printRecovered(ctx: Context, result: Pick<ReceiveResult, "recovered">): void {
  for (const recovered of result.recovered) {
    const done = recovered.finished.filter((step) => step.result === "written").length;
    if (done > 0) ctx.out.warn(`finished an interrupted restore of an earlier run (${done} files moved into place)`);
  }
}

/**
 * What a restore did to one session. With `gathered`, its warnings are collected there
 * (warning → session ids) instead of printed: a restore of many sessions prints each
 * distinct warning once, at the end (see printGathered).
 */
export function printRestored(ctx: Context, session: ReceivedSession, gathered?: Map<string, string[]>): void {
  // Restored onto a fork of the session (a pull that forked it before): the ids differ.
  const onFork = session.sessionId !== session.originalId;
  const what: Record<string, string> = {
    new: "restored",
    // The transcript decides the outcome; its other files (subagents, file history) may still differ.
    identical:
      session.filesWritten > 0
        ? "the transcript was already here, identical; its other files were brought in"
        : session.conflicts.length > 0
          ? "the transcript is already here, identical; some of its other files differ here (see below)"
          : "already here, identical: nothing to do",
    "fast-forward": onFork
      ? `the local copy had diverged: kept it, and brought the fork ${session.sessionId} an earlier pull made up to date`
      : "fast-forwarded (the local copy was behind)",
    "kept-local": onFork
      ? `the local copy had diverged; its fork ${session.sessionId} here already has all of the incoming one`
      : "kept the local copy: it is ahead of the incoming one",
    forked: `the local copy had diverged: kept it, restored the incoming one as a fork ${session.sessionId}`,
    replaced: `replaced the diverged local copy (backup in ${session.backupDir})`,
  };
  ctx.out.line(`  ${what[session.outcome]} → ${session.targetCwd}`);
  ctx.out.line(`  ${count(session.filesWritten, "file")} written, ${session.filesKept} kept`);
  for (const conflict of session.conflicts)
    ctx.out.warn(`kept local ${conflict} (differs from the incoming one; --force replaces it)`);
  for (const file of session.saved)
    ctx.out.warn(`a local file changed while it was being replaced; its last state is saved in ${file}`);
  if (gathered) gatherWarnings(gathered, session);
  else for (const warning of session.warnings) ctx.out.warn(warning);
  if (onFork) ctx.out.line(`  local session: ${session.originalId}   incoming fork: ${session.sessionId}`);
  // --force also replaces other files that differed (plans, tasks, subagents): say where they went.
  if (session.backupDir && session.outcome !== "replaced")
    ctx.out.line(`  the local files it replaced are backed up in ${session.backupDir}`);
}

/** Keep a session's warnings for printGathered, under the sessions each concerns. */
export function gatherWarnings(gathered: Map<string, string[]>, session: ReceivedSession): void {
  for (const warning of session.warnings) gathered.set(warning, [...(gathered.get(warning) ?? []), session.originalId]);
}

/** Each warning gathered by printRestored once, with the session it concerns or how many. */
export function printGathered(ctx: Context, gathered: Map<string, string[]>): void {
  for (const [warning, ids] of gathered) {
    ctx.out.warn(`${warning} (${ids.length === 1 ? `session ${ids[0]!.slice(0, 8)}` : `${ids.length} sessions`})`);
  }
}

export const RESUME_HELP =
  "Run `claude --resume` afterwards: by default only on a terminal; --resume even without one, --no-resume never (never with --json)";

/**
 * `claude --resume` in the session's project, with the terminal handed over. Without a terminal
 * (`ssh host ccbundle pull`, a script, a pipe) Claude Code cannot run interactively: it fails,
 * and what it writes on the way out made the next pull see a diverged copy and fork it. So
 * there it only says how, unless `--resume` asked for it.
 */
export async function maybeResume(ctx: Context, session: ReceivedSession, resume: boolean | undefined): Promise<void> {
  const command = resumeCommandLine(session.sessionId, session.targetCwd);
  if (resume === false || ctx.out.json) {
    ctx.out.line(`Resume with: ${command}`);
    return;
  }
  if (resume === undefined && !(process.stdin.isTTY && process.stdout.isTTY)) {
    ctx.out.line(`Not resuming here (no terminal; --resume starts it anyway). Resume with: ${command}`);
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

/** A new PIN: from CCBUNDLE_PIN, --pin-file, or typed twice; 8+ characters. Returned as bytes the caller zeroes. */
async function readNewPin(ctx: Context, file: string | undefined, warn: (text: string) => void): Promise<Uint8Array> {
  const pin = await requireSecret(ctx.pinSource(file), {
    message: "Choose a PIN for this handoff (8+ characters): ",
    confirm: true,
  });
  checkNewPin(pin);
  const weak = weakPinReason(pin);
  if (weak) {
    warn(
      `${weak} is easy to guess offline (anyone can copy the record): use 10+ random characters or a few random words (docs/modes.md)`,
    );
  }
  return pinBytes(pin);
}

/** The --from keys, checked (a typo would only show as "signed by someone else" after the work). */
function signerKeys(values: string[] | undefined): string[] {
  return (values ?? []).map((value) => keyArgument(value, "--from "));
}

/**
 * The --to values. `--to` with nothing after it (`--to $UNSET`) is a mistake, not "to nobody
 * else": the handoff would quietly go to yourself alone.
 */
function toRecipients(to: string[] | undefined): string[] {
  if (to !== undefined && to.length === 0) {
    throw new UsageError("--to needs a key: a z32 key (`ccbundle whoami` on their machine) or an age1… recipient", {
      hint: "is the variable you passed empty?",
    });
  }
  return to ?? [];
}
