/**
 * A pull over a slow DHT: the blob named by the first record to arrive (here the
 * store's mirror) is fetched and staged while the DHT is still being asked
 * (EarlyStage in core/pull.ts). The DHT is a stand-in transport that answers
 * with the mirror's own record after a delay, as a public DHT lookup takes
 * seconds; a pull with an instant answer is the baseline. With the unpack
 * hidden behind the lookup, a pull costs about the delay plus the install.
 *
 *     npm run bench            # once: makes the 50 MB handoff corpus and its store
 *     npm run build && node dist/bench/slow-dht.js [delay-ms ...]
 */
import { existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { loadSettings } from "../core/config.js";
import { openIdentityBytes, readIdentityBytes } from "../core/crypto/identity-file.js";
import { StoreMirrorTransport } from "../core/pointer/store-mirror.js";
import type { PointerTransport } from "../core/pointer/transport.js";
import { pullSession } from "../core/pull.js";
import { openStore } from "../storage-adapters/index.js";

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const work = path.join(repo, "bench", ".work");
const home = path.join(work, "handoff-b", "home", "al");
const storeDir = path.join(work, "handoff-store");
if (!existsSync(path.join(storeDir, "ccbundle", "v1", "records"))) {
  console.error("slow-dht: no handoff store yet\nhint: run `npm run bench` once first");
  process.exit(1);
}
Object.assign(process.env, {
  HOME: home,
  CCBUNDLE_HOME: path.join(home, ".config", "ccbundle"),
  CLAUDE_CONFIG_DIR: path.join(home, ".claude"),
  XDG_CONFIG_HOME: path.join(home, ".config"),
  CCBUNDLE_STORE: storeDir,
  CCBUNDLE_BOOTSTRAP: "none",
  CCBUNDLE_RELAYS: "none",
});
const settings = loadSettings();
const { key } = await openIdentityBytes(await readIdentityBytes(settings.home), async () => "", "bench identity");
const record = readFileSync(path.join(storeDir, "ccbundle", "v1", "records", key.z32));
const project = path.join(home, "code", "app");
const delays = process.argv.slice(2).map(Number);

async function pullWith(delayMs: number): Promise<number> {
  const store = await openStore(storeDir);
  const slowDht: PointerTransport = {
    name: `dht (answers after ${delayMs} ms)`,
    publish: async () => "",
    resolve: () => new Promise((resolve) => setTimeout(() => resolve(record), delayMs)),
  };
  rmSync(settings.claudeDir, { recursive: true, force: true });
  mkdirSync(project, { recursive: true });
  const started = performance.now();
  try {
    await pullSession({
      settings,
      key,
      publisher: key.z32,
      transports: [slowDht, new StoreMirrorTransport(store)],
      cwd: project,
      project,
      maps: [],
      rewrite: true,
      force: false,
    });
    return performance.now() - started;
  } finally {
    await store.close?.();
  }
}

const best = async (delayMs: number) =>
  Math.min(await pullWith(delayMs), await pullWith(delayMs), await pullWith(delayMs));
const instant = await best(0);
console.log(`pull with an instant DHT answer: ${instant.toFixed(0)} ms (best of 3)`);
for (const delay of delays.length > 0 ? delays : [500, 1500]) {
  const slow = await best(delay);
  console.log(
    `pull with the DHT answering after ${delay} ms: ${slow.toFixed(0)} ms, ${(slow - delay).toFixed(0)} ms after the answer (best of 3)`,
  );
}
