import { spawnSync } from "node:child_process";
import { chmodSync, cpSync, mkdtempSync, rmSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LocalStore } from "../storage-adapters/local.js";

/**
 * A folder store shared by several Unix users (a team NAS): what another user
 * meets when they may, or may not, read its files. Run as that other user
 * (`nobody`, via setpriv when the tests run as root, as in CI; as ourselves
 * otherwise, where chmod alone takes the permission away).
 */

const DIST = fileURLToPath(new URL("../dist/", import.meta.url));
let root: string;
let store: LocalStore;
/** The built store adapter, copied where the other user can read it (a clone under /root is not). */
let LOCAL: string;

beforeAll(async () => {
  root = mkdtempSync(path.join(os.tmpdir(), "ccb-store-perms-"));
  chmodSync(root, 0o755);
  for (const part of ["core", "storage-adapters"])
    cpSync(path.join(DIST, part), path.join(root, "dist", part), { recursive: true });
  LOCAL = path.join(root, "dist", "storage-adapters", "local.js");
  store = new LocalStore(path.join(root, "store"));
  const { mkdirSync } = await import("node:fs");
  mkdirSync(store.root, { mode: 0o755 });
  await store.put("blobs/ab/abcdef", Buffer.from("encrypted bytes"));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

const asRoot = process.getuid?.() === 0;

/** Read `key` from the store as another user: `{ ok, text }` or `{ error, hint }`, never a crash. */
function readAsOtherUser(key: string, how: "get" | "getBytes") {
  const script = `
    const { LocalStore } = await import(${JSON.stringify(LOCAL)});
    const store = new LocalStore(${JSON.stringify(store.root)});
    try {
      let bytes;
      if (${JSON.stringify(how)} === "get") {
        const chunks = [];
        for await (const chunk of await store.get(${JSON.stringify(key)})) chunks.push(chunk);
        bytes = Buffer.concat(chunks);
      } else bytes = Buffer.from(await store.getBytes(${JSON.stringify(key)}));
      console.log(JSON.stringify({ ok: true, text: bytes.toString() }));
    } catch (err) {
      console.log(JSON.stringify({ error: err.message, hint: err.hint }));
    }`;
  const node = [process.execPath, "--input-type=module", "-e", script];
  const argv = asRoot ? ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", ...node] : node;
  const result = spawnSync(argv[0]!, argv.slice(1), { encoding: "utf8", cwd: root });
  expect(result.stderr).toBe("");
  expect(result.status).toBe(0);
  return JSON.parse(result.stdout) as { ok?: boolean; text?: string; error?: string; hint?: string };
}

describe.skipIf(process.platform === "win32" || (asRoot && spawnSync("setpriv", ["--version"]).status !== 0))(
  "a folder store read by another user",
  () => {
    it("writes objects readable by others as the umask allows (they are encrypted), so teammates can pull", () => {
      const mode = statSync(path.join(store.root, "blobs", "ab", "abcdef")).mode & 0o777;
      expect(mode).toBe(0o666 & ~process.umask());
      if ((mode & 0o004) !== 0) {
        expect(readAsOtherUser("blobs/ab/abcdef", "get")).toEqual({ ok: true, text: "encrypted bytes" });
      }
    });

    it("says which object it cannot read and what to do, for a stream and for a whole read (no crash)", () => {
      chmodSync(path.join(store.root, "blobs", "ab", "abcdef"), 0o600);
      for (const how of ["get", "getBytes"] as const) {
        const result = readAsOtherUser("blobs/ab/abcdef", how);
        expect(result.error).toBe(`cannot read blobs/ab/abcdef in store ${store.url} (EACCES)`);
        expect(result.hint).toContain("ask its owner to let your user read the store");
      }
    });
  },
);
