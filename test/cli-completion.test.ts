import { spawnSync } from "node:child_process";
import { chmodSync, mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CLI, Machine } from "./helpers/machine.js";

/**
 * `ccbundle completion` prints a shell script; the shell then asks ccbundle
 * itself for candidates. Checked the way a user meets it: bash sources the
 * script and runs its completion function against a `ccbundle` on PATH.
 */

let machine: Machine;
let bin: string;

beforeAll(() => {
  machine = new Machine("completion");
  bin = path.join(machine.root, "bin");
  mkdirSync(bin);
  const shim = path.join(bin, "ccbundle");
  writeFileSync(shim, `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(CLI)} "$@"\n`);
  chmodSync(shim, 0o755);
});

afterAll(() => machine.cleanup());

/** What bash offers after `words` (the last one being completed). */
function bashCompletions(words: string[]): string[] {
  const script = [
    "source <(ccbundle completion) || exit 9",
    `COMP_WORDS=(${words.map((word) => `'${word}'`).join(" ")})`,
    `COMP_CWORD=${words.length - 1}`,
    "_ccbundle_yargs_completions",
    // biome-ignore lint/suspicious/noTemplateCurlyInString: a bash array expansion, not a template
    'printf "%s\\n" "${COMPREPLY[@]}"',
  ].join("\n");
  const result = spawnSync("bash", ["-c", script], {
    env: { ...machine.env, PATH: `${bin}:${process.env.PATH}`, SHELL: "/bin/bash" },
    encoding: "utf8",
  });
  expect(result.status, result.stderr).toBe(0);
  return result.stdout.split("\n").filter(Boolean);
}

describe("shell completion", () => {
  it("prints a bash script by default and a zsh one under zsh", async () => {
    const bash = await machine.run(["completion"], { env: { SHELL: "/bin/bash" } });
    expect(bash.code).toBe(0);
    expect(bash.stdout).toContain("complete -o bashdefault -o default -F _ccbundle_yargs_completions ccbundle");
    const zsh = await machine.run(["completion"], { env: { SHELL: "/usr/bin/zsh" } });
    expect(zsh.code).toBe(0);
    expect(zsh.stdout).toContain("compdef _ccbundle_yargs_completions ccbundle");
  });

  it("completes command names", () => {
    expect(bashCompletions(["ccbundle", "pu"]).sort()).toEqual(["pull", "push"]);
    expect(bashCompletions(["ccbundle", "re"]).sort()).toEqual(["republish", "restore", "revoke"]);
  });

  it("completes a command's own options, not another command's", () => {
    const push = bashCompletions(["ccbundle", "push", "--"]);
    expect(push).toEqual(expect.arrayContaining(["--session", "--to", "--burn", "--store"]));
    expect(push).not.toContain("--keep-last");
    const prune = bashCompletions(["ccbundle", "prune", "--keep"]);
    expect(prune).toEqual(expect.arrayContaining(["--keep-last", "--keep-within"]));
    expect(prune.every((option) => option.startsWith("--keep-"))).toBe(true);
  });
});
