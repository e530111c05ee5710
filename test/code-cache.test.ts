import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  appendFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cacheDir } from "../cli/code-cache.js";
import { writeSession } from "./helpers/fixture.js";
import { CLI, Machine } from "./helpers/machine.js";

/**
 * The bin starts the CommonJS bundle through cli/code-cache.ts, which keeps V8's
 * compiled code between runs. Checked on the built CLI: what it writes, that it
 * reuses it, and that a damaged, foreign or unwritable cache never changes what
 * a command does, only how fast it starts.
 */

let root: string;
beforeAll(() => {
  root = mkdtempSync(path.join(os.tmpdir(), "ccb-code-cache-"));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

function ccbundle(args: string[], cache: string) {
  const result = spawnSync(process.execPath, [CLI, ...args], {
    env: { PATH: process.env.PATH, HOME: path.join(root, "home"), CCBUNDLE_CODE_CACHE: cache },
    encoding: "utf8",
  });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

const MAGIC = "ccbundle-v8-cache-1\n";
const entries = (dir: string) => readdirSync(dir).filter((name) => name.endsWith(".bin"));
const commandsOf = (file: string) => {
  const body = readFileSync(file).subarray(MAGIC.length + 32);
  return JSON.parse(body.subarray(0, body.indexOf(0x0a)).toString()) as string[];
};

describe("the V8 code cache", () => {
  it("is written on the first run (0600 entries in a 0700 folder) and reused, not rewritten, by the next", () => {
    const dir = path.join(root, "first");
    const version = ccbundle(["--version"], dir);
    expect(version.code).toBe(0);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    const written = entries(dir);
    expect(written.some((name) => name.startsWith("ccbundle.cjs."))).toBe(true);
    for (const name of written) {
      const file = path.join(dir, name);
      expect(statSync(file).mode & 0o777).toBe(0o600);
      expect(readFileSync(file).subarray(0, MAGIC.length).toString()).toBe(MAGIC);
      expect(name).toContain(`${process.version}-${process.arch}`);
    }
    const before = new Map(written.map((name) => [name, statSync(path.join(dir, name)).mtimeMs]));
    expect(ccbundle(["--version"], dir)).toEqual(version);
    for (const [name, mtime] of before) expect(statSync(path.join(dir, name)).mtimeMs).toBe(mtime);
    expect(readdirSync(dir).filter((name) => name.endsWith(".tmp"))).toEqual([]);
  });

  it("takes in what another command compiles: each entry lists the commands it was made by", () => {
    const dir = path.join(root, "commands");
    ccbundle(["--version"], dir);
    const main = () => path.join(dir, entries(dir).find((name) => name.startsWith("ccbundle.cjs."))!);
    expect(commandsOf(main())).toEqual([""]);
    const whoami = ccbundle(["whoami"], dir);
    expect(whoami.code).toBe(1);
    expect(commandsOf(main())).toEqual(["", "whoami"]);
  });

  it("ignores a damaged or truncated entry, runs the command the same and writes the entry anew", () => {
    const dir = path.join(root, "damaged");
    const clean = ccbundle(["whoami"], dir);
    const names = entries(dir);
    const [first, second] = names.map((name) => path.join(dir, name));
    const bytes = readFileSync(first!);
    bytes[bytes.length - 100] ^= 0xff;
    writeFileSync(first!, bytes);
    writeFileSync(second!, readFileSync(second!).subarray(0, 60));
    expect(ccbundle(["whoami"], dir)).toEqual(clean);
    expect(entries(dir).sort()).toEqual([...names].sort());
    for (const file of [first!, second!]) expect(commandsOf(file)).toEqual(["whoami"]);
    // The rewritten entries are whole again: the next run changes nothing.
    const mtimes = [first!, second!].map((file) => statSync(file).mtimeMs);
    expect(ccbundle(["whoami"], dir)).toEqual(clean);
    expect([first!, second!].map((file) => statSync(file).mtimeMs)).toEqual(mtimes);
  });

  it("rewrites an entry V8 rejects (made by another V8 or with other flags)", () => {
    const dir = path.join(root, "foreign");
    const clean = ccbundle(["--version"], dir);
    const main = path.join(dir, entries(dir).find((name) => name.startsWith("ccbundle.cjs."))!);
    // A well-formed entry whose V8 data is not V8's: passes our digest, fails V8's own checks.
    const bytes = readFileSync(main);
    const header = bytes.subarray(0, MAGIC.length + 32);
    const body = Buffer.concat([Buffer.from('[""]\n'), Buffer.alloc(4096, 7)]);
    header.set(createHash("sha256").update(body).digest(), MAGIC.length);
    writeFileSync(main, Buffer.concat([header, body]));
    expect(ccbundle(["--version"], dir)).toEqual(clean);
    expect(readFileSync(main).length).toBeGreaterThan(10_000);
  });

  it("tidies only its own old entries in a folder it shares: other files stay, however old", () => {
    const dir = path.join(root, "shared");
    mkdirSync(dir);
    const notes = path.join(dir, "notes.txt");
    writeFileSync(notes, "mine");
    const gone = path.join(dir, `chunk-gone-AAAA.cjs.${"0".repeat(24)}.${process.version}-${process.arch}.bin`);
    writeFileSync(gone, "an entry of a version no longer installed");
    const longAgo = new Date(Date.now() - 40 * 24 * 3600 * 1000);
    utimesSync(notes, longAgo, longAgo);
    utimesSync(gone, longAgo, longAgo);
    expect(ccbundle(["--version"], dir).code).toBe(0);
    expect(existsSync(notes)).toBe(true);
    expect(existsSync(gone)).toBe(false);
  });

  it("writes nothing after a threaded backup turned TurboFan off (V8 would refuse that data in every normal run)", async () => {
    const dir = path.join(root, "after-backup");
    const machine = new Machine("code-cache-backup", { CCBUNDLE_CODE_CACHE: dir });
    try {
      await machine.runOk(["init", "--no-passphrase"]);
      const project = machine.project("work/app");
      // Over backup's 16 MB: it compresses on worker threads.
      for (let i = 0; i < 2; i++) {
        const s = writeSession({ claudeDir: machine.claudeDir, projectDir: project, home: machine.home });
        const line = `${JSON.stringify({ type: "user", sessionId: s.id, message: { content: "x".repeat(4000) } })}\n`;
        appendFileSync(s.transcript, line.repeat(2500));
      }
      const main = () => path.join(dir, entries(dir).find((name) => name.startsWith("ccbundle.cjs."))!);
      const before = commandsOf(main());
      const store = path.join(machine.root, "nas");
      mkdirSync(store);
      await machine.runOk(["backup", "--all", "--store", store]);
      expect(commandsOf(main())).toEqual(before);
      expect(before).not.toContain("backup");
      // And the entries still serve: the next command rewrites nothing.
      const mtime = statSync(main()).mtimeMs;
      await machine.runOk(["init", "--no-passphrase"]).catch(() => undefined);
      expect(statSync(main()).mtimeMs).toBe(mtime);
    } finally {
      machine.cleanup();
    }
  });

  it("keeps the bundle as strict as the ES modules it was made from", () => {
    const bundle = readFileSync(CLI.replace(/main\.js$/, "ccbundle.cjs"), "utf8");
    expect(bundle.split("\n").slice(0, 4).join("\n")).toContain('"use strict"');
  });

  it("is off with CCBUNDLE_CODE_CACHE=off, and a folder that cannot be made only costs speed", () => {
    const clean = ccbundle(["--version"], "off");
    expect(clean.code).toBe(0);
    const blocker = path.join(root, "a-file");
    writeFileSync(blocker, "");
    expect(ccbundle(["--version"], path.join(blocker, "cache"))).toEqual(clean);
  });

  it("lives beside the bundle when that is writable, else in the user's cache folder", () => {
    const bundleDir = path.join(root, "install");
    mkdirSync(bundleDir);
    expect(cacheDir(bundleDir, {})).toBe(path.join(bundleDir, ".code-cache"));
    const blocked = path.join(root, "install-blocked");
    mkdirSync(blocked);
    writeFileSync(path.join(blocked, ".code-cache"), "");
    const xdg = path.join(root, "xdg-cache");
    if (process.platform === "linux") {
      expect(cacheDir(blocked, { XDG_CACHE_HOME: xdg })).toBe(path.join(xdg, "ccbundle", "code-cache"));
    }
    expect(cacheDir(bundleDir, { CCBUNDLE_CODE_CACHE: "off" })).toBeUndefined();
    expect(cacheDir(bundleDir, { CCBUNDLE_CODE_CACHE: "0" })).toBeUndefined();
  });
});
