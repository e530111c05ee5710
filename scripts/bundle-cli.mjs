/**
 * After tsc: bundle dist/cli/main.js with everything it imports (our modules
 * and their npm dependencies, except native addons and the AWS SDK) into a few
 * CommonJS files in dist/cli/ (`ccbundle.cjs` and its chunks); dynamic imports
 * stay separate chunks, loaded as before only by the commands that need them.
 * dist/cli/main.js, the `ccbundle` bin, becomes a launcher that runs the bundle
 * through cli/code-cache.ts.
 *
 * Why bundle: at every start Node resolved, read and compiled ~100 ES modules
 * and a few dozen CommonJS files one by one (yargs alone is ~35), ~80 ms of
 * CPU per process before a command ran, and more again when push or pull
 * loaded the DHT. A handoff starts two processes.
 *
 * Why CommonJS: Node 20 keeps V8's compiled code between runs only for code
 * compiled through `vm.Script` (cli/code-cache.ts); parsing and compiling were
 * still ~a quarter of a small push's CPU.
 *
 * `import.meta.url` in each bundled module is rewritten to the URL of that
 * module's own file, so whatever a module finds relative to itself
 * (package.json, a worker script, createRequire, yargs' locales) resolves
 * exactly as in the unbundled tsc output, which stays in place beside it.
 *
 * rolldown comes with vitest (a dev dependency). Without it the tsc output is
 * left as it is: slower to start, same behaviour.
 */

import { readdirSync, readFileSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const outDir = path.join(root, "dist", "cli");
const entry = path.join(outDir, "main.js");
const BUNDLE = "ccbundle.cjs";
const BANNER = "// bundled by scripts/bundle-cli.mjs";

/** Left to Node at run time: native addons (found relative to their own package) and the lazily loaded AWS SDK. */
const EXTERNAL = [/^node:/, /^zstd-napi(\/|$)/, /^sodium-/, /^@aws-sdk\//, /^@smithy\//];

let rolldown;
try {
  ({ rolldown } = await import("rolldown"));
} catch {
  console.warn("bundle-cli: rolldown is not installed; dist/cli stays unbundled (slower start-up, same behaviour)");
  process.exit(0);
}

if (readFileSync(entry, "utf8").includes(BANNER)) {
  console.warn("bundle-cli: dist/cli/main.js is already a bundle; run tsc first");
  process.exit(0);
}

/** node_modules as rolldown sees it (the real path, if it is a symlink) and as the package lays it out. */
const realModules = realpathSync(path.join(root, "node_modules"));

/**
 * import.meta.url → the URL of the module's own file, relative to the chunk (all chunks live in
 * dist/cli). Only ES modules say import.meta, and in the CommonJS output their code runs in the
 * chunk's own scope, where `module` and `__filename` are the chunk's.
 */
const ownUrl = {
  name: "module-own-url",
  transform(code, id) {
    // \0-prefixed ids are rolldown's own virtual modules (its runtime), not files.
    if (id.startsWith("\0") || !code.includes("import.meta.url")) return null;
    const file = id.startsWith(realModules + path.sep)
      ? path.join(root, "node_modules", id.slice(realModules.length))
      : id;
    let relative = path.relative(outDir, file).split(path.sep).join("/");
    if (!relative.startsWith(".")) relative = `./${relative}`;
    return {
      code: code.replaceAll(
        "import.meta.url",
        `new URL(${JSON.stringify(relative)}, module.require("node:url").pathToFileURL(__filename)).href`,
      ),
    };
  },
};

/**
 * yargs' string-width declares `const rgiEmojiRegex = /^\p{RGI_Emoji}$/v;` at its top level, and V8
 * builds the whole emoji string set while it compiles that literal: 20–80 ms at every start, for a
 * regex only non-ASCII help text ever reaches. Made lazy here: built on its first `.test()`. Left
 * as it is (with a warning) if the module uses the regex any other way.
 */
const RGI_EMOJI_LITERAL = String.raw`/^\p{RGI_Emoji}$/v`;
const lazyEmojiRegex = {
  name: "lazy-rgi-emoji-regex",
  transform(code, id) {
    const declaration = new RegExp(String.raw`const (\w+) = ${RGI_EMOJI_LITERAL.replace(/[\\^$/{}]/g, "\\$&")};`).exec(
      code,
    );
    if (!declaration) return null;
    const name = declaration[1];
    const uses = code.split(name).length - 2;
    if (uses !== code.split(`${name}.test(`).length - 1) {
      console.warn(`bundle-cli: ${id} uses ${name} other than by .test(); left as it is`);
      return null;
    }
    const source = JSON.stringify(String.raw`^\p{RGI_Emoji}$`);
    const lazy = `let ${name}Built;\nconst ${name} = { test: (text) => (${name}Built ??= new RegExp(${source}, "v")).test(text) };`;
    return { code: code.replace(declaration[0], lazy) };
  },
};

// Chunks of an earlier bundle would linger beside the new ones, and so would their code cache.
for (const name of readdirSync(outDir)) {
  if (name.startsWith("chunk-") || name === "main.js.map" || name === BUNDLE) rmSync(path.join(outDir, name));
}
rmSync(path.join(outDir, ".code-cache"), { recursive: true, force: true });
const bundle = await rolldown({
  input: entry,
  platform: "node",
  external: EXTERNAL,
  plugins: [ownUrl, lazyEmojiRegex],
  logLevel: "warn",
  onLog(level, log, handler) {
    // yargs' apply-extends says import.meta.resolve for `extends` in a config file; ccbundle
    // gives yargs no config file, so that line never runs (in CommonJS it would throw).
    if (log.code === "EMPTY_IMPORT_META" && log.id?.includes("apply-extends")) return;
    handler(level, log);
  },
});
const { output } = await bundle.write({
  dir: outDir,
  format: "cjs",
  // As strict as the ES modules it was made from (rolldown's "auto" leaves their code sloppy).
  strict: true,
  entryFileNames: BUNDLE,
  chunkFileNames: "chunk-[name]-[hash].cjs",
  banner: BANNER,
});
await bundle.close();
// The bin: start the bundle with V8's code cache (cli/code-cache.ts, compiled by tsc beside it).
writeFileSync(
  entry,
  `#!/usr/bin/env node
${BANNER}: the \`ccbundle\` bin, a launcher for ${BUNDLE}
import { runWithCodeCache } from "./code-cache.js";
import { catchEarlySignals } from "./early-signal.js";

catchEarlySignals();
runWithCodeCache(new URL("./${BUNDLE}", import.meta.url));
`,
);
rmSync(`${entry}.map`, { force: true });
console.log(`bundle-cli: dist/cli/main.js → ${BUNDLE} + ${output.length - 1} chunks`);
