import { createHash, randomBytes, randomUUID } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Manifest } from "../core/bundle/manifest.js";
import { X25519Identity } from "../core/crypto/age/index.js";
import { UserKey } from "../core/crypto/keys.js";
import { signPacket } from "../core/pointer/packet.js";
import { recordEntries, sealPayload, slotFor } from "../core/pointer/record.js";
import { randomId, storeLayout } from "../core/store-layout.js";
import {
  ageEncrypt,
  machineKey,
  manifestOf,
  type SessionSpec,
  sealBundle,
  sign,
  type TarEntry,
  tarOf,
  writeRepetitiveBundle,
  zstd,
} from "./helpers/hostile.js";
import { Machine } from "./helpers/machine.js";
import { expectNoSecrets, expectOneLineError, snapshotTree, stagingLeftovers } from "./helpers/tree.js";

/**
 * The hostile folder: bundles made by hand (tar-stream, Debian's zstd and age,
 * encrypted to the test identity), each breaking one rule. Every one is
 * imported by the built CLI and must be refused with its exit code, a one-line
 * error, an unchanged config dir and nothing written anywhere else. A few go
 * through `pull` too, behind a record a malicious publisher signed.
 */

let bob: Machine;
let bobKey: UserKey;
let project: string;
let hostileDir: string;
const mallory = UserKey.generate();
const stranger = UserKey.generate();

const ID = "0b7e6a52-8c1d-4e0f-9a3b-2c4d5e6f7a8b";
const FOLDER = "-home-mallory-proj";
const CWD = "/home/mallory/proj";
const transcriptPath = `claude/projects/${FOLDER}/${ID}.jsonl`;
const transcript = Buffer.from(
  `${JSON.stringify({ type: "user", cwd: CWD, sessionId: ID, message: { role: "user", content: "hello" } })}\n`,
);
const good: SessionSpec = { id: ID, folder: FOLDER, cwd: CWD, files: [{ path: transcriptPath, content: transcript }] };

const me = () => bobKey.ageRecipient().toString();

/** A tar whose first entry is the (signed) manifest, followed by `entries`. */
async function bundleTar(manifest: Manifest, entries: TarEntry[]): Promise<Buffer> {
  return tarOf([{ name: "ccbundle.json", content: Buffer.from(JSON.stringify(manifest)) }, ...entries]);
}

/** Sign with Bob's own key (import accepts it) and seal to Bob. */
async function signedBundle(sessions: SessionSpec[], entries: TarEntry[], signer = () => bobKey) {
  return sealBundle(await bundleTar(sign(manifestOf(sessions), signer()), entries), [me()]);
}

const withFile = (p: string, content = transcript): SessionSpec => ({
  ...good,
  files: [...good.files, { path: p, content }],
});

interface Case {
  name: string;
  make: (file: string) => Promise<Buffer | undefined>;
  code: number;
  /** Extra import flags. */
  flags?: string[];
  /** A word the error must contain. */
  says?: RegExp;
}

const cases: Case[] = [
  {
    name: "control: a well-formed bundle made by the stock tools",
    make: () => signedBundle([good], [{ name: transcriptPath, content: transcript }]),
    code: 0,
  },
  {
    name: "an absolute path in the manifest",
    make: () => signedBundle([withFile("/tmp/escaped-abs")], [{ name: transcriptPath, content: transcript }]),
    code: 5,
    says: /outside the session's place/,
  },
  {
    name: "an absolute tar entry not in the manifest",
    make: () =>
      signedBundle(
        [good],
        [
          { name: transcriptPath, content: transcript },
          { name: "/tmp/escaped-abs2", content: transcript },
        ],
      ),
    code: 5,
    says: /not listed/,
  },
  {
    name: "a .. path in the manifest",
    make: () =>
      signedBundle(
        [withFile(`claude/projects/${FOLDER}/../../../../escaped-dots`)],
        [{ name: transcriptPath, content: transcript }, { name: `claude/projects/${FOLDER}/../../../../escaped-dots` }],
      ),
    code: 5,
  },
  {
    name: "a .. tar entry not in the manifest",
    make: () =>
      signedBundle([good], [{ name: transcriptPath, content: transcript }, { name: "claude/../../escaped-dots2" }]),
    code: 5,
  },
  {
    name: "credentials outside the allowed subtrees",
    make: () =>
      signedBundle(
        [withFile("claude/.credentials.json", Buffer.from("{}"))],
        [
          { name: transcriptPath, content: transcript },
          { name: "claude/.credentials.json", content: Buffer.from("{}") },
        ],
      ),
    code: 5,
  },
  {
    name: "settings.json outside the allowed subtrees",
    make: () =>
      signedBundle(
        [withFile("claude/settings.json", Buffer.from("{}"))],
        [
          { name: transcriptPath, content: transcript },
          { name: "claude/settings.json", content: Buffer.from("{}") },
        ],
      ),
    code: 5,
  },
  {
    name: "another session's transcript",
    make: () =>
      signedBundle(
        [withFile(`claude/projects/${FOLDER}/${randomUUID()}.jsonl`)],
        [{ name: transcriptPath, content: transcript }],
      ),
    code: 5,
  },
  {
    name: "a PAX header that renames an entry to climb out",
    make: () =>
      signedBundle([good], [{ name: transcriptPath, content: transcript, pax: { path: "claude/../../escaped-pax" } }]),
    code: 5,
    says: /not listed/,
  },
  {
    name: "a PAX header that lies about the size",
    make: () => signedBundle([good], [{ name: transcriptPath, content: transcript, pax: { size: "5" } }]),
    code: 5,
  },
  {
    name: "a symlink",
    make: () => signedBundle([good], [{ name: transcriptPath, type: "symlink", linkname: "/etc/passwd" }]),
    code: 5,
    says: /symlink/,
  },
  {
    name: "a hard link",
    make: () => signedBundle([good], [{ name: transcriptPath, type: "link", linkname: "ccbundle.json" }]),
    code: 5,
    says: /link/,
  },
  {
    name: "a character device",
    make: () => signedBundle([good], [{ name: transcriptPath, type: "character-device" }]),
    code: 5,
  },
  {
    name: "a block device",
    make: () => signedBundle([good], [{ name: transcriptPath, type: "block-device" }]),
    code: 5,
  },
  {
    name: "a FIFO",
    make: () => signedBundle([good], [{ name: transcriptPath, type: "fifo" }]),
    code: 5,
  },
  {
    name: "a directory entry",
    make: () => signedBundle([good], [{ name: `claude/projects/${FOLDER}/`, type: "directory" }]),
    code: 5,
  },
  {
    name: "a duplicate entry",
    make: () =>
      signedBundle(
        [good],
        [
          { name: transcriptPath, content: transcript },
          { name: transcriptPath, content: transcript },
        ],
      ),
    code: 5,
    says: /twice/,
  },
  {
    name: "an entry not listed in the manifest",
    make: () =>
      signedBundle(
        [good],
        [
          { name: transcriptPath, content: transcript },
          { name: `claude/file-history/${ID}/extra@v1`, content: transcript },
        ],
      ),
    code: 5,
    says: /not listed/,
  },
  {
    name: "more bytes than the manifest declares",
    make: () => signedBundle([good], [{ name: transcriptPath, content: Buffer.concat([transcript, transcript]) }]),
    code: 5,
  },
  {
    name: "content that does not match its hash",
    make: () =>
      signedBundle([good], [{ name: transcriptPath, content: Buffer.from(transcript.toString().toUpperCase()) }]),
    code: 5,
    says: /hash/,
  },
  {
    name: "a listed file that never comes",
    make: () =>
      signedBundle([withFile(`claude/file-history/${ID}/a@v1`)], [{ name: transcriptPath, content: transcript }]),
    code: 5,
    says: /missing/,
  },
  {
    name: "a first entry that is not the manifest",
    make: async () => sealBundle(await tarOf([{ name: transcriptPath, content: transcript }]), [me()]),
    code: 5,
  },
  {
    name: "a manifest that is not JSON",
    make: async () => sealBundle(await tarOf([{ name: "ccbundle.json", content: Buffer.from("{not json") }]), [me()]),
    code: 5,
  },
  {
    name: "an unknown bundle format",
    make: async () =>
      sealBundle(await bundleTar(sign({ ...manifestOf([good]), format: "ccbundle/9" as "ccbundle/1" }, bobKey), []), [
        me(),
      ]),
    code: 5,
    says: /upgrade/,
  },
  {
    name: "a total beyond the 64 GiB limit",
    make: async () => {
      const m = manifestOf([good]);
      m.sessions[0]!.files[0]!.size = 2 ** 37;
      return sealBundle(await bundleTar(sign(m, bobKey), []), [me()]);
    },
    code: 5,
    says: /limit/,
  },
  {
    name: "a git head that would be a git option",
    make: async () => {
      const m = manifestOf([good], { git: { head: "--output=/tmp/escaped-git", branch: "main" } });
      return sealBundle(await bundleTar(sign(m, bobKey), [{ name: transcriptPath, content: transcript }]), [me()]);
    },
    code: 5,
    says: /git/,
  },
  {
    name: "the same session twice",
    make: () => signedBundle([good, good], [{ name: transcriptPath, content: transcript }]),
    code: 5,
  },
  {
    name: "a decompression bomb from someone else, even one named with --from (256 MiB of zeros)",
    make: async (file) => {
      await writeRepetitiveBundle(file, stranger, good, 256 << 20, { to: me() });
      return undefined;
    },
    code: 5,
    flags: ["--from", stranger.z32],
    says: /decompression bomb/,
  },
  {
    // Past the bomb ratio (10000x), but signed by the user's own key: its manifest's sizes bound it.
    name: "control: a session of one line repeated for 80 MiB, signed by you",
    make: async (file) => {
      const line = Buffer.from('{"type":"assistant","message":{"content":"the same tool output, again"}}\n');
      await writeRepetitiveBundle(file, bobKey, good, line.length * Math.ceil((80 << 20) / line.length), {
        pattern: line,
      });
      return undefined;
    },
    code: 0,
  },
  {
    name: "a truncated age payload",
    make: async () => {
      const sealed = await signedBundle([good], [{ name: transcriptPath, content: transcript }]);
      return sealed.subarray(0, sealed.length - 40);
    },
    code: 5,
  },
  {
    name: "a truncated zstd stream inside a valid age file",
    make: async () => {
      const tarBytes = await bundleTar(sign(manifestOf([good]), bobKey), [
        { name: transcriptPath, content: transcript },
      ]);
      const compressed = zstd(tarBytes);
      return ageEncrypt(compressed.subarray(0, Math.floor(compressed.length / 2)), [me()]);
    },
    code: 5,
  },
  {
    name: "data that is neither zstd nor gzip",
    make: async () => ageEncrypt(Buffer.from("just some text, no compression at all\n".repeat(20)), [me()]),
    code: 5,
    says: /neither zstd nor gzip/,
  },
  {
    name: "a manifest changed after it was signed",
    make: async () => {
      const m = sign(manifestOf([good]), bobKey);
      m.sessions[0]!.title = "innocent";
      return sealBundle(await bundleTar(m, [{ name: transcriptPath, content: transcript }]), [me()]);
    },
    code: 5,
    says: /signature/,
  },
  {
    name: "an unsigned manifest",
    make: async () =>
      sealBundle(await bundleTar(manifestOf([good]), [{ name: transcriptPath, content: transcript }]), [me()]),
    code: 5,
    says: /not signed/,
  },
  {
    name: "a signature by a key other than the named publisher",
    make: async () => {
      const m = sign(manifestOf([good]), stranger);
      m.publisher = bobKey.z32;
      return sealBundle(await bundleTar(m, [{ name: transcriptPath, content: transcript }]), [me()]);
    },
    code: 5,
    says: /signature/,
  },
  {
    name: "an unknown signer",
    make: () => signedBundle([good], [{ name: transcriptPath, content: transcript }], () => mallory),
    code: 5,
    says: /--from/,
  },
  {
    name: "an unknown signer named with --from",
    make: () => signedBundle([good], [{ name: transcriptPath, content: transcript }], () => mallory),
    code: 0,
    flags: ["--from", mallory.z32],
  },
  {
    name: "an unknown signer with --allow-unknown-signer",
    make: () => signedBundle([good], [{ name: transcriptPath, content: transcript }], () => mallory),
    code: 0,
    flags: ["--allow-unknown-signer"],
  },
  {
    name: "a bundle for another recipient",
    make: async () =>
      ageEncrypt(zstd(await bundleTar(sign(manifestOf([good]), bobKey), [])), [stranger.ageRecipient().toString()]),
    code: 5,
    says: /your key|no-match|recipient|identity/i,
  },
  {
    name: "not an age file at all",
    make: async () => Buffer.from("GIF89a this is not a bundle".repeat(40)),
    code: 5,
  },
];

/** Files outside the config dir whose names the hostile bundles aim for. */
function escapees(root: string): string[] {
  const found: string[] = [];
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.name.startsWith("escaped")) found.push(full);
      if (entry.isDirectory()) walk(full);
    }
  };
  walk(root);
  for (const name of ["escaped-abs", "escaped-abs2", "escaped-git"]) {
    if (existsSync(path.join("/tmp", name))) found.push(path.join("/tmp", name));
  }
  return found;
}

beforeAll(async () => {
  bob = new Machine("bob-hostile");
  await bob.runOk(["init", "--no-passphrase"]);
  bobKey = machineKey(bob.ccbHome);
  project = bob.project("proj");
  hostileDir = path.join(bob.root, "hostile");
  mkdirSync(hostileDir);
  for (const [index, c] of cases.entries()) {
    const file = path.join(hostileDir, `${String(index).padStart(2, "0")}.ccb`);
    const bytes = await c.make(file);
    if (bytes) writeFileSync(file, bytes);
  }
}, 120_000);

afterAll(() => bob?.cleanup());

describe("the hostile folder, through import", () => {
  for (const [index, c] of cases.entries()) {
    it(`${c.name}: exit ${c.code}`, async () => {
      const file = path.join(hostileDir, `${String(index).padStart(2, "0")}.ccb`);
      const claudeBefore = snapshotTree(bob.claudeDir);
      const r = await bob.run(["import", file, "--project", project, "--no-resume", ...(c.flags ?? [])]);
      expect(r.code, r.stderr).toBe(c.code);
      expect(stagingLeftovers(bob.claudeDir)).toEqual([]);
      expect(escapees(bob.root)).toEqual([]);
      if (c.code === 0) {
        // The controls really restore, so the refusals above are about the one broken rule.
        expect(r.stdout).toContain(`Imported session ${ID}`);
        return;
      }
      expectOneLineError(r.stderr);
      if (c.says) expect(r.stderr).toMatch(c.says);
      expect(snapshotTree(bob.claudeDir)).toEqual(claudeBefore);
    });
  }

  it("no output carried a secret", () => {
    expectNoSecrets(bob.outputs, [
      Buffer.from(bobKey.exportSeed()).toString("base64url"),
      bobKey.ageIdentity().toString(),
    ]);
  });
});

describe("hostile bundles behind a record signed by their publisher, through pull", () => {
  let nas: string;
  const pullCases: { name: string; entries: () => Promise<Buffer>; code: number }[] = [
    {
      name: "control: a well-formed bundle",
      entries: async () =>
        bundleTar(sign(manifestOf([good]), mallory), [{ name: transcriptPath, content: transcript }]),
      code: 0,
    },
    {
      name: "a symlink",
      entries: async () =>
        bundleTar(sign(manifestOf([good]), mallory), [
          { name: transcriptPath, type: "symlink", linkname: "/etc/passwd" },
        ]),
      code: 5,
    },
    {
      name: "a .. path",
      entries: async () =>
        bundleTar(sign(manifestOf([withFile("claude/projects/../../escaped-pull")]), mallory), [
          { name: transcriptPath, content: transcript },
        ]),
      code: 5,
    },
    {
      name: "a hash mismatch",
      entries: async () =>
        bundleTar(sign(manifestOf([good]), mallory), [
          { name: transcriptPath, content: Buffer.from("x".repeat(transcript.length)) },
        ]),
      code: 5,
    },
    {
      name: "a manifest signed by someone else than the record's publisher",
      entries: async () =>
        bundleTar(sign(manifestOf([good]), stranger), [{ name: transcriptPath, content: transcript }]),
      code: 5,
    },
  ];

  /** Publish, as Mallory, a record for Bob pointing at a blob built from `tarBytes`. */
  async function publishHostile(tarBytes: Buffer): Promise<void> {
    const blobSecret = randomBytes(32);
    const blobIdentity = new X25519Identity(blobSecret);
    const blob = sealBundle(tarBytes, [blobIdentity.recipient().toString()]);
    const key = storeLayout.blob(randomId());
    mkdirSync(path.dirname(path.join(nas, key)), { recursive: true });
    writeFileSync(path.join(nas, key), blob);
    const sealed = await sealPayload(
      {
        v: 1,
        pub: mallory.z32,
        slot: slotFor(mallory.publicKey, [bobKey.ageRecipient()]),
        kind: "handoff",
        created: Math.floor(Date.now() / 1000),
        expires: Math.floor(Date.now() / 1000) + 3600,
        session: { id: ID },
        blob: {
          store: nas,
          key,
          size: blob.length,
          sha256: createHash("sha256").update(blob).digest("hex"),
          age: blobSecret.toString("base64url"),
        },
      },
      [mallory.ageRecipient(), bobKey.ageRecipient()],
    );
    const packet = signPacket(mallory.exportSeed(), recordEntries([sealed]), Date.now() * 1000);
    const record = path.join(nas, storeLayout.record(mallory.z32));
    mkdirSync(path.dirname(record), { recursive: true });
    writeFileSync(record, packet.bytes);
  }

  beforeAll(() => {
    nas = path.join(bob.root, "mallory-nas");
    mkdirSync(nas);
  });

  for (const c of pullCases) {
    it(`${c.name}: exit ${c.code}`, async () => {
      await publishHostile(await c.entries());
      const before = snapshotTree(bob.claudeDir);
      const r = await bob.run(["pull", mallory.z32, "--store", nas, "--project", project, "--no-resume", "--force"]);
      expect(r.code, r.stderr).toBe(c.code);
      expect(stagingLeftovers(bob.claudeDir)).toEqual([]);
      expect(escapees(bob.root)).toEqual([]);
      if (c.code === 0) {
        expect(r.stdout).toContain(`signed by ${mallory.z32}`);
        return;
      }
      expectOneLineError(r.stderr);
      expect(snapshotTree(bob.claudeDir)).toEqual(before);
    });
  }
});
