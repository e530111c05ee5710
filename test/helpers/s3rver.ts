import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";

/**
 * s3rver as a child process on 127.0.0.1, so a test can kill it mid-upload and
 * start it again on the same data folder. Run with --openssl-legacy-provider:
 * s3rver's ListObjectsV2 continuation tokens use a cipher OpenSSL 3 disables,
 * and paging answers 500 without it.
 */
export interface S3rverHandle {
  /** `http://127.0.0.1:<port>` */
  readonly endpoint: string;
  readonly port: number;
  readonly dataDir: string;
  /** A store URL for a bucket and prefix on this server. */
  url(bucket: string, prefix?: string): string;
  /** SIGKILL: the server dies mid-request, as on a power cut. */
  kill(): Promise<void>;
  /** Graceful stop; also removes the data folder unless it was passed in. */
  stop(): Promise<void>;
  /** Start again on the same port and data folder (after kill or stop with keepData). */
  restart(): Promise<void>;
}

export interface S3rverStartOptions {
  /** Buckets to create at startup. */
  buckets?: string[];
  /** Reuse a data folder (it is then not removed by stop). */
  dataDir?: string;
  port?: number;
}

const bin = createRequire(import.meta.url).resolve("s3rver/bin/s3rver.js");

export async function startS3rver(options: S3rverStartOptions = {}): Promise<S3rverHandle> {
  const ownsData = options.dataDir === undefined;
  const dataDir = options.dataDir ?? (await mkdtemp(path.join(os.tmpdir(), "ccb-s3rver-")));
  const buckets = options.buckets ?? ["ccbundle"];
  let child: ChildProcess | undefined;
  let port = options.port ?? 0;

  const launch = async (): Promise<void> => {
    const args = ["--openssl-legacy-provider", bin, "-d", dataDir, "-a", "127.0.0.1", "-p", String(port), "-s"];
    for (const bucket of buckets) args.push("--configure-bucket", bucket);
    const proc = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] });
    child = proc;
    port = await new Promise<number>((resolve, reject) => {
      let out = "";
      let err = "";
      const timer = setTimeout(() => fail(new Error(`s3rver did not start in 15 s: ${err}`)), 15_000);
      const fail = (e: Error) => {
        clearTimeout(timer);
        proc.kill("SIGKILL");
        reject(e);
      };
      proc.stdout?.on("data", (chunk: Buffer) => {
        out += chunk.toString();
        const match = /listening on [\d.]+:(\d+)/.exec(out);
        if (match) {
          clearTimeout(timer);
          resolve(Number(match[1]));
        }
      });
      proc.stderr?.on("data", (chunk: Buffer) => {
        err += chunk.toString();
      });
      proc.once("exit", (code, signal) =>
        fail(new Error(`s3rver exited (${code ?? signal}) before listening: ${err}`)),
      );
    });
    proc.removeAllListeners("exit");
  };

  const exit = async (signal: NodeJS.Signals): Promise<void> => {
    const proc = child;
    child = undefined;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
    proc.kill(signal);
    await exited;
  };

  await launch();
  return {
    get endpoint() {
      return `http://127.0.0.1:${port}`;
    },
    get port() {
      return port;
    },
    dataDir,
    url(bucket: string, prefix = "") {
      return `s3://${bucket}${prefix ? `/${prefix}` : ""}?endpoint=http://127.0.0.1:${port}&region=us-east-1`;
    },
    kill: () => exit("SIGKILL"),
    async stop() {
      await exit("SIGTERM");
      if (ownsData) await rm(dataDir, { recursive: true, force: true });
    },
    restart: launch,
  };
}

/**
 * s3rver checks no SigV4 signature but wants the access key `S3RVER`. The AWS
 * chain must also not wander off: no ~/.aws files of the developer, no EC2
 * instance-metadata probe (169.254.169.254), no endpoint overrides.
 */
export function useS3rverCredentials(): void {
  for (const name of Object.keys(process.env)) {
    if (name.startsWith("AWS_")) delete process.env[name];
  }
  process.env.AWS_ACCESS_KEY_ID = "S3RVER";
  process.env.AWS_SECRET_ACCESS_KEY = "S3RVER";
  process.env.AWS_EC2_METADATA_DISABLED = "true";
  process.env.AWS_CONFIG_FILE = path.join(os.tmpdir(), "ccb-no-aws-config");
  process.env.AWS_SHARED_CREDENTIALS_FILE = path.join(os.tmpdir(), "ccb-no-aws-credentials");
  // As the CLI does (cli/main.ts): no Node 20 support warning from the SDK in the test output.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = "true";
}
