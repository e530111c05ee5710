import { execFileSync, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { projectFolderName } from "../core/claude/paths.js";
import { UserKey } from "../core/crypto/keys.js";
import { type FixtureSession, writeDecoys, writeSession } from "./helpers/fixture.js";
import { CLI, Machine, twoMachines } from "./helpers/machine.js";
import { expectedRewrite, parseLines } from "./helpers/rewrite-oracle.js";

/**
 * The foundation path, end to end through the built CLI: two simulated
 * machines with different users, homes and project paths hand a session over
 * through a local "NAS" store.
 */

let alice: Machine;
let bob: Machine;
let nas: string;
let session: FixtureSession;
let aliceProject: string;
let bobProject: string;

function listFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...listFiles(full).map((f) => path.join(entry.name, f)));
    else out.push(entry.name);
  }
  return out.sort();
}

beforeAll(async () => {
  ({ alice, bob, nas } = await twoMachines("alice", "bob"));
  aliceProject = alice.project("work/my app");
  bobProject = bob.project("src/elsewhere/my-app");
  writeDecoys(alice.claudeDir);
  session = writeSession({ claudeDir: alice.claudeDir, projectDir: aliceProject, home: alice.home, turns: 5 });
});

afterAll(() => {
  alice?.cleanup();
  bob?.cleanup();
});

describe("push and pull through a local store", () => {
  it("the identity moved: both machines show the same key", async () => {
    const a = (await alice.runOk(["whoami"])).stdout.trim();
    const b = (await bob.runOk(["whoami"])).stdout.trim();
    expect(a).toMatch(/^[13-9a-km-uw-z]{52}$/);
    expect(b).toBe(a);
    const json = JSON.parse((await alice.runOk(["whoami", "--json"])).stdout);
    expect(json.key).toBe(a);
    expect(json.ageRecipient).toMatch(/^age1[02-9ac-hj-np-z]{58}$/);
    expect(statSync(path.join(alice.ccbHome, "identity")).mode & 0o777).toBe(0o600);
  });

  it("push sends the newest session of the project and says what to run", async () => {
    const result = await alice.runOk(["push", "--json"], { cwd: aliceProject });
    const doc = JSON.parse(result.stdout);
    expect(doc.ok).toBe(true);
    expect(doc.sessionId).toBe(session.id);
    expect(doc.files).toBe(session.files.length + 1); // + this session's history lines
    expect(doc.recordBytes).toBeLessThanOrEqual(1000);
    const human = await alice.runOk(["push"], { cwd: aliceProject });
    expect(human.stdout).toContain(`Pushed session ${session.id}`);
    expect(human.stdout).toContain("ccbundle pull");
    // No store object name reveals the session.
    for (const name of listFiles(nas)) expect(name).not.toContain(session.id);
  });

  it("pull restores every file under the new project's folder with paths rewritten", async () => {
    const result = await bob.runOk(["pull", "--project", bobProject, "--no-resume", "--json"]);
    const doc = JSON.parse(result.stdout);
    expect(doc.sessions[0].sessionId).toBe(session.id);
    expect(doc.sessions[0].outcome).toBe("new");
    const newFolder = projectFolderName(bobProject);
    for (const rel of session.files) {
      const target = path.join(bob.claudeDir, rel.replace(`projects/${session.folder}/`, `projects/${newFolder}/`));
      expect(existsSync(target), target).toBe(true);
      const original = readFileSync(path.join(alice.claudeDir, rel), "utf8");
      const restored = readFileSync(target, "utf8");
      if (rel.startsWith("file-history/")) {
        // Checkpoint contents are the user's files as they were: never rewritten.
        expect(restored).toBe(original);
      } else {
        expect(restored).not.toContain(aliceProject);
        expect(restored).not.toContain(alice.home);
        if (rel.endsWith(".jsonl")) parseLines(restored);
        const pairs: [string, string][] = [
          [`${alice.claudeDir}/projects/${session.folder}`, `${bob.claudeDir}/projects/${newFolder}`],
          [aliceProject, bobProject],
          [alice.home, bob.home],
        ];
        expect(restored).toBe(
          expectedRewrite(original, pairs, rel.endsWith(".md") || rel.endsWith(".txt") ? "text" : "json"),
        );
      }
      // Fresh mtime, so Claude Code's 30-day cleanup does not delete it at once.
      expect(Date.now() - statSync(target).mtimeMs).toBeLessThan(120_000);
    }
    const transcript = readFileSync(path.join(bob.claudeDir, "projects", newFolder, `${session.id}.jsonl`), "utf8");
    expect(JSON.parse(transcript.split("\n")[0]!).cwd).toBe(bobProject);
    // Never carried: credentials, other machine state.
    for (const decoy of [".credentials.json", "sessions", "ide", "statsig", "backups", "settings.json"]) {
      expect(existsSync(path.join(bob.claudeDir, decoy))).toBe(false);
    }
    // The session's prompt history arrived, rewritten.
    const history = readFileSync(path.join(bob.claudeDir, "history.jsonl"), "utf8");
    expect(history).toContain(session.id);
    expect(history).toContain(bobProject);
    // No staging folder is left behind.
    expect(readdirSync(bob.claudeDir).filter((n) => n.startsWith(".ccbundle"))).toEqual([]);
  });

  it("a second pull of the same handoff changes nothing", async () => {
    const doc = JSON.parse((await bob.runOk(["pull", "--project", bobProject, "--no-resume", "--json"])).stdout);
    expect(doc.sessions[0].outcome).toBe("identical");
  });

  it("a handoff to more people than a DHT record holds is refused before anything is uploaded (exit 2)", async () => {
    const blobs = () => listFiles(path.join(nas, "ccbundle", "v1", "blobs"));
    const before = blobs();
    const many = Array.from({ length: 40 }, () => UserKey.generate().z32).flatMap((z32) => ["--to", z32]);
    const result = await alice.run(["push", ...many], { cwd: aliceProject });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/over the 1000-byte limit of a DHT record/);
    expect(result.stderr).toContain("fewer --to recipients");
    expect(blobs()).toEqual(before);
  });

  it("without claude on PATH, pull prints the exact resume command", async () => {
    const result = await bob.runOk(["pull", "--project", bobProject], { env: { PATH: "/nonexistent" } });
    expect(result.stdout).toContain(`claude --resume ${session.id}`);
  });

  it("with claude on PATH, pull runs claude --resume <id> in the project directory", async () => {
    const bin = path.join(bob.root, "bin");
    mkdirSync(bin, { recursive: true });
    const record = path.join(bob.root, "claude-called.txt");
    writeFileSync(path.join(bin, "claude"), `#!/bin/sh\necho "$PWD $@" > ${JSON.stringify(record)}\n`);
    chmodSync(path.join(bin, "claude"), 0o755);
    // No terminal here (a pipe, like `ssh host ccbundle pull`): claude is not started, the command is printed.
    const told = await bob.runOk(["pull", "--project", bobProject], { env: { PATH: `${bin}:${process.env.PATH}` } });
    expect(existsSync(record)).toBe(false);
    expect(told.stdout).toContain(
      `Not resuming here (no terminal; --resume starts it anyway). Resume with: cd ${bobProject} && claude --resume ${session.id}`,
    );
    // --resume asks for it anyway.
    await bob.runOk(["pull", "--project", bobProject, "--resume"], { env: { PATH: `${bin}:${process.env.PATH}` } });
    expect(readFileSync(record, "utf8").trim()).toBe(`${bobProject} --resume ${session.id}`);
  });

  it("claude --resume gets no passphrase or PIN from our environment", async () => {
    const bin = path.join(bob.root, "bin-env");
    mkdirSync(bin, { recursive: true });
    const record = path.join(bob.root, "claude-env.txt");
    writeFileSync(
      path.join(bin, "claude"),
      `#!/bin/sh
env > ${JSON.stringify(record)}
`,
    );
    chmodSync(path.join(bin, "claude"), 0o755);
    await bob.runOk(["pull", "--project", bobProject, "--resume"], {
      env: {
        PATH: `${bin}:${process.env.PATH}`,
        CCBUNDLE_PASSPHRASE: "correct horse battery staple",
        CCBUNDLE_PIN: "a pin of eleven",
      },
    });
    const env = readFileSync(record, "utf8");
    expect(env).toContain(`PATH=${bin}:`);
    expect(env).not.toContain("correct horse battery staple");
    expect(env).not.toContain("a pin of eleven");
    expect(env).not.toMatch(/^CCBUNDLE_(PASSPHRASE|PIN)=/m);
  });
});

describe("export --out - | import -: through a pipe (ssh host ccbundle import -)", () => {
  it("streams the bundle on stdout (what it says on stderr) into import's stdin; a cut-off stream is refused", async () => {
    const exported = spawnSync(process.execPath, [CLI, "export", "--session", session.id, "--out", "-"], {
      cwd: aliceProject,
      env: alice.env,
    });
    expect(exported.status, exported.stderr.toString()).toBe(0);
    expect(exported.stdout.subarray(0, 21).toString()).toBe("age-encryption.org/v1");
    expect(exported.stderr.toString()).toContain(`Exported session ${session.id}`);
    expect(exported.stderr.toString()).toContain("to stdout");

    const dave = new Machine("dave");
    try {
      await dave.runOk(["key", "import", path.join(alice.root, "key.txt")]);
      const project = dave.project("code/app");
      const folder = path.join(dave.claudeDir, "projects", projectFolderName(project));
      // Half the bytes: the age stream's last chunk is missing, so nothing is installed.
      const cut = spawnSync(process.execPath, [CLI, "import", "-", "--project", project, "--no-resume"], {
        env: dave.env,
        input: exported.stdout.subarray(0, Math.floor(exported.stdout.length / 2)),
      });
      expect(cut.status, cut.stderr.toString()).not.toBe(0);
      expect(cut.stderr.toString()).toMatch(/^ccbundle: .*\nhint: /);
      expect(existsSync(folder)).toBe(false);
      const whole = spawnSync(process.execPath, [CLI, "import", "-", "--project", project, "--no-resume", "--json"], {
        env: dave.env,
        input: exported.stdout,
      });
      expect(whole.status, whole.stderr.toString()).toBe(0);
      expect(JSON.parse(whole.stdout.toString()).sessions[0]).toMatchObject({ sessionId: session.id, outcome: "new" });
      expect(readFileSync(path.join(folder, `${session.id}.jsonl`), "utf8")).toContain(project);
    } finally {
      dave.cleanup();
    }
    const json = await alice.run(["export", "--session", session.id, "--out", "-", "--json"], { cwd: aliceProject });
    expect(json.code).toBe(2);
    expect(JSON.parse(json.stdout).error.message).toBe("--json and `--out -` both want stdout");
  });
});

describe("export and import through a file", () => {
  it("exports a bundle that Debian's age and zstd open, and imports it elsewhere", async () => {
    const out = path.join(alice.root, "session.ccb");
    await alice.runOk(["export", "--session", session.id.slice(0, 8), "--out", out]);
    // A second export to the same name is refused, as `key export` refuses: the first is kept.
    const exported = readFileSync(out);
    const again = await alice.run(["export", "--session", session.id.slice(0, 8), "--out", out]);
    expect(again.code).toBe(2);
    expect(again.stderr).toContain(`${out} already exists`);
    expect(readFileSync(out).equals(exported)).toBe(true);
    // Ctrl-C half-way through an export: no `<out>.<hex>.partial` is left beside the target.
    const big = writeSession({ claudeDir: alice.claudeDir, projectDir: alice.project("work/big"), home: alice.home });
    writeFileSync(path.join(path.dirname(big.transcript), big.id, "big.txt"), randomBytes(48 << 20).toString("base64"));
    const cut = path.join(alice.root, "cut.ccb");
    const partials = () =>
      readdirSync(alice.root).filter((name) => name.startsWith("cut.ccb.") && name.endsWith(".partial"));
    const interrupted = await alice.interruptWhen(["export", "--session", big.id, "--out", cut], () =>
      partials().some((name) => statSync(path.join(alice.root, name)).size > 0),
    );
    expect(interrupted.sent, "the export ended before its partial file had bytes").toBe(true);
    expect(interrupted.signal).toBe("SIGINT");
    expect(partials()).toEqual([]);
    expect(existsSync(cut)).toBe(false);
    // A folder is named as one, with a file name in it to use (it said "already exists").
    const folder = await alice.run(["export", "--session", session.id.slice(0, 8), "--out", alice.root]);
    expect(folder.code).toBe(2);
    expect(folder.stderr).toContain(`--out ${alice.root} is a folder`);
    expect(folder.stderr).toContain(`--out ${path.join(alice.root, "session.ccb")}`);
    // A symlink to a folder too.
    const link = path.join(alice.root, "downloads-link");
    symlinkSync(alice.root, link);
    const linked = await alice.run(["export", "--session", session.id.slice(0, 8), "--out", link]);
    expect(linked.code).toBe(2);
    expect(linked.stderr).toContain(`--out ${link} is a folder`);
    const identity = path.join(alice.root, "age-id.txt");
    await alice.runOk(["key", "export", identity, "--age-identity"]);
    const listing = execFileSync("sh", ["-c", `age -d -i ${identity} ${out} | zstd -d | tar t`], { encoding: "utf8" });
    const names = listing.trim().split("\n");
    expect(names[0]).toBe("ccbundle.json");
    expect(names).toContain(`claude/projects/${session.folder}/${session.id}.jsonl`);
    for (const name of names.slice(1)) expect(name.startsWith("claude/")).toBe(true);

    const carol = new Machine("carol");
    try {
      await carol.runOk(["key", "import", path.join(alice.root, "key.txt")]);
      const project = carol.project("code/app");
      const doc = JSON.parse(
        (await carol.runOk(["import", out, "--project", project, "--no-resume", "--json"])).stdout,
      );
      expect(doc.sessions[0].sessionId).toBe(session.id);
      const restored = readFileSync(
        path.join(carol.claudeDir, "projects", projectFolderName(project), `${session.id}.jsonl`),
        "utf8",
      );
      expect(restored).toContain(project);
      expect(restored).not.toContain(aliceProject);
    } finally {
      carol.cleanup();
    }
  });
});

describe("paths over 200 characters", () => {
  it("restores into Claude Code's hashed folder name", async () => {
    const long = alice.project(`deep/${"a-very-long-directory-name-".repeat(9)}end`);
    expect(long.length).toBeGreaterThan(200);
    const s = writeSession({ claudeDir: alice.claudeDir, projectDir: long, home: alice.home });
    expect(s.folder.length).toBeGreaterThan(200);
    await alice.runOk(["push"], { cwd: long });
    const target = bob.project(`x/${"another-long-directory-name-".repeat(8)}tail`);
    await bob.runOk(["pull", "--project", target, "--no-resume"]);
    const folder = projectFolderName(target);
    expect(folder).toMatch(/-[0-9a-z]+$/);
    expect(existsSync(path.join(bob.claudeDir, "projects", folder, `${s.id}.jsonl`))).toBe(true);
  });
});

describe("pulling from the home folder when the session's project is not here", () => {
  it("is refused (the way back could not tell the project's paths from the home's); the same place under this home is used", async () => {
    const notes = alice.project("src/notes");
    const s = writeSession({ claudeDir: alice.claudeDir, projectDir: notes, home: alice.home, turns: 2 });
    await alice.runOk(["push", "--session", s.id], { cwd: notes });
    // Both machines share this file system: alice's folder must not be there for bob.
    renameSync(notes, `${notes}.away`);
    const before = listFiles(bob.claudeDir);
    const refused = await bob.run(["pull", "--no-resume"], { cwd: bob.home });
    expect(refused.code, refused.stdout + refused.stderr).toBe(2);
    expect(refused.stderr).toContain(
      `ccbundle: the session ran in ${notes}, which is not here, and you are in your home folder`,
    );
    expect(refused.stderr).toContain(
      "hint: cd into the project (clone it first) and run the command again, or choose with --project <dir>",
    );
    expect(listFiles(bob.claudeDir)).toEqual(before);

    // Bob keeps the same layout under his own home: ~/src/notes is where it goes, from anywhere.
    const bobNotes = bob.project("src/notes");
    const doc = JSON.parse((await bob.runOk(["pull", "--no-resume", "--json"], { cwd: bob.home })).stdout);
    expect(doc.sessions[0]).toMatchObject({ targetReason: "home-relative", project: bobNotes });
    const restored = readFileSync(
      path.join(bob.claudeDir, "projects", projectFolderName(bobNotes), `${s.id}.jsonl`),
      "utf8",
    );
    expect(restored).toContain(`"cwd":${JSON.stringify(bobNotes)}`);
    expect(restored).not.toContain(alice.home);
    renameSync(`${notes}.away`, notes);
  });
});

describe("pulling into the session's own path, under the sender's home (a shared server)", () => {
  it("keeps the project's paths as they are and rewrites only the rest of the sender's home", async () => {
    const shared = alice.project("srv/shared app");
    const s = writeSession({ claudeDir: alice.claudeDir, projectDir: shared, home: alice.home, turns: 3 });
    await alice.runOk(["push", "--session", s.id], { cwd: shared });
    // Bob's Claude Code config is his own; the project folder is the one both of them see.
    const claudeDir = path.join(bob.root, "claude-shared");
    for (const args of [["--project", shared], []]) {
      rmSync(claudeDir, { recursive: true, force: true });
      const doc = JSON.parse(
        (
          await bob.runOk(["pull", ...args, "--no-resume", "--json"], {
            cwd: shared,
            env: { CLAUDE_CONFIG_DIR: claudeDir },
          })
        ).stdout,
      );
      expect(doc.sessions[0].project).toBe(shared);
      const transcript = readFileSync(
        path.join(claudeDir, "projects", projectFolderName(shared), `${s.id}.jsonl`),
        "utf8",
      );
      const lines = parseLines(transcript) as { cwd?: string }[];
      const cwds = new Set(lines.map((line) => line.cwd).filter(Boolean));
      expect([...cwds], args.join(" ")).toEqual([shared]);
      // Paths inside the project stay; the rest of alice's home became bob's.
      const original = readFileSync(path.join(alice.claudeDir, "projects", s.folder, `${s.id}.jsonl`), "utf8");
      expect(transcript).toBe(
        expectedRewrite(
          original,
          [
            [`${alice.claudeDir}/projects/${s.folder}`, `${claudeDir}/projects/${projectFolderName(shared)}`],
            [alice.claudeDir, claudeDir],
            [shared, shared],
            [alice.home, bob.home],
          ],
          "json",
        ),
      );
      const history = readFileSync(path.join(claudeDir, "history.jsonl"), "utf8");
      expect(history).toContain(JSON.stringify(shared));
      expect(history).not.toContain(bob.home);
    }
  });
});
