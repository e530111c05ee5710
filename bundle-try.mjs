import { rolldown } from "rolldown";
const t = performance.now();
const bundle = await rolldown({ input: "dist/cli/main.js", platform: "node", external: [/^node:/, /^zstd-napi/, /^sodium-/, /^@aws-sdk\//, /^@smithy\//], logLevel: "warn", treeshake: true });
await bundle.write({ dir: process.argv[2], format: "esm", entryFileNames: "main.js", chunkFileNames: "[name]-[hash].js" });
console.log("bundled in", Math.round(performance.now() - t), "ms");
