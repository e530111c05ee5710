import { readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { closest } from "./closest.js";
import { CcbError, UsageError } from "./errors.js";

/**
 * The one place that reads the environment and the config file. Use cases get
 * a Settings value and never look at process.env themselves, so tests can run
 * two "machines" in one process by passing two Settings.
 */
export interface Settings {
  /** Identity, config, state (seen records, backup state, locks, backups of replaced files). */
  home: string;
  /** Claude Code's config dir. */
  claudeDir: string;
  /** Store URL, or undefined for the default local store. */
  store: string | undefined;
  /** Default local store when none is configured. */
  defaultStore: string;
  /** DHT bootstrap `host:port` list; empty disables the DHT. */
  bootstrap: string[];
  /** pkarr relay base URLs; empty disables relays. */
  relays: string[];
  /** Extra age recipients every backup is also encrypted to. */
  backupRecipients: string[];
  /** Compression for new bundles; `workers` = zstd threads (undefined: one per core, up to 4). */
  compression: { codec: "zstd" | "gzip"; level: number; workers?: number | undefined };
  /** What is wrong with config.json but does not stop the command (an unknown key: a typo). */
  warnings: string[];
  env: NodeJS.ProcessEnv;
}

/** Public Mainline DHT bootstrap routers, used only when nothing else is configured. */
export const DEFAULT_BOOTSTRAP = [
  "router.bittorrent.com:6881",
  "dht.transmissionbt.com:6881",
  "router.utorrent.com:6881",
];
/** Public pkarr relays, used only when nothing else is configured. */
export const DEFAULT_RELAYS = ["https://relay.pkarr.org", "https://pkarr.pubky.org"];

/** The subset of `config.json` that users may set. */
export interface ConfigFile {
  store?: string;
  bootstrap?: string[] | string;
  relays?: string[] | string;
  backupRecipients?: string[];
  compression?: { codec?: "zstd" | "gzip"; level?: number; threads?: number };
}

/** config.json's keys, and compression's: anything else is a typo or a newer version's setting. */
const CONFIG_KEYS = ["store", "bootstrap", "relays", "backupRecipients", "compression"];
const COMPRESSION_KEYS = ["codec", "level", "threads"];

/**
 * Unknown keys, each with the known one it most likely meant. `"Store"` for `"store"` sent every
 * backup to the default local store without a word; an error would break a config written by a
 * newer ccbundle, so a warning.
 */
function unknownKeys(file: ConfigFile, where: string): string[] {
  const check = (object: object, known: string[], prefix: string) =>
    Object.keys(object)
      .filter((key) => !known.includes(key))
      .map((key) => {
        const meant =
          known.find((name) => name.toLowerCase() === key.toLowerCase().replace(/[-_]/g, "")) ?? closest(key, known);
        return `${where}: unknown setting "${prefix}${key}"${meant ? ` (did you mean "${prefix}${meant}"?)` : ""}; it is ignored`;
      });
  const compression = file.compression;
  return [
    ...check(file, CONFIG_KEYS, ""),
    ...(compression && typeof compression === "object" ? check(compression, COMPRESSION_KEYS, "compression.") : []),
  ];
}

export function ccbundleHome(env: NodeJS.ProcessEnv = process.env): string {
  if (env.CCBUNDLE_HOME) return path.resolve(env.CCBUNDLE_HOME);
  const xdg = env.XDG_CONFIG_HOME || path.join(homeDir(env), ".config");
  return path.join(xdg, "ccbundle");
}

export function homeDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.HOME || os.homedir();
}

export function configPath(home: string): string {
  return path.join(home, "config.json");
}

export function readConfigFile(home: string): ConfigFile {
  let text: string;
  try {
    text = readFileSync(configPath(home), "utf8");
  } catch {
    return {};
  }
  try {
    const parsed = JSON.parse(text) as unknown;
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw new Error("not an object");
    return parsed as ConfigFile;
  } catch (err) {
    throw new CcbError(`config file ${configPath(home)} is not valid JSON`, 1, {
      hint: "fix or delete it",
      cause: err,
    });
  }
}

/** Parse a comma list where `none` (or empty) means "nothing". */
export function parseList(value: string | string[] | undefined): string[] | undefined {
  if (value === undefined) return undefined;
  const items = (Array.isArray(value) ? value : value.split(","))
    .map((item) => item.trim())
    .filter((item) => item.length > 0);
  if (items.length === 1 && items[0] === "none") return [];
  return items;
}

export interface SettingsOverrides {
  store?: string | undefined;
  relays?: string[] | undefined;
  noDht?: boolean | undefined;
}

/**
 * A setting of the wrong type (`"store": 5`) failed deep inside as "unexpected error ... a bug in
 * ccbundle", and only once a command needed it. Named here, for every command.
 */
function checkTypes(file: ConfigFile, where: string): void {
  const wrong = (key: string, want: string) =>
    new UsageError(`${where}: "${key}" must be ${want}, not ${JSON.stringify(valueAt(file, key))}`, {
      hint: `fix it in ${where} (see README "Environment")`,
    });
  const isStrings = (value: unknown) => Array.isArray(value) && value.every((item) => typeof item === "string");
  if (file.store !== undefined && typeof file.store !== "string") throw wrong("store", "a store URL (a string)");
  for (const key of ["bootstrap", "relays"] as const) {
    const value: unknown = file[key];
    if (value !== undefined && typeof value !== "string" && !isStrings(value))
      throw wrong(key, "a list of strings or a comma-separated string");
  }
  if (file.backupRecipients !== undefined && !isStrings(file.backupRecipients))
    throw wrong("backupRecipients", "a list of age1… recipients (strings)");
  const compression: unknown = file.compression;
  if (
    compression !== undefined &&
    (typeof compression !== "object" || compression === null || Array.isArray(compression))
  )
    throw wrong("compression", 'an object, e.g. {"codec": "zstd", "level": 3}');
}

function valueAt(file: ConfigFile, key: string): unknown {
  return (file as Record<string, unknown>)[key];
}

/**
 * `CCBUNDLE_BOOTSTRAP="$UNSET"` turned the DHT off without a word (and an empty store meant the
 * default one): as with an empty flag value, an empty variable is refused, never "not given".
 */
function checkNotEmpty(env: NodeJS.ProcessEnv): void {
  const meanings: Record<string, string> = {
    CCBUNDLE_STORE: "unset it for the default store",
    CCBUNDLE_BOOTSTRAP: "unset it for the default bootstrap nodes, or set it to none to turn the DHT off",
    CCBUNDLE_RELAYS: "unset it for the default relays, or set it to none to use no relays",
  };
  for (const [name, hint] of Object.entries(meanings)) {
    if (env[name] !== undefined && env[name]!.trim() === "") {
      throw new UsageError(`${name} is set but empty`, { hint });
    }
  }
}

export function loadSettings(env: NodeJS.ProcessEnv = process.env, overrides: SettingsOverrides = {}): Settings {
  const home = ccbundleHome(env);
  const file = readConfigFile(home);
  checkTypes(file, configPath(home));
  checkNotEmpty(env);
  const dataHome = env.XDG_DATA_HOME || path.join(homeDir(env), ".local", "share");
  const claudeDir = path.resolve(env.CLAUDE_CONFIG_DIR || path.join(homeDir(env), ".claude"));
  const bootstrap = overrides.noDht
    ? []
    : (parseList(env.CCBUNDLE_BOOTSTRAP) ?? parseList(file.bootstrap) ?? DEFAULT_BOOTSTRAP);
  const relays =
    overrides.relays && overrides.relays.length > 0
      ? (parseList(overrides.relays) ?? [])
      : (parseList(env.CCBUNDLE_RELAYS) ?? parseList(file.relays) ?? DEFAULT_RELAYS);
  const codec = file.compression?.codec ?? "zstd";
  if (codec !== "zstd" && codec !== "gzip") {
    throw new UsageError(`unknown compression codec in config: ${String(codec)}`, { hint: "use zstd or gzip" });
  }
  const level = compressionLevel(codec, env.CCBUNDLE_COMPRESSION_LEVEL ?? file.compression?.level ?? 3);
  const threads = file.compression?.threads;
  if (threads !== undefined && !(Number.isInteger(threads) && threads >= 0 && threads <= 64)) {
    throw new UsageError(`compression.threads in config must be 0-64, not ${JSON.stringify(threads)}`, {
      hint: "0 compresses on the main thread; leave it out for one thread per core",
    });
  }
  return {
    home,
    claudeDir,
    store: overrides.store || env.CCBUNDLE_STORE || file.store || undefined,
    defaultStore: path.join(dataHome, "ccbundle", "store"),
    bootstrap,
    relays,
    backupRecipients: file.backupRecipients ?? [],
    compression: { codec, level, workers: threads },
    warnings: unknownKeys(file, configPath(home)),
    env,
  };
}

/** zstd 1-19 (3 is the zstd CLI's default), gzip 1-9; from CCBUNDLE_COMPRESSION_LEVEL or config.json. */
function compressionLevel(codec: "zstd" | "gzip", value: unknown): number {
  const level = typeof value === "string" && /^\d+$/.test(value.trim()) ? Number(value) : value;
  const max = codec === "zstd" ? 19 : 9;
  if (typeof level !== "number" || !Number.isInteger(level) || level < 1 || level > max) {
    throw new UsageError(`compression level must be 1-${max} for ${codec}, not ${JSON.stringify(value)}`, {
      hint: "set CCBUNDLE_COMPRESSION_LEVEL or compression.level in config.json (3 is a good default)",
    });
  }
  return level;
}
