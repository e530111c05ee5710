import { randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import { copyFile, type FileHandle, link, mkdir, open, rename, rm, stat } from "node:fs/promises";
import path from "node:path";
import { errnoCode } from "../errors.js";
import type { Remapper } from "./remap.js";

/** File helpers for restoring: streamed comparison, streamed line rewriting, atomic writes. */

export type Comparison = "identical" | "local-prefix" | "incoming-prefix" | "diverged";

/**
 * How `local` relates to `incoming`: equal, one a prefix of the other (appends), or different.
 * Either side may be an open handle (the caller keeps it open and closes it).
 */
export async function compareFiles(local: string | FileHandle, incoming: string | FileHandle): Promise<Comparison> {
  const a = typeof local === "string" ? await open(local, "r") : local;
  const b = typeof incoming === "string" ? await open(incoming, "r") : incoming;
  try {
    const [sizeA, sizeB] = [(await a.stat()).size, (await b.stat()).size];
    const common = Math.min(sizeA, sizeB);
    const bufA = Buffer.allocUnsafe(1 << 20);
    const bufB = Buffer.allocUnsafe(1 << 20);
    for (let pos = 0; pos < common; ) {
      const want = Math.min(bufA.length, common - pos);
      const [ra, rb] = await Promise.all([a.read(bufA, 0, want, pos), b.read(bufB, 0, want, pos)]);
      if (ra.bytesRead !== want || rb.bytesRead !== want) return "diverged";
      if (!bufA.subarray(0, want).equals(bufB.subarray(0, want))) return "diverged";
      pos += want;
    }
    if (sizeA === sizeB) return "identical";
    return sizeA < sizeB ? "local-prefix" : "incoming-prefix";
  } finally {
    if (a !== local) await a.close();
    if (b !== incoming) await b.close();
  }
}

/** Rewrite a JSONL file line by line into `target` without holding it in memory. */
export async function remapFile(source: string, target: string, remapper: Remapper): Promise<void> {
  const out = await open(target, "wx", 0o600);
  try {
    let carry = "";
    for await (const chunk of createReadStream(source, { encoding: "utf8", highWaterMark: 1 << 20 })) {
      const text = carry + (chunk as string);
      const lastNewline = text.lastIndexOf("\n");
      if (lastNewline < 0) {
        carry = text;
        continue;
      }
      carry = text.slice(lastNewline + 1);
      const lines = text
        .slice(0, lastNewline)
        .split("\n")
        .map((line) => remapper.line(line));
      await out.write(`${lines.join("\n")}\n`);
    }
    if (carry) await out.write(remapper.line(carry));
    await out.sync();
  } finally {
    await out.close();
  }
}

/** Move a staged file into place atomically (same filesystem), giving it a fresh mtime. */
export async function installFile(staged: string, target: string): Promise<void> {
  await mkdir(path.dirname(target), { recursive: true });
  const now = new Date();
  const handle = await open(staged, "r+");
  try {
    await handle.utimes(now, now);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(staged, target);
}

/** Copy a file the user had to a backup folder before it is replaced. */
export async function backupFile(file: string, backupDir: string, relative: string): Promise<string> {
  const target = path.join(backupDir, relative);
  await mkdir(path.dirname(target), { recursive: true, mode: 0o700 });
  await copyFile(file, target);
  return target;
}

/** Write a small file atomically: temp file in the same folder, fsync, rename. */
export async function writeFileAtomic(
  file: string,
  content: string | Uint8Array,
  mode = 0o600,
  options: { exclusive?: boolean } = {},
): Promise<void> {
  if (!options.exclusive) await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${randomBytes(6).toString("hex")}.tmp`;
  try {
    const handle = await open(tmp, "wx", mode);
    try {
      await handle.writeFile(content);
      await handle.sync();
    } finally {
      await handle.close();
    }
    if (options.exclusive) {
      // link() fails with EEXIST instead of replacing: a key export never overwrites a file.
      await link(tmp, file).catch(async (err) => {
        if (errnoCode(err) !== "EPERM" && errnoCode(err) !== "ENOTSUP") throw err;
        // No hard links here (FAT/exFAT USB sticks): check, then rename.
        if (
          await stat(file).then(
            () => true,
            () => false,
          )
        )
          throw Object.assign(new Error("exists"), { code: "EEXIST" });
        await rename(tmp, file);
      });
      await rm(tmp, { force: true });
      return;
    }
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}
