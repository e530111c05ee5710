#!/usr/bin/env node
import yargs, { type Argv } from "yargs";
import { hideBin } from "yargs/helpers";
import { UsageError } from "../core/errors.js";
import { TOOL_VERSION } from "../core/version.js";
import { backupCommands } from "./commands/backup.js";
import { doctorCommand } from "./commands/doctor.js";
import { handoffCommands } from "./commands/handoff.js";
import { identityCommands } from "./commands/identity.js";
import { recordCommands } from "./commands/record.js";
import { restoreCommands } from "./commands/restore.js";
import type { GlobalArgs } from "./context.js";
import { Output, tolerateClosedStdout } from "./output.js";

/**
 * The ccbundle command line. Parsing and printing only: every command calls a
 * use case in core/. Heavy modules (AWS SDK, DHT) load inside the commands
 * that need them, so `--help` and `whoami` start fast.
 */

const argv = hideBin(process.argv);
tolerateClosedStdout();
// The AWS SDK warns on every use under Node 20 (still supported by us); keep stderr for our own words.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";

/** Passphrases and PINs never go on argv: `ps` would show them to every user. */
function rejectSecretsOnArgv(args: string[]): void {
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (/^--(passphrase|pin)=/.test(arg) || arg === "--passphrase") {
      throw new UsageError("passphrases and PINs are not accepted on the command line", {
        hint: "use CCBUNDLE_PASSPHRASE / --passphrase-file / --passphrase-fd, or CCBUNDLE_PIN / --pin-file, or type it when asked",
      });
    }
    const next = args[i + 1];
    if (arg === "--pin" && next !== undefined && !next.startsWith("-") && !/^[13-9a-km-uw-z]{52}$/.test(next)) {
      throw new UsageError("a PIN is not accepted on the command line", {
        hint: "--pin takes no value: use CCBUNDLE_PIN or --pin-file, or type it when asked",
      });
    }
  }
}

/** Flags that take a duration: a value starting with "-" reaches yargs as flags instead. */
const DURATION_FLAGS = new Set(["--ttl", "--keep-within", "--since", "--grace"]);

/**
 * `push --ttl -1h`: yargs reads `-1h` as the flags -1 and -h, prints push's help and exits 0
 * without pushing, which a script takes for success. No duration is negative: refuse it.
 */
function rejectNegativeDurations(args: string[]): void {
  for (let i = 0; i + 1 < args.length; i++) {
    if (DURATION_FLAGS.has(args[i]!) && /^-\d/.test(args[i + 1]!)) {
      throw new UsageError(`${args[i]} ${args[i + 1]}: a duration cannot be negative`, {
        hint: "use e.g. 30m, 24h or 7d",
      });
    }
  }
}

/**
 * yargs renders a command's whole help text before running its handler, in
 * case the handler asks for it later; ours never do (failures go through
 * .fail, which prints no help), and laying out the help costs 30 ms and more
 * of string-width per run. Help that is asked for is still rendered on demand.
 * Internal API: if a yargs version lacks it, nothing changes.
 */
function skipHelpCache(cli: Argv<GlobalArgs>): void {
  type Internals = { getInternalMethods?: () => { getUsageInstance?: () => { cacheHelpMessage?: () => void } } };
  const usage = (cli as unknown as Internals).getInternalMethods?.().getUsageInstance?.();
  if (usage && typeof usage.cacheHelpMessage === "function") usage.cacheHelpMessage = () => {};
}

async function main(): Promise<number> {
  const json = argv.includes("--json");
  const quiet = argv.includes("--quiet") || argv.includes("-q");
  const out = new Output(json, quiet);
  try {
    rejectSecretsOnArgv(argv);
    rejectNegativeDurations(argv);
    let cli = yargs(argv)
      .scriptName("ccbundle")
      .usage("$0 <command> [options]\n\nMove Claude Code sessions, files and all, between machines and people.")
      .version(TOOL_VERSION)
      .option("json", { type: "boolean", describe: "Print one JSON document on stdout" })
      .option("quiet", { alias: "q", type: "boolean", describe: "Print only what scripts need" })
      .option("store", { type: "string", describe: "Store URL: /path, file:///path or s3://bucket/prefix?endpoint=…" })
      .option("dht", { type: "boolean", default: true, describe: "Use the Mainline DHT (--no-dht to skip it)" })
      .option("relay", { type: "string", array: true, describe: "pkarr relay URL (repeatable; `none` for no relays)" })
      .option("passphrase-file", { type: "string", describe: "Read the identity passphrase from this file" })
      .option("passphrase-fd", {
        type: "number",
        describe: "Read the identity passphrase from this file descriptor",
        coerce: (fd: number) => {
          if (!Number.isInteger(fd) || fd < 0) throw new Error("--passphrase-fd takes a file descriptor number");
          return fd;
        },
      })
      .group(["json", "quiet", "store", "dht", "relay", "passphrase-file", "passphrase-fd"], "Common options:")
      .strict()
      .demandCommand(1, "say which command to run (see --help)")
      .recommendCommands()
      .completion("completion", "Print a bash/zsh completion script: ccbundle completion >> ~/.bashrc")
      .help()
      .alias("h", "help")
      .wrap(Math.min(110, process.stdout.columns || 100))
      .fail((message, err) => {
        // yargs re-wraps what a coerce throws in its own YError: that is a usage error too.
        if (err && err.name !== "YError") throw err;
        if (err) throw new UsageError(err.message, { hint: "see `ccbundle --help`" });
        const text = message?.startsWith("Did you mean")
          ? `unknown command; did you mean${message.slice(12)}`
          : message;
        throw new UsageError(text ?? "invalid command line", { hint: "see `ccbundle --help`" });
      }) as unknown as Argv<GlobalArgs>;
    skipHelpCache(cli);
    cli = identityCommands(cli);
    cli = handoffCommands(cli);
    cli = recordCommands(cli);
    cli = backupCommands(cli);
    cli = restoreCommands(cli);
    cli = doctorCommand(cli);
    await cli.parseAsync();
    return typeof process.exitCode === "number" ? process.exitCode : 0;
  } catch (err) {
    return out.failure(err);
  }
}

// If the event loop ever drains while a command is still pending (a stream that
// never settles), say so and fail instead of exiting 0 as if all went well.
let finished = false;
process.on("beforeExit", () => {
  if (!finished) {
    finished = true;
    process.stderr.write(
      "ccbundle: internal error: the command stopped before it finished\nhint: this is a bug in ccbundle; please report it\n",
    );
    process.exitCode = 1;
  }
});

main().then((code) => {
  finished = true;
  process.exitCode = code;
  // A safety net: the command is done, so a socket or timer still open (a bug of ours or of a
  // library) must not keep the process, and a cron job, alive. Unref'd, so it fires only then.
  // Output still being written (a pipe to a slow reader; pipes are asynchronous on macOS) is waited for.
  const exitOnceWritten = () => {
    if (process.stdout.writableLength > 0 || process.stderr.writableLength > 0) {
      setTimeout(exitOnceWritten, 200).unref();
      return;
    }
    if (process.env.CCBUNDLE_DEBUG) process.stderr.write("ccbundle: handles left open at exit\n");
    process.exit(code);
  };
  setTimeout(exitOnceWritten, 3000).unref();
});
