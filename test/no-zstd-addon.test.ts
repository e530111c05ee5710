import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { END_OF_ARCHIVE, fileHeader, padding } from "../core/bundle/tar-header.js";
import { type FixtureSession, writeSession } from "./helpers/fixture.js";
import { Machine, sameUserOnTwoMachines } from "./helpers/machine.js";

/**
 * A machine where zstd-napi's install found no C compiler, so the addon is missing (a preload
 * makes `require("zstd-napi/…")` fail as it then does). It must still take part: it reads the
 * zstd bundles and backups the others write, with the JavaScript decoder, and writes gzip ones
 * the others read.
 */

const NO_ADDON = fileURLToPath(new URL("./helpers/no-zstd-addon.cjs", import.meta.url));
const THREADED_READ = fileURLToPath(new URL("./helpers/threaded-read.mjs", import.meta.url));

let alice: Machine;
let bob: Machine;
let carol: Machine;
let nas: string;
let session: FixtureSession;

/** Every file under `dir`, relative to it, with the machine's home (and its folder-name form) written as <home>. */
function contents(dir: string, home: string): Map<string, string> {
  const files = new Map<string, string>();
  const folderForm = home.replace(/[^a-zA-Z0-9]/g, "-");
  const generic = (text: string) => text.replaceAll(home, "<home>").replaceAll(folderForm, "<home>");
  const walk = (at: string) => {
    for (const entry of readdirSync(at, { withFileTypes: true })) {
      const full = path.join(at, entry.name);
      if (entry.isDirectory()) walk(full);
      else files.set(generic(path.relative(dir, full)), generic(readFileSync(full, "utf8")));
    }
  };
  if (existsSync(dir)) walk(dir);
  return files;
}

/** The first bytes of a stored blob, decrypted with Debian's age: which codec wrote it. */
function codecOf(blob: string, identity: string): string {
  const head = execFileSync("sh", ["-c", `age -d -i '${identity}' '${blob}' | head -c 4 | od -An -tx1`], {
    encoding: "utf8",
  }).replace(/\s+/g, "");
  if (head === "28b52ffd") return "zstd";
  if (head.startsWith("1f8b")) return "gzip";
  return head;
}

function blobsUnder(store: string): string[] {
  const dir = path.join(store, "ccbundle", "v1", "blobs");
  return existsSync(dir) ? readdirSync(dir).map((name) => path.join(dir, name)) : [];
}

beforeAll(async () => {
  ({ alice, bob, nas } = await sameUserOnTwoMachines("nozstd", { nas: true }));
  bob.env.NODE_OPTIONS = `--require ${NO_ADDON}`;
  carol = new Machine("carol-nozstd", { CCBUNDLE_STORE: nas });
  await carol.runOk(["key", "import", path.join(alice.root, "key.txt")]);
  session = writeSession({
    claudeDir: alice.claudeDir,
    projectDir: alice.project("work/app"),
    home: alice.home,
    turns: 6,
  });
});

afterAll(() => {
  alice?.cleanup();
  bob?.cleanup();
  carol?.cleanup();
});

describe("a machine without the zstd addon", () => {
  it("says so in doctor, with what it means and how to fix it", async () => {
    const doctor = await bob.run(["doctor", "--json"]);
    const compression = JSON.parse(doctor.stdout).checks.find((c: { name: string }) => c.name === "compression");
    expect(compression.ok).toBe(false);
    expect(compression.detail).toMatch(/^gzip /);
    expect(compression.hint).toContain("zstd ones are read by a slower JavaScript decoder");
    const normal = await alice.run(["doctor", "--json"]);
    expect(JSON.parse(normal.stdout).checks.find((c: { name: string }) => c.name === "compression").ok).toBe(true);
  });

  it("pulls a zstd bundle pushed from a machine with it, to the same files as a machine with it", async () => {
    await alice.runOk(["push", "--session", session.id], { cwd: alice.project("work/app") });
    const identity = path.join(alice.root, "age-id.txt");
    await alice.runOk(["key", "export", identity, "--age-identity"]);
    const pushed = blobsUnder(nas);
    expect(pushed.map((blob) => codecOf(blob, identity))).toEqual(["zstd"]);

    const bobDoc = JSON.parse(
      (await bob.runOk(["pull", "--project", bob.project("code/app"), "--no-resume", "--json"])).stdout,
    );
    const carolDoc = JSON.parse(
      (await carol.runOk(["pull", "--project", carol.project("code/app"), "--no-resume", "--json"])).stdout,
    );
    expect(bobDoc.sessions[0].sessionId).toBe(session.id);
    expect(carolDoc.sessions[0].sessionId).toBe(session.id);
    const withoutAddon = contents(path.join(bob.claudeDir, "projects"), bob.home);
    const withAddon = contents(path.join(carol.claudeDir, "projects"), carol.home);
    expect(withoutAddon.size).toBeGreaterThan(0);
    expect(withoutAddon).toEqual(withAddon);
  });

  it("backs up with gzip, restored by a machine with the addon; restores a zstd backup itself", async () => {
    const identity = path.join(alice.root, "age-id.txt");
    const before = new Set(blobsUnder(nas));
    await bob.runOk(["backup", "--all"]);
    const written = blobsUnder(nas).filter((blob) => !before.has(blob));
    expect(written.length).toBeGreaterThan(0);
    expect(new Set(written.map((blob) => codecOf(blob, identity)))).toEqual(new Set(["gzip"]));

    // A machine with the addon restores bob's gzip backup.
    const dave = new Machine("dave-nozstd", { CCBUNDLE_STORE: nas });
    try {
      await dave.runOk(["key", "import", path.join(alice.root, "key.txt")]);
      const doc = JSON.parse(
        (await dave.runOk(["restore", "--all", "--map", `${bob.home}=${dave.home}`, "--no-resume", "--json"])).stdout,
      );
      expect(doc.sessions.map((s: { sessionId: string }) => s.sessionId)).toEqual([session.id]);
    } finally {
      dave.cleanup();
    }

    // Alice's zstd backup, restored where the addon is missing.
    await alice.runOk(["backup", "--all"]);
    const listed = JSON.parse((await alice.runOk(["list", "--json"])).stdout);
    const alicesCopy = listed.sessions.find(
      (entry: { id: string; project: string }) => entry.id === session.id && entry.project.startsWith(alice.home),
    );
    const erin = new Machine("erin-nozstd", { CCBUNDLE_STORE: nas, NODE_OPTIONS: `--require ${NO_ADDON}` });
    try {
      await erin.runOk(["key", "import", path.join(alice.root, "key.txt")]);
      const doc = JSON.parse(
        (
          await erin.runOk([
            "restore",
            "--all",
            "--machine",
            alicesCopy.machine,
            "--map",
            `${alice.home}=${erin.home}`,
            "--no-resume",
            "--json",
          ])
        ).stdout,
      );
      expect(doc.sessions.map((s: { sessionId: string }) => s.sessionId)).toEqual([session.id]);
      const restored = contents(path.join(erin.claudeDir, "projects"), erin.home);
      const original = contents(path.join(alice.claudeDir, "projects"), alice.home);
      expect(restored).toEqual(original);
    } finally {
      erin.cleanup();
    }
  });

  it("reads on the reader thread, and loses nothing of a last frame under 18 bytes", () => {
    // fzstd holds back a frame shorter than 18 bytes until it knows the data ended: the thread
    // once dropped what that frame held when the blob ended. Hand-made frames (RFC 8878): the
    // file's last 2 bytes in a raw block, then the tar's zeros in an RLE block; 15 bytes in all.
    const content = Buffer.from("a session's last line\n".repeat(300));
    const head = Buffer.concat([
      fileHeader({ name: "claude/a.jsonl", size: content.length, mode: 0o600, mtime: 0 }),
      content.subarray(0, -2),
    ]);
    const zeros = padding(content.length).length + END_OF_ARCHIVE.length;
    const raw = (2 << 3) | 0; // not last, raw, 2 bytes
    const rle = (zeros << 3) | (1 << 1) | 1; // last, RLE
    const tail = Buffer.from([
      ...[0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x08],
      ...[raw & 255, raw >> 8, 0, ...content.subarray(-2)],
      ...[rle & 255, (rle >> 8) & 255, rle >> 16, 0],
    ]);
    expect(tail.length).toBeLessThan(18);
    const blob = Buffer.concat([execFileSync("zstd", ["-q", "-c", "-3"], { input: head }), tail]);
    const expected = [
      { name: "claude/a.jsonl", size: content.length, sha256: createHash("sha256").update(content).digest("hex") },
    ];
    for (const env of [{}, { NODE_OPTIONS: `--require ${NO_ADDON}` }]) {
      const read = JSON.parse(
        execFileSync(process.execPath, [THREADED_READ], {
          input: blob,
          env: { ...process.env, ...env },
          encoding: "utf8",
        }),
      );
      expect(read, JSON.stringify(env)).toEqual({ threads: 1, files: expected });
    }
  });
});
