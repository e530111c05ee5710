// Reads a blob's decrypted bytes (stdin) through the built threaded reader, as pull does, and
// prints what came out: each file's name, size and sha256 (hashed here), and how many reader
// threads were started. Run with NODE_OPTIONS=--require ./no-zstd-addon.cjs for a machine
// without the zstd addon.
import { createHash } from "node:crypto";
import { pipeline } from "node:stream/promises";
import { fileURLToPath } from "node:url";

const built = fileURLToPath(new URL("../../dist/core/bundle/threaded-reader.js", import.meta.url));
const { createThreadedTarReader, readerThreadsStarted } = await import(built);

const files = [];
let current;
await pipeline(process.stdin, createThreadedTarReader(), async (batches) => {
  for await (const batch of batches) {
    for (const event of batch.events) {
      if (event.type === "entry") current = { name: event.name, size: 0, hash: createHash("sha256") };
      else if (event.type === "data") {
        current.size += event.bytes.length;
        current.hash.update(event.bytes);
      } else if (event.type === "end")
        files.push({ name: current.name, size: current.size, sha256: current.hash.digest("hex") });
    }
    batch.release?.();
  }
});
process.stdout.write(JSON.stringify({ threads: readerThreadsStarted(), files }));
