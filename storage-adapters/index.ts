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
  if (url.startsWith("file://")) return new LocalStore(fileURLToPath(url));
  if (path.isAbsolute(url)) return new LocalStore(path.resolve(url));
  throw new UsageError(`unsupported store URL: ${url}`, {
    hint: "use an absolute path, file:///abs/path, or s3://bucket/prefix?endpoint=…",
  });
}
