// Child process for test/s3.test.ts: starts a multipart upload to the S3 store
// URL in argv[2] whose source stalls after its first part, says "part sent"
// once that part is stored, then waits for the test's signal. Every command
// the client completes (or fails, with "!") is printed on stderr.
import { Readable } from "node:stream";
import { S3Store } from "../../dist/storage-adapters/s3.js";

const MIB = 1024 * 1024;
const store = S3Store.fromUrl(process.argv[2], { partSize: 5 * MIB, queueSize: 1 });
store.client.middlewareStack.add(
  (next, context) => async (args) => {
    try {
      const out = await next(args);
      process.stderr.write(`${context.commandName}\n`);
      if (context.commandName === "UploadPartCommand") process.stdout.write("part sent\n");
      return out;
    } catch (err) {
      process.stderr.write(`${context.commandName}!\n`);
      throw err;
    }
  },
  { step: "initialize", name: "log-commands" },
);
// 6 MiB (one whole part and a bit), then nothing: the upload waits for more.
const source = Readable.from(
  (async function* () {
    yield Buffer.alloc(6 * MIB, 1);
    await new Promise(() => {});
  })(),
);
store.put("ccbundle/v1/blobs/interrupted", source).then(
  () => process.stderr.write("put finished\n"),
  (err) => process.stderr.write(`put failed: ${err.message}\n`),
);
setInterval(() => {}, 1000); // stay alive until the signal
