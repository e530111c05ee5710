import { spawn, spawnSync } from "node:child_process";
import { readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CLI, Machine } from "./helpers/machine.js";

/**
 * The identity commands as scripts use them: public facts without the
 * passphrase, `-` for stdin/stdout, and no key ever lost to --force.
 */

const PASSPHRASE = "correct horse battery staple";
let alice: Machine;
let z32: string;

beforeAll(async () => {
  alice = new Machine("alice-id");
  await alice.runOk(["init"], { env: { CCBUNDLE_PASSPHRASE: PASSPHRASE } });
  z32 = (await alice.runOk(["whoami"])).stdout.trim();
});

afterAll(() => alice?.cleanup());

describe("whoami", () => {
  it("--json and --age-recipient need no passphrase: both follow from the public key", async () => {
    const doc = JSON.parse((await alice.runOk(["whoami", "--json"])).stdout);
    const [key, recipient] = readFileSync(path.join(alice.ccbHome, "identity.pub"), "utf8").trim().split("\n");
    expect(doc).toEqual({ ok: true, key, ageRecipient: recipient });
    expect(doc.key).toBe(z32);
    expect((await alice.runOk(["whoami", "--age-recipient"])).stdout.trim()).toBe(recipient);
  });
});

describe("key export - / key import -", () => {
  it("export writes to stdout and import reads stdin, so the key can go through a pipe", async () => {
    // Bytes, not text: an encrypted identity's payload is binary.
    const exported = spawnSync(process.execPath, [CLI, "key", "export", "-"], { env: alice.env });
    expect(exported.status, exported.stderr.toString()).toBe(0);
    expect(exported.stdout.equals(readFileSync(path.join(alice.ccbHome, "identity")))).toBe(true);
    const laptop = new Machine("laptop-id");
    try {
      const imported = spawnSync(process.execPath, [CLI, "key", "import", "-"], {
        env: { ...laptop.env, CCBUNDLE_PASSPHRASE: PASSPHRASE },
        input: exported.stdout,
      });
      expect(imported.status, imported.stderr.toString()).toBe(0);
      expect((await laptop.runOk(["whoami"])).stdout.trim()).toBe(z32);
    } finally {
      laptop.cleanup();
    }
    const age = await alice.runOk(["key", "export", "-", "--age-identity"], {
      env: { CCBUNDLE_PASSPHRASE: PASSPHRASE },
    });
    expect(age.stdout).toMatch(/^AGE-SECRET-KEY-1[0-9A-Z]+\n$/);
    // An empty name (`key export "$UNSET" --age-identity`) is refused: never the key on stdout by mistake.
    const empty = await alice.run(["key", "export", "", "--age-identity"], {
      env: { CCBUNDLE_PASSPHRASE: PASSPHRASE },
    });
    expect(empty.code).toBe(2);
    expect(empty.stdout).toBe("");
    expect(empty.stderr).toContain("give a file name, or - for standard input/output");
    // --json would put a JSON error or document on the same stdout as the key: refused, no key written.
    const json = await alice.run(["key", "export", "-", "--age-identity", "--json"], {
      env: { CCBUNDLE_PASSPHRASE: PASSPHRASE },
    });
    expect(json.code).toBe(2);
    expect(json.stdout).not.toContain("AGE-SECRET-KEY");
    expect(JSON.parse(json.stdout).error.message).toBe("--json and `key export -` both want stdout");
  });
});

/**
 * Run `key import - < file` (plus `extra` flags) on a terminal that script(1) (util-linux, in
 * every Debian) gives it, stdin being the key file, and type `typed` at its passphrase prompt.
 */
async function importAtPrompt(
  env: NodeJS.ProcessEnv,
  file: string,
  typed: string,
  extra = "",
): Promise<{ code: number | null; output: string }> {
  const command = `${JSON.stringify(process.execPath)} ${JSON.stringify(CLI)} key import - ${extra} < ${JSON.stringify(file)}`;
  const child = spawn("script", ["-qec", command, "/dev/null"], { env, stdio: ["pipe", "pipe", "pipe"] });
  let output = "";
  child.stdout.on("data", (bytes: Buffer) => {
    output += bytes;
    if (output.includes("Passphrase of the exported identity: ") && child.stdin.writable) {
      child.stdin.write(typed);
      child.stdin.end();
    }
  });
  const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
  return { code, output };
}

describe("a prompt when stdin is the data", () => {
  it("key import - < file asks for the passphrase on the terminal (/dev/tty)", async () => {
    const exported = path.join(alice.root, "for-the-tty.key");
    await alice.runOk(["key", "export", exported]);
    const tty = new Machine("tty-id");
    try {
      const { code, output } = await importAtPrompt(tty.env, exported, `${PASSPHRASE}\r`);
      expect(code, output).toBe(0);
      expect(output).toContain(`Imported identity ${z32}`);
      expect(output).not.toContain(PASSPHRASE);
      expect((await tty.runOk(["whoami"])).stdout.trim()).toBe(z32);
    } finally {
      tty.cleanup();
    }
  });
});

describe("Ctrl-C at a passphrase prompt", () => {
  it("ends the command as Ctrl-C does (exit 130), not as a usage error, and imports nothing", async () => {
    const exported = path.join(alice.root, "for-ctrl-c.key");
    await alice.runOk(["key", "export", exported]);
    const tty = new Machine("tty-ctrl-c");
    try {
      const { code, output } = await importAtPrompt(tty.env, exported, "half a passphr\u0003");
      // script -e reports a child killed by a signal as 128 + its number.
      expect(code, output).toBe(130);
      expect(output).not.toContain("cancelled");
      expect((await tty.run(["whoami"])).code).not.toBe(0);

      // With --json (a handler of ours is registered from the start): the same, and the document.
      const json = await importAtPrompt(tty.env, exported, "half\u0003", "--json");
      expect(json.code, json.output).toBe(130);
      expect(json.output).toContain('"message": "interrupted (SIGINT)"');
      expect(json.output).not.toContain("internal error");
    } finally {
      tty.cleanup();
    }
  });
});

describe("key import --no-passphrase", () => {
  it("installs the same identity unencrypted (0600) for an unattended machine; again over itself, it takes a passphrase off", async () => {
    const exported = path.join(alice.root, "for-the-vm.key");
    await alice.runOk(["key", "export", exported]);
    const vm = new Machine("vm-id");
    try {
      // The export's passphrase opens it once; from then on nothing asks for one.
      const doc = JSON.parse(
        (
          await vm.runOk(["key", "import", exported, "--no-passphrase", "--json"], {
            env: { CCBUNDLE_PASSPHRASE: PASSPHRASE },
          })
        ).stdout,
      );
      expect(doc).toMatchObject({ ok: true, key: z32, encrypted: false });
      const identity = path.join(vm.ccbHome, "identity");
      expect(statSync(identity).mode & 0o777).toBe(0o600);
      expect(readFileSync(identity, "utf8")).not.toContain("age-encryption.org");
      const age = await vm.runOk(["key", "export", "-", "--age-identity"]);
      expect(age.stdout).toMatch(/^AGE-SECRET-KEY-1/);
      // Without --no-passphrase the import keeps it as exported: a passphrase is needed again.
      await vm.runOk(["key", "import", exported], { env: { CCBUNDLE_PASSPHRASE: PASSPHRASE } });
      expect(readFileSync(identity, "utf8")).toContain("age-encryption.org");
      const asked = await vm.run(["key", "export", "-", "--age-identity"]);
      expect(asked.code).toBe(2);
      expect(asked.stderr).toContain("passphrase");
    } finally {
      vm.cleanup();
    }
  });
});

describe("init --force", () => {
  it("keeps every identity it replaces, each in its own file, none over another", async () => {
    const machine = new Machine("forced");
    try {
      const keys: string[] = [];
      await machine.runOk(["init", "--no-passphrase"]);
      keys.push((await machine.runOk(["whoami"])).stdout.trim());
      for (let i = 0; i < 2; i++) {
        const doc = JSON.parse((await machine.runOk(["init", "--no-passphrase", "--force", "--json"])).stdout);
        expect(doc.previous).toMatch(/identity\.[0-9TZ-]+\.bak$/);
        keys.push((await machine.runOk(["whoami"])).stdout.trim());
      }
      expect(new Set(keys).size).toBe(3);
      const kept = readdirSync(machine.ccbHome)
        .filter((name) => name.endsWith(".bak"))
        .sort();
      expect(kept).toHaveLength(2);
      // Each copy is a whole identity: imported elsewhere, it is the key it replaced.
      for (const [index, name] of kept.entries()) {
        const other = new Machine(`restored-${index}`);
        try {
          await other.runOk(["key", "import", path.join(machine.ccbHome, name)]);
          expect((await other.runOk(["whoami"])).stdout.trim()).toBe(keys[index]);
        } finally {
          other.cleanup();
        }
      }
    } finally {
      machine.cleanup();
    }
  });
});

describe("bad input is a usage error before any passphrase is asked", () => {
  it("--passphrase-fd that is not a number, a bad --map, a folder given as a bundle file", async () => {
    // No CCBUNDLE_PASSPHRASE and no terminal: asking for it would fail with another message.
    const fd = await alice.run(["whoami", "--passphrase-fd", "abc"]);
    expect(fd.code).toBe(2);
    expect(fd.stderr).toContain("--passphrase-fd takes a file descriptor number");
    const noProject = await alice.run(["push", "--session", "1b2c", "--project", "/nonexistent/app"]);
    expect(noProject.code).toBe(2);
    expect(noProject.stderr).toContain("--project /nonexistent/app is not a directory here");
    const missing = await alice.run(["key", "export", "-", "--age-identity", "--passphrase-file", "/nonexistent/pass"]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("ccbundle: --passphrase-file /nonexistent/pass: no such file");
    // A descriptor nobody opened is the command's mistake too (it was exit 1), and two sources
    // at once are refused (the file won without a word).
    const closed = await alice.run(["key", "export", "-", "--age-identity", "--passphrase-fd", "33"]);
    expect(closed.code).toBe(2);
    expect(closed.stderr).toContain("ccbundle: --passphrase-fd 33: not a file descriptor opened for ccbundle");
    const both = await alice.run(["whoami", "--passphrase-file", "/nonexistent/pass", "--passphrase-fd", "0"]);
    expect(both.code).toBe(2);
    expect(both.stderr).toContain("--passphrase-file and --passphrase-fd cannot be used together");
    const map = await alice.run(["import", alice.root, "--map", "foo", "--no-resume"]);
    expect(map.code).toBe(2);
    expect(map.stderr).toContain("--map takes <old>=<new>");
    const pull = await alice.run(["pull", "--map", "foo", "--no-resume"]);
    expect(pull.code).toBe(2);
    expect(pull.stderr).toContain("--map takes <old>=<new>");
    // Relative prefixes matched nothing (old) or went into transcripts as typed (new).
    for (const [map, bad] of [
      ["/Users/bob=relative/dir", "relative/dir"],
      ["Users/bob=/home/bob", "Users/bob"],
    ]) {
      const relative = await alice.run(["pull", "--map", map!, "--no-resume"]);
      expect(relative.code, map).toBe(2);
      expect(relative.stderr).toContain(`--map: ${bad} is not an absolute path`);
    }
    const windows = await alice.run(["pull", "--map", "C:\\Users\\bob=relative", "--no-resume"]);
    expect(windows.stderr).toContain("--map: relative is not an absolute path");
    const folder = await alice.run(["import", alice.root, "--no-resume"]);
    expect(folder.code).toBe(2);
    expect(folder.stderr).toContain(`${alice.root} is a folder, not a bundle file`);
    expect(folder.stderr).not.toContain("bug in ccbundle");
    const relativeStore = await alice.run(["push", "--store", "file://relative/store"], {
      env: { CCBUNDLE_PASSPHRASE: PASSPHRASE },
    });
    expect(relativeStore.code).toBe(2);
    expect(relativeStore.stderr).toContain("cannot read store URL file://relative/store");
  });
});

describe("a file system that refuses: one line naming the path, never 'a bug'", () => {
  it("an identity folder that cannot be made; a folder given as a key file is a usage error", async () => {
    const blocker = path.join(alice.root, "not-a-folder");
    writeFileSync(blocker, "");
    const home = path.join(blocker, "ccbundle");
    const init = await alice.run(["init", "--no-passphrase"], { env: { CCBUNDLE_HOME: home } });
    expect(init.code).toBe(1);
    expect(init.stderr.split("\n")[0]).toMatch(
      /^ccbundle: .*not-a-folder.*: a part of the path is a file, not a folder \(ENOTDIR\)$/,
    );
    expect(init.stderr).toContain("hint: check the path");
    expect(init.stderr).not.toContain("bug in ccbundle");
    // doctor says so too, and checks the DHT and relay settings as push would read them.
    const doctor = await alice.run(["doctor", "--json"], {
      env: { CCBUNDLE_HOME: home, CCBUNDLE_BOOTSTRAP: "garbage" },
    });
    expect(doctor.code).toBe(1);
    const checks = JSON.parse(doctor.stdout).checks as { name: string; ok: boolean; detail: string }[];
    expect(checks.find((c) => c.name === "identity folder writable")).toMatchObject({
      ok: false,
      detail: `${home} cannot be made: ${blocker} is a file`,
    });
    expect(checks.find((c) => c.name === "dht and relays")).toMatchObject({ ok: false });
    const quiet = await alice.run(["doctor", "-q"], { env: { CCBUNDLE_HOME: home, CCBUNDLE_BOOTSTRAP: "garbage" } });
    expect(quiet.code).toBe(1);
    expect(quiet.stdout).toMatch(/^FAIL dht and relays: /m);
    expect(quiet.stdout).not.toMatch(/^ok /m);
    const healthy = JSON.parse((await alice.run(["doctor", "--json"])).stdout).checks as {
      name: string;
      ok: boolean;
    }[];
    expect(healthy.find((c) => c.name === "dht and relays")?.ok).toBe(true);
    expect(healthy.filter((c) => /^(identity folder|claude config dir) writable$/.test(c.name))).toEqual([]);
    const keyFolder = await alice.run(["key", "import", alice.root], {
      env: { CCBUNDLE_HOME: path.join(alice.root, "k") },
    });
    expect(keyFolder.code).toBe(2);
    expect(keyFolder.stderr).toContain(`${alice.root} is a folder, not a key file`);
    expect(keyFolder.stderr).not.toContain("bug in ccbundle");
  });
});
