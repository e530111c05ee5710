import { spawn } from "node:child_process";
import {
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { backupMachine, snapshotNames } from "./helpers/backup.js";
import { type FixtureSession, writeSession } from "./helpers/fixture.js";
import { Machine } from "./helpers/machine.js";

/**
 * The Claude Code SessionEnd hook: `hook install` adds exactly one entry to
 * settings.json and keeps everything else; the installed command, fed the
 * JSON Claude Code writes on stdin, returns at once and backs that session up
 * in the background; `hook uninstall` puts settings.json back as it was.
 */

let alice: Machine;
let nas: string;
let session: FixtureSession;
let other: FixtureSession;
const original = {
  model: "opus",
  permissions: { allow: ["Bash(npm test:*)"] },
  hooks: {
    PreToolUse: [{ matcher: "Bash", hooks: [{ type: "command", command: "echo pre" }] }],
    SessionEnd: [{ hooks: [{ type: "command", command: "echo bye >> /tmp/never-run" }] }],
  },
  statusLine: { type: "command", command: "echo hi" },
};

/** Run a hook command the way Claude Code does: through a shell, the event JSON on stdin. */
function runHookCommand(command: string, input: string, env: NodeJS.ProcessEnv): Promise<{ code: number; ms: number }> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn("sh", ["-c", command], { env, stdio: ["pipe", "ignore", "ignore"] });
    child.on("error", reject);
    child.on("close", (code) => resolve({ code: code ?? -1, ms: performance.now() - started }));
    child.stdin.end(input);
  });
}

function settingsPath(machine: Machine) {
  return path.join(machine.claudeDir, "settings.json");
}

function ourCommand(machine: Machine): string {
  const settings = JSON.parse(readFileSync(settingsPath(machine), "utf8"));
  const ours = settings.hooks.SessionEnd.flatMap((g: { hooks: { command: string }[] }) => g.hooks).filter(
    (h: { command: string }) => h.command.includes("backup --hook"),
  );
  expect(ours).toHaveLength(1);
  return ours[0].command;
}

async function waitFor(check: () => boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (check()) return true;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return check();
}

beforeAll(async () => {
  ({ machine: alice, nas } = await backupMachine("alice"));
  const project = alice.project("app");
  session = writeSession({ claudeDir: alice.claudeDir, projectDir: project, home: alice.home });
  other = writeSession({ claudeDir: alice.claudeDir, projectDir: project, home: alice.home });
  writeFileSync(settingsPath(alice), `${JSON.stringify(original, null, 2)}\n`);
});

afterAll(() => alice?.cleanup());

describe("hook install / uninstall", () => {
  it("adds exactly one SessionEnd hook and keeps every other setting; a second install changes nothing", async () => {
    const doc = JSON.parse((await alice.runOk(["hook", "install", "--json"])).stdout);
    expect(doc).toMatchObject({ ok: true, changed: true, settingsFile: settingsPath(alice), warnings: [] });
    expect(readFileSync(doc.backup, "utf8")).toBe(`${JSON.stringify(original, null, 2)}\n`);
    const settings = JSON.parse(readFileSync(settingsPath(alice), "utf8"));
    const { SessionEnd, ...otherHooks } = settings.hooks;
    expect({ ...settings, hooks: otherHooks }).toEqual({
      ...original,
      hooks: { PreToolUse: original.hooks.PreToolUse },
    });
    expect(SessionEnd).toEqual([
      original.hooks.SessionEnd[0],
      { hooks: [{ type: "command", command: expect.stringContaining("backup --hook"), timeout: 10 }] },
    ]);
    // The store named in the environment goes into the command: Claude Code may not have that variable.
    expect(ourCommand(alice)).toContain(`--store ${nas}`);
    const again = JSON.parse((await alice.runOk(["hook", "install", "--json"])).stdout);
    expect(again).toMatchObject({ changed: false });
    expect(again.backup).toBeUndefined();
  });

  it("the installed command returns at once and backs up the session that ended, in the background", async () => {
    const input = JSON.stringify({
      session_id: session.id,
      transcript_path: session.transcript,
      cwd: session.cwd,
      hook_event_name: "SessionEnd",
      reason: "prompt_input_exit",
    });
    // Claude Code's environment need not name the config dir: the transcript path does.
    const { CLAUDE_CONFIG_DIR: _, CCBUNDLE_STORE: __, ...env } = alice.env;
    const result = await runHookCommand(ourCommand(alice), input, env);
    expect(result.code).toBe(0);
    expect(await waitFor(() => snapshotNames(nas).length === 1, 30_000)).toBe(true);
    const listed = JSON.parse((await alice.runOk(["list", "--json"])).stdout);
    expect(listed.sessions.map((s: { id: string }) => s.id)).toEqual([session.id]);
    expect(listed.sessions.map((s: { id: string }) => s.id)).not.toContain(other.id);
    const log = path.join(alice.ccbHome, "logs", "hook.log");
    expect(await waitFor(() => readFileSync(log, "utf8").includes("Backed up 1 session"), 10_000)).toBe(true);
    expect(readFileSync(log, "utf8")).toContain(`SessionEnd ${session.id}`);
  });

  it("bad hook input: exit 2 with a hint, nothing backed up", async () => {
    const result = await alice.run(["backup", "--hook"], { input: '{"hook_event_name":"SessionEnd"}' });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("names no session id");
    const notJson = await alice.run(["backup", "--hook"], { input: "hello" });
    expect(notJson.code).toBe(2);
  });

  it("uninstall removes only our hook; settings.json is as it was", async () => {
    const doc = JSON.parse((await alice.runOk(["hook", "uninstall", "--json"])).stdout);
    expect(doc.changed).toBe(true);
    expect(existsSync(doc.backup)).toBe(true);
    expect(JSON.parse(readFileSync(settingsPath(alice), "utf8"))).toEqual(original);
    const again = JSON.parse((await alice.runOk(["hook", "uninstall", "--json"])).stdout);
    expect(again.changed).toBe(false);
  });

  it("keeps the file's own indentation: install then uninstall gives back the same bytes", async () => {
    const saved = readFileSync(settingsPath(alice), "utf8");
    const tabbed = JSON.stringify(original, null, "\t"); // and no newline at the end
    writeFileSync(settingsPath(alice), tabbed);
    try {
      await alice.runOk(["hook", "install"]);
      const installed = readFileSync(settingsPath(alice), "utf8");
      expect(installed.startsWith('{\n\t"model"')).toBe(true);
      expect(installed).toContain("backup --hook");
      await alice.runOk(["hook", "uninstall"]);
      expect(readFileSync(settingsPath(alice), "utf8")).toBe(tabbed);
      // Windows line ends stay too.
      const crlf = `${JSON.stringify(original, null, 4).replaceAll("\n", "\r\n")}\r\n`;
      writeFileSync(settingsPath(alice), crlf);
      await alice.runOk(["hook", "install"]);
      expect(
        readFileSync(settingsPath(alice), "utf8")
          .split("\n")
          .every((line, i, all) => i === all.length - 1 || line.endsWith("\r")),
      ).toBe(true);
      await alice.runOk(["hook", "uninstall"]);
      expect(readFileSync(settingsPath(alice), "utf8")).toBe(crlf);
      // One line (a tool wrote it) stays one line.
      const compact = `${JSON.stringify(original)}\n`;
      writeFileSync(settingsPath(alice), compact);
      await alice.runOk(["hook", "install"]);
      expect(readFileSync(settingsPath(alice), "utf8").trimEnd()).not.toContain("\n");
      await alice.runOk(["hook", "uninstall"]);
      expect(readFileSync(settingsPath(alice), "utf8")).toBe(compact);
    } finally {
      writeFileSync(settingsPath(alice), saved);
    }
  });

  it("a settings.json that is a symlink (dotfiles) stays a symlink", async () => {
    const dotfile = path.join(alice.root, "dotfiles", "claude-settings.json");
    mkdirSync(path.dirname(dotfile), { recursive: true });
    renameSync(settingsPath(alice), dotfile);
    symlinkSync(dotfile, settingsPath(alice));
    await alice.runOk(["hook", "install"]);
    expect(lstatSync(settingsPath(alice)).isSymbolicLink()).toBe(true);
    expect(readFileSync(dotfile, "utf8")).toContain("backup --hook");
    await alice.runOk(["hook", "uninstall"]);
    expect(lstatSync(settingsPath(alice)).isSymbolicLink()).toBe(true);
    expect(JSON.parse(readFileSync(dotfile, "utf8"))).toEqual(original);
    rmSync(settingsPath(alice));
    renameSync(dotfile, settingsPath(alice));
  });

  it("a settings.json that is not JSON is left alone: exit 1 with a hint", async () => {
    writeFileSync(settingsPath(alice), "{ not json");
    const backups = readdirSync(alice.claudeDir).length;
    const result = await alice.run(["hook", "install"]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("is not valid JSON; it was not changed");
    expect(result.stderr).toContain("hint: ");
    expect(readFileSync(settingsPath(alice), "utf8")).toBe("{ not json");
    expect(readdirSync(alice.claudeDir).length).toBe(backups);
  });
});

describe("an identity outside the default folder", () => {
  it("the installed command names CCBUNDLE_HOME and the DHT/relay flags, so the hook backs up with that identity", async () => {
    const carol = new Machine("carol", { CCBUNDLE_STORE: path.join(alice.root, "nas-carol") });
    const elsewhere = path.join(carol.root, "keys", "ccbundle home");
    carol.env.CCBUNDLE_HOME = elsewhere;
    mkdirSync(carol.env.CCBUNDLE_STORE!);
    try {
      await carol.runOk(["init", "--no-passphrase"]);
      const s = writeSession({ claudeDir: carol.claudeDir, projectDir: carol.project("p"), home: carol.home });
      await carol.runOk(["hook", "install", "--no-dht", "--relay", "none"]);
      const command = ourCommand(carol);
      expect(command).toMatch(/^CCBUNDLE_HOME='[^']+ccbundle home' /);
      expect(command).toContain(" --no-dht --relay none");
      // So do the DHT and relay settings of its environment, which Claude Code's lacks.
      expect(command).toMatch(/^CCBUNDLE_HOME='[^']+' CCBUNDLE_BOOTSTRAP=none CCBUNDLE_RELAYS=none /);
      // Claude Code's environment: no CCBUNDLE_HOME, no store.
      const { CCBUNDLE_HOME: _, CCBUNDLE_STORE: __, ...env } = carol.env;
      const input = JSON.stringify({ session_id: s.id, transcript_path: s.transcript, hook_event_name: "SessionEnd" });
      expect((await runHookCommand(command, input, env)).code).toBe(0);
      expect(await waitFor(() => snapshotNames(carol.env.CCBUNDLE_STORE!).length === 1, 30_000)).toBe(true);
      const log = path.join(elsewhere, "logs", "hook.log");
      expect(await waitFor(() => readFileSync(log, "utf8").includes("Backed up 1 session"), 10_000)).toBe(true);
    } finally {
      carol.cleanup();
    }
  });
});

describe("an S3 store", () => {
  it("the hook carries the AWS profile (never keys); keys only in this shell's environment get a warning", async () => {
    const dan = new Machine("dan-hook");
    try {
      await dan.runOk(["init", "--no-passphrase"]);
      const store = "s3://ccbundle/dan?endpoint=http://127.0.0.1:9";
      await dan.runOk(["hook", "install", "--store", store], {
        env: { AWS_PROFILE: "nas", AWS_CONFIG_FILE: "/home/dan/.aws/config" },
      });
      const command = ourCommand(dan);
      expect(command).toContain("AWS_PROFILE=nas AWS_CONFIG_FILE=/home/dan/.aws/config ");
      expect(command).toContain(`--store '${store}'`);
      await dan.runOk(["hook", "uninstall"]);
      const keys = JSON.parse(
        (
          await dan.runOk(["hook", "install", "--store", store, "--json"], {
            env: { AWS_ACCESS_KEY_ID: "AKIAEXAMPLEKEY", AWS_SECRET_ACCESS_KEY: "not-a-real-secret" },
          })
        ).stdout,
      );
      expect(keys.warnings.join("\n")).toContain("are not written into the hook");
      expect(readFileSync(settingsPath(dan), "utf8")).not.toMatch(/AKIAEXAMPLEKEY|not-a-real-secret/);
    } finally {
      dan.cleanup();
    }
  });
});

describe("a passphrase-protected identity", () => {
  it("install warns that the hook has no terminal; with the passphrase in its environment it backs up", async () => {
    const bob = new Machine("bob", { CCBUNDLE_STORE: path.join(alice.root, "nas-bob") });
    mkdirSync(bob.env.CCBUNDLE_STORE!);
    try {
      await bob.runOk(["init"], { env: { CCBUNDLE_PASSPHRASE: "pass phrase for bob" } });
      const s = writeSession({ claudeDir: bob.claudeDir, projectDir: bob.project("p"), home: bob.home });
      const doc = JSON.parse((await bob.runOk(["hook", "install", "--json"])).stdout);
      expect(doc.warnings.join(" ")).toContain("passphrase-protected");
      const input = JSON.stringify({ session_id: s.id, transcript_path: s.transcript, hook_event_name: "SessionEnd" });
      // No terminal, no passphrase: the backup fails with a hint instead of waiting for a prompt.
      const without = await bob.run(["backup", "--hook", "--no-detach"], { input });
      expect(without.code).toBe(2);
      expect(without.stderr).toContain("set CCBUNDLE_PASSPHRASE");
      const withEnv = await bob.run(["backup", "--hook", "--no-detach"], {
        input,
        env: { CCBUNDLE_PASSPHRASE: "pass phrase for bob" },
      });
      expect(withEnv.code).toBe(0);
      expect(snapshotNames(bob.env.CCBUNDLE_STORE!)).toHaveLength(1);
      // A --passphrase-file that does not open the identity is refused at install, not at every session end.
      const settingsFile = path.join(bob.claudeDir, "settings.json");
      const before = readFileSync(settingsFile, "utf8");
      const missing = await bob.run(["hook", "install", "--passphrase-file", path.join(bob.root, "no-such-file")]);
      expect(missing.code).not.toBe(0);
      expect(missing.stderr).not.toContain("bug in ccbundle");
      const wrongFile = path.join(bob.root, "wrong-passphrase");
      writeFileSync(wrongFile, "not the passphrase\n", { mode: 0o600 });
      const wrong = await bob.run(["hook", "install", "--passphrase-file", wrongFile]);
      expect(wrong.code).toBe(5);
      expect(readFileSync(settingsFile, "utf8")).toBe(before);
    } finally {
      bob.cleanup();
    }
  });
});
