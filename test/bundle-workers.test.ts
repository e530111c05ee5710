import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import tar from "tar-stream";
import { afterAll, describe, expect, it } from "vitest";
import { createDecompressor } from "../core/bundle/codec.js";
import type { PackFile } from "../core/bundle/pack.js";
import { createDecryptStream } from "../core/crypto/age/index.js";
import { UserKey } from "../core/crypto/keys.js";
// The built pool: its worker threads run dist/core/bundle/worker.js (tests run from sources, where
// backup encodes on the calling thread instead).
import { sessionBundler } from "../dist/core/bundle/worker-pool.js";

/**
 * The bundle worker pool (core/bundle/worker-pool.ts) as backup drives it: blobs
 * of many chunks come back whole through the credit window, a blob given up
 * half-way does not stall the next, and each blob decrypts to the files.
 */

const root = mkdtempSync(path.join(os.tmpdir(), "ccb-workers-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function file(name: string, content: Buffer): PackFile {
  const source = path.join(root, name);
  writeFileSync(source, content);
  return {
    path: `claude/${name}`,
    size: content.length,
    sha256: createHash("sha256").update(content).digest("hex"),
    source,
  };
}

async function entries(blob: Buffer, key: UserKey): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  const extract = tar.extract();
  extract.on("entry", (header, stream, next) => {
    const parts: Buffer[] = [];
    stream.on("data", (b: Buffer) => parts.push(b));
    stream.on("end", () => {
      out.set(header.name, Buffer.concat(parts));
      next();
    });
  });
  const done = new Promise((resolve, reject) => {
    extract.on("finish", resolve);
    extract.on("error", reject);
  });
  Readable.from([blob])
    .pipe(createDecryptStream([key.ageIdentity()]))
    .pipe(createDecompressor())
    .pipe(extract);
  await done;
  return out;
}

async function read(stream: Readable, slowly = false): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of stream) {
    parts.push(chunk as Buffer);
    if (slowly) await new Promise((resolve) => setTimeout(resolve, 5));
  }
  return Buffer.concat(parts);
}

describe("bundle worker pool", () => {
  it("encodes blobs of many chunks, read fast or slowly, and goes on after one is given up", async () => {
    const key = UserKey.generate();
    // Random bytes do not compress: ~6 MB of blob, six chunks or more through a window of four.
    const big = file("big.bin", randomBytes(6 << 20));
    const small = file("small.txt", Buffer.from("hello\n".repeat(1000)));
    const manifestJson = Buffer.from('{"stand-in":"manifest"}');
    const options = {
      manifestJson,
      files: [big, small],
      recipients: [String(key.ageRecipient())],
      compression: { codec: "zstd" as const, level: 3 },
    };
    const pool = sessionBundler(2);
    try {
      expect(pool.threads).toBe(2);
      const abandoned = pool.encode(options);
      for await (const _ of abandoned) {
        abandoned.destroy();
        break;
      }
      const [fast, slow] = await Promise.all([read(pool.encode(options)), read(pool.encode(options), true)]);
      for (const blob of [fast, slow]) {
        const got = await entries(blob, key);
        expect([...got.keys()]).toEqual(["ccbundle.json", "claude/big.bin", "claude/small.txt"]);
        expect(got.get("claude/big.bin")!.length).toBe(big.size);
        expect(createHash("sha256").update(got.get("claude/big.bin")!).digest("hex")).toBe(big.sha256);
      }
    } finally {
      await pool.close();
    }
  });
});
