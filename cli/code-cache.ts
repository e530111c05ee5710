import { createHash } from "node:crypto";
import {
  accessSync,
  constants,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import Module from "node:module";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import vm from "node:vm";

/**
 * Starts the bundled CLI (CommonJS, scripts/bundle-cli.mjs) with a V8 code
 * cache: the bytecode V8 compiled for our modules in an earlier run, so a
 * command does not parse and compile ~1 MB of JavaScript again at every start.
 *
 * Why: parsing and compiling were ~a quarter of a small push's CPU (perf), and
 * a handoff is two processes. With the cache a push + pull of a small session
 * took ~0.57 s instead of ~0.69 s (10 alternated runs, docs/performance.md).
 * Node 22 has this built in (module.enableCompileCache), for ES modules too;
 * Node 20, which we support, has it only for scripts compiled through
 * `vm.Script`, hence a CommonJS bundle.
 *
 * Where: a `.code-cache` folder beside the bundle when the user may write
 * there (then it has exactly the trust of the code itself), else the user's
 * cache folder; CCBUNDLE_CODE_CACHE names another folder, or `off`. Entries
 * are keyed by the sha256 of the module's source and by Node version and
 * architecture, carry a sha256 of their own bytes (a torn or damaged file is
 * ignored), and are written atomically. V8 rejects data made by another V8 or
 * with other flags; such an entry is written anew.
 *
 * When: at exit, for each module that had no usable entry, or whose entry was
 * made by other commands (the functions a command compiles lazily go into the
 * entry then, so `pull` does not keep compiling what `push` never ran); at
 * most once per command and Node version. Anything that goes wrong with the
 * cache only costs speed: the command runs as without it.
 */

const MAGIC = Buffer.from("ccbundle-v8-cache-1\n");
const DIGEST = 32;

interface Compiled {
  script: vm.Script;
  file: string;
  commands: string[];
}

export function runWithCodeCache(bundle: URL): void {
  const bundleFile = fileURLToPath(bundle);
  const bundleDir = path.dirname(bundleFile);
  const dir = cacheDir(bundleDir, process.env);
  if (!dir) {
    Module.createRequire(bundle)(bundleFile);
    return;
  }
  const command = process.argv.slice(2).find((arg) => !arg.startsWith("-")) ?? "";
  const stale: Compiled[] = [];
  const used = new Set<string>();
  const prototype = Module.prototype as unknown as {
    _compile: (this: NodeModule, content: string, filename: string) => unknown;
  };
  const plainCompile = prototype._compile;
  prototype._compile = function (this: NodeModule, content: string, filename: string) {
    if (path.dirname(filename) !== bundleDir) return plainCompile.call(this, content, filename);
    const file = path.join(dir, entryName(filename, content));
    used.add(path.basename(file));
    const entry = readEntry(file);
    // The same wrapper Node puts around a CommonJS module; the shebang line becomes a comment.
    const source = Module.wrap(content.startsWith("#!") ? `//${content}` : content);
    const script = new vm.Script(source, { filename, cachedData: entry?.data });
    if (!entry || script.cachedDataRejected || !entry.commands.includes(command)) {
      stale.push({ script, file, commands: entry && !script.cachedDataRejected ? entry.commands : [] });
    }
    const wrapper = script.runInThisContext({ displayErrors: true }) as (...args: unknown[]) => unknown;
    const require = makeRequire(this);
    return wrapper.call(this.exports, this.exports, require, this, filename, path.dirname(filename));
  };
  process.once("exit", () => {
    // A threaded backup turned TurboFan off (core/bundle/worker-pool.ts): V8 would refuse data made now.
    if ((globalThis as Record<symbol, unknown>)[Symbol.for("ccbundle.v8FlagsChanged")]) return;
    writeEntries(dir, stale, command, used);
  });
  Module.createRequire(bundle)(bundleFile);
}

/** The cache folder to use, or undefined when caching is off or no folder is writable. */
export function cacheDir(bundleDir: string, env: NodeJS.ProcessEnv): string | undefined {
  const chosen = env.CCBUNDLE_CODE_CACHE;
  if (chosen === "off" || chosen === "0") return undefined;
  const candidates = chosen ? [path.resolve(chosen)] : [path.join(bundleDir, ".code-cache"), userCacheDir(env)];
  for (const candidate of candidates) {
    if (!candidate) continue;
    try {
      mkdirSync(candidate, { recursive: true, mode: 0o700 });
      accessSync(candidate, constants.W_OK);
      return candidate;
    } catch {
      // Not ours to write (a system-wide install): the next candidate.
    }
  }
  return undefined;
}

function userCacheDir(env: NodeJS.ProcessEnv): string | undefined {
  if (process.platform === "win32") return env.LOCALAPPDATA && path.join(env.LOCALAPPDATA, "ccbundle", "code-cache");
  const home = env.HOME || os.homedir();
  if (process.platform === "darwin") return home && path.join(home, "Library", "Caches", "ccbundle", "code-cache");
  const base = env.XDG_CACHE_HOME || (home && path.join(home, ".cache"));
  return base && path.join(base, "ccbundle", "code-cache");
}

function entryName(filename: string, content: string): string {
  const digest = createHash("sha256").update(content).digest("hex").slice(0, 24);
  return `${path.basename(filename)}.${digest}.${process.version}-${process.arch}.bin`;
}

/** An entry: MAGIC, sha256 of the rest, one line of JSON (the commands it was made by), V8's data. */
function readEntry(file: string): { data: Buffer; commands: string[] } | undefined {
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch {
    return undefined;
  }
  const body = bytes.subarray(MAGIC.length + DIGEST);
  if (!bytes.subarray(0, MAGIC.length).equals(MAGIC)) return undefined;
  const digest = createHash("sha256").update(body).digest();
  if (!digest.equals(bytes.subarray(MAGIC.length, MAGIC.length + DIGEST))) return undefined;
  const newline = body.indexOf(0x0a);
  if (newline < 0) return undefined;
  try {
    const commands = JSON.parse(body.subarray(0, newline).toString("utf8")) as unknown;
    if (!Array.isArray(commands) || !commands.every((c) => typeof c === "string")) return undefined;
    return { data: body.subarray(newline + 1), commands };
  } catch {
    return undefined;
  }
}

function writeEntries(dir: string, stale: Compiled[], command: string, used: Set<string>): void {
  if (stale.length > 0) forgetOldEntries(dir, used);
  for (const { script, file, commands } of stale) {
    try {
      const body = Buffer.concat([
        Buffer.from(`${JSON.stringify([...new Set([...commands, command])])}\n`),
        script.createCachedData(),
      ]);
      const digest = createHash("sha256").update(body).digest();
      const temp = path.join(dir, `.${path.basename(file)}.${process.pid}.tmp`);
      writeFileSync(temp, Buffer.concat([MAGIC, digest, body]), { mode: 0o600 });
      renameSync(temp, file);
    } catch {
      // A full disk or a folder gone: the next run compiles as it would without a cache.
    }
  }
}

/**
 * Entries of earlier versions pile up in a user cache folder: ours (by name: CCBUNDLE_CODE_CACHE
 * may name a folder that holds other files) not written for 30 days and not read by this run go,
 * and temp files of killed writers, only when we write.
 */
const OLD_ENTRY_MS = 30 * 24 * 3600 * 1000;
const OUR_FILE = /^(?:[\w.-]+\.[0-9a-f]{24}\.v\d+\.\d+\.\d+-\w+\.bin|\.[\w.-]+\.bin\.\d+\.tmp)$/;

function forgetOldEntries(dir: string, used: Set<string>): void {
  try {
    for (const name of readdirSync(dir)) {
      if (!OUR_FILE.test(name) || used.has(name)) continue;
      const file = path.join(dir, name);
      if (Date.now() - statSync(file).mtimeMs > OLD_ENTRY_MS) rmSync(file, { force: true });
    }
  } catch {
    // Tidying only.
  }
}

/** `require` as Node gives it to a CommonJS module. */
function makeRequire(module: NodeModule): NodeJS.Require {
  const require = ((id: string) => module.require(id)) as NodeJS.Require;
  const internals = Module as unknown as {
    _resolveFilename: (request: string, parent: NodeModule, isMain: boolean, options?: unknown) => string;
    _cache: NodeJS.Require["cache"];
  };
  require.resolve = ((request: string, options?: unknown) =>
    internals._resolveFilename(request, module, false, options)) as NodeJS.RequireResolve;
  require.cache = internals._cache;
  require.main = process.mainModule;
  return require;
}
