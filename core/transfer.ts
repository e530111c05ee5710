import { randomBytes } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { lstat, rename, rm, stat } from "node:fs/promises";
import path from "node:path";
import type { Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { bundleStream, HashCounter } from "./bundle/blob.js";
import { prepareBundle } from "./bundle/build.js";
import type { PathMapping } from "./claude/remap.js";
import { findSession } from "./claude/session.js";
import type { Settings } from "./config.js";
import type { Recipient } from "./crypto/age/index.js";
import type { UserKey } from "./crypto/keys.js";
import { CcbError, errnoCode, NotFoundError, UsageError } from "./errors.js";
import { removeOnInterrupt } from "./interrupt.js";
import { type ReceiveResult, receiveBundle } from "./receive.js";

/**
 * `ccbundle export` / `import`: the same bundle as push, through a file (USB
 * stick, mail). The file is encrypted to the owner and any --to recipients,
 * and opens with stock tools: `age -d -i id.txt f.ccb | zstd -d | tar t`.
 */

export interface ExportOptions {
  settings: Settings;
  key: UserKey;
  projectDir: string;
  sessionId?: string | undefined;
  recipients: Recipient[];
  /** The file to write, or a stream (`--out -`: stdout, as in `| ssh host ccbundle import -`). */
  out: string | Writable;
}

export interface ExportResult {
  sessionId: string;
  title: string | undefined;
  files: number;
  bytes: number;
  fileBytes: number;
  out: string;
}

export async function exportSession(options: ExportOptions): Promise<ExportResult> {
  const { settings, key, out } = options;
  if (typeof out === "string") await checkExportTarget(out);
  const ref = await findSession(settings.claudeDir, options.projectDir, options.sessionId);
  const prepared = await prepareBundle({ claudeDir: settings.claudeDir, ref, key, env: settings.env });
  const counter = new HashCounter();
  const bundle = () =>
    bundleStream({
      manifestJson: prepared.manifestJson,
      files: prepared.files,
      recipients: [key.ageRecipient(), ...options.recipients],
      compression: settings.compression,
    });
  if (typeof out !== "string") {
    // A pipe has no "half-written file" to hide: the reader sees the stream end early, and the
    // age payload's last chunk is marked, so `import -` refuses a cut-off bundle.
    await pipeline(bundle(), counter, out).catch((err: unknown) => {
      if (errnoCode(err) !== "EPIPE") throw err;
      throw new CcbError("the reading end of the pipe closed before the whole bundle was written", 1, {
        hint: "check the command that reads it (e.g. `ssh host ccbundle import -`) and run both again",
        cause: err,
      });
    });
  } else {
    // Write beside the target and rename, so a half-written export never has the final name.
    const partial = `${out}.${randomBytes(4).toString("hex")}.partial`;
    // Ctrl-C half-way: the partial file goes too (it was left, tens of MB, beside the target).
    const forgetPartial = removeOnInterrupt(partial);
    try {
      await pipeline(bundle(), counter, createWriteStream(partial, { flags: "wx", mode: 0o600 }));
      await rename(partial, out);
      forgetPartial();
    } catch (err) {
      forgetPartial();
      await rm(partial, { force: true });
      if (errnoCode(err) === "ENOENT" || errnoCode(err) === "EACCES") {
        throw new CcbError(`cannot write ${out} (${errnoCode(err)})`, 1, {
          hint: "check that the folder exists and is writable",
          cause: err,
        });
      }
      throw err;
    }
  }
  const session = prepared.manifest.sessions[0]!;
  return {
    sessionId: session.id,
    title: session.title,
    files: session.files.length,
    bytes: prepared.bytes,
    fileBytes: counter.bytes,
    out: typeof out === "string" ? out : "-",
  };
}

export interface ImportOptions {
  settings: Settings;
  key: UserKey;
  /** The bundle file, or a stream (`import -`: stdin). */
  file: string | Readable;
  /** Extra accepted signers (--from); our own key is always accepted. */
  from: string[];
  allowUnknownSigner: boolean;
  project?: string | undefined;
  cwd: string;
  maps: PathMapping[];
  rewrite: boolean;
  force: boolean;
}

/**
 * `export --out` refuses a name that exists (as `key export` does): it may be another export
 * someone still needs. lstat: a dangling symlink is there too. Exported so the CLI checks before
 * it asks for a passphrase.
 */
export async function checkExportTarget(out: string): Promise<void> {
  const existing = await lstat(out).catch(() => undefined);
  // A symlink to a folder (~/Downloads on some desktops) is a folder to the user as well.
  const folder = existing?.isSymbolicLink() ? await stat(out).catch(() => undefined) : existing;
  if (folder?.isDirectory()) {
    throw new UsageError(`--out ${out} is a folder`, {
      hint: `give the bundle a file name in it, e.g. --out ${path.join(out, "session.ccb")}`,
    });
  }
  if (existing) {
    throw new UsageError(`${out} already exists`, { hint: "choose another file name or delete it first" });
  }
}

/** A folder opens like a file and fails only at its first read, deep in the unpacking. */
export async function checkImportSource(file: string): Promise<void> {
  if ((await stat(file).catch(() => undefined))?.isDirectory()) {
    throw new UsageError(`${file} is a folder, not a bundle file`, {
      hint: "give the file `ccbundle export` wrote (a .ccb file)",
    });
  }
}

export async function importBundle(options: ImportOptions): Promise<ReceiveResult> {
  const { file } = options;
  let stream: Readable;
  if (typeof file !== "string") stream = file;
  else {
    await checkImportSource(file);
    const opened = createReadStream(file);
    await new Promise<void>((resolve, reject) => {
      opened.once("open", () => resolve());
      opened.once("error", (err) =>
        reject(
          errnoCode(err) === "ENOENT" ? new NotFoundError(`no such file: ${file}`, { hint: "check the path" }) : err,
        ),
      );
    });
    stream = opened;
  }
  return receiveBundle({
    settings: options.settings,
    blob: stream,
    identities: [options.key.ageIdentity()],
    acceptSigners: options.allowUnknownSigner ? [] : [options.key.z32, ...options.from],
    ownKey: options.key.z32,
    project: options.project,
    cwd: options.cwd,
    maps: options.maps,
    rewrite: options.rewrite,
    force: options.force,
  });
}
