import { createReadStream } from "node:fs";
import { loadSettings } from "../../core/config.js";
import { openIdentityBytes, readIdentityBytes } from "../../core/crypto/identity-file.js";
import { receiveBundle } from "../../core/receive.js";

/**
 * `node dist/test/helpers/crash-receive.js <bundle file> <step> <project> [signal]`: import a
 * bundle like `ccbundle import`, but SIGKILL this process right before install
 * step <step> (0-based), as a power cut or `kill -9` at exactly that point
 * would (or send it [signal], e.g. SIGINT for a Ctrl-C there). Run with a
 * Machine's environment; the test then checks what is left.
 */
const [file, stepText, project, signal = "SIGKILL"] = process.argv.slice(2);
const killAt = Number(stepText);
const settings = loadSettings(process.env, {});
const { key } = await openIdentityBytes(
  await readIdentityBytes(settings.home),
  async () => {
    throw new Error("crash-receive needs an unencrypted identity");
  },
  "identity",
);
await receiveBundle({
  settings,
  blob: createReadStream(file!),
  identities: [key.ageIdentity()],
  acceptSigners: [key.z32],
  project,
  cwd: project!,
  maps: [],
  rewrite: true,
  force: false,
  onInstallStep: (index, total) => {
    process.stdout.write(`step ${index}/${total}\n`);
    if (index === killAt) process.kill(process.pid, signal as NodeJS.Signals);
  },
});
process.stdout.write("finished\n");
