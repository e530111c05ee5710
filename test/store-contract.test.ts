import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readdir, rm, utimes, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { CcbError, ExitCode, NotFoundError } from "../core/errors.js";
import { randomId } from "../core/store-layout.js";
import { type BlobStore, EmptyStoreError, type ObjectInfo } from "../storage-adapters/blob-store.js";
import { LocalStore, STALE_PARTIAL_MS } from "../storage-adapters/local.js";
import { S3Store } from "../storage-adapters/s3.js";
import { type S3rverHandle, startS3rver, useS3rverCredentials } from "./helpers/s3rver.js";

const MIB = 1024 * 1024;

interface ContractTarget {
  /** A fresh, empty store; closed by the suite. */
  open(): Promise<BlobStore>;
  /** A size past which a streamed put is known to be split (S3: one part); failures past it test cleanup of parts. */
  bigFailureAt: number;
  /** Keys to put for the paging test. */
  listCount: number;
}

/** Bytes fed in uneven chunks, as a compressor or encryptor would produce them. */
function chunked(data: Buffer, sizes = [1, 7, 4096, 65_537, 1 * MIB]): Readable {
  let offset = 0;
  let turn = 0;
  return new Readable({
    read() {
      if (offset >= data.length) {
        this.push(null);
        return;
      }
      const size = sizes[turn++ % sizes.length] ?? 1;
      this.push(data.subarray(offset, offset + size));
      offset += size;
    },
  });
}

/** Produces `before` random bytes, then fails like a broken pipe upstream would. */
function failingStream(before: number): Readable {
  let sent = 0;
  return new Readable({
    read() {
      if (sent >= before) {
        this.destroy(new Error("source broke mid-way"));
        return;
      }
      const chunk = randomBytes(Math.min(256 * 1024, before - sent));
      sent += chunk.length;
      this.push(chunk);
    },
  });
}

async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) out.push(item);
  return out;
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** The BlobStore contract (blob-store.ts), the same for every adapter. */
function storeContract(name: string, target: () => ContractTarget): void {
  describe(`BlobStore contract: ${name}`, () => {
    const opened: BlobStore[] = [];
    const open = async () => {
      const store = await target().open();
      opened.push(store);
      return store;
    };
    afterAll(async () => {
      for (const store of opened) await store.close?.();
    });

    test("bytes round trip exactly, every byte value, and stat reports the size", async () => {
      const store = await open();
      const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
      const data = Buffer.concat([all, randomBytes(10_000), Buffer.from("\r\n0\r\n\r\n")]);
      const result = await store.put("ccbundle/v1/records/abc", data);
      expect(result.size).toBe(data.length);
      expect(Buffer.from(await store.getBytes("ccbundle/v1/records/abc")).equals(data)).toBe(true);
      const info = await store.stat("ccbundle/v1/records/abc");
      expect(info?.size).toBe(data.length);
      expect(info?.key).toBe("ccbundle/v1/records/abc");
      expect(info?.modified).toBeInstanceOf(Date);
    });

    test("a stream round trips byte-identical (no aws-chunked framing stored) with progress", async () => {
      const store = await open();
      const data = randomBytes(3 * MIB + 12_345);
      const progress: number[] = [];
      const result = await store.put("ccbundle/v1/blobs/s1", chunked(data), {
        size: data.length,
        onProgress: (n) => progress.push(n),
      });
      expect(result.size).toBe(data.length);
      expect((await store.stat("ccbundle/v1/blobs/s1"))?.size).toBe(data.length);
      const back = await readAll(await store.get("ccbundle/v1/blobs/s1"));
      expect(back.length).toBe(data.length);
      expect(back.equals(data)).toBe(true);
      expect(progress.at(-1)).toBe(data.length);
      const readProgress: number[] = [];
      await readAll(await store.get("ccbundle/v1/blobs/s1", { onProgress: (n) => readProgress.push(n) }));
      expect(readProgress.at(-1)).toBe(data.length);
    });

    test("an empty object round trips", async () => {
      const store = await open();
      await store.put("ccbundle/v1/blobs/empty-stream", Readable.from([]));
      await store.put("ccbundle/v1/blobs/empty-bytes", new Uint8Array(0));
      expect((await store.getBytes("ccbundle/v1/blobs/empty-stream")).length).toBe(0);
      expect((await store.stat("ccbundle/v1/blobs/empty-bytes"))?.size).toBe(0);
      expect((await readAll(await store.get("ccbundle/v1/blobs/empty-bytes"))).length).toBe(0);
    });

    test("get streams a small object whole, and one of exactly 1 MiB", async () => {
      const store = await open();
      for (const size of [1, 200_000, MIB]) {
        const data = randomBytes(size);
        await store.put(`ccbundle/v1/blobs/sized-${size}`, data);
        expect((await readAll(await store.get(`ccbundle/v1/blobs/sized-${size}`))).equals(data)).toBe(true);
      }
    });

    test("put over an existing key replaces it", async () => {
      const store = await open();
      await store.put("ccbundle/v1/records/k", Buffer.from("first"));
      await store.put("ccbundle/v1/records/k", chunked(Buffer.from("second version")));
      expect(Buffer.from(await store.getBytes("ccbundle/v1/records/k")).toString()).toBe("second version");
    });

    test("list finds exactly the keys under a prefix, across pages", async () => {
      const store = await open();
      const { listCount } = target();
      const wanted = Array.from(
        { length: listCount },
        (_, i) => `ccbundle/v1/snapshots/z/${String(i).padStart(4, "0")}`,
      );
      const puts = [...wanted, "ccbundle/v1/snapshots/y/other", "ccbundle/v1/blobs/b1"];
      for (let i = 0; i < puts.length; i += 8) {
        await Promise.all(puts.slice(i, i + 8).map((key, j) => store.put(key, Buffer.alloc(i + j + 1, 7))));
      }
      const listed = await collect(store.list("ccbundle/v1/snapshots/z/"));
      expect(listed.map((o) => o.key).sort()).toEqual(wanted);
      const sizes = new Map(listed.map((o: ObjectInfo) => [o.key, o.size]));
      expect(sizes.get(wanted[3]!)).toBe(4);
      expect(listed.every((o) => o.modified instanceof Date)).toBe(true);
      expect((await collect(store.list("ccbundle/v1/snapshots/"))).length).toBe(listCount + 1);
      expect((await collect(store.list(""))).length).toBe(listCount + 2);
      // A prefix is a string prefix, not a folder: "…/z/000" matches 0000..0009 only.
      expect((await collect(store.list("ccbundle/v1/snapshots/z/000"))).length).toBe(10);
      expect(await collect(store.list("ccbundle/v1/nothing/"))).toEqual([]);
    });

    test("delete removes, and is idempotent", async () => {
      const store = await open();
      await store.put("ccbundle/v1/blobs/d", Buffer.from("x"));
      await store.delete("ccbundle/v1/blobs/d");
      expect(await store.stat("ccbundle/v1/blobs/d")).toBeUndefined();
      await store.delete("ccbundle/v1/blobs/d");
      await store.delete("ccbundle/v1/blobs/never-existed");
      expect(await collect(store.list("ccbundle/v1/blobs/"))).toEqual([]);
    });

    test("a missing key: get and getBytes throw NotFoundError (exit 4), stat is undefined", async () => {
      const store = await open();
      const get = store.get("ccbundle/v1/blobs/missing");
      await expect(get).rejects.toBeInstanceOf(NotFoundError);
      await expect(get).rejects.toMatchObject({ exitCode: 4 });
      await expect(store.getBytes("ccbundle/v1/blobs/missing")).rejects.toMatchObject({ exitCode: 4 });
      expect(await store.stat("ccbundle/v1/blobs/missing")).toBeUndefined();
    });

    test("a source that fails early leaves no object and nothing listed", async () => {
      const store = await open();
      await expect(store.put("ccbundle/v1/blobs/f1", failingStream(100_000))).rejects.toThrow("source broke mid-way");
      expect(await store.stat("ccbundle/v1/blobs/f1")).toBeUndefined();
      expect(await collect(store.list("ccbundle/v1/"))).toEqual([]);
      await expect(store.get("ccbundle/v1/blobs/f1")).rejects.toBeInstanceOf(NotFoundError);
    });

    test("a source that fails after parts were stored leaves no object and nothing listed", async () => {
      const store = await open();
      const { bigFailureAt } = target();
      await expect(store.put("ccbundle/v1/blobs/f2", failingStream(bigFailureAt))).rejects.toThrow(
        "source broke mid-way",
      );
      expect(await store.stat("ccbundle/v1/blobs/f2")).toBeUndefined();
      expect(await collect(store.list(""))).toEqual([]);
    });

    test("a failed put over an existing key leaves the old object intact", async () => {
      const store = await open();
      const old = randomBytes(50_000);
      await store.put("ccbundle/v1/records/r", old);
      await expect(store.put("ccbundle/v1/records/r", failingStream(target().bigFailureAt))).rejects.toThrow();
      expect(Buffer.from(await store.getBytes("ccbundle/v1/records/r")).equals(old)).toBe(true);
    });

    test("a stream shorter or longer than the announced size is refused and not stored", async () => {
      const store = await open();
      const data = randomBytes(200_000);
      await expect(store.put("ccbundle/v1/blobs/short", chunked(data), { size: data.length + 1 })).rejects.toThrow(
        /expected/,
      );
      await expect(store.put("ccbundle/v1/blobs/long", chunked(data), { size: data.length - 1 })).rejects.toThrow();
      expect(await collect(store.list("ccbundle/v1/blobs/"))).toEqual([]);
    });

    test("a put cancelled through its signal rejects and stores nothing", async () => {
      const store = await open();
      const controller = new AbortController();
      let produced = 0;
      const endless = new Readable({
        read() {
          produced += 256 * 1024;
          if (produced > 2 * MIB) controller.abort();
          this.push(randomBytes(256 * 1024));
        },
      });
      await expect(store.put("ccbundle/v1/blobs/cancelled", endless, { signal: controller.signal })).rejects.toThrow(
        /abort/i,
      );
      expect(await store.stat("ccbundle/v1/blobs/cancelled")).toBeUndefined();
      expect(await collect(store.list(""))).toEqual([]);
    });

    test("keys that could escape the store are refused", async () => {
      const store = await open();
      for (const key of ["../x", "a/../../x", "/abs", "a//b", "a/./b"]) {
        await expect(store.put(key, Buffer.from("x"))).rejects.toThrow(/invalid object key/);
      }
    });
  });
}

const tmpDirs: string[] = [];
afterAll(async () => {
  for (const dir of tmpDirs) await rm(dir, { recursive: true, force: true });
});

storeContract("LocalStore (temp folder)", () => ({
  async open() {
    const dir = await mkdtemp(path.join(os.tmpdir(), "ccb-local-"));
    tmpDirs.push(dir);
    return new LocalStore(dir);
  },
  bigFailureAt: 6 * MIB,
  listCount: 23,
}));

describe("LocalStore", () => {
  test("the first put removes what killed uploads left in .tmp a day ago, and keeps a live one's file", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "ccb-local-"));
    tmpDirs.push(dir);
    await mkdir(path.join(dir, ".tmp"));
    const old = path.join(dir, ".tmp", "killed.partial");
    const live = path.join(dir, ".tmp", "live.partial");
    const other = path.join(dir, ".tmp", "notes.txt");
    for (const file of [old, live, other]) await writeFile(file, "x");
    const dayAndMore = new Date(Date.now() - STALE_PARTIAL_MS - 60_000);
    await utimes(old, dayAndMore, dayAndMore);
    await utimes(other, dayAndMore, dayAndMore);

    await new LocalStore(dir).put("ccbundle/v1/blobs/ab/x", Readable.from([Buffer.from("blob")]));
    expect((await readdir(path.join(dir, ".tmp"))).sort()).toEqual(["live.partial", "notes.txt"]);
  });

  test("a store folder that does not exist: every call says so, with no NotFoundError (that means: no such object)", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "ccb-local-"));
    tmpDirs.push(dir);
    const typo = path.join(dir, "typo");
    const listAll = async (store: LocalStore) => {
      const keys: string[] = [];
      for await (const info of store.list("ccbundle/v1/snapshots/")) keys.push(info.key);
      return keys;
    };
    const calls: Array<(store: LocalStore) => Promise<unknown>> = [
      (store) => store.get("ccbundle/v1/records/x"),
      (store) => store.getBytes("a/b"),
      (store) => store.delete("ccbundle/v1/blobs/x"),
      listAll,
    ];
    for (const call of calls) {
      const err = await call(new LocalStore(typo)).then(
        () => new Error("succeeded"),
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(CcbError);
      expect(err).not.toBeInstanceOf(NotFoundError);
      expect((err as CcbError).message).toBe(`store folder ${typo} does not exist`);
      // "Store unreachable" (1): exit 4 would tell a script there is nothing there.
      expect((err as CcbError).exitCode).toBe(ExitCode.failure);
    }
    await expect(new LocalStore(typo).checkWritable()).rejects.toThrow(`store folder ${typo} does not exist`);
    // There but empty (a mount point with nothing mounted looks so): still a NotFoundError, named.
    for (const call of calls.slice(0, 3)) {
      const err = await call(new LocalStore(dir)).then(
        () => new Error("succeeded"),
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(EmptyStoreError);
      expect(err).toBeInstanceOf(NotFoundError);
      expect((err as CcbError).message).toBe(`store folder ${dir} is empty`);
    }
    expect(await listAll(new LocalStore(dir))).toEqual([]); // a new store: backup lists it first
    // The empty folders of our own making (an upload's .tmp, a doctor probe's) leave it empty.
    await mkdir(path.join(dir, ".tmp"));
    await mkdir(path.join(dir, "ccbundle", "v1", ".doctor"), { recursive: true });
    expect(await new LocalStore(dir).explainEmpty()).toBeInstanceOf(EmptyStoreError);
    // A store with something in it: a missing object is a plain NotFoundError, a delete of one
    // succeeds, and a missing folder inside the store lists as empty, as the contract says.
    await mkdir(path.join(dir, "ccbundle", "v1", "records"));
    expect(await new LocalStore(dir).explainEmpty()).toBeUndefined();
    const present = new LocalStore(dir);
    // One at a time: a second read started at once could fail before anything awaits it.
    for (const read of [() => present.get("ccbundle/v1/records/x"), () => present.getBytes("a/b")]) {
      const err = await read().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(NotFoundError);
      expect(err).not.toBeInstanceOf(EmptyStoreError);
    }
    await expect(present.delete("ccbundle/v1/blobs/x")).resolves.toBeUndefined();
    expect(await listAll(present)).toEqual([]);
  });
});

let s3rver: S3rverHandle;
beforeAll(async () => {
  useS3rverCredentials();
  s3rver = await startS3rver({ buckets: ["ccbundle"] });
});
afterAll(async () => {
  await s3rver?.stop();
});

storeContract("S3Store (s3rver)", () => ({
  async open() {
    // A fresh prefix per test: the bucket is shared, the stores are not.
    return S3Store.fromUrl(s3rver.url("ccbundle", `t-${randomId()}`), {
      partSize: 5 * MIB,
      queueSize: 2,
      listPageSize: 7,
    });
  },
  // Past one 5 MiB part: lib-storage has started a multipart upload when the source fails.
  bigFailureAt: 11 * MIB,
  listCount: 23,
}));
