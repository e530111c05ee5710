import { UsageError } from "../core/errors.js";

/**
 * A <file> that may be "-" for stdin / stdout (`key export`, `key import`, `import`). yargs hands
 * a lone `-` to an untyped positional as `true` (to a string one as "", which an empty variable
 * gives too: `key export "$UNSET"` must not print the key). An empty name is refused.
 */
export function fileArgument(value: unknown): string {
  if (value === true || value === "-") return "-";
  if ((typeof value === "string" && value !== "") || typeof value === "number") return String(value);
  throw new UsageError("give a file name, or - for standard input/output", {
    hint: "is the variable you passed empty?",
  });
}

/**
 * `--out -`: yargs takes a lone `-` after a flag for a positional (stdin, by convention) and
 * leaves the flag empty; `--out=-` it reads as meant. Rewrites argv in place before parsing.
 */
export function joinDashValues(argv: string[], flags: readonly string[]): void {
  for (let i = 0; i + 1 < argv.length; i++) {
    if (argv[i + 1] === "-" && flags.includes(argv[i]!)) argv.splice(i, 2, `${argv[i]}=-`);
  }
}
