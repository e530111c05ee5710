import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import net, { type AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { CcbError, IntegrityError, NotFoundError, UsageError } from "../core/errors.js";
import { randomId } from "../core/store-layout.js";
import { describeUrlForDisplay, fetchUrlStream } from "../storage-adapters/http.js";
import { openStore } from "../storage-adapters/index.js";
import { describeCredentialSource, MAX_PRESIGN_SECONDS, parseS3Url, S3Store } from "../storage-adapters/s3.js";
import { type S3rverHandle, startS3rver, useS3rverCredentials } from "./helpers/s3rver.js";

const MIB = 1024 * 1024;

/**
 * `size` bytes made on demand, never held at once: 1 MiB blocks of one random
 * pattern, each stamped with its index so swapped or repeated parts show up in
 * the hash. `hash()` is the sha256 of what was produced.
 */
function generated(size: number) {
  const pattern = randomBytes(MIB);
  const hash = createHash("sha256");
  let offset = 0;
  const stream = new Readable({
    highWaterMark: MIB,
    read() {
      if (offset >= size) {
        this.push(null);
        return;
      }
      const n = Math.min(MIB, size - offset);
      const block = Buffer.from(pattern.subarray(0, n));
      block.writeUInt32BE(offset / MIB, 0);
      hash.update(block);
      offset += n;
      this.push(block);
    },
  });
  return { stream, hash: () => hash.digest("hex"), produced: () => offset };
}

async function sha256Of(stream: Readable): Promise<{ hex: string; size: number }> {
  const hash = createHash("sha256");
  let size = 0;
  for await (const chunk of stream) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { hex: hash.digest("hex"), size };
}

/** Records the commands a store's client sent, and their outcome. */
function spy(store: S3Store): string[] {
  const seen: string[] = [];
  store.client.middlewareStack.add(
    (next, context) => async (args) => {
      try {
        const out = await next(args);
        seen.push(`${context.commandName}`);
        return out;
      } catch (err) {
        seen.push(`${context.commandName}!`);
        throw err;
      }
    },
    { step: "initialize", name: `spy-${randomId()}`, priority: "high" },
  );
  return seen;
}

/** A port on 127.0.0.1 that nothing listens on. */
async function closedPort(): Promise<number> {
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** A loopback HTTP server answering every request with one canned S3 error. */
async function fakeS3(status: number, xml: string, headers: Record<string, string> = {}) {
  const server = http.createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      res.writeHead(status, { "content-type": "application/xml", ...headers });
      res.end(req.method === "HEAD" ? undefined : xml);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

function expectNoSecrets(err: unknown): void {
  const text = `${(err as Error).message} ${(err as CcbError).hint ?? ""}`;
  expect(text).not.toContain("S3RVER");
  expect(text).not.toContain("X-Amz-Signature");
}

/** A child that starts a multipart upload and waits for a signal (helpers/interrupted-upload.mjs). */
const INTERRUPTED_UPLOAD = fileURLToPath(new URL("./helpers/interrupted-upload.mjs", import.meta.url));

let s3rver: S3rverHandle;
const stores: S3Store[] = [];
function open(url: string, options = {}): S3Store {
  const store = S3Store.fromUrl(url, options);
  stores.push(store);
  return store;
}

beforeAll(async () => {
  useS3rverCredentials();
  s3rver = await startS3rver({ buckets: ["ccbundle"] });
});
afterAll(async () => {
  for (const store of stores) await store.close();
  await s3rver?.stop();
});

describe("store URL", () => {
  /** The UsageError parseS3Url refuses `url` with (the test fails if it accepts it). */
  const refused = (url: string): UsageError => {
    try {
      parseS3Url(url);
    } catch (err) {
      expect(err).toBeInstanceOf(UsageError);
      return err as UsageError;
    }
    throw new Error(`accepted ${url}`);
  };

  test("typos get the hint that fixes them: a second ? instead of &, s3:/ for s3://", async () => {
    expect(refused("s3://ccbundle/a?endpoint=http://nas.lan:9000?region=eu-west-1").hint).toContain(
      "join the store URL's parameters with &",
    );
    const typo = await openStore("s3:/ccbundle/alice").catch((e: unknown) => e);
    expect(typo).toBeInstanceOf(UsageError);
    expect((typo as UsageError).hint).toBe("did you mean s3://ccbundle/alice?");
  });

  test("bucket, prefix, endpoint and region; url shows no profile", () => {
    const loc = parseS3Url("s3://ccbundle/alice/x?endpoint=http://nas.lan:9000/&region=eu-west-3&profile=home");
    expect(loc).toEqual({
      bucket: "ccbundle",
      prefix: "alice/x",
      endpoint: "http://nas.lan:9000",
      region: "eu-west-3",
      profile: "home",
    });
    const store = open("s3://ccbundle/alice/x?endpoint=http://nas.lan:9000/&region=eu-west-3&profile=home");
    expect(store.url).toBe("s3://ccbundle/alice/x?endpoint=http://nas.lan:9000&region=eu-west-3");
    expect(open("s3://bkt").url).toBe("s3://bkt");
    expect(open("s3://bkt/p/?region=us-east-1").url).toBe("s3://bkt/p");
  });

  test("a custom endpoint implies path-style unless path_style=false; AWS defaults to virtual-hosted", async () => {
    expect(await open("s3://bkt?endpoint=http://h:9000").client.config.forcePathStyle).toBe(true);
    const vhost = open("s3://bkt?endpoint=https://h&path_style=false");
    expect(vhost.client.config.forcePathStyle).toBe(false);
    expect(vhost.url).toBe("s3://bkt?endpoint=https://h&path_style=false");
    expect(open("s3://bkt").client.config.forcePathStyle).toBe(false);
    expect(await open("s3://bkt").client.config.region()).toBe("us-east-1");
  });

  test("credentials, unknown parameters and bad endpoints are refused without echoing values", () => {
    expect(refused("s3://AKIAEXAMPLE:topsecret@bucket/p").message).not.toContain("topsecret");
    const typo = refused("s3://bkt?secret_key=topsecret");
    expect(typo.message).toContain("secret_key");
    expect(typo.message).not.toContain("topsecret");
    expect(refused("s3://bkt?endpoint=http://k:topsecret@h:9000").message).not.toContain("topsecret");
    refused("s3://bkt?endpoint=ftp://h");
    refused("s3://bkt?path_style=maybe");
    refused("s3:///prefix-only");
    refused("s3://bkt/../x");
  });

  test("what the URL parser would silently drop or change is refused", () => {
    const message = (url: string) => refused(url).message;
    // After "#", the endpoint and profile would be a fragment, and the request would go to AWS.
    expect(message("s3://ccbundle/team#2?endpoint=http://h:9000&profile=nas")).toContain("must not contain #");
    expect(message("s3://ccbundle/alice#old")).toContain("must not contain #");
    expect(parseS3Url("s3://ccbundle/team%232?endpoint=http://h:9000").prefix).toBe("team#2");
    expect(message("s3://nas.lan:9000/p")).toBe("invalid bucket name in store URL s3://nas.lan:9000");
    expect(parseS3Url("s3://Legacy_Bucket/p").bucket).toBe("Legacy_Bucket"); // old AWS names still work
    expect(message("s3://bkt?endpoint=http://a:9000&endpoint=http://b:9000")).toContain('"endpoint" given twice');
    expect(message("s3://bkt?region=")).toContain('"region" is empty');
    expect(message("s3://bkt?endpoint=http://h:9000&profile=")).toContain('"profile" is empty');
  });

  test("the s3:// scheme is case-insensitive, as URL schemes are", async () => {
    const store = await openStore("S3://bkt/p?endpoint=http://h:9000");
    stores.push(store as S3Store);
    expect(store.url).toBe("s3://bkt/p?endpoint=http://h:9000");
  });
});

describe("S3Store against s3rver", () => {
  test("a stream over 64 MiB goes multipart and reads back byte-identical", async () => {
    const store = open(s3rver.url("ccbundle", "big"));
    const seen = spy(store);
    const size = 80 * MIB + 12_345;
    const source = generated(size);
    let lastProgress = 0;
    const result = await store.put("ccbundle/v1/blobs/big", source.stream, {
      size,
      onProgress: (n) => {
        lastProgress = n;
      },
    });
    expect(result.size).toBe(size);
    expect(lastProgress).toBe(size);
    expect(seen.filter((c) => c === "UploadPartCommand").length).toBe(6); // 16 MiB parts
    expect(seen).toContain("CompleteMultipartUploadCommand");
    expect(seen).not.toContain("PutObjectCommand");
    const back = await sha256Of(await store.get("ccbundle/v1/blobs/big"));
    expect(back.size).toBe(size);
    expect(back.hex).toBe(source.hash());
    await store.delete("ccbundle/v1/blobs/big");
  });

  test("a presigned GET needs no AWS credentials, and display strips the signature", async () => {
    const store = open(s3rver.url("ccbundle", "share"));
    const data = randomBytes(3 * MIB + 5);
    await store.put("ccbundle/v1/blobs/shared", data);
    const url = await store.presignGet("ccbundle/v1/blobs/shared", 600);
    expect(url).toContain("X-Amz-Signature=");
    expect(describeUrlForDisplay(url)).toBe(`${s3rver.endpoint}/ccbundle/share/ccbundle/v1/blobs/shared`);

    const saved = { ...process.env };
    for (const name of Object.keys(process.env)) if (name.startsWith("AWS_")) delete process.env[name];
    try {
      let progress = 0;
      const stream = await fetchUrlStream(url, {
        onProgress: (n) => {
          progress = n;
        },
      });
      const chunks: Buffer[] = [];
      for await (const chunk of stream) chunks.push(chunk as Buffer);
      expect(Buffer.concat(chunks).equals(data)).toBe(true);
      expect(progress).toBe(data.length);
    } finally {
      Object.assign(process.env, saved);
    }
  });

  test("presign expiry is clamped to 1 s .. 7 days", async () => {
    const store = open(s3rver.url("ccbundle"));
    const long = new URL(await store.presignGet("ccbundle/v1/blobs/x", 30 * 24 * 3600));
    expect(long.searchParams.get("X-Amz-Expires")).toBe(String(MAX_PRESIGN_SECONDS));
    const short = new URL(await store.presignGet("ccbundle/v1/blobs/x", 0));
    expect(short.searchParams.get("X-Amz-Expires")).toBe("1");
  });

  test("an expired presigned URL gives the expired-link error (s3rver enforces X-Amz-Expires)", async () => {
    const store = open(s3rver.url("ccbundle", "expire"));
    await store.put("ccbundle/v1/blobs/e", Buffer.from("soon gone"));
    const url = await store.presignGet("ccbundle/v1/blobs/e", 1);
    // X-Amz-Date has one-second resolution: 1 s after a truncated start can be < 2 s from now.
    await sleep(2100);
    const err = await fetchUrlStream(url).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IntegrityError);
    expect((err as IntegrityError).exitCode).toBe(5);
    expect((err as IntegrityError).message).toMatch(
      /^the download link in this handoff expired at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/,
    );
    expect((err as IntegrityError).hint).toBe("ask the sender to push again");
    expectNoSecrets(err);
  });

  test("fetchUrlStream: a missing object is NotFoundError, a dead host is a network error without the query", async () => {
    const store = open(s3rver.url("ccbundle", "fetch"));
    const missing = await store.presignGet("ccbundle/v1/blobs/never", 60);
    await expect(fetchUrlStream(missing)).rejects.toBeInstanceOf(NotFoundError);
    const port = await closedPort();
    const err = await fetchUrlStream(`http://127.0.0.1:${port}/b/k?X-Amz-Signature=abc`).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CcbError);
    expect((err as CcbError).message).toBe(
      `cannot reach 127.0.0.1:${port} (ECONNREFUSED) to download http://127.0.0.1:${port}/b/k`,
    );
    expect((err as CcbError).hint).toBeTruthy();
  });

  test("a missing bucket is named, with the endpoint and a hint", async () => {
    const store = open(s3rver.url("no-such-bucket", "p"));
    const err = await store.put("ccbundle/v1/records/r", Buffer.from("x")).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CcbError);
    expect((err as CcbError).message).toBe(`bucket no-such-bucket does not exist at ${s3rver.endpoint}`);
    expect((err as CcbError).hint).toMatch(/mb/);
    expectNoSecrets(err);
    const list = async () => {
      for await (const _ of store.list("")) break;
    };
    await expect(list()).rejects.toThrow(`bucket no-such-bucket does not exist at ${s3rver.endpoint}`);
    // Not exit 4: a wrong bucket is a configuration error, not a missing object.
    await expect(store.get("ccbundle/v1/records/r")).rejects.toMatchObject({ exitCode: 1 });
  });

  test("an unreachable endpoint (closed port on 127.0.0.1) says so", async () => {
    const port = await closedPort();
    const store = open(`s3://ccbundle/p?endpoint=http://127.0.0.1:${port}`);
    const started = Date.now();
    const err = await store.put("ccbundle/v1/records/r", Buffer.from("x")).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CcbError);
    expect((err as CcbError).message).toMatch(
      new RegExp(`^cannot reach http://127\\.0\\.0\\.1:${port} \\(ECONNREFUSED\\)`),
    );
    expect((err as CcbError).hint).toMatch(/endpoint=/);
    expect(Date.now() - started).toBeLessThan(10_000);
    await expect(store.stat("ccbundle/v1/records/r")).rejects.toThrow(/cannot reach/);
  });

  test("missing credentials give a clear error (no AWS chain source configured, no network probe)", async () => {
    const saved = { ...process.env };
    delete process.env.AWS_ACCESS_KEY_ID;
    delete process.env.AWS_SECRET_ACCESS_KEY;
    try {
      const store = open(s3rver.url("ccbundle", "nocreds"));
      const err = await store.put("ccbundle/v1/records/r", Buffer.from("x")).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CcbError);
      expect((err as CcbError).message).toMatch(/^no AWS credentials found for s3:\/\/ccbundle\/nocreds/);
      expect((err as CcbError).hint).toMatch(/AWS_PROFILE/);
      const withProfile = open(`${s3rver.url("ccbundle", "nocreds")}&profile=nas`);
      const err2 = await withProfile.put("ccbundle/v1/records/r", Buffer.from("x")).catch((e: unknown) => e);
      expect((err2 as CcbError).message).toMatch(/\(profile nas\)$/);
      expect((err2 as CcbError).hint).toMatch(/profile nas exists/);
    } finally {
      Object.assign(process.env, saved);
    }
  });

  test("the size the server reports is checked after upload (HeadObject answer altered in the client)", async () => {
    const store = open(s3rver.url("ccbundle", "verify"));
    store.client.middlewareStack.add(
      (next, context) => async (args) => {
        const out = await next(args);
        if (context.commandName === "HeadObjectCommand") {
          const output = out.output as { ContentLength?: number };
          output.ContentLength = (output.ContentLength ?? 0) + 7; // as if aws-chunked framing had been stored
        }
        return out;
      },
      { step: "initialize", name: "inflate-head" },
    );
    const err = await store.put("ccbundle/v1/blobs/v", Buffer.from("payload")).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IntegrityError);
    expect((err as IntegrityError).message).toBe(
      `${store.url} stored 14 bytes for ccbundle/v1/blobs/v, but 7 were sent`,
    );
    store.client.middlewareStack.remove("inflate-head");
    // The untrustworthy object was removed.
    expect(await store.stat("ccbundle/v1/blobs/v")).toBeUndefined();
  });
});

describe("server killed mid-upload", () => {
  let own: S3rverHandle;
  beforeAll(async () => {
    own = await startS3rver({ buckets: ["ccbundle"] });
  });
  afterAll(async () => {
    await own?.stop();
  });

  test("clear error, no visible object after restart on the same data, and a retry succeeds", async () => {
    const store = open(own.url("ccbundle", "killed"), { partSize: 5 * MIB, queueSize: 2 });
    const key = "ccbundle/v1/blobs/interrupted";
    const size = 40 * MIB;
    let killed: Promise<void> | undefined;
    store.client.middlewareStack.add(
      (next, context) => async (args) => {
        const out = await next(args);
        // Once the first part is stored, pull the plug while later parts are in flight.
        if (context.commandName === "UploadPartCommand" && !killed) killed = own.kill();
        return out;
      },
      { step: "initialize", name: "kill-after-first-part" },
    );
    const first = generated(size);
    const started = Date.now();
    const err = await store.put(key, first.stream, { size }).catch((e: unknown) => e);
    await killed;
    expect(killed).toBeDefined();
    expect(err).toBeInstanceOf(CcbError);
    expect((err as CcbError).message).toMatch(
      new RegExp(`^cannot reach http://127\\.0\\.0\\.1:${own.port} \\((ECONNREFUSED|ECONNRESET|EPIPE)\\)`),
    );
    expect((err as CcbError).hint).toMatch(/server is running/);
    // The first failed part stops the upload: the source was not read to the end.
    expect(first.produced()).toBeLessThan(size);
    expect(Date.now() - started).toBeLessThan(20_000);
    store.client.middlewareStack.remove("kill-after-first-part");

    await own.restart();
    expect(await store.stat(key)).toBeUndefined();
    const listed: string[] = [];
    for await (const info of store.list("")) listed.push(info.key);
    expect(listed).toEqual([]);

    const retry = generated(size);
    await store.put(key, retry.stream, { size });
    const back = await sha256Of(await store.get(key));
    expect(back).toEqual({ hex: retry.hash(), size });
  });
});

describe("Ctrl-C during a multipart upload", () => {
  test.each(["SIGINT", "SIGTERM", "SIGHUP"] as const)(
    "%s aborts the upload, then the process dies by that signal",
    async (signal) => {
      const child = spawn(process.execPath, [INTERRUPTED_UPLOAD, s3rver.url("ccbundle", `sig-${signal}`)], {
        env: process.env,
        stdio: ["ignore", "pipe", "pipe"],
      });
      let stderr = "";
      child.stderr.on("data", (chunk) => {
        stderr += chunk;
      });
      const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on("exit", (_code, sig) => resolve(sig)));
      await new Promise<void>((resolve, reject) => {
        child.stdout.on("data", (chunk: Buffer) => {
          if (chunk.toString().includes("part sent")) resolve();
        });
        child.on("exit", () => reject(new Error(`child exited early: ${stderr}`)));
      });
      child.kill(signal);
      expect(await exited).toBe(signal);
      // The abort was sent before the process died (s3rver refuses it with a 405; a real S3 takes it).
      expect(stderr).toMatch(/^AbortMultipartUploadCommand!?$/m);
      expect(stderr).toContain(`put failed: upload interrupted (${signal})`);
      expect(stderr).not.toContain("CompleteMultipartUploadCommand");
    },
  );
});

describe("error mapping (loopback server with canned S3 errors; s3rver checks no auth or region)", () => {
  const servers: { close(): Promise<unknown> }[] = [];
  afterAll(async () => {
    for (const server of servers) await server.close();
  });

  test("AccessDenied (403) on put, get, list and stat names the store and hints at credentials and policy", async () => {
    const fake = await fakeS3(
      403,
      "<?xml version='1.0'?><Error><Code>AccessDenied</Code><Message>Access Denied</Message><RequestId>1</RequestId></Error>",
    );
    servers.push(fake);
    const store = open(`s3://ccbundle/alice?endpoint=${fake.endpoint}`);
    const expected = `access denied to s3://ccbundle/alice?endpoint=${fake.endpoint}`;
    const put = await store.put("ccbundle/v1/blobs/a", Buffer.from("x")).catch((e: unknown) => e);
    expect((put as CcbError).message.startsWith(expected)).toBe(true);
    expect((put as CcbError).hint).toMatch(/AWS_PROFILE.*profile=/);
    expect((put as CcbError).hint).toMatch(/s3:PutObject/);
    expectNoSecrets(put);
    await expect(store.get("ccbundle/v1/blobs/a")).rejects.toThrow(expected);
    await expect(store.stat("ccbundle/v1/blobs/a")).rejects.toThrow(expected); // HEAD: bare 403
    const list = async () => {
      for await (const _ of store.list("")) break;
    };
    await expect(list()).rejects.toThrow(expected);
    await expect(store.put("ccbundle/v1/blobs/big", Readable.from([randomBytes(64)]))).rejects.toThrow(expected);
  });

  test("InvalidAccessKeyId (403) is reported as rejected credentials", async () => {
    const fake = await fakeS3(
      403,
      "<Error><Code>InvalidAccessKeyId</Code><Message>The AWS Access Key Id you provided does not exist in our records.</Message><AWSAccessKeyId>S3RVER</AWSAccessKeyId></Error>",
    );
    servers.push(fake);
    const store = open(`s3://ccbundle?endpoint=${fake.endpoint}`);
    const err = await store.getBytes("ccbundle/v1/records/r").catch((e: unknown) => e);
    expect((err as CcbError).message).toBe(
      `${fake.endpoint} rejected the credentials used for ${store.url} (InvalidAccessKeyId)`,
    );
    // The hint names where those keys came from (useS3rverCredentials puts them in the environment).
    expect((err as CcbError).hint).toMatch(/^they came from AWS_ACCESS_KEY_ID in the environment: check them there/);
    expectNoSecrets(err);
  });

  test("credentialSource names the provider of the AWS chain that answered, never a key", async () => {
    const store = open(s3rver.url("ccbundle", "who"));
    expect(await store.credentialSource()).toBe("AWS_ACCESS_KEY_ID in the environment");
    const saved = { ...process.env };
    const dir = mkdtempSync(path.join(os.tmpdir(), "ccb-aws-"));
    try {
      delete process.env.AWS_ACCESS_KEY_ID;
      delete process.env.AWS_SECRET_ACCESS_KEY;
      process.env.AWS_SHARED_CREDENTIALS_FILE = path.join(dir, "credentials");
      writeFileSync(
        process.env.AWS_SHARED_CREDENTIALS_FILE,
        "[nas]\naws_access_key_id = S3RVER\naws_secret_access_key = S3RVER\n",
      );
      const viaProfile = open(`${s3rver.url("ccbundle", "who")}&profile=nas`);
      await viaProfile.put("ccbundle/v1/records/who", Buffer.from("x"));
      expect(await viaProfile.credentialSource()).toBe("profile nas (~/.aws/credentials or ~/.aws/config)");
      // No provider found any: nothing to name (the store's own error says "no AWS credentials found").
      const none = open(`${s3rver.url("ccbundle", "who")}&profile=missing`);
      expect(await none.credentialSource()).toBeUndefined();
    } finally {
      for (const name of Object.keys(process.env)) if (!(name in saved)) delete process.env[name];
      Object.assign(process.env, saved);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("describeCredentialSource words the SDK's record of the provider, most specific first", () => {
    expect(describeCredentialSource(undefined, "default")).toBeUndefined();
    expect(describeCredentialSource({}, "default")).toBeUndefined();
    expect(describeCredentialSource({ CREDENTIALS_ENV_VARS: "g" }, "default")).toBe(
      "AWS_ACCESS_KEY_ID in the environment",
    );
    expect(describeCredentialSource({ CREDENTIALS_PROFILE: "n" }, "nas")).toBe(
      "profile nas (~/.aws/credentials or ~/.aws/config)",
    );
    expect(describeCredentialSource({ CREDENTIALS_PROFILE_SSO: "r", CREDENTIALS_SSO: "s" }, "work")).toBe(
      "the SSO session of profile work",
    );
    expect(
      describeCredentialSource({ CREDENTIALS_PROFILE_SOURCE_PROFILE: "o", CREDENTIALS_PROFILE: "n" }, "admin"),
    ).toBe("profile admin (a role assumed through its source_profile)");
    expect(describeCredentialSource({ CREDENTIALS_HTTP: "z" }, "default")).toBe(
      "the container's credentials endpoint (ECS, EKS)",
    );
  });

  test("wrong region: AuthorizationHeaderMalformed (400) and PermanentRedirect (301) name the bucket's region", async () => {
    const malformed = await fakeS3(
      400,
      "<Error><Code>AuthorizationHeaderMalformed</Code><Message>The authorization header is malformed; the region 'us-east-1' is wrong; expecting 'eu-west-1'</Message><Region>eu-west-1</Region></Error>",
    );
    const redirect = await fakeS3(
      301,
      "<Error><Code>PermanentRedirect</Code><Message>The bucket you are attempting to access must be addressed using the specified endpoint.</Message><Endpoint>ccbundle.s3.eu-west-1.amazonaws.com</Endpoint><Bucket>ccbundle</Bucket></Error>",
      { "x-amz-bucket-region": "eu-west-1" },
    );
    servers.push(malformed, redirect);
    for (const fake of [malformed, redirect]) {
      const store = open(`s3://ccbundle?endpoint=${fake.endpoint}`);
      const err = await store.put("ccbundle/v1/records/r", Buffer.from("x")).catch((e: unknown) => e);
      expect((err as CcbError).message).toBe("bucket ccbundle is in region eu-west-1, not us-east-1");
      expect((err as CcbError).hint).toBe("add region=eu-west-1 to the store URL");
    }
    // HEAD has no body: the region comes from the x-amz-bucket-region header alone.
    const store = open(`s3://ccbundle?endpoint=${redirect.endpoint}`);
    await expect(store.stat("ccbundle/v1/records/r")).rejects.toThrow("bucket ccbundle is in region eu-west-1");
  });

  test("a reverse proxy's size limit (HTTP 413 with an HTML page) is named, not taken for a console port", async () => {
    const fake = await fakeS3(413, "<html><body><h1>413 Request Entity Too Large</h1><hr>nginx</body></html>", {
      "content-type": "text/html",
    });
    servers.push(fake);
    const store = open(`s3://ccbundle/alice?endpoint=${fake.endpoint}`);
    const err = (await store
      .put("ccbundle/v1/blobs/b", randomBytes(2 * 1024 * 1024))
      .catch((e: unknown) => e)) as CcbError;
    expect(err.message).toBe(
      `${fake.endpoint} refused the upload request as too large (HTTP 413): a reverse proxy in front of the S3 server limits request size`,
    );
    expect(err.hint).toContain("client_max_body_size 0");
  });

  test("a full MinIO (507) passes on its own words and says to free space", async () => {
    const fake = await fakeS3(
      507,
      "<Error><Code>XMinioStorageFull</Code><Message>Storage backend has reached its minimum free drive threshold. Please delete a few objects to proceed.</Message></Error>",
    );
    servers.push(fake);
    const store = open(`s3://ccbundle/alice?endpoint=${fake.endpoint}`);
    const err = (await store.put("ccbundle/v1/records/r", Buffer.from("x")).catch((e: unknown) => e)) as CcbError;
    expect(err.message).toBe(
      `${fake.endpoint} failed the upload of ccbundle/v1/records/r (XMinioStorageFull, HTTP 507): Storage backend has reached its minimum free drive threshold. Please delete a few objects to proceed.`,
    );
    expect(err.hint).toContain("out of space");
  });

  test("a server that accepts and never answers fails after two attempts, not minutes", async () => {
    const sockets: net.Socket[] = [];
    const silent = net.createServer((socket) => {
      sockets.push(socket);
      socket.on("error", () => {});
    });
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    servers.push({
      close: () => {
        for (const socket of sockets) socket.destroy();
        return new Promise((resolve) => silent.close(resolve));
      },
    });
    const endpoint = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`;
    const store = open(`s3://ccbundle/alice?endpoint=${endpoint}`, { socketTimeoutMs: 300 });
    const started = performance.now();
    const err = (await store.getBytes("ccbundle/v1/records/r").catch((e: unknown) => e)) as CcbError;
    expect(err.message).toMatch(
      new RegExp(`^cannot reach ${endpoint.replace(/\./g, "\\.")} \\((TimeoutError|ECONNRESET|RequestTimeout)\\)`),
    );
    expect(sockets).toHaveLength(2);
    expect(performance.now() - started).toBeLessThan(10_000);
  });

  test("an endpoint that is not an S3 API (a web page: MinIO's console port) says so", async () => {
    const page =
      "<!doctype html><html><head><meta charset=utf-8><title>MinIO Console</title></head><body></body></html>";
    const fake = await fakeS3(200, page, { "content-type": "text/html" });
    servers.push(fake);
    const store = open(`s3://ccbundle/alice?endpoint=${fake.endpoint}`);
    const list = async () => {
      for await (const _ of store.list("ccbundle/v1/snapshots/")) break;
    };
    const err = (await list().catch((e: unknown) => e)) as CcbError;
    expect(err.message).toBe(`${fake.endpoint} did not answer as an S3 API (list of ccbundle/v1/snapshots/)`);
    expect(err.hint).toContain("API port (9000 by default)");
  });

  test("https:// to a plain-HTTP server, and path_style=false with a bucket host that does not resolve, get their own hints", async () => {
    const fake = await fakeS3(200, "<ListBucketResult/>");
    servers.push(fake);
    const tls = open(`s3://ccbundle?endpoint=${fake.endpoint.replace("http:", "https:")}`);
    const err = (await tls.getBytes("ccbundle/v1/records/r").catch((e: unknown) => e)) as CcbError;
    expect(err.message).toMatch(/^cannot reach https:\/\/127\.0\.0\.1:\d+ \(EPROTO\)/);
    expect(err.hint).toContain("use endpoint=http://");
    // No lookup is made here (tests stay on loopback): the mapping of the resolver's answer is what is checked.
    const vhost = open("s3://ccbundle?endpoint=http://nas.lan:9000&path_style=false");
    const notFound = Object.assign(new Error("getaddrinfo ENOTFOUND ccbundle.nas.lan"), { code: "ENOTFOUND" });
    const mapped = (vhost as unknown as { mapError(e: unknown, op: string, key: string): CcbError }).mapError(
      notFound,
      "get",
      "k",
    );
    expect(mapped.hint).toContain("(ccbundle.nas.lan:9000), which must resolve");
  });

  test("an S3 error page for a presigned GET: other 403s are authentication failures (exit 5)", async () => {
    const fake = await fakeS3(
      403,
      "<Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match</Message></Error>",
    );
    servers.push(fake);
    const err = await fetchUrlStream(`${fake.endpoint}/b/k?X-Amz-Signature=deadbeef`).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IntegrityError);
    expect((err as IntegrityError).message).toBe(
      `the store refused the download link for ${fake.endpoint}/b/k (SignatureDoesNotMatch)`,
    );
  });
});
