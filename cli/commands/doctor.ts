import { access, constants, stat, statfs } from "node:fs/promises";
import path from "node:path";
import type { Argv } from "yargs";
import { effectiveCodec } from "../../core/bundle/codec.js";
import { identityPaths, readPublicKey } from "../../core/crypto/identity-file.js";
import type { CcbError } from "../../core/errors.js";
import { Context, type GlobalArgs } from "../context.js";
import { count } from "../output.js";

/** `doctor`: check the identity, the Claude Code config dir, the store and the pointer transports. */

interface Check {
  name: string;
  ok: boolean;
  detail: string;
  hint?: string | undefined;
}

export function doctorCommand(cli: Argv<GlobalArgs>): Argv<GlobalArgs> {
  return cli.command(
    "doctor",
    "Check your identity, Claude Code config dir, store and DHT/relay settings",
    (y) => y,
    async (args) => {
      const ctx = new Context(args);
      const checks: Check[] = [];
      const { home, claudeDir } = ctx.settings;

      const secret = identityPaths(home).secret;
      const info = await stat(secret).catch(() => undefined);
      if (!info) {
        checks.push({
          name: "identity",
          ok: false,
          detail: `none in ${home}`,
          hint: "run `ccbundle init` or `ccbundle key import <file>`",
        });
      } else {
        const unsafe = process.platform !== "win32" && (info.mode & 0o077) !== 0;
        checks.push({
          name: "identity",
          ok: !unsafe,
          detail: `${(await readPublicKey(home)) ?? "(public key file missing)"}, mode ${(info.mode & 0o777).toString(8)}`,
          hint: unsafe ? `others can read it: chmod 600 ${secret}` : undefined,
        });
      }
      const claude = await stat(claudeDir).catch(() => undefined);
      checks.push({
        name: "claude config dir",
        ok: !!claude?.isDirectory(),
        detail: claudeDir,
        hint: claude ? undefined : "set CLAUDE_CONFIG_DIR, or run claude once",
      });
      const { abandonedStaging } = await import("../../core/claude/staging.js");
      const abandoned = await abandonedStaging(claudeDir).catch(() => []);
      if (abandoned.some((s) => s.interrupted)) {
        checks.push({
          name: "interrupted restore",
          ok: false,
          detail: `a pull, import or restore was killed while moving files into ${claudeDir}`,
          hint: "run the same command again (or any ccbundle pull/import): it finishes the interrupted restore first",
        });
      }
      const codec = effectiveCodec(ctx.settings.compression.codec);
      checks.push({
        name: "compression",
        ok: codec === ctx.settings.compression.codec,
        detail: `${codec} level ${ctx.settings.compression.level}`,
        hint:
          codec !== ctx.settings.compression.codec
            ? "the zstd addon did not build here: bundles are written with gzip, and zstd ones are read by a slower JavaScript decoder (reinstall ccbundle where a C compiler and Python are installed)"
            : undefined,
      });

      const store = await ctx.store().catch((err: unknown) => err as Error);
      if (store instanceof Error) {
        checks.push({ name: "store", ok: false, detail: store.message });
      } else {
        const { backedUpBefore, emptiedStore } = await import("../../core/backup/state.js");
        const emptied = await emptiedStore(store, () => backedUpBefore(home, store.url));
        if (emptied) {
          // Probing would write into what is most likely a bare mount point.
          checks.push({ name: "store", ok: false, detail: emptied.message, hint: "mount the NAS, or check --store" });
        } else {
          const { checkStore } = await import("../../core/store-check.js");
          for (const check of await checkStore(store)) checks.push({ ...check, name: `store ${check.name}` });
        }
        await store.close?.();
      }
      // The transports as push and pull build them (nothing is contacted): a bad bootstrap or relay fails here too.
      const transports = await ctx.transports(undefined).catch((err: unknown) => err as CcbError);
      const transportError = transports instanceof Error ? transports : undefined;
      if (!(transports instanceof Error)) await Promise.all(transports.map((t) => t.close?.()));
      checks.push({
        name: "dht and relays",
        ok: !transportError,
        detail:
          transportError?.message ??
          `${ctx.settings.bootstrap.length > 0 ? `bootstrap ${ctx.settings.bootstrap.join(", ")}` : "dht disabled"}; ${ctx.settings.relays.length > 0 ? `relays ${ctx.settings.relays.join(", ")}` : "relays disabled"}`,
        hint: transportError?.hint,
      });
      for (const [name, dir] of [
        ["identity folder", home],
        ["claude config dir", claudeDir],
      ] as const) {
        const unwritable = await notWritable(dir);
        if (unwritable)
          checks.push({
            name: `${name} writable`,
            ok: false,
            detail: unwritable,
            hint: "check who owns it and its permissions (ls -ld)",
          });
        // A full disk fails every backup's state write and every restore, each mid-way.
        const free = await freeBytes(dir);
        if (free !== undefined && free < LOW_SPACE_BYTES)
          checks.push({
            name: `${name} disk space`,
            ok: false,
            detail: `only ${(free / 1024 / 1024).toFixed(1)} MiB free on the disk that holds ${dir}`,
            hint: "free some space there",
          });
      }

      const ok = checks.every((c) => c.ok);
      const failed = checks.filter((check) => !check.ok);
      ctx.out.result({
        ok,
        checks,
        // As every failing command's document has: what failed, in one line.
        ...(ok
          ? {}
          : {
              error: {
                message: `${count(failed.length, "check")} failed: ${failed.map((check) => check.name).join(", ")}`,
                hint: failed[0]?.hint,
                exitCode: 1,
              },
            }),
      });
      // --quiet still prints what failed: `doctor -q` in a script says why it exits 1.
      for (const check of checks) {
        const say = check.ok ? (text: string) => ctx.out.line(text) : (text: string) => ctx.out.essential(text);
        say(`${check.ok ? "ok  " : "FAIL"} ${check.name}: ${check.detail}`);
        if (check.hint) say(`     ${check.hint}`);
      }
      if (!ok) process.exitCode = 1;
    },
  );
}

/** Below this, the disk holding CCBUNDLE_HOME or the config dir is nearly full. */
const LOW_SPACE_BYTES = 50 * 1024 * 1024;

/** Bytes an unprivileged user may still write where `dir` is (or would be made); undefined if unknown. */
async function freeBytes(dir: string): Promise<number | undefined> {
  for (let at = dir; ; at = path.dirname(at)) {
    const info = await statfs(at).catch(() => undefined);
    if (info) return info.bavail * info.bsize;
    if (path.dirname(at) === at) return undefined;
  }
}

/** Why `dir` (or, before it exists, the folder it would be made in) cannot be written, or undefined. */
async function notWritable(dir: string): Promise<string | undefined> {
  let existing = dir;
  let info = await stat(existing).catch(() => undefined);
  while (!info && path.dirname(existing) !== existing) {
    existing = path.dirname(existing);
    info = await stat(existing).catch(() => undefined);
  }
  if (info && !info.isDirectory()) return `${dir} cannot be made: ${existing} is a file`;
  try {
    await access(existing, constants.W_OK);
    return undefined;
  } catch {
    return existing === dir ? `${dir} is not writable` : `${dir} cannot be made: ${existing} is not writable`;
  }
}
