import { execFile } from "node:child_process";
import http from "node:http";
import type { AddressInfo } from "node:net";

/**
 * Runs real Claude Code once and reports what it printed and what it asked
 * the API. Started by test/helpers/claude-code.ts, inside a network namespace
 * of its own when the machine allows one, so nothing but loopback exists.
 *
 * With `api: true` a stand-in Anthropic API on 127.0.0.1 records each request
 * and answers 400, so Claude Code sends the conversation it resumed and stops.
 * Without it, ANTHROPIC_BASE_URL still points at a closed loopback port.
 *
 * Input: the JSON of ProbeInput in env CCB_PROBE. Output: ProbeResult as JSON on stdout.
 */

export interface ProbeInput {
  claude: string;
  cwd: string;
  args: string[];
  env: Record<string, string>;
  api: boolean;
}

export interface ProbeResult {
  code: number | null;
  stdout: string;
  stderr: string;
  requests: { method: string; url: string; body: string }[];
}

async function main(): Promise<void> {
  const input = JSON.parse(process.env.CCB_PROBE ?? "{}") as ProbeInput;
  const requests: ProbeResult["requests"] = [];
  let server: http.Server | undefined;
  let baseUrl = "http://127.0.0.1:9";
  if (input.api) {
    server = http.createServer((req, res) => {
      let body = "";
      req.on("data", (chunk) => {
        body += chunk;
      });
      req.on("end", () => {
        requests.push({ method: req.method ?? "", url: req.url ?? "", body });
        res.writeHead(400, { "content-type": "application/json" });
        res.end(JSON.stringify({ type: "error", error: { type: "invalid_request_error", message: "ccbundle test" } }));
      });
    });
    await new Promise<void>((resolve) => server!.listen(0, "127.0.0.1", resolve));
    baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }
  const env: Record<string, string> = { ...input.env, ANTHROPIC_BASE_URL: baseUrl };
  if (input.api) env.ANTHROPIC_API_KEY = "sk-ant-ccbundle-test-not-a-key";
  const { code, stdout, stderr } = await new Promise<Omit<ProbeResult, "requests">>((resolve) => {
    const child = execFile(
      input.claude,
      input.args,
      { cwd: input.cwd, env, timeout: 60_000, killSignal: "SIGKILL", maxBuffer: 64 << 20 },
      (err, out, errOut) =>
        resolve({ code: err ? (typeof err.code === "number" ? err.code : null) : 0, stdout: out, stderr: errOut }),
    );
    child.stdin?.end(); // -p reads piped stdin until it ends
  });
  server?.close();
  const result: ProbeResult = { code, stdout, stderr, requests };
  process.stdout.write(JSON.stringify(result));
}

main().catch((err: unknown) => {
  process.stderr.write(`${String(err)}\n`);
  process.exit(1);
});
