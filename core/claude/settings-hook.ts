import { copyFile, readFile, realpath, stat } from "node:fs/promises";
import path from "node:path";
import { CcbError, errnoCode } from "../errors.js";
import { writeFileAtomic } from "./files.js";

/**
 * Adding and removing ccbundle's SessionEnd hook in Claude Code's user
 * settings (`$CLAUDE_CONFIG_DIR/settings.json`):
 *
 *     { "hooks": { "SessionEnd": [ { "hooks": [ { "type": "command", "command": "…", "timeout": 10 } ] } ] } }
 *
 * Only our entry is touched; every other setting and hook stays as it was
 * (key order included). The previous file is copied next to it first, and the
 * new one is written atomically, so Claude Code never reads half a file. A
 * settings.json that is not valid JSON is left alone.
 */

export const HOOK_EVENT = "SessionEnd";
/** Our hook is the command that ends in `backup --hook` (plus flags it passes on). */
const OURS = /(^|\s)backup --hook(\s|$)/;
/**
 * Claude Code gives SessionEnd hooks 1.5 s in all unless one asks for more; our hook
 * only starts a detached backup and returns, but a cold Node start on a slow disk can
 * take most of that.
 */
const HOOK_TIMEOUT_SECONDS = 10;

interface HookCommand {
  type?: unknown;
  command?: unknown;
  [key: string]: unknown;
}

interface HookGroup {
  matcher?: unknown;
  hooks?: HookCommand[];
  [key: string]: unknown;
}

export interface HookChange {
  settingsFile: string;
  changed: boolean;
  /** Copy of the previous settings.json, when it was changed. */
  backup: string | undefined;
  command: string | undefined;
}

export function isOurHook(hook: HookCommand): boolean {
  return hook.type === "command" && typeof hook.command === "string" && OURS.test(hook.command);
}

export async function installHook(claudeDir: string, command: string): Promise<HookChange> {
  const file = settingsFile(claudeDir);
  const settings = await readSettings(file);
  const groups = sessionEndGroups(settings, file);
  const existing = groups.flatMap((group) => group.hooks ?? []).filter(isOurHook);
  if (existing.length === 1 && existing[0]!.command === command) {
    return { settingsFile: file, changed: false, backup: undefined, command };
  }
  const kept = withoutOurs(groups);
  kept.push({ hooks: [{ type: "command", command, timeout: HOOK_TIMEOUT_SECONDS }] });
  const hooks = (settings.hooks ?? {}) as Record<string, unknown>;
  hooks[HOOK_EVENT] = kept;
  settings.hooks = hooks;
  const backup = await writeSettings(file, settings);
  return { settingsFile: file, changed: true, backup, command };
}

export async function uninstallHook(claudeDir: string): Promise<HookChange> {
  const file = settingsFile(claudeDir);
  const settings = await readSettings(file);
  const groups = sessionEndGroups(settings, file);
  const kept = withoutOurs(groups);
  if (kept.length === groups.length && sameHookCount(kept, groups)) {
    return { settingsFile: file, changed: false, backup: undefined, command: undefined };
  }
  const hooks = settings.hooks as Record<string, unknown>;
  if (kept.length > 0) hooks[HOOK_EVENT] = kept;
  else delete hooks[HOOK_EVENT];
  if (Object.keys(hooks).length === 0) delete settings.hooks;
  const backup = await writeSettings(file, settings);
  return { settingsFile: file, changed: true, backup, command: undefined };
}

function settingsFile(claudeDir: string): string {
  return path.join(claudeDir, "settings.json");
}

async function readSettings(file: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    if (errnoCode(err) === "ENOENT") return {};
    throw err;
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new CcbError(`${file} is not valid JSON; it was not changed`, 1, {
      hint: "fix it (Claude Code ignores it as it is), then run the command again",
      cause: err,
    });
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new CcbError(`${file} does not hold a JSON object; it was not changed`, 1, { hint: "fix it first" });
  }
  return value as Record<string, unknown>;
}

function sessionEndGroups(settings: Record<string, unknown>, file: string): HookGroup[] {
  const hooks = settings.hooks;
  if (hooks === undefined) return [];
  if (typeof hooks !== "object" || hooks === null || Array.isArray(hooks)) {
    throw new CcbError(`"hooks" in ${file} is not an object; it was not changed`, 1, { hint: "fix it first" });
  }
  const groups = (hooks as Record<string, unknown>)[HOOK_EVENT];
  if (groups === undefined) return [];
  if (!Array.isArray(groups)) {
    throw new CcbError(`"hooks.${HOOK_EVENT}" in ${file} is not a list; it was not changed`, 1, {
      hint: "fix it first",
    });
  }
  return groups as HookGroup[];
}

/** The groups without our hook; a group left with no hooks goes too. */
function withoutOurs(groups: HookGroup[]): HookGroup[] {
  const out: HookGroup[] = [];
  for (const group of groups) {
    if (!Array.isArray(group?.hooks)) {
      out.push(group);
      continue;
    }
    const hooks = group.hooks.filter((hook) => !isOurHook(hook));
    if (hooks.length === group.hooks.length) out.push(group);
    else if (hooks.length > 0) out.push({ ...group, hooks });
  }
  return out;
}

function sameHookCount(a: HookGroup[], b: HookGroup[]): boolean {
  const count = (groups: HookGroup[]) => groups.reduce((sum, group) => sum + (group.hooks?.length ?? 0), 0);
  return count(a) === count(b);
}

/**
 * Back the old file up beside it, then replace it atomically with the same mode.
 * A settings.json that is a symlink (dotfile managers) stays one: the file it
 * points to is what gets replaced.
 */
async function writeSettings(file: string, settings: Record<string, unknown>): Promise<string | undefined> {
  const info = await stat(file).catch(() => undefined);
  let backup: string | undefined;
  if (info) {
    backup = `${file}.${new Date().toISOString().replace(/[:.]/g, "-")}.ccbundle.bak`;
    await copyFile(file, backup);
  }
  const target = info ? await realpath(file) : file;
  // The file's own layout (tabs or spaces, CRLF or LF, a last newline or none): a diff of a
  // dotfiles repo then shows the hook, not every line rewritten.
  const before = info ? await readFile(file, "utf8").catch(() => "") : "";
  // One line (written by a tool, not a person) stays one line.
  const oneLine = before.trim() !== "" && !/[\r\n]/.test(before.trim());
  const indent = oneLine ? 0 : (/^\{\r?\n([ \t]+)\S/.exec(before)?.[1] ?? 2);
  const eol = before.includes("\r\n") ? "\r\n" : "\n";
  const last = before === "" || before.endsWith("\n") ? eol : "";
  await writeFileAtomic(
    target,
    JSON.stringify(settings, null, indent).replaceAll("\n", eol) + last,
    info ? info.mode & 0o777 : 0o600,
  );
  return backup;
}
