import path from "node:path";
import { fileURLToPath } from "node:url";
import { UsageError } from "../core/errors.js";
import type { BlobStore } from "./blob-store.js";
import { LocalStore } from "./local.js";

export type { BlobStore, GetOptions, ObjectInfo, PutOptions, PutResult } from "./blob-store.js";
export { LocalStore } from "./local.js";

/**
 * Open the store a URL names. Adding a store type means one adapter file and
 * one branch here. The S3 adapter (and the AWS SDK) load only when asked for.
 */
export async function openStore(url: string): Promise<BlobStore> {
  if (/^s3:\/\//i.test(url)) {
    const { S3Store } = await import("./s3.js");
    return S3Store.fromUrl(url);
  }
  if (url.startsWith("file://")) {
    let folder: string;
    try {
      folder = fileURLToPath(url);
    } catch {
      // file://relative/path names a host "relative": fileURLToPath throws a TypeError.
      throw new UsageError(`cannot read store URL ${withoutPassword(url)}`, {
        hint: "a file URL takes an absolute path (file:///srv/store), or give the path itself",
      });
    }
    return new LocalStore(folder);
  }
  if (path.isAbsolute(url)) return new LocalStore(path.resolve(url));
  const s3Typo = /^s3:\/?(?!\/)/i.test(url);
  const shown = withoutPassword(url);
  throw new UsageError(`unsupported store URL: ${shown}`, {
    hint: s3Typo
      ? `did you mean ${shown.replace(/^s3:\/?/i, "s3://")}?`
      : "use an absolute path, file:///abs/path, or s3://bucket/prefix?endpoint=…",
  });
}

/**
 * A URL as an error may show it: `http://user:secret@host` must not put the password in a
 * terminal, a log or --json output (credentials come from the AWS chain, never from the URL).
 */
function withoutPassword(url: string): string {
  return url.replace(/^([a-z][\w+.-]*:\/\/[^/@:]*):[^/@]*@/i, "$1:***@");
}
