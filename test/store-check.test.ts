import { execFileSync } from "node:child_process";
import { chmod, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { checkStore, DOCTOR_PREFIX, type StoreCheck } from "../core/store-check.js";
import type { BlobStore } from "../storage-adapters/blob-store.js";
import { LocalStore } from "../storage-adapters/local.js";
import { S3Store } from "../storage-adapters/s3.js";
import { type S3rverHandle, startS3rver, useS3rverCredentials } from "./helpers/s3rver.js";

const NAMES = ["reachable", "writable", "readable", "listable", "deletable"];

function byName(checks: StoreCheck[]): Record<string, StoreCheck> {
  expect(checks.map((c) => c.name)).toEqual(NAMES);
  return Object.fromEntries(checks.map((c) => [c.name, c]));
}

async function listAll(store: BlobStore, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const info of store.list(prefix)) keys.push(info.key);
  return keys;
}

const dirs: string[] = [];
async function tempDir(): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "ccb-check-"));
  dirs.push(dir);
  return dir;
}

let s3rver: S3rverHandle;
beforeAll(async () => {
  useS3rverCredentials();
  s3rver = await startS3rver({ buckets: ["ccbundle"] });
});
afterAll(async () => {
  await s3rver?.stop();
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

describe("checkStore", () => {
  test("a local folder passes every check and keeps no probe", async () => {
    const store = new LocalStore(await tempDir());
    const checks = await checkStore(store);
    expect(checks.filter((c) => !c.ok)).toEqual([]);
    expect(byName(checks).readable?.detail).toMatch(/unchanged/);
    expect(await listAll(store, DOCTOR_PREFIX)).toEqual([]);
  });

  test("a read-only local folder fails writable with a hint, and skips the rest", async (ctx) => {
    const root = await tempDir();
    await chmod(root, 0o555);
    // As root, mode bits do not stop writes. Then try the immutable flag, which
    // does; if that is not available either, say so rather than pass silently.
    let immutable = false;
    const canWrite = await writeFile(path.join(root, "probe"), "x").then(
      () => true,
      () => false,
    );
    if (canWrite) {
      await rm(path.join(root, "probe"));
      try {
        execFileSync("chattr", ["+i", root], { stdio: "ignore" });
        immutable = true;
      } catch {
        ctx.skip("running as root: chmod does not stop writes here and chattr +i is not available");
      }
    }
    try {
      const checks = byName(await checkStore(new LocalStore(root)));
      expect(checks.reachable?.ok).toBe(true);
      expect(checks.writable?.ok).toBe(false);
      expect(checks.writable?.detail).toMatch(/is not writable \((EACCES|EPERM)\)/);
      expect(checks.writable?.hint).toMatch(/permissions/);
      for (const name of ["readable", "listable", "deletable"]) {
        expect(checks[name]).toMatchObject({ ok: false, detail: "skipped: nothing could be written" });
      }
    } finally {
      if (immutable) execFileSync("chattr", ["-i", root], { stdio: "ignore" });
      await chmod(root, 0o755);
    }
    expect(await readdir(root)).toEqual([]);
  });

  test("s3rver passes every check and keeps no probe", async () => {
    const store = S3Store.fromUrl(s3rver.url("ccbundle", "doctor"));
    try {
      const checks = await checkStore(store);
      expect(checks.filter((c) => !c.ok)).toEqual([]);
      expect(await listAll(store, "")).toEqual([]);
    } finally {
      await store.close();
    }
  });

  test("a reverse proxy that limits uploads to 1 MB (nginx's default) fails writable, named as such", async () => {
    // In front of s3rver: bodies over 1 MB get nginx's 413 page, the rest pass through.
    const proxy = http.createServer((req, res) => {
      if (Number(req.headers["content-length"] ?? 0) > 1024 * 1024) {
        req.resume();
        res.writeHead(413, { "content-type": "text/html", connection: "close" });
        res.end("<html><body><h1>413 Request Entity Too Large</h1></body></html>");
        return;
      }
      const upstream = http.request(
        `${s3rver.endpoint}${req.url}`,
        { method: req.method, headers: req.headers },
        (answer) => {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
        },
      );
      req.pipe(upstream);
    });
    await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", resolve));
    const { port } = proxy.address() as AddressInfo;
    const store = S3Store.fromUrl(`s3://ccbundle/doctor-413?endpoint=http://127.0.0.1:${port}`);
    try {
      const checks = byName(await checkStore(store));
      expect(checks.reachable?.ok).toBe(true);
      expect(checks.writable?.ok).toBe(false);
      expect(checks.writable?.detail).toContain("(HTTP 413)");
      expect(checks.writable?.hint).toContain("client_max_body_size 0");
    } finally {
      await store.close();
      proxy.closeAllConnections();
      await new Promise((resolve) => proxy.close(resolve));
    }
  });

  test("a dead endpoint fails reachable with the endpoint and a hint", async () => {
    const server = http.createServer();
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;
    await new Promise((resolve) => server.close(resolve));
    const store = S3Store.fromUrl(`s3://ccbundle?endpoint=http://127.0.0.1:${port}`);
    try {
      const checks = byName(await checkStore(store));
      expect(checks.reachable?.ok).toBe(false);
      expect(checks.reachable?.detail).toMatch(new RegExp(`^cannot reach http://127\\.0\\.0\\.1:${port}`));
      expect(checks.reachable?.hint).toMatch(/endpoint=/);
      expect(checks.writable).toMatchObject({ ok: false, detail: "skipped: the store is not reachable" });
    } finally {
      await store.close();
    }
  });

  test("a missing bucket fails reachable and names the bucket", async () => {
    const store = S3Store.fromUrl(s3rver.url("not-there"));
    try {
      const checks = byName(await checkStore(store));
      expect(checks.reachable).toMatchObject({
        ok: false,
        detail: `bucket not-there does not exist at ${s3rver.endpoint}`,
      });
    } finally {
      await store.close();
    }
  });
});
