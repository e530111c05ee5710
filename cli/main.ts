#!/usr/bin/env node
import yargs, { type Argv } from "yargs";
import { hideBin } from "yargs/helpers";
import { closest } from "../core/closest.js";
import { UsageError } from "../core/errors.js";
import { interruptedBy, onInterrupt } from "../core/interrupt.js";
import { TOOL_VERSION } from "../core/version.js";
import { backupCommands } from "./commands/backup.js";
import { doctorCommand } from "./commands/doctor.js";
import { handoffCommands } from "./commands/handoff.js";
import { identityCommands } from "./commands/identity.js";
import { recordCommands } from "./commands/record.js";
import { restoreCommands } from "./commands/restore.js";
import type { GlobalArgs } from "./context.js";
import { releaseEarlySignals } from "./early-signal.js";
import { joinDashValues } from "./file-argument.js";
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
    // `init --passphrase` alone is the (default) boolean; a word after it would be the passphrase.
    const next = args[i + 1];
    // Only a long flag or yargs' own true/false may follow: `-x…` would be split into short flags
    // and echoed back in an error, and `--` ends the flags.
    const valueFollows = next !== undefined && !/^(--[^-].*|true|false)$/.test(next);
    if (/^--(passphrase|pin)=/.test(arg) || (arg === "--passphrase" && valueFollows)) {
      throw new UsageError("passphrases and PINs are not accepted on the command line", {
        hint: "use CCBUNDLE_PASSPHRASE / --passphrase-file / --passphrase-fd, or CCBUNDLE_PIN / --pin-file, or type it when asked",
      });
    }
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
 * Whether a boolean flag is on, the way yargs will read it (the last of `--json`, `--json=true`,
 * `--no-json`, `--json=false` wins; `-q` alone or in a cluster such as `-qv`): the output mode of
 * an error that happens before or while yargs parses.
 */
function flagOn(args: string[], name: string, short?: string): boolean {
  let on = false;
  for (const [i, arg] of args.entries()) {
    if (arg === "--") break;
    if (arg === `--${name}` && (args[i + 1] === "false" || args[i + 1] === "true")) on = args[i + 1] === "true";
    else if (arg === `--${name}` || arg === `--${name}=true`) on = true;
    else if (arg === `--no-${name}` || arg === `--${name}=false`) on = false;
    else if (short && /^-[a-zA-Z]+$/.test(arg) && arg.includes(short)) on = true;
  }
  return on;
}

/** Flags whose own checks refuse an empty value in their own words (durations, --to, --session). */
const EMPTY_CHECKED_ELSEWHERE = new Set(["to", "session", "ttl", "since", "keep-within", "grace"]);

/**
 * `--store "$UNSET"`, or `--project` with nothing after it: yargs gives "" (or [] for a repeatable
 * flag), which further on read as "not given" (the environment's store, the current folder, the
 * newest snapshot) and the command went ahead on something else. A flag given empty is refused.
 */
function rejectEmptyValues(args: string[], parsed: Record<string, unknown>): void {
  for (const arg of args) {
    if (arg === "--") break;
    const name = /^--([a-z][a-z0-9-]*)(=|$)/.exec(arg)?.[1];
    if (name === undefined || EMPTY_CHECKED_ELSEWHERE.has(name)) continue;
    const value = parsed[name];
    if (value === "" || (Array.isArray(value) && (value.length === 0 || value.includes("")))) {
      throw new UsageError(`--${name} needs a value`, { hint: "is the variable you passed empty?" });
    }
    // yargs makes a list of a one-value flag given twice, and `--store a --store b` used "a,b".
    if (Array.isArray(value) && !REPEATABLE.has(name)) {
      throw new UsageError(`--${name} was given more than once`, { hint: "give it once" });
    }
  }
}

/** The flags that take several values (`array: true`); any other may be given once. */
const REPEATABLE = new Set(["to", "map", "relay", "from"]);

/**
 * The top-level commands (test/cli-usage.test.ts checks them against --help): a word that is not
 * one of them is an unknown command, whose hint is the top-level --help, not its own.
 */
const COMMANDS = new Set([
  ...["init", "whoami", "key", "push", "pull", "export", "import", "status", "republish", "revoke"],
  ...["backup", "hook", "list", "restore", "prune", "doctor", "completion"],
]);

/** The command named on the command line (for a hint that points at its own --help). */
function commandNamed(args: string[]): string | undefined {
  const words = commandWords(args);
  const first = words[0];
  if (first === undefined || !COMMANDS.has(first)) return undefined;
  // Two-word commands.
  const second = words[1];
  if (
    second &&
    ((first === "key" && /^(export|import)$/.test(second)) || (first === "hook" && /^(un)?install$/.test(second)))
  ) {
    return `${first} ${second}`;
  }
  return /^[a-z]+$/.test(first) ? first : undefined;
}

/** Common options that take a value: in `--store /x push`, /x is not a word of the command. */
const VALUE_OPTIONS = new Set(["--store", "--relay", "--passphrase-file", "--passphrase-fd"]);

/** The words of the command line that are not options or the values of common options. */
function commandWords(args: string[]): string[] {
  return args.filter((arg, index) => !arg.startsWith("-") && !VALUE_OPTIONS.has(args[index - 1] ?? ""));
}

/**
 * yargs' `completion` command prints its script whatever else is given: `completion --json`
 * (README: every command prints one JSON document), `--help`, `--bogus`. Its arguments are
 * checked here; true when this handled the command line (its help printed).
 */
function completionOnly(args: string[], out: Output): boolean {
  if (commandWords(args)[0] !== "completion") return false;
  const rest = args.filter((arg) => arg !== "completion" && arg !== "--quiet" && arg !== "-q");
  if (rest.some((arg) => arg === "--help" || arg === "-h")) {
    out.line(
      "ccbundle completion\n\nPrint a bash/zsh completion script: ccbundle completion >> ~/.bashrc (or ~/.zshrc, run from zsh)",
    );
    return true;
  }
  if (rest.length === 0) return false;
  throw new UsageError(
    rest.includes("--json") ? "completion prints a shell script, not JSON" : `unexpected argument ${rest.join(" ")}`,
    { hint: "run `ccbundle completion` alone" },
  );
}

/**
 * `ccbundle pushh --help`: yargs prints the top-level help and exits 0, so a script's typo
 * passes and a user reads no word about it. Refused like `ccbundle pushh`.
 */
function rejectUnknownCommandHelp(args: string[]): void {
  const typed = commandWords(args)[0];
  if (typed === undefined || COMMANDS.has(typed) || !args.some((arg) => arg === "--help" || arg === "-h")) return;
  const guess = closest(typed, [...COMMANDS]);
  throw new UsageError(`unknown command ${typed}${guess ? `; did you mean ${guess}?` : ""}`, {
    hint: "see `ccbundle --help`",
  });
}

/**
 * yargs' own failure messages ("Unknown argument: tll", "Not enough non-option arguments: got 0,
 * need at least 1") in our words: lower case, flags spelled as typed, a guess for a misspelt flag,
 * and the command's own --help as the hint.
 */
function usageFailure(message: string, args: string[], knownOptions: string[], booleans: Set<string>): UsageError {
  const command = commandNamed(args);
  const hint = `see \`ccbundle ${command ? `${command} ` : ""}--help\``;
  const flag = (name: string) => (name.length === 1 ? `-${name}` : `--${name}`);
  // yargs' "Did you mean push?" for a misspelt command; any other word that is not a command.
  const typedCommand = commandWords(args)[0];
  if (message.startsWith("Did you mean"))
    return new UsageError(`unknown command ${typedCommand ?? ""}; did you mean${message.slice(12)}`, { hint });
  if (typedCommand !== undefined && !COMMANDS.has(typedCommand)) {
    return new UsageError(`unknown command ${typedCommand}`, { hint });
  }
  const unknown = /^Unknown arguments?: (.*)$/.exec(message);
  if (unknown) {
    // yargs lists a dashed name twice (such-flag, suchFlag): once is enough.
    const camel = (name: string) => name.replace(/-([a-z])/g, (_, letter: string) => letter.toUpperCase());
    const listed = unknown[1]!.split(", ");
    const names = listed.filter((name) => !listed.some((other) => other !== name && camel(other) === name));
    const guess = names.length === 1 ? closest(names[0]!, knownOptions) : undefined;
    // As typed: `--no-such-flag` reaches yargs as such-flag (false).
    const typed = (name: string) =>
      args.some((arg) => arg === `--no-${name}` || arg.startsWith(`--no-${name}=`)) ? `--no-${name}` : flag(name);
    const what = names.every(
      (name) => /^[\w-]+$/.test(name) && args.some((arg) => /^-/.test(arg) && arg.includes(name)),
    )
      ? `unknown option ${names.map(typed).join(", ")}`
      : `unexpected argument ${names.join(", ")}`;
    // `--no-projet`: the flag meant takes a value, so `--no-` is not part of the guess.
    const negated =
      names.length === 1 && typed(names[0]!).startsWith("--no-") && guess !== undefined && booleans.has(guess);
    return new UsageError(guess ? `${what}; did you mean ${negated ? `--no-${guess}` : flag(guess)}?` : what, {
      hint,
    });
  }
  if (/^Not enough non-option arguments/.test(message)) return new UsageError("missing argument", { hint });
  const missing = /^Missing required arguments?: (.*)$/.exec(message);
  if (missing) return new UsageError(`missing ${missing[1]!.split(", ").map(flag).join(", ")}`, { hint });
  const exclusive = /^Arguments (\S+) and (\S+) are mutually exclusive$/.exec(message);
  if (exclusive)
    return new UsageError(`${flag(exclusive[1]!)} and ${flag(exclusive[2]!)} cannot be used together`, { hint });
  return new UsageError(message.charAt(0).toLowerCase() + message.slice(1), { hint });
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
  joinDashValues(argv, ["--out"]);
  // `ccbundle help push` is `ccbundle push --help`.
  const helpAt = argv.findIndex((arg) => !arg.startsWith("-"));
  if (helpAt >= 0 && argv[helpAt] === "help" && helpAt < argv.length - 1) {
    // `help nope` printed the top-level help and exited 0: say it is not a command.
    if (!COMMANDS.has(argv[helpAt + 1]!)) argv.splice(helpAt, 1);
    else argv.splice(helpAt, 1, "--help");
  }
  const out = new Output(flagOn(argv, "json"), flagOn(argv, "quiet", "q"));
  // --json promises one document on stdout, also when Ctrl-C or SIGTERM (systemd) ends the command.
  if (out.json) onInterrupt(() => out.interrupted(interruptedBy()), { last: true });
  // After ours is registered (in the same turn): no instant in which a signal finds Node's default.
  releaseEarlySignals();
  try {
    rejectSecretsOnArgv(argv);
    rejectNegativeDurations(argv);
    rejectUnknownCommandHelp(argv);
    if (completionOnly(argv, out)) return 0;
    let cli = yargs(argv)
      // File names stay as typed (`import 1.10` is not 1.1); options that want a number say so.
      .parserConfiguration({ "parse-numbers": false, "parse-positional-numbers": false })
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
      // Both given: one was silently ignored.
      .conflicts("passphrase-file", "passphrase-fd")
      .group(["json", "quiet", "store", "dht", "relay", "passphrase-file", "passphrase-fd"], "Common options:")
      .strict()
      .demandCommand(1, "say which command to run (see --help)")
      .recommendCommands()
      .completion("completion", "Print a bash/zsh completion script: ccbundle completion >> ~/.bashrc")
      .help()
      .alias("h", "help")
      .wrap(Math.min(110, process.stdout.columns || 100))
      .middleware((parsed) => rejectEmptyValues(argv, parsed))
      .fail((message, err, parser) => {
        // yargs re-wraps what a coerce throws in its own YError: that is a usage error too.
        if (err && err.name !== "YError") throw err;
        if (err) throw new UsageError(err.message, { hint: "see `ccbundle --help`" });
        const known = Object.keys(
          (parser as unknown as { getDescriptions(): Record<string, unknown> }).getDescriptions(),
        );
        // The yargs instance (`parser` is its usage helper) knows which options are flags.
        const booleans = new Set((cli as unknown as { getOptions(): { boolean: string[] } }).getOptions().boolean);
        throw usageFailure(message ?? "invalid command line", argv, known, booleans);
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
