import { createHash } from "node:crypto";
import { mkdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { projectFolderName } from "../core/claude/paths.js";
import { type InstalledClaude, installClaudeCode, loopbackOnlySandbox, runClaude } from "./helpers/claude-code.js";
import { type FixtureSession, writeSession } from "./helpers/fixture.js";
import { cloneAs, commit, git } from "./helpers/git.js";
import { type Machine, twoMachines } from "./helpers/machine.js";

/**
 * Opt-in (CCBUNDLE_TEST_CLAUDE=1): real Claude Code, installed from the npm
 * registry, resumes a session pulled to another user, home and project path.
 * Offline probe (DESIGN.md): `claude -p --no-session-persistence --resume <id> x`
 * prints "Not logged in" when it found the session and "No conversation found"
 * when not. With a recording stand-in API on 127.0.0.1 it also shows what Claude
 * Code would send: the restored conversation, with this machine's paths.
 *
 * CCBUNDLE_TEST_CLAUDE_VERSIONS picks the versions (default: 2.1.197, which looks
 * for a session only in the cwd's folder and its git worktrees', and 2.1.329,
 * which finds it from anywhere; "latest" works too).
 */

const enabled = process.env.CCBUNDLE_TEST_CLAUDE === "1";
const versions = (process.env.CCBUNDLE_TEST_CLAUDE_VERSIONS ?? "2.1.197,2.1.329")
  .split(",")
  .map((v) => v.trim())
  .filter(Boolean);
const NOT_FOUND = "No conversation found with session ID";
const FOUND = "Not logged in";

describe.runIf(enabled)("real Claude Code resumes a pulled session", () => {
  let alice: Machine;
  let bob: Machine;
  let session: FixtureSession;
  let aliceProject: string;
  let bobProject: string;
  let bobWorktree: string;
  let sandbox: string[] | undefined;
  const transcriptHash = () =>
    createHash("sha256")
      .update(readFileSync(path.join(bob.claudeDir, "projects", projectFolderName(bobProject), `${session.id}.jsonl`)))
      .digest("hex");

  beforeAll(async () => {
    sandbox = loopbackOnlySandbox();
    console.log(`claude runs ${sandbox ? "in a loopback-only network namespace" : "without a network namespace"}`);
    ({ alice, bob } = await twoMachines("alice-cc", "bob-cc"));

    aliceProject = alice.project("work/My Proj.v2_ü");
    git(aliceProject, "init", "-q", "-b", "main");
    git(aliceProject, "remote", "add", "origin", "git@github.com:me/app.git");
    commit(aliceProject, "README.md", "app\n");
    session = writeSession({ claudeDir: alice.claudeDir, projectDir: aliceProject, home: alice.home, turns: 3 });
    await alice.runOk(["push", "--session", session.id], { cwd: aliceProject });

    // Bob: another user, home and path; a clone with the https remote, and a linked worktree of it.
    bobProject = path.join(bob.home, "src", "другой проект", "app");
    mkdirSync(path.dirname(bobProject), { recursive: true });
    cloneAs(aliceProject, bobProject, "https://github.com/me/app");
    bobWorktree = path.join(bob.home, "src", "app-feature");
    git(bobProject, "worktree", "add", "-q", "-b", "feature", bobWorktree);
    const pulled = JSON.parse((await bob.runOk(["pull", "--project", bobProject, "--no-resume", "--json"])).stdout);
    expect(pulled.sessions[0].outcome).toBe("new");
    // Pulled again from inside the worktree, with no --project: the remote picks the checkout. Into a
    // config dir of its own: two copies of one session id hide it from 2.1.329's lookup from elsewhere.
    const inWorktree = JSON.parse(
      (
        await bob.runOk(["pull", "--no-resume", "--json"], {
          cwd: bobWorktree,
          env: { CLAUDE_CONFIG_DIR: worktreeConfig() },
        })
      ).stdout,
    );
    expect(inWorktree.sessions[0]).toMatchObject({ targetReason: "git-remote", project: bobWorktree });
  }, 120_000);

  const worktreeConfig = () => path.join(bob.root, "claude-worktree");

  afterAll(() => {
    alice?.cleanup();
    bob?.cleanup();
  });

  describe.each(versions)("Claude Code %s", (version) => {
    let claude: InstalledClaude;
    const probe = (cwd: string, id: string, api = false, claudeDir = bob.claudeDir) =>
      runClaude(claude.bin, {
        cwd,
        args: ["-p", "--no-session-persistence", "--resume", id, api ? "Which file did you read first?" : "x"],
        home: bob.home,
        claudeDir,
        api,
        sandbox,
      });

    beforeAll(() => {
      claude = installClaudeCode(version);
      console.log(
        `Claude Code ${claude.version}: ${claude.installMs ? `installed in ${(claude.installMs / 1000).toFixed(1)} s` : "reused an earlier install"}`,
      );
    }, 600_000);

    it("finds the session in the target project, and only the right id", async () => {
      const before = transcriptHash();
      const started = performance.now();
      const found = await probe(bobProject, session.id);
      console.log(`Claude Code ${claude.version}: resume probe ${(performance.now() - started).toFixed(0)} ms`);
      expect(found.stdout + found.stderr).not.toContain(NOT_FOUND);
      expect(found.stdout + found.stderr).toContain(FOUND);
      const wrong = await probe(bobProject, "00000000-1111-4222-8333-444444444444");
      expect(wrong.stdout + wrong.stderr).toContain(`${NOT_FOUND}: 00000000-1111-4222-8333-444444444444`);
      expect(transcriptHash()).toBe(before); // the probe wrote nothing
    });

    it("finds it from the linked worktree it was pulled into", async () => {
      const found = await probe(bobWorktree, session.id, false, worktreeConfig());
      expect(found.stdout + found.stderr).toContain(FOUND);
    });

    it("sends the restored conversation, with this machine's paths, to the API", async () => {
      const result = await probe(bobProject, session.id, true);
      const sent = result.requests.filter((r) => r.url.startsWith("/v1/messages") && r.body.includes(session.prompt));
      expect(sent.length, `${result.stdout}${result.stderr}`).toBeGreaterThan(0);
      const messages = JSON.stringify((JSON.parse(sent[0]!.body) as { messages: unknown[] }).messages);
      expect(messages).toContain(JSON.stringify({ file_path: `${bobProject}/src/module_0.ts` }).slice(1, -1));
      expect(messages).toContain(
        `Full output saved to: ${bob.claudeDir}/projects/${projectFolderName(bobProject)}/${session.id}/tool-results/`,
      );
      expect(messages).toContain("Which file did you read first?");
      expect(messages).not.toContain(alice.root);
    });

    it.runIf(version === "2.1.197" || version === "2.1.329")(
      "looks only in the cwd's folder (2.1.197) or anywhere (2.1.329): why ccbundle restores into the target's folder",
      async () => {
        const fromHome = await probe(bob.home, session.id);
        expect(fromHome.stdout + fromHome.stderr).toContain(version === "2.1.197" ? NOT_FOUND : FOUND);
      },
    );
  });
});
