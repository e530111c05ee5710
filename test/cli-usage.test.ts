import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Machine } from "./helpers/machine.js";
import { expectOneLineError } from "./helpers/tree.js";

/**
 * The command line as scripts meet it: a flag given an empty value, yargs'
 * own complaints in our words with the command's --help as the hint, the
 * output mode of an early failure, `help <command>`.
 */

let m: Machine;
let project: string;
beforeAll(async () => {
  m = new Machine("usage", { CCBUNDLE_PASSPHRASE: "correct horse battery staple" });
  project = m.project("app");
  m.env.CCBUNDLE_STORE = m.project("nas");
  await m.runOk(["init"]);
});
afterAll(() => m?.cleanup());

async function usage(args: string[], says: RegExp | string, hint?: string) {
  const r = await m.run(args, { cwd: project });
  expect(r.code, r.stderr).toBe(2);
  expectOneLineError(r.stderr);
  expect(r.stderr).toContain(typeof says === "string" ? says : "");
  if (typeof says !== "string") expect(r.stderr).toMatch(says);
  if (hint) expect(r.stderr).toContain(`hint: ${hint}`);
  expect(r.stdout).toBe("");
}

describe("a flag given an empty value is a usage error, never 'not given'", () => {
  for (const args of [
    ["push", "--store", ""],
    ["push", "--store"],
    ["backup", "--project", ""],
    ["list", "--snapshot"],
    ["pull", "--map"],
    ["export", "--out", ""],
    ["import", "x.ccb", "--from"],
  ]) {
    const flag = args.find((arg) => arg.startsWith("--"))!;
    it(args.join(" ").replace(/ $/, ' ""'), () =>
      usage(args, `${flag} needs a value`, "is the variable you passed empty?"),
    );
  }
});

describe("yargs' complaints, in our words", () => {
  it("a misspelt option gets a guess and the command's help", () =>
    usage(["push", "--tll", "2h"], "unknown option --tll; did you mean --ttl?", "see `ccbundle push --help`"));
  it("an option no command has", () => usage(["whoami", "--frobnicate"], /^ccbundle: unknown option --frobnicate$/m));
  it("a one-value flag given twice", () =>
    usage(
      ["whoami", "--passphrase-file", "a", "--passphrase-file", "b"],
      "--passphrase-file was given more than once",
    ));
  it("a negated option, as typed, once", async () => {
    await usage(["pull", "--no-such-flag"], /^ccbundle: unknown option --no-such-flag$/m);
    await usage(["pull", "--no-resum"], "unknown option --no-resum; did you mean --no-resume?");
    // --project takes a directory: there is no --no-project to suggest.
    await usage(["pull", "--no-projet"], "unknown option --no-projet; did you mean --project?");
  });
  it("a word too many", () => usage(["push", "extra"], "unexpected argument extra", "see `ccbundle push --help`"));
  // The hint named `ccbundle frobnicate --help`, which printed the top-level help and exited 0.
  it("completion prints its script, and refuses what it cannot do instead of printing it anyway", async () => {
    const script = await m.run(["completion"]);
    expect(script.code).toBe(0);
    expect(script.stdout).toContain("###-begin-ccbundle-completions-###");
    for (const args of [
      ["completion", "--help"],
      ["help", "completion"],
    ]) {
      const help = await m.run(args);
      expect(help.code).toBe(0);
      expect(help.stdout).toMatch(/^ccbundle completion\n\nPrint a bash\/zsh completion script/);
    }
    const json = await m.run(["completion", "--json"]);
    expect(json.code).toBe(2);
    expect(JSON.parse(json.stdout)).toMatchObject({
      ok: false,
      error: { message: "completion prints a shell script, not JSON" },
    });
    await usage(["completion", "--bogus"], "unexpected argument --bogus", "run `ccbundle completion` alone");
  });

  it("an unknown command points at the top-level help", async () => {
    await usage(["frobnicate"], /^ccbundle: unknown command frobnicate$/m, "see `ccbundle --help`");
    await usage(["pushh"], "unknown command pushh; did you mean push?", "see `ccbundle --help`");
    await usage(["help", "frobnicate"], /^ccbundle: unknown command frobnicate$/m, "see `ccbundle --help`");
    // With --help it printed the top-level help and exited 0.
    await usage(["pushh", "--help"], "unknown command pushh; did you mean push?", "see `ccbundle --help`");
    await usage(["frobnicate", "-h"], /^ccbundle: unknown command frobnicate$/m, "see `ccbundle --help`");
    // A common option's value before the command is not the command.
    await usage(
      ["--store", "/tmp/x", "push", "--bogus"],
      /^ccbundle: unknown option --bogus$/m,
      "see `ccbundle push --help`",
    );
  });
  it("a missing argument", () => usage(["key", "export"], "missing argument", "see `ccbundle key export --help`"));
  it("a missing required option", () => usage(["export"], "missing --out", "see `ccbundle export --help`"));
  it("options that exclude each other", () =>
    usage(["backup", "--all", "--project", "."], "--all and --project cannot be used together"));
  it("a store URL with a password: refused without showing it", async () => {
    await usage(
      ["status", "--store", "http://al:SuperSecret123@nas.local/store"],
      "unsupported store URL: http://al:***@nas.local/store",
    );
    const r = await m.run(["status", "--json", "--store", "http://al:SuperSecret123@nas.local/store"]);
    expect(r.stdout + r.stderr).not.toContain("SuperSecret123");
  });
  it("a --from that is not a key", () =>
    usage(["import", "x.ccb", "--from", "bogus"], "--from bogus: not a ccbundle key"));
});

describe("output mode and help", () => {
  it("--json=true makes a failure a JSON document too; --no-json after --json makes it text", async () => {
    const json = await m.run(["status", "--json=true", "--store", "/nonexistent/nas"]);
    expect(json.code).not.toBe(0);
    expect(JSON.parse(json.stdout)).toMatchObject({ ok: false, error: { message: expect.any(String) } });
    const text = await m.run(["status", "--json", "--no-json", "--store", "/nonexistent/nas"]);
    expect(text.stdout).toBe("");
    expectOneLineError(text.stderr);
  });

  it("`help push` is `push --help`, for every command --help lists", async () => {
    const r = await m.runOk(["help", "push"]);
    expect(r.stdout).toMatch(/^ccbundle push/m);
    expect(r.stdout).toContain("--ttl");
    // cli/main.ts keeps its own list of commands (for the unknown-command error): it must hold them all.
    const listed = [...(await m.runOk(["--help"])).stdout.matchAll(/^ {2}ccbundle (\w+)/gm)].map((match) => match[1]!);
    expect(listed.length).toBeGreaterThanOrEqual(17);
    for (const command of listed) {
      const help = await m.run(["help", command]);
      expect(help.code, `${command}: ${help.stderr}`).toBe(0);
      // `completion` prints its script whatever follows it.
      if (command !== "completion") expect(help.stdout).toMatch(new RegExp(`^ccbundle ${command}`, "m"));
    }
  });

  it("`init --passphrase` alone is the default it names; a word after it would be a secret on argv", async () => {
    const other = new Machine("usage-init", { CCBUNDLE_PASSPHRASE: "correct horse battery staple" });
    try {
      const refused = await other.run(["init", "--passphrase", "hunter2"]);
      expect(refused.code).toBe(2);
      expect(refused.stderr).toContain("not accepted on the command line");
      await other.runOk(["init", "--passphrase"]);
    } finally {
      other.cleanup();
    }
  });

  it("CCBUNDLE_PASSPHRASE set but empty is named as such; a short passphrase gets a warning at init", async () => {
    const empty = await m.run(["key", "export", "-", "--age-identity"], { env: { CCBUNDLE_PASSPHRASE: "" } });
    expect(empty.code).toBe(2);
    expectOneLineError(empty.stderr);
    expect(empty.stderr).toContain("CCBUNDLE_PASSPHRASE is set but empty");
    expect(empty.stdout).toBe("");
    const other = new Machine("usage-weak", { CCBUNDLE_PASSPHRASE: "hunter2" });
    try {
      const init = await other.runOk(["init"]);
      expect(init.stderr).toMatch(/^warning: a passphrase of 7 characters is easy to guess/m);
      expect(init.stderr).not.toContain("hunter2");
    } finally {
      other.cleanup();
    }
    const strong = new Machine("usage-strong", { CCBUNDLE_PASSPHRASE: "correct horse battery staple" });
    try {
      expect((await strong.runOk(["init"])).stderr).not.toContain("warning");
    } finally {
      strong.cleanup();
    }
  });

  it("doctor's failing JSON document has an error, as every command's does", async () => {
    const r = await m.run(["doctor", "--json", "--store", "/nonexistent/nas"]);
    expect(r.code).toBe(1);
    const doc = JSON.parse(r.stdout);
    expect(doc).toMatchObject({
      ok: false,
      error: { message: expect.stringMatching(/check.* failed: .*store/), exitCode: 1 },
    });
  });

  it("doctor fails a nearly full disk under the config dir (every restore there would fail mid-way)", async () => {
    const { execFileSync } = await import("node:child_process");
    const { mkdirSync } = await import("node:fs");
    const path = await import("node:path");
    const disk = path.join(m.root, "small-disk");
    mkdirSync(disk);
    // Needs root (CI and the dev machines run as root); failing here is a real failure, not a skip.
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", disk]);
    try {
      const claudeDir = path.join(disk, "claude");
      mkdirSync(path.join(claudeDir, "projects"), { recursive: true });
      const r = await m.run(["doctor", "--json"], { env: { CLAUDE_CONFIG_DIR: claudeDir } });
      expect(r.code).toBe(1);
      const check = JSON.parse(r.stdout).checks.find(
        (c: { name: string }) => c.name === "claude config dir disk space",
      );
      expect(check).toMatchObject({
        ok: false,
        detail: expect.stringMatching(/^only 1\.0 MiB free on the disk that holds /),
      });
      expect(JSON.parse(r.stdout).checks.map((c: { name: string }) => c.name)).not.toContain(
        "identity folder disk space",
      );
    } finally {
      execFileSync("umount", ["-l", disk]);
    }
  });
});

describe("config.json", () => {
  it("an unknown setting (a typo) is named with the one it likely meant, and the command goes on", async () => {
    const { writeFileSync, rmSync } = await import("node:fs");
    const path = await import("node:path");
    const file = path.join(m.ccbHome, "config.json");
    writeFileSync(file, JSON.stringify({ Store: "/srv/nas", compression: { levle: 5 }, futureThing: 1 }));
    try {
      const r = await m.run(["whoami"]);
      expect(r.code).toBe(0);
      expect(r.stderr).toContain(`warning: ${file}: unknown setting "Store" (did you mean "store"?); it is ignored`);
      expect(r.stderr).toContain(
        `unknown setting "compression.levle" (did you mean "compression.level"?); it is ignored`,
      );
      expect(r.stderr).toContain(`unknown setting "futureThing"; it is ignored`);
    } finally {
      rmSync(file);
    }
  });

  it("a setting of the wrong type is named, for every command (it was 'a bug in ccbundle' once the store was needed)", async () => {
    const { writeFileSync, rmSync } = await import("node:fs");
    const path = await import("node:path");
    const file = path.join(m.ccbHome, "config.json");
    const cases: Array<[object, RegExp]> = [
      [{ store: 5 }, /"store" must be a store URL \(a string\), not 5$/m],
      [{ relays: [1] }, /"relays" must be a list of strings or a comma-separated string, not \[1\]$/m],
      [{ backupRecipients: "age1x" }, /"backupRecipients" must be a list of age1… recipients/],
      [{ compression: 3 }, /"compression" must be an object/],
    ];
    try {
      for (const [config, message] of cases) {
        writeFileSync(file, JSON.stringify(config));
        for (const command of [["whoami"], ["push", "--json"]]) {
          const r = await m.run(command);
          expect(r.code, JSON.stringify(config)).toBe(2);
          expect(r.stderr + r.stdout).toMatch(message);
          expect(r.stderr + r.stdout).not.toContain("bug in ccbundle");
        }
      }
    } finally {
      rmSync(file);
    }
  });
});

describe("environment", () => {
  it("a variable set but empty is refused, never taken as 'none' or the default", async () => {
    for (const name of ["CCBUNDLE_STORE", "CCBUNDLE_BOOTSTRAP", "CCBUNDLE_RELAYS"]) {
      const r = await m.run(["doctor"], { env: { [name]: "" } });
      expect(r.code, name).toBe(2);
      expect(r.stderr).toContain(`ccbundle: ${name} is set but empty`);
      expect(r.stderr).toMatch(/hint: unset it for the default/);
    }
  });
});
