import { randomBytes } from "node:crypto";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { encodeSigData } from "pkarr/lib/tools.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { encrypt } from "../core/crypto/age/index.js";
import { UserKey } from "../core/crypto/keys.js";
import { SEAL_VERSION, sealSlot } from "../core/crypto/slot-seal.js";
import { signPacket, type TxtEntry } from "../core/pointer/packet.js";
import { encodePayload } from "../core/pointer/payload-codec.js";
import { type PointerPayload, RECORD_NAME, slotFor } from "../core/pointer/record.js";
import { storeLayout } from "../core/store-layout.js";
import { machineKey } from "./helpers/hostile.js";
import { Machine } from "./helpers/machine.js";
import { startRelay, type TestRelay } from "./helpers/relay-server.js";
import { expectNoSecrets, expectOneLineError, snapshotTree, stagingLeftovers } from "./helpers/tree.js";

/**
 * Hostile records: whatever a relay or a store mirror serves under Mallory's
 * key (junk, forged, malformed at every layer: signed packet, DNS, TXT, age,
 * JSON payload) makes `pull` exit 5 with one line and no stack trace, and
 * leaves Bob's config dir as it was.
 */

let bob: Machine;
let bobKey: UserKey;
let relay: TestRelay;
let nas: string;
const mallory = UserKey.generate();
const stranger = UserKey.generate();
let clock = Date.now() * 1000;
const seq = () => (clock += 1000);

/** sig | seq | dns with a valid signature by `signer` over arbitrary DNS bytes. */
function signRaw(signer: UserKey, dns: Buffer, timestamp = seq()): Buffer {
  const signature = signer.sign(encodeSigData({ seq: timestamp, v: dns }));
  const head = Buffer.alloc(72);
  head.set(signature, 0);
  head.writeBigUInt64BE(BigInt(timestamp), 64);
  return Buffer.concat([head, dns]);
}

function record(entries: TxtEntry[], signer = mallory): Buffer {
  return Buffer.from(signPacket(signer.exportSeed(), entries, seq()).bytes);
}

/**
 * One slot sealed to Bob (and Mallory) the way ccbundle seals them, holding these
 * plaintext bytes. An object is encoded with the real payload codec when it can
 * be; a payload the codec refuses to write is sealed as its JSON text instead,
 * which a reader must refuse just the same.
 */
async function slot(plain: Buffer | object, publisher: UserKey = mallory): Promise<TxtEntry> {
  let bytes: Buffer;
  if (Buffer.isBuffer(plain)) bytes = plain;
  else {
    try {
      bytes = encodePayload(plain as PointerPayload);
    } catch {
      bytes = Buffer.from(JSON.stringify(plain));
    }
  }
  const data = await sealSlot(bytes, [bobKey.ageRecipient(), mallory.ageRecipient()], publisher.publicKey);
  return { name: RECORD_NAME, data };
}

/** A well-formed encoded payload whose blob id bytes are replaced by `id` (same length). */
function withBlobId(id: string): Buffer {
  const good = payload();
  const bytes = encodePayload(good as unknown as PointerPayload);
  const at = bytes.indexOf(Buffer.from(good.blob.key.slice(good.blob.key.lastIndexOf("/") + 1)));
  if (at < 0 || id.length !== 26) throw new Error("test setup: blob id not found");
  Buffer.from(id).copy(bytes, at);
  return bytes;
}

/** 180 random bytes after a fixed format byte and a recipient count of 0. */
function junkSlot(format: number): Buffer {
  const data = randomBytes(180);
  data[0] = format;
  data[2] = 0;
  return data;
}

const now = () => Math.floor(Date.now() / 1000);
const payload = (over: Record<string, unknown> = {}) => ({
  v: 1,
  pub: mallory.z32,
  // A shared slot for Bob, as `push --to <bob>` makes it: Bob may read it.
  slot: slotFor(mallory.publicKey, [bobKey.ageRecipient()]),
  kind: "handoff",
  created: now(),
  expires: now() + 3600,
  session: { id: "0b7e6a52-8c1d-4e0f-9a3b-2c4d5e6f7a8b" },
  blob: { key: "ccbundle/v1/blobs/abcdefghijklmnopqrstuvwxyz", size: 10, sha256: "0".repeat(64), age: "A".repeat(43) },
  ...over,
});

const cases: { name: string; bytes: () => Promise<Buffer>; says?: RegExp }[] = [
  { name: "random junk", bytes: async () => randomBytes(300), says: /signature|malformed|out of range/ },
  { name: "a packet shorter than a signature", bytes: async () => randomBytes(40), says: /too short/ },
  { name: "a packet over 1000 bytes of DNS", bytes: async () => signRaw(mallory, randomBytes(1100)) },
  {
    name: "a record signed by another key",
    bytes: async () => record([await slot(payload())], stranger),
    says: /signature/,
  },
  {
    name: "a timestamp beyond 2^53",
    bytes: async () => {
      const bytes = record([await slot(payload())]);
      bytes.writeBigUInt64BE(2n ** 60n, 64);
      return bytes;
    },
    says: /out of range/,
  },
  {
    name: "validly signed garbage instead of DNS",
    bytes: async () => signRaw(mallory, randomBytes(200)),
    says: /malformed/,
  },
  {
    name: "a DNS packet with a name pointer loop",
    bytes: async () => {
      // header: response, 1 answer; the answer's name is a pointer to itself.
      const dns = Buffer.from([0, 0, 0x84, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0xc0, 12, 0, 16, 0, 1, 0, 0, 0, 60, 0, 0]);
      return signRaw(mallory, dns);
    },
    says: /malformed/,
  },
  {
    // Not a slot this build reads (a newer ccbundle could have written it): nothing else for Bob.
    name: "TXT data of another format",
    bytes: async () => record([{ name: RECORD_NAME, data: junkSlot(SEAL_VERSION + 1) }]),
    says: /nothing for your key\nhint: .*one slot is in a newer ccbundle's format and may be for you/,
  },
  {
    // Random bytes whose first byte happens to be our format byte (1 in 256 of them).
    name: "TXT data that claims our format and is junk",
    bytes: async () => record([{ name: RECORD_NAME, data: junkSlot(SEAL_VERSION) }]),
    says: /no or too many recipients/,
  },
  {
    name: "a damaged age header",
    bytes: async () => {
      const entry = await slot(payload());
      const data = Buffer.from(entry.data);
      data[30] ^= 0xff;
      return record([{ name: RECORD_NAME, data }]);
    },
  },
  {
    name: "an age header with a stanza for someone else only",
    bytes: async () =>
      record([{ name: RECORD_NAME, data: await encrypt(Buffer.from("{}"), [stranger.ageRecipient()]) }]),
    says: /nothing for your key/,
  },
  {
    name: "a payload that is not a ccbundle payload",
    bytes: async () => record([await slot(Buffer.from("{nope"))]),
    says: /payload format 123 is not supported/,
  },
  { name: "a JSON payload that is not an object", bytes: async () => record([await slot(Buffer.from("[1,2]"))]) },
  {
    // Sealed for Bob in a payload format a later ccbundle could write: he is told to upgrade.
    name: "an unknown payload version",
    bytes: async () => record([await slot(Buffer.from([2, 1, 1, 0]))]),
    says: /holds a handoff for you that this ccbundle cannot read\nhint: it was written by a newer ccbundle: upgrade ccbundle/,
  },
  { name: "an unknown slot kind", bytes: async () => record([await slot(payload({ kind: "exploit" }))]) },
  { name: "a negative created time", bytes: async () => record([await slot(payload({ created: -5 }))]) },
  {
    name: "a blob size beyond 2^53",
    bytes: async () => record([await slot(payload({ blob: { ...payload().blob, size: 2 ** 60 } }))]),
  },
  {
    name: "a blob hash that is not sha256",
    bytes: async () => record([await slot(payload({ blob: { ...payload().blob, sha256: "xyz" } }))]),
  },
  {
    name: "a blob key that is not a key",
    bytes: async () => record([await slot(payload({ blob: { ...payload().blob, age: "short" } }))]),
  },
  {
    name: "a blob object key climbing out of the store",
    bytes: async () => record([await slot(withBlobId("../../../../../../etc/pass"))]),
    says: /malformed/,
  },
  { name: "a handoff without a blob", bytes: async () => record([await slot(payload({ blob: undefined }))]) },
  { name: "an oversize title", bytes: async () => record([await slot(payload({ session: { id: "x", title: 7 } }))]) },
  {
    name: "a slot made for another publisher",
    bytes: async () => record([await slot(payload({ pub: stranger.z32 }), stranger)]),
    says: /another record|another key/,
  },
  {
    name: "a revoked handoff",
    bytes: async () => record([await slot(payload({ kind: "tombstone" }))]),
    says: /revoked/,
  },
  {
    name: "an expired handoff",
    bytes: async () => record([await slot(payload({ expires: now() - 60 }))]),
    says: /expired/,
  },
];

beforeAll(async () => {
  bob = new Machine("bob-records");
  await bob.runOk(["init", "--no-passphrase"]);
  bobKey = machineKey(bob.ccbHome);
  relay = await startRelay();
  nas = path.join(bob.root, "nas");
  mkdirSync(path.join(nas, "ccbundle", "v1", "records"), { recursive: true });
  bob.project("proj");
});

afterAll(async () => {
  await relay?.close();
  bob?.cleanup();
});

/** Serve `bytes` for Mallory's key from the relay and from the store mirror. */
function serve(bytes: Buffer): void {
  relay.inject(mallory.publicKey, bytes);
  writeFileSync(path.join(nas, storeLayout.record(mallory.z32)), bytes);
}

function pull() {
  // A fresh replay floor each time: these tests are about content, not about replays.
  rmSync(path.join(bob.ccbHome, "state"), { recursive: true, force: true });
  return bob.run(["pull", mallory.z32, "--store", nas, "--relay", relay.url, "--no-resume"], {
    cwd: path.join(bob.home, "proj"),
  });
}

describe("hostile records served by a relay and the store mirror", () => {
  for (const c of cases) {
    it(`${c.name}: exit 5, one line, nothing changed`, async () => {
      serve(await c.bytes());
      const before = snapshotTree(bob.claudeDir);
      const r = await pull();
      expect(r.code, r.stderr).toBe(5);
      expectOneLineError(r.stderr);
      if (c.says) expect(r.stderr).toMatch(c.says);
      expect(snapshotTree(bob.claudeDir)).toEqual(before);
      expect(stagingLeftovers(bob.claudeDir)).toEqual([]);
    });
  }

  it("a relay answering junk and nothing else: exit 5", async () => {
    const junk = await startRelay({ mode: "junk" });
    try {
      rmSync(path.join(nas, storeLayout.record(mallory.z32)), { force: true });
      const r = await bob.run(["pull", mallory.z32, "--relay", junk.url, "--no-resume"]);
      expect(r.code, r.stderr).toBe(5);
      expectOneLineError(r.stderr);
    } finally {
      await junk.close();
    }
  });

  it("no output carried a secret", () => {
    expectNoSecrets(bob.outputs, [
      Buffer.from(bobKey.exportSeed()).toString("base64url"),
      bobKey.ageIdentity().toString(),
    ]);
  });
});
