// Preloaded into CLI child processes (NODE_OPTIONS=--require): makes this
// "machine" one where zstd-napi's install found no C compiler, so its native
// addon is missing, as `require` would then say. Nothing else changes.
const Module = require("node:module");

const resolve = Module._resolveFilename;
Module._resolveFilename = function (request, ...rest) {
  if (request === "zstd-napi" || request.startsWith("zstd-napi/")) {
    const err = new Error(`Cannot find module '${request}'`);
    err.code = "MODULE_NOT_FOUND";
    throw err;
  }
  return resolve.call(this, request, ...rest);
};
