import { execFileSync, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { createWriteStream, readFileSync } from "node:fs";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import tar from "tar-stream";
import { BUNDLE_FORMAT, type Manifest, type ManifestSession, signableBytes } from "../../core/bundle/manifest.js";
import { decodeIdentityText } from "../../core/crypto/identity-file.js";
import type { UserKey } from "../../core/crypto/keys.js";

/**
 * Building bundles by hand, the way an attacker would: any tar entry types and
 * names, any manifest, compressed with Debian's `zstd` and encrypted with
 * Debian's `age` binary, so nothing of ccbundle's writing side is involved.
 */

export type EntryType = "file" | "link" | "symlink" | "character-device" | "block-device" | "directory" | "fifo";

export interface TarEntry {
  name: string;
  content?: Buffer;
  type?: EntryType;
  linkname?: string;
  /** PAX extended header fields (path, size, linkpath override the plain header). */
  pax?: Record<string, string>;
}

export const sha256 = (bytes: Buffer | string) => createHash("sha256").update(bytes).digest("hex");

/** The user's key from a Machine's unencrypted identity file (`init --no-passphrase`). */
export function machineKey(ccbHome: string): UserKey {
  return decodeIdentityText(readFileSync(path.join(ccbHome, "identity"), "utf8"));
}

export interface SessionSpec {
  id: string;
  folder: string;
  cwd: string;
  files: { path: string; content: Buffer }[];
}

/** A manifest like prepareBundle writes, for the given files. */
export function manifestOf(sessions: SessionSpec[], extra: Partial<ManifestSession> = {}): Manifest {
  return {
    format: BUNDLE_FORMAT,
    created: new Date().toISOString(),
    tool: { name: "ccbundle", version: "test" },
    source: {
      host: "evil",
      user: "mallory",
      platform: "linux",
      home: "/home/mallory",
      claudeDir: "/home/mallory/.claude",
    },
    sessions: sessions.map((s) => ({
      id: s.id,
      cwd: s.cwd,
      folder: s.folder,
      files: s.files.map((f) => ({ path: f.path, size: f.content.length, sha256: sha256(f.content) })),
      ...extra,
    })),
  };
}

export function sign(manifest: Manifest, key: UserKey): Manifest {
  const signed: Manifest = { ...manifest, publisher: key.z32 };
  delete signed.signature;
  signed.signature = Buffer.from(key.sign(signableBytes(signed))).toString("base64");
  return signed;
}

export async function tarOf(entries: TarEntry[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const collected = (async () => {
    for await (const chunk of pack as AsyncIterable<Buffer>) chunks.push(chunk);
  })();
  for (const entry of entries) {
    const type = entry.type ?? "file";
    if (type === "file") {
      const content = entry.content ?? Buffer.alloc(0);
      await new Promise<void>((resolve, reject) =>
        pack.entry(
          { name: entry.name, size: content.length, mode: 0o600, ...(entry.pax ? { pax: entry.pax } : {}) },
          content,
          (err) => (err ? reject(err) : resolve()),
        ),
      );
    } else {
      pack.entry({
        name: entry.name,
        type,
        ...(entry.linkname ? { linkname: entry.linkname } : {}),
        ...(type === "character-device" || type === "block-device" ? { devmajor: 1, devminor: 3 } : {}),
      });
    }
  }
  pack.finalize();
  await collected;
  return Buffer.concat(chunks);
}

/** Debian's zstd, level 3. */
export function zstd(bytes: Buffer): Buffer {
  return execFileSync("/usr/bin/zstd", ["-q", "-3", "-c"], { input: bytes, maxBuffer: 1 << 30 });
}

/** Debian's age, to each `age1…` recipient. */
export function ageEncrypt(bytes: Buffer, recipients: string[]): Buffer {
  const args = recipients.flatMap((r) => ["-r", r]);
  return execFileSync("/usr/bin/age", args, { input: bytes, maxBuffer: 1 << 30 });
}

/** tar → zstd → age, all by the stock tools. */
export function sealBundle(tarBytes: Buffer, recipients: string[]): Buffer {
  return ageEncrypt(zstd(tarBytes), recipients);
}

/**
 * A bundle whose one transcript is `size` bytes of `pattern` repeated (zeros by default), with an
 * honest manifest signed by `key`, streamed through `zstd | age -r <to>` into `out` without holding
 * it in memory: a decompression bomb, or a session that compresses like one.
 */
export async function writeRepetitiveBundle(
  out: string,
  key: UserKey,
  session: Omit<SessionSpec, "files">,
  size: number,
  options: { pattern?: Buffer; to?: string } = {},
) {
  const chunk = Buffer.alloc(1 << 20);
  if (options.pattern) {
    // Whole patterns only, so a chunk boundary never splits one.
    const whole = chunk.length - (chunk.length % options.pattern.length);
    for (let at = 0; at < whole; at += options.pattern.length) options.pattern.copy(chunk, at);
  }
  const unit = options.pattern ? chunk.length - (chunk.length % options.pattern.length) : chunk.length;
  const part = (done: number) => chunk.subarray(0, Math.min(unit, size - done));
  const hash = createHash("sha256");
  for (let done = 0; done < size; done += unit) hash.update(part(done));
  const file = { path: `claude/projects/${session.folder}/${session.id}.jsonl`, size, sha256: hash.digest("hex") };
  const manifest = sign(
    {
      ...manifestOf([{ ...session, files: [] }]),
      sessions: [{ id: session.id, cwd: session.cwd, folder: session.folder, files: [file] }],
    },
    key,
  );
  const manifestJson = Buffer.from(JSON.stringify(manifest));
  const to = options.to ?? key.ageRecipient().toString();
  const shell = spawn("/bin/sh", ["-c", `/usr/bin/zstd -q -3 -c | /usr/bin/age -r ${to}`], {
    stdio: ["pipe", "pipe", "inherit"],
  });
  const written = pipeline(shell.stdout, createWriteStream(out));
  const pack = tar.pack();
  const feeding = pipeline(pack as unknown as NodeJS.ReadableStream, shell.stdin);
  pack.entry({ name: "ccbundle.json", size: manifestJson.length }, manifestJson);
  const sink = pack.entry({ name: file.path, size });
  for (let done = 0; done < size; done += unit) {
    if (!sink.write(part(done))) await new Promise<void>((resolve) => sink.once("drain", () => resolve()));
  }
  sink.end(() => undefined);
  pack.finalize();
  await Promise.all([feeding, written]);
}
