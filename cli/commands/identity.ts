import { readFile } from "node:fs/promises";
import type { Argv } from "yargs";
import { writeFileAtomic } from "../../core/claude/files.js";
import {
  hasIdentity,
  isEncryptedIdentity,
  keepOldIdentity,
  newIdentity,
  openIdentityBytes,
  readIdentityBytes,
  readPublicKey,
  saveIdentity,
  saveIdentityBytes,
} from "../../core/crypto/identity-file.js";
import { readSecret, requireSecret } from "../../core/crypto/secrets.js";
import { CcbError, errnoCode, NotFoundError, UsageError } from "../../core/errors.js";
import { Context, type GlobalArgs } from "../context.js";
import { fileArgument } from "../file-argument.js";

/** `init`, `whoami`, `key export`, `key import`: the user's one identity. */

export function identityCommands(cli: Argv<GlobalArgs>): Argv<GlobalArgs> {
  return cli
    .command(
      "init",
      "Create your identity (an ed25519 key, encrypted with a passphrase)",
      (y) =>
        y
          .option("passphrase", {
            type: "boolean",
            default: true,
            describe:
              "Encrypt the identity at rest with a passphrase, asked for or read from CCBUNDLE_PASSPHRASE / --passphrase-file / --passphrase-fd (--no-passphrase for unattended machines)",
          })
          .option("force", {
            type: "boolean",
            default: false,
            describe: "Replace an existing identity (the old one is kept as identity.<time>.bak)",
          }),
      async (args) => {
        const ctx = new Context(args);
        const { home } = ctx.settings;
        if ((await hasIdentity(home)) && !args.force) {
          throw new UsageError(`an identity already exists in ${home}`, {
            hint: "`ccbundle whoami` shows it; `ccbundle init --force` replaces it (the old one is kept as identity.<time>.bak)",
          });
        }
        let passphrase: string | undefined;
        if (args.passphrase) {
          passphrase = await readSecret(ctx.passphraseSource(), { message: "Choose a passphrase: ", confirm: true });
          if (passphrase === undefined) {
            throw new UsageError(
              "a passphrase is needed to encrypt the identity and there is no terminal to ask for it",
              {
                hint: "set CCBUNDLE_PASSPHRASE, --passphrase-file or --passphrase-fd, or use --no-passphrase for an unattended machine",
              },
            );
          }
          // scrypt slows each guess, but a copied identity file can be guessed at offline for ever.
          const characters = [...passphrase].length;
          if (characters < MIN_PASSPHRASE) {
            ctx.out.warn(
              `a passphrase of ${characters} characters is easy to guess if the identity file is ever copied: use ${MIN_PASSPHRASE}+ characters, or a few random words (ccbundle init --force to choose again)`,
            );
          }
        }
        const kept = args.force && (await hasIdentity(home)) ? await keepOldIdentity(home) : undefined;
        const key = newIdentity();
        await saveIdentity(home, key, passphrase);
        ctx.out.result({
          ok: true,
          key: key.z32,
          ageRecipient: key.ageRecipient().toString(),
          encrypted: passphrase !== undefined,
          home,
          ...(kept ? { previous: kept } : {}),
        });
        ctx.out.line(`Created your ccbundle identity in ${home}${passphrase === undefined ? " (not encrypted)" : ""}.`);
        if (kept) ctx.out.line(`The one it replaces is kept in ${kept}.`);
        ctx.out.essential(key.z32);
        ctx.out.line("");
        ctx.out.line(
          "Copy it to your other machines with `ccbundle key export <file>` / `ccbundle key import <file>`.",
        );
        ctx.out.line("Teammates send you sessions with `ccbundle push --to <this key>`.");
      },
    )
    .command(
      "whoami",
      "Print your public key (z32)",
      (y) =>
        y.option("age-recipient", {
          type: "boolean",
          default: false,
          describe: "Print your age recipient (age1…) instead",
        }),
      async (args) => {
        const ctx = new Context(args);
        let z32 = await readPublicKey(ctx.settings.home);
        let recipient: string | undefined;
        if (z32 && (args.ageRecipient || args.json)) {
          // Public facts: the age recipient follows from the public key (as for `push --to <z32>`), so
          // no passphrase is asked (scripts run `whoami --json` without one). Loaded only here: plain
          // `whoami` stays light.
          const { parseRecipient } = await import("../../core/crypto/keys.js");
          recipient = parseRecipient(z32).toString();
        } else if (!z32) {
          const key = await ctx.userKey();
          z32 = key.z32;
          recipient = key.ageRecipient().toString();
        }
        ctx.out.result({ ok: true, key: z32, ageRecipient: recipient });
        ctx.out.essential(args.ageRecipient ? recipient! : (z32 as string));
      },
    )
    .command("key", "Move your identity between machines", (y) =>
      y
        .command(
          "export <file>",
          "Write your identity to a file (- for stdout); it stays passphrase-encrypted if it is",
          (z) =>
            // No `type: "string"`: yargs would turn a lone `-` into "" (see fileArgument).
            z.positional("file", { demandOption: true }).option("age-identity", {
              type: "boolean",
              default: false,
              describe: "Write the X25519 age identity (AGE-SECRET-KEY-1…) for stock `age -d -i`",
            }),
          async (args) => {
            const ctx = new Context(args);
            const file = fileArgument(args.file);
            if (file === "-" && ctx.out.json) {
              throw new UsageError("--json and `key export -` both want stdout", {
                hint: "leave out --json (the key is the output), or export to a file",
              });
            }
            let content: Uint8Array;
            if (args.ageIdentity) {
              content = Buffer.from(`${(await ctx.userKey()).ageIdentity().toString()}\n`);
            } else {
              content = await readIdentityBytes(ctx.settings.home);
            }
            if (file === "-") {
              process.stdout.write(content);
              return;
            }
            try {
              // Written beside the target and linked into place: never half a key under its name.
              await writeFileAtomic(file, content, 0o600, { exclusive: true });
            } catch (err) {
              if (errnoCode(err) === "EEXIST") {
                throw new UsageError(`${file} already exists`, {
                  hint: "choose another file name or delete it first",
                });
              }
              throw new CcbError(`cannot write ${file}`, 1, { hint: "check the path", cause: err });
            }
            const encrypted = isEncryptedIdentity(content);
            ctx.out.result({ ok: true, file, encrypted });
            ctx.out.line(
              `Wrote ${args.ageIdentity ? "your age identity" : `your identity${encrypted ? " (passphrase-encrypted)" : " (NOT encrypted)"}`} to ${file} (mode 0600).`,
            );
            ctx.out.line(
              args.ageIdentity
                ? "Use it with `age -d -i <file>`: it opens everything sent to you, so keep it as safe as the identity."
                : "Import it on the other machine with `ccbundle key import <file>`; then delete the copy.",
            );
          },
        )
        .command(
          "import <file>",
          "Install an identity exported on another machine (- for stdin)",
          (z) =>
            z
              .positional("file", { demandOption: true })
              .option("force", {
                type: "boolean",
                default: false,
                describe: "Replace a different identity already here",
              })
              .option("passphrase", {
                type: "boolean",
                default: true,
                describe:
                  "Keep it encrypted as exported (--no-passphrase stores it unencrypted, mode 0600, for a machine that runs unattended: cron backups, the SessionEnd hook)",
              }),
          async (args) => {
            const ctx = new Context(args);
            const file = fileArgument(args.file);
            let bytes: Buffer;
            try {
              bytes = file === "-" ? await readStdin() : await readFile(file);
            } catch (err) {
              if (errnoCode(err) === "ENOENT")
                throw new NotFoundError(`no such file: ${file}`, { hint: "check the path" });
              if (errnoCode(err) === "EISDIR") {
                throw new UsageError(`${file} is a folder, not a key file`, {
                  hint: "give the file `ccbundle key export` wrote",
                });
              }
              throw err;
            }
            const { key, encrypted } = await openIdentityBytes(
              bytes,
              () => requireSecret(ctx.passphraseSource(), { message: "Passphrase of the exported identity: " }),
              file === "-" ? "the identity on stdin" : file,
            );
            const current = await readPublicKey(ctx.settings.home);
            if (current && current !== key.z32 && !args.force) {
              throw new UsageError(`a different identity (${current}) is already installed`, {
                hint: "pass --force to replace it (the old one is kept as identity.<time>.bak)",
              });
            }
            const kept = current && current !== key.z32 ? await keepOldIdentity(ctx.settings.home) : undefined;
            // The same key on an unattended machine: no passphrase to ask for at 3 a.m. (importing it
            // again over itself this way takes the passphrase off an installed identity).
            if (args.passphrase) await saveIdentityBytes(ctx.settings.home, bytes, key);
            else await saveIdentity(ctx.settings.home, key, undefined);
            const stored = encrypted && args.passphrase;
            ctx.out.result({ ok: true, key: key.z32, encrypted: stored, ...(kept ? { previous: kept } : {}) });
            ctx.out.line(`Imported identity ${key.z32}${stored ? "" : " (not encrypted)"}.`);
            if (kept) ctx.out.line(`The one it replaces is kept in ${kept}.`);
          },
        )
        .demandCommand(1, "say `key export <file>` or `key import <file>`"),
    );
}

/** Below this many characters, init warns that the passphrase is weak. */
const MIN_PASSPHRASE = 10;

async function readStdin(): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}
