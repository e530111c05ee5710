import { Readable, Transform } from "node:stream";
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  type ListObjectsV2CommandOutput,
  PutObjectCommand,
  S3Client,
} from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { getSignedUrl } from "@aws-sdk/s3-request-presigner";
import { CcbError, errnoCode, IntegrityError, NotFoundError, UsageError } from "../core/errors.js";
import type { BlobStore, GetOptions, ObjectInfo, PutOptions, PutResult } from "./blob-store.js";
import { countedDownload } from "./download.js";
import { interruptible } from "./s3-interrupt.js";

/** SigV4 presigned URLs are valid for at most 7 days; S3 and MinIO reject longer ones. */
export const MAX_PRESIGN_SECONDS = 7 * 24 * 3600;

const DEFAULT_REGION = "us-east-1";
const MIB = 1024 * 1024;
/** S3 allows at most 10,000 parts per multipart upload. */
const MAX_PARTS = 10_000;
/** S3's smallest non-final part. */
const MIN_PART_SIZE = 5 * MIB;

/** Where an S3 store lives. Holds no credentials: those come from the AWS chain at request time. */
export interface S3Location {
  bucket: string;
  /** Key prefix without leading or trailing slash; "" for the bucket root. */
  prefix: string;
  /** Custom endpoint (MinIO, R2, B2, s3rver); undefined for AWS S3. */
  endpoint?: string;
  region: string;
  /** Path-style requests (`endpoint/bucket/key`); undefined picks: true with a custom endpoint, false on AWS. */
  pathStyle?: boolean;
  /** Profile in ~/.aws/config and ~/.aws/credentials; undefined uses AWS_PROFILE or `default`. */
  profile?: string;
}

/** Tuning; the defaults suit bundles of a few MB to a few GB on a home uplink. */
export interface S3StoreOptions {
  /** Multipart part size (>= 5 MiB). 16 MiB: few requests, and queueSize x partSize of memory at most. */
  partSize?: number;
  /** Parts in flight at once. */
  queueSize?: number;
  /** ListObjectsV2 page size (S3 caps it at 1000); small values let tests exercise paging. */
  listPageSize?: number;
  /** How long a socket may carry no bytes either way before the request fails (tests shorten it). */
  socketTimeoutMs?: number;
}

/** One in-flight `put`, so failures seen by client middleware can reach it (see `installUploadHooks`). */
interface PutInFlight {
  /** Stop feeding the upload: the first failed part ends it instead of every later part failing too. */
  fail(err: unknown): void;
  /** Set when AbortMultipartUpload itself failed; the first error is still the one reported. */
  abortError?: unknown;
}

/**
 * A store in an S3 bucket: AWS S3, MinIO, Cloudflare R2, Backblaze B2, s3rver.
 *
 * URL: `s3://bucket/prefix?endpoint=http://host:9000&region=us-east-1&path_style=true&profile=NAME`.
 * Credentials come only from the standard AWS chain (environment, ~/.aws files,
 * SSO, instance roles), optionally narrowed with `profile=`; ccbundle never
 * stores them and `url` never shows them.
 *
 * Write ordering: a stream goes up as a multipart upload (or one PutObject when
 * it fits in one part), and S3 makes the object visible only when
 * CompleteMultipartUpload succeeds, after the last byte. A failed or killed
 * upload leaves at most invisible parts, which we abort; if the abort cannot
 * be sent, the server's own cleanup removes them (an AbortIncompleteMultipartUpload
 * lifecycle rule on AWS, the stale-upload sweep on MinIO).
 */
export class S3Store implements BlobStore {
  readonly url: string;
  readonly client: S3Client;
  readonly bucket: string;
  readonly prefix: string;
  readonly endpoint: string | undefined;
  readonly region: string;
  /** Local AWS profile name; used for credentials and hints, never shown in `url`. */
  private readonly profile: string | undefined;
  /** Buckets addressed as `endpoint/bucket` (true) or as the host name `bucket.endpoint` (false). */
  private readonly pathStyle: boolean;
  private readonly partSize: number;
  private readonly queueSize: number;
  private readonly listPageSize: number;
  private readonly inFlight = new Map<string, Set<PutInFlight>>();
  /** Set once the AWS chain's answer has been looked at (credentialSource): errors about the credentials name it. */
  #credentialSource: string | undefined;

  constructor(location: S3Location, options: S3StoreOptions = {}) {
    this.bucket = location.bucket;
    this.prefix = location.prefix.replace(/^\/+|\/+$/g, "");
    this.endpoint = location.endpoint;
    this.region = location.region;
    this.profile = location.profile;
    this.partSize = Math.max(MIN_PART_SIZE, options.partSize ?? 16 * MIB);
    this.queueSize = Math.max(1, options.queueSize ?? 4);
    this.listPageSize = Math.min(1000, Math.max(1, options.listPageSize ?? 1000));
    const pathStyle = location.pathStyle ?? location.endpoint !== undefined;
    this.pathStyle = pathStyle;
    this.url = displayUrl(location);
    this.client = new S3Client({
      region: location.region,
      ...(location.endpoint ? { endpoint: location.endpoint } : {}),
      forcePathStyle: pathStyle,
      ...(location.profile ? { profile: location.profile } : {}),
      // Without these the SDK adds CRC32 checksums and, for streamed bodies, the
      // aws-chunked framing; MinIO/R2/B2 setups and s3rver then store the framing as
      // content. The bundle carries its own sha256 in the record, so nothing is lost.
      requestChecksumCalculation: "WHEN_REQUIRED",
      responseChecksumValidation: "WHEN_REQUIRED",
      // Fail fast on a dead endpoint; a stalled socket (no bytes either way for 30 s) is an error, a
      // slow one is not. With the SDK's 3 attempts and 2 min, a server that accepted and never
      // answered held `doctor` 6 minutes and a backup (and its lock) 19; now at most ~1 min a request.
      requestHandler: { connectionTimeout: 10_000, socketTimeout: options.socketTimeoutMs ?? 30_000 },
      maxAttempts: 2,
      // The store URL is the whole address: it goes into handoff records and backup slots that
      // other machines read, so an AWS_ENDPOINT_URL(_S3) or endpoint_url of this machine's AWS
      // config must not quietly send it elsewhere (errors say so when one is set: endpointNote).
      ignoreConfiguredEndpointUrls: true,
      logger: new QuietLogger(),
    });
    this.installUploadHooks();
    this.installCredentialNote();
  }

  /**
   * Where the AWS chain found the credentials this store signs with, by the SDK's own record of
   * it (`$source`, the features it reports in its user agent). The chain runs once per client:
   * this resolves the same credentials a request would.
   */
  async credentialSource(): Promise<string | undefined> {
    try {
      const credentials = await this.client.config.credentials();
      this.#credentialSource = describeCredentialSource(
        (credentials as { $source?: Record<string, unknown> }).$source,
        this.profile || process.env.AWS_PROFILE || "default",
      );
    } catch {
      return undefined;
    }
    return this.#credentialSource;
  }

  /** When the server rejects the credentials, find out where they came from before the error is worded. */
  private installCredentialNote(): void {
    this.client.middlewareStack.add(
      (next) => async (args) => {
        try {
          return await next(args);
        } catch (err) {
          const code = errorCode(err);
          if (code !== undefined && CREDENTIAL_CODES.has(code)) await this.credentialSource();
          throw err;
        }
      },
      { step: "initialize", name: "ccbundleCredentialNote" },
    );
  }

  /** Parse an `s3://` store URL (see DESIGN.md "Store URLs"). */
  static fromUrl(url: string, options: S3StoreOptions = {}): S3Store {
    return new S3Store(parseS3Url(url), options);
  }

  /** The object key in the bucket for a store-relative key. */
  private objectKey(key: string): string {
    if (!key || key.startsWith("/") || key.split("/").some((part) => part === "" || part === "." || part === "..")) {
      throw new CcbError(`invalid object key: ${key}`);
    }
    return this.prefix ? `${this.prefix}/${key}` : key;
  }

  /**
   * For errors of a store URL without endpoint= on a machine whose AWS settings name one
   * (ignored: see ignoreConfiguredEndpointUrls): the likely cause, in the hint.
   */
  private endpointNote(): string {
    if (this.endpoint) return "";
    const configured = ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"].find((name) => process.env[name]);
    return configured
      ? `; ${configured} is set, but ccbundle takes the endpoint only from the store URL (other machines read it): add ?endpoint=${process.env[configured]}`
      : "";
  }

  private unreachableHint(net: string | undefined): string {
    if (!this.endpoint) return "check the network connection and any proxy";
    if (net === "ENOTFOUND" && !this.pathStyle) {
      return `with path_style=false the bucket is part of the host name (${this.bucket}.${new URL(this.endpoint).host}), which must resolve (MINIO_DOMAIN on MinIO); or drop path_style=false`;
    }
    if (net === "EPROTO" && this.endpoint.startsWith("https:")) {
      return "the server did not speak TLS: if it serves plain HTTP, use endpoint=http://…";
    }
    return "check endpoint= in the store URL, that the server is running, and the network (VPN, firewall)";
  }

  private get endpointLabel(): string {
    return this.endpoint ?? `AWS S3 (${this.region})`;
  }

  async put(key: string, body: Readable | Uint8Array, options: PutOptions = {}): Promise<PutResult> {
    const Key = this.objectKey(key);
    options.signal?.throwIfAborted();
    if (body instanceof Uint8Array && body.byteLength <= this.partSize) {
      return this.putSmall(key, Key, body, options);
    }
    const source =
      body instanceof Uint8Array ? Readable.from([Buffer.from(body.buffer, body.byteOffset, body.byteLength)]) : body;
    const expected = options.size;
    let sent = 0;
    // Counts and checks the bytes on their way to lib-storage. It is also the
    // PassThrough lib-storage needs around some sources (ranged file streams),
    // and destroying it is how we stop an upload early.
    const feed = new Transform({
      highWaterMark: 1 * MIB,
      transform(chunk: Buffer, _encoding, done) {
        sent += chunk.length;
        if (expected !== undefined && sent > expected) {
          done(new CcbError(`upload of ${key} produced more than the ${expected} bytes announced`));
          return;
        }
        done(null, chunk);
      },
      flush(done) {
        // Failing here, before the last part is handed over, means CompleteMultipartUpload
        // is never sent: a short stream cannot become a visible object.
        if (expected !== undefined && sent !== expected) {
          done(new CcbError(`upload of ${key} produced ${sent} bytes, expected ${expected}`));
          return;
        }
        done();
      },
    });
    let sourceError: unknown;
    source.once("error", (err) => {
      sourceError ??= err;
    });
    source.on("error", (err) => feed.destroy(err));
    feed.once("close", () => {
      if (!source.readableEnded) source.destroy();
    });
    source.pipe(feed);

    const partSize = Math.max(this.partSize, expected ? Math.ceil(expected / MAX_PARTS) : 0);
    const entry: PutInFlight = { fail: (err) => feed.destroy(asError(err)) };
    this.track(Key, entry, true);
    let settle = () => {};
    interruptible({ fail: entry.fail, settled: new Promise<void>((resolve) => (settle = resolve)) });
    const onAbort = () => feed.destroy(asError(options.signal?.reason));
    options.signal?.addEventListener("abort", onAbort, { once: true });
    try {
      const upload = new Upload({
        client: this.client,
        params: { Bucket: this.bucket, Key, Body: feed },
        partSize,
        queueSize: this.queueSize,
        leavePartsOnError: false,
      });
      if (options.onProgress) {
        const report = options.onProgress;
        // Bytes the server has confirmed, part by part (not bytes read from the source,
        // which run up to queueSize parts ahead).
        upload.on("httpUploadProgress", (progress) => {
          if (progress.loaded !== undefined) report(progress.loaded);
        });
      }
      await upload.done();
    } catch (err) {
      if (options.signal?.aborted) throw options.signal.reason;
      if (err === sourceError) throw err;
      throw this.withAbortNote(this.mapError(err, "upload", key), entry);
    } finally {
      options.signal?.removeEventListener("abort", onAbort);
      this.track(Key, entry, false);
      if (!feed.destroyed) feed.destroy();
      settle();
    }
    await this.verifyStored(key, Key, sent, options.signal);
    return { size: sent };
  }

  /** One PutObject for a small in-memory body (records, manifests, doctor probes). */
  private async putSmall(key: string, Key: string, body: Uint8Array, options: PutOptions): Promise<PutResult> {
    if (options.size !== undefined && options.size !== body.byteLength) {
      throw new CcbError(`upload of ${key} has ${body.byteLength} bytes, expected ${options.size}`);
    }
    try {
      await this.client.send(
        new PutObjectCommand({ Bucket: this.bucket, Key, Body: body, ContentLength: body.byteLength }),
        options.signal ? { abortSignal: options.signal } : {},
      );
    } catch (err) {
      if (options.signal?.aborted) throw options.signal.reason;
      throw this.mapError(err, "upload", key);
    }
    options.onProgress?.(body.byteLength);
    await this.verifyStored(key, Key, body.byteLength, options.signal);
    return { size: body.byteLength };
  }

  /**
   * Read back what the server says it stored. A size that differs from the bytes
   * sent means the server kept something else (typically aws-chunked framing);
   * such an object must not stay under the key where a reader would trust it.
   */
  private async verifyStored(key: string, Key: string, sent: number, signal: AbortSignal | undefined): Promise<void> {
    let head: { ContentLength?: number; ETag?: string };
    try {
      head = await this.client.send(
        new HeadObjectCommand({ Bucket: this.bucket, Key }),
        signal ? { abortSignal: signal } : {},
      );
    } catch (err) {
      throw this.mapError(err, "check of the upload", key);
    }
    if (head.ContentLength === sent && head.ETag) return;
    await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key })).catch(() => undefined);
    throw new IntegrityError(
      head.ETag
        ? `${this.url} stored ${head.ContentLength ?? "?"} bytes for ${key}, but ${sent} were sent`
        : `${this.url} did not return an ETag for ${key}`,
      {
        hint: "the server alters uploads (aws-chunked framing?); use an S3-compatible server that stores bytes as sent",
      },
    );
  }

  async get(key: string, options: GetOptions = {}): Promise<Readable> {
    const Key = this.objectKey(key);
    let body: Readable;
    let expected: number | undefined;
    try {
      const res = await this.client.send(
        new GetObjectCommand({ Bucket: this.bucket, Key }),
        options.signal ? { abortSignal: options.signal } : {},
      );
      body = res.Body as Readable;
      expected = res.ContentLength;
    } catch (err) {
      if (options.signal?.aborted) throw options.signal.reason;
      throw this.mapError(err, "download", key);
    }
    const out = countedDownload(expected, options.onProgress, `download of ${key} from ${this.url}`);
    body.on("error", (err) => out.destroy(this.mapError(err, "download", key)));
    out.once("close", () => {
      if (!body.readableEnded) body.destroy();
    });
    if (options.signal) {
      const signal = options.signal;
      const onAbort = () => out.destroy(asError(signal.reason));
      signal.addEventListener("abort", onAbort, { once: true });
      out.once("close", () => signal.removeEventListener("abort", onAbort));
    }
    body.pipe(out);
    return out;
  }

  async getBytes(key: string): Promise<Uint8Array> {
    const chunks: Buffer[] = [];
    for await (const chunk of await this.get(key)) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
  }

  async stat(key: string): Promise<ObjectInfo | undefined> {
    const Key = this.objectKey(key);
    try {
      const head = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key }));
      return { key, size: head.ContentLength ?? 0, modified: head.LastModified ?? new Date(0) };
    } catch (err) {
      // HEAD responses have no body, so a missing bucket is also a bare 404 here;
      // the next put or list names it.
      if (httpStatus(err) === 404) return undefined;
      throw this.mapError(err, "stat", key);
    }
  }

  async delete(key: string): Promise<void> {
    const Key = this.objectKey(key);
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key }));
    } catch (err) {
      // S3 answers 204 for a missing key; some compatible servers answer NoSuchKey.
      if (errorCode(err) === "NoSuchKey") return;
      throw this.mapError(err, "delete", key);
    }
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    if (prefix.startsWith("/")) throw new CcbError(`invalid list prefix: ${prefix}`);
    const base = this.prefix ? `${this.prefix}/` : "";
    let token: string | undefined;
    do {
      let page: ListObjectsV2CommandOutput;
      try {
        page = await this.client.send(
          new ListObjectsV2Command({
            Bucket: this.bucket,
            Prefix: base + prefix,
            MaxKeys: this.listPageSize,
            ...(token ? { ContinuationToken: token } : {}),
          }),
        );
      } catch (err) {
        throw this.mapError(err, "list", prefix || "/");
      }
      for (const object of page.Contents ?? []) {
        // Keys ending in "/" are folder markers some consoles create, not objects of ours.
        if (!object.Key?.startsWith(base) || object.Key.endsWith("/")) continue;
        yield {
          key: object.Key.slice(base.length),
          size: object.Size ?? 0,
          modified: object.LastModified ?? new Date(0),
        };
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  /**
   * A GET URL that needs no credentials, valid for `expiresInSeconds`, clamped to
   * 1 s .. 7 days (the SigV4 maximum). With temporary credentials (SSO, STS, instance
   * roles) the URL stops working when those credentials expire, which may be sooner.
   */
  async presignGet(key: string, expiresInSeconds: number): Promise<string> {
    const Key = this.objectKey(key);
    const expiresIn = Math.min(MAX_PRESIGN_SECONDS, Math.max(1, Math.floor(expiresInSeconds)));
    try {
      return await getSignedUrl(this.client, new GetObjectCommand({ Bucket: this.bucket, Key }), { expiresIn });
    } catch (err) {
      throw this.mapError(err, "presign", key);
    }
  }

  async close(): Promise<void> {
    this.client.destroy();
  }

  private track(Key: string, entry: PutInFlight, add: boolean): void {
    let set = this.inFlight.get(Key);
    if (add) {
      if (!set) {
        set = new Set();
        this.inFlight.set(Key, set);
      }
      set.add(entry);
    } else if (set) {
      set.delete(entry);
      if (set.size === 0) this.inFlight.delete(Key);
    }
  }

  /**
   * Two hooks lib-storage does not offer, as client middleware (outside the
   * SDK's retries, so they see only final outcomes):
   * - a part that failed for good stops the upload at once; otherwise
   *   lib-storage keeps reading the source and failing every later part;
   * - a failed AbortMultipartUpload does not replace the error that caused it
   *   (s3rver answers 405 to every abort; a dead server cannot be told either).
   */
  private installUploadHooks(): void {
    this.client.middlewareStack.add(
      (next, context) => async (args) => {
        const command = context.commandName;
        if (command !== "UploadPartCommand" && command !== "AbortMultipartUploadCommand") return next(args);
        const Key = (args.input as { Key?: string }).Key ?? "";
        try {
          return await next(args);
        } catch (err) {
          const puts = this.inFlight.get(Key);
          if (command === "UploadPartCommand" || !puts) {
            for (const put of puts ?? []) put.fail(err);
            throw err;
          }
          puts.forEach((put) => {
            put.abortError = err;
          });
          return { output: { $metadata: {} }, response: {} } as Awaited<ReturnType<typeof next>>;
        }
      },
      { step: "initialize", name: "ccbundleUploadHooks" },
    );
  }

  /** Add a note when the multipart upload could not be aborted for a reason other than s3rver's 405. */
  private withAbortNote(err: CcbError, entry: PutInFlight): CcbError {
    const code = entry.abortError === undefined ? undefined : errorCode(entry.abortError);
    if (code === undefined || code === "MethodNotAllowed" || code === "NotImplemented") return err;
    if (err.constructor !== CcbError) return err;
    const note =
      "unfinished upload parts stay in the bucket until the server's cleanup removes them (an AbortIncompleteMultipartUpload lifecycle rule on AWS; on MinIO its stale-upload sweep, MINIO_API_STALE_UPLOADS_EXPIRY)";
    return new CcbError(err.message, err.exitCode, {
      hint: err.hint ? `${err.hint}; ${note}` : note,
      cause: err.cause,
    });
  }

  /**
   * The one place SDK and network errors become user-facing ones. Messages name
   * the store (bucket, prefix, endpoint) and never credentials or signatures.
   */
  private mapError(err: unknown, op: string, key: string): CcbError {
    if (err instanceof CcbError) return err;
    const code = errorCode(err);
    const status = httpStatus(err);
    const where = this.url;
    const message = err instanceof Error ? err.message : String(err);

    if (code === "AbortError") {
      return new CcbError(`${op} of ${key} on ${where} was cancelled`, 1, { cause: err });
    }
    if (code === "CredentialsProviderError" || /could not load credentials/i.test(message)) {
      // The profile the chain looked for: the URL's, else AWS_PROFILE (a typo there is the usual cause).
      const profile = this.profile ?? process.env.AWS_PROFILE;
      return new CcbError(`no AWS credentials found for ${where}${profile ? ` (profile ${profile})` : ""}`, 1, {
        hint: profile
          ? `check that profile ${profile} exists in ~/.aws/credentials or ~/.aws/config and has keys (or run aws sso login --profile ${profile})`
          : "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, set AWS_PROFILE, or add profile=NAME to the store URL (ccbundle never stores S3 credentials)",
        cause: err,
      });
    }
    const net = errnoCode(err) ?? errnoCode((err as { cause?: unknown })?.cause);
    if (
      (net && NETWORK_CODES.has(net)) ||
      code === "TimeoutError" ||
      code === "RequestTimeout" ||
      /socket hang up/i.test(message)
    ) {
      return new CcbError(`cannot reach ${this.endpointLabel} (${net ?? code}) for ${op} of ${key}`, 1, {
        hint: `${this.unreachableHint(net)}${this.endpointNote()}`,
        cause: err,
      });
    }
    if (status === 413) {
      // nginx's default client_max_body_size is 1 MB; an upload part is up to partSize.
      return new CcbError(
        `${this.endpointLabel} refused the ${op} request as too large (HTTP 413): a reverse proxy in front of the S3 server limits request size`,
        1,
        {
          hint: `allow requests of ${Math.ceil(this.partSize / MIB) + 1} MB or more (nginx: client_max_body_size 0; Caddy: request_body max_size), or point endpoint= at the server itself`,
          cause: err,
        },
      );
    }
    if (code === "NoSuchBucket") {
      return new CcbError(`bucket ${this.bucket} does not exist at ${this.endpointLabel}`, 1, {
        hint: `create it (aws s3 mb s3://${this.bucket}, or mc mb ALIAS/${this.bucket}) or fix the bucket in the store URL${this.endpointNote()}`,
        cause: err,
      });
    }
    const otherRegion = bucketRegion(err);
    // PermanentRedirect / 301 (AWS), AuthorizationHeaderMalformed (AWS, MinIO) and
    // IllegalLocationConstraintException all carry the bucket's region somewhere.
    if (otherRegion !== undefined && otherRegion !== this.region) {
      return new CcbError(`bucket ${this.bucket} is in region ${otherRegion}, not ${this.region}`, 1, {
        hint: `add region=${otherRegion} to the store URL`,
        cause: err,
      });
    }
    if (code === "PermanentRedirect" || status === 301) {
      return new CcbError(`bucket ${this.bucket} is not served by ${this.endpointLabel} in region ${this.region}`, 1, {
        hint: "set region= (and endpoint= for non-AWS servers) in the store URL to where the bucket lives",
        cause: err,
      });
    }
    if (code === "NoSuchKey" || (status === 404 && code === "NotFound")) {
      return new NotFoundError(`no object ${key} in store ${where}`, { cause: err });
    }
    if (code !== undefined && CREDENTIAL_CODES.has(code)) {
      return new CcbError(`${this.endpointLabel} rejected the credentials used for ${where} (${code})`, 1, {
        hint:
          code === "ExpiredToken" || code === "TokenRefreshRequired"
            ? "refresh the session (aws sso login, or new STS credentials)"
            : this.#credentialSource
              ? `they came from ${this.#credentialSource}: check them there, or pick others (AWS_PROFILE, profile= in the store URL)${this.endpointNote()}`
              : `check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the profile the AWS chain picks (AWS_PROFILE, profile= in the store URL)${this.endpointNote()}`,
        cause: err,
      });
    }
    if (code === "AccessDenied" || code === "AllAccessDisabled" || status === 403) {
      return new CcbError(`access denied to ${where} (${op} of ${key})`, 1, {
        hint:
          "check which credentials the AWS chain picks (AWS_PROFILE, or profile=NAME in the store URL) and that " +
          "the user or bucket policy allows s3:GetObject, s3:PutObject, s3:DeleteObject and s3:ListBucket on this prefix",
        cause: err,
      });
    }
    if (code === "RequestTimeTooSkewed") {
      return new CcbError(`${this.endpointLabel} rejected the request: this machine's clock is off`, 1, {
        hint: "sync the clock (timedatectl set-ntp true)",
        cause: err,
      });
    }
    if (status !== undefined && status >= 500) {
      // The server's own words when it gave some (MinIO's XMinioStorageFull says to free space).
      const first = message.split("\n")[0]!.slice(0, 160);
      const said = first && first !== code && !/^unknown/i.test(first) ? `: ${first}` : "";
      return new CcbError(
        `${this.endpointLabel} failed the ${op} of ${key} (${code ?? "error"}, HTTP ${status})${said}`,
        1,
        {
          hint:
            status === 507 || /storage ?full|quota/i.test(`${code} ${message}`)
              ? "the server is out of space: free some (ccbundle prune, or the server's own tools) and run the command again"
              : "a server-side problem; retry later",
          cause: err,
        },
      );
    }
    // An HTML page or other non-S3 body where S3's XML was expected: a web server, a reverse
    // proxy's error page, or MinIO's console port instead of its API port.
    if (/XML parse error|Deserialization error|Expected closing tag|char '<'|Unexpected token '<'/i.test(message)) {
      return new CcbError(`${this.endpointLabel} did not answer as an S3 API (${op} of ${key})`, 1, {
        hint: "check endpoint= in the store URL: MinIO serves S3 on its API port (9000 by default), not its web console (9001)",
        cause: err,
      });
    }
    const firstLine = message.split("\n")[0]?.slice(0, 200) ?? "";
    return new CcbError(
      `S3 ${op} of ${key} on ${where} failed: ${code ?? "error"}${status ? ` (HTTP ${status})` : ""}${firstLine && firstLine !== code ? `: ${firstLine}` : ""}`,
      1,
      { cause: err },
    );
  }
}

const NETWORK_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ENOTFOUND",
  "EAI_AGAIN",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EPIPE",
  "ECONNABORTED",
  "EPROTO",
  "ERR_SOCKET_CONNECTION_TIMEOUT",
]);

/**
 * Words for the SDK's record of which provider of the chain answered (`$source` on its
 * credentials: the feature names it reports in its user agent). Checked from the most specific:
 * a profile that assumes a role through SSO records both.
 */
export function describeCredentialSource(
  source: Record<string, unknown> | undefined,
  profile: string,
): string | undefined {
  const has = (...features: string[]) => features.some((feature) => source?.[feature] !== undefined);
  if (!source) return undefined;
  if (has("CREDENTIALS_ENV_VARS_STS_WEB_ID_TOKEN", "CREDENTIALS_PROFILE_STS_WEB_ID_TOKEN")) {
    return "a web identity token (AWS_WEB_IDENTITY_TOKEN_FILE or the profile's web_identity_token_file)";
  }
  if (has("CREDENTIALS_SSO", "CREDENTIALS_SSO_LEGACY", "CREDENTIALS_PROFILE_SSO", "CREDENTIALS_PROFILE_SSO_LEGACY")) {
    return `the SSO session of profile ${profile}`;
  }
  if (has("CREDENTIALS_PROCESS", "CREDENTIALS_PROFILE_PROCESS")) return `the credential_process of profile ${profile}`;
  if (has("CREDENTIALS_PROFILE_SOURCE_PROFILE"))
    return `profile ${profile} (a role assumed through its source_profile)`;
  if (
    has("CREDENTIALS_PROFILE", "CREDENTIALS_PROFILE_NAMED_PROVIDER", "CREDENTIALS_LOGIN", "CREDENTIALS_PROFILE_LOGIN")
  ) {
    return `profile ${profile} (~/.aws/credentials or ~/.aws/config)`;
  }
  if (has("CREDENTIALS_ENV_VARS")) return "AWS_ACCESS_KEY_ID in the environment";
  if (has("CREDENTIALS_HTTP")) return "the container's credentials endpoint (ECS, EKS)";
  if (has("CREDENTIALS_IMDS")) return "the instance's role (EC2 instance metadata)";
  return undefined;
}

const CREDENTIAL_CODES = new Set([
  "InvalidAccessKeyId",
  "SignatureDoesNotMatch",
  "ExpiredToken",
  "InvalidToken",
  "TokenRefreshRequired",
  "InvalidClientTokenId",
]);

/** The S3 error code (`Code` in the XML body, else the SDK's name for it). */
function errorCode(err: unknown): string | undefined {
  if (typeof err !== "object" || err === null) return undefined;
  const { Code, name } = err as { Code?: unknown; name?: unknown };
  if (typeof Code === "string") return Code;
  return typeof name === "string" ? name : undefined;
}

function httpStatus(err: unknown): number | undefined {
  if (typeof err !== "object" || err === null) return undefined;
  const status = (err as { $metadata?: { httpStatusCode?: unknown } }).$metadata?.httpStatusCode;
  return typeof status === "number" ? status : undefined;
}

/** The bucket's real region, from the header S3 sends on redirects or the XML body. */
function bucketRegion(err: unknown): string | undefined {
  if (typeof err !== "object" || err === null) return undefined;
  const e = err as {
    Region?: unknown;
    $response?: { headers?: Record<string, string | undefined> };
    message?: unknown;
  };
  const header = e.$response?.headers?.["x-amz-bucket-region"];
  if (header) return header;
  if (typeof e.Region === "string" && e.Region) return e.Region;
  const match = typeof e.message === "string" ? /expecting '([a-z0-9-]+)'/.exec(e.message) : null;
  return match?.[1];
}

function asError(reason: unknown): Error {
  return reason instanceof Error ? reason : new Error(String(reason ?? "aborted"));
}

const URL_PARAMS = new Set(["endpoint", "region", "path_style", "profile"]);

/**
 * The client's logger: silent, like the SDK's default NoOpLogger, but not of that class. Where the
 * SDK finds a NoOpLogger it falls back to console.warn: so it printed a nine-line "Multiple
 * credential sources detected" to stderr whenever a profile (profile= in the store URL, or
 * AWS_PROFILE) and AWS_ACCESS_KEY_ID were both set. The profile wins, as the warning says, and our
 * errors name the profile; stderr is for ccbundle's own one-line messages.
 */
class QuietLogger {
  trace(): void {}
  debug(): void {}
  info(): void {}
  warn(): void {}
  error(): void {}
}

/** Parse `s3://bucket/prefix?endpoint=…&region=…&path_style=…&profile=…`. */
export function parseS3Url(url: string): S3Location {
  const hint = "use s3://bucket/prefix?endpoint=http://host:9000&region=us-east-1&path_style=true&profile=NAME";
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new UsageError("invalid S3 store URL", { hint });
  }
  if (parsed.protocol !== "s3:") throw new UsageError("an S3 store URL starts with s3://", { hint });
  // URL parsing takes what follows "#" for a fragment and drops it: `s3://b/team#2?endpoint=…` would
  // lose its endpoint and profile, and go to AWS with the default credentials.
  if (url.includes("#")) {
    throw new UsageError("an S3 store URL must not contain #", { hint: "write # in a prefix as %23" });
  }
  if (parsed.username || parsed.password) {
    // Not echoed: the part before "@" may be a secret.
    throw new UsageError("an S3 store URL must not contain credentials", {
      hint: "put them in ~/.aws/credentials (profile=NAME) or the AWS_* environment variables",
    });
  }
  const bucket = parsed.hostname;
  // Bucket and path as typed, not only as parsed: the parser drops a port (`s3://bkt:9000/p` is
  // host `bkt`) and resolves "a/../b" to "b" without a word. ("#" was refused above.)
  const typedParts = (url.slice("s3://".length).split("?", 1)[0] ?? "").split("/");
  const typedBucket = typedParts[0] ?? "";
  // Upper case and underscores stay allowed: AWS has old us-east-1 buckets named so.
  if (!/^[a-z0-9][a-z0-9.\-_]{2,62}$/i.test(bucket) || typedBucket !== bucket) {
    throw new UsageError(`invalid bucket name in store URL s3://${typedBucket}`, {
      hint: "a bucket name is 3-63 letters, digits, dots and hyphens; an endpoint's host and port go in endpoint=",
    });
  }
  const prefix = parsed.pathname
    .split("/")
    .filter((part) => part !== "")
    .map((part) => decodeURIComponent(part));
  if (typedParts.some((part) => /^(\.|%2e){1,2}$/i.test(part))) {
    throw new UsageError("the prefix in an S3 store URL must not contain . or .. segments", { hint });
  }
  for (const name of parsed.searchParams.keys()) {
    // Unknown names are refused (a typo like `regoin=` would otherwise be silently ignored);
    // values are not echoed in case someone tried to pass a secret.
    if (!URL_PARAMS.has(name)) throw new UsageError(`unknown parameter "${name}" in S3 store URL`, { hint });
    // Given twice, or given empty: the user meant something, and taking the first or the default
    // would quietly use another endpoint, region or credentials.
    const values = parsed.searchParams.getAll(name);
    if (values.length > 1) throw new UsageError(`parameter "${name}" given twice in S3 store URL`, { hint });
    if (values[0] === "") throw new UsageError(`parameter "${name}" is empty in S3 store URL`, { hint });
  }
  const location: S3Location = {
    bucket,
    prefix: prefix.join("/"),
    region: parsed.searchParams.get("region") || DEFAULT_REGION,
  };
  if (!/^[a-z0-9-]+$/.test(location.region)) throw new UsageError(`invalid region in S3 store URL`, { hint });
  const endpoint = parsed.searchParams.get("endpoint");
  if (endpoint) location.endpoint = parseEndpoint(endpoint);
  const pathStyle = parsed.searchParams.get("path_style");
  if (pathStyle !== null) {
    if (!/^(true|false|1|0)$/.test(pathStyle)) {
      throw new UsageError("path_style in an S3 store URL is true or false", { hint });
    }
    location.pathStyle = pathStyle === "true" || pathStyle === "1";
  }
  const profile = parsed.searchParams.get("profile");
  if (profile) location.profile = profile;
  return location;
}

function parseEndpoint(value: string): string {
  let endpoint: URL;
  try {
    endpoint = new URL(value);
  } catch {
    throw new UsageError("invalid endpoint in S3 store URL", { hint: "e.g. endpoint=http://nas.lan:9000" });
  }
  if (endpoint.protocol !== "http:" && endpoint.protocol !== "https:") {
    throw new UsageError("the endpoint of an S3 store is an http:// or https:// URL", {
      hint: "e.g. endpoint=http://nas.lan:9000",
    });
  }
  if (endpoint.username || endpoint.password || endpoint.search) {
    throw new UsageError("the endpoint of an S3 store must not carry credentials or a query", {
      hint: endpoint.search
        ? "join the store URL's parameters with & (s3://bucket/prefix?endpoint=http://nas.lan:9000&region=…)"
        : "credentials come from ~/.aws/credentials or the AWS_* environment variables",
    });
  }
  return endpoint.href.replace(/\/+$/, "");
}

/**
 * The URL shown to users and written into records: bucket, prefix, endpoint,
 * and region / path style only when they differ from what the URL implies by
 * default. Never the profile (a local name) and never credentials.
 */
function displayUrl(location: S3Location): string {
  const path = location.prefix
    ? `/${location.prefix
        .split("/")
        .map((part) => encodeURIComponent(part))
        .join("/")}`
    : "";
  const params: string[] = [];
  if (location.endpoint) params.push(`endpoint=${location.endpoint}`);
  if (location.region !== DEFAULT_REGION) params.push(`region=${location.region}`);
  const defaultPathStyle = location.endpoint !== undefined;
  if (location.pathStyle !== undefined && location.pathStyle !== defaultPathStyle) {
    params.push(`path_style=${location.pathStyle}`);
  }
  return `s3://${location.bucket}${path}${params.length ? `?${params.join("&")}` : ""}`;
}
