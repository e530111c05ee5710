import { expect } from "vitest";
import { CcbError } from "../../core/errors.js";

/**
 * How many cases each property runs: a few thousand in `npm test`, more with
 * `npm run fuzz` (CCBUNDLE_FUZZ_RUNS=50000). A failing seed is printed by
 * fast-check; rerun it with CCBUNDLE_FUZZ_SEED=<seed>.
 */
export function fuzzRuns(base: number): { numRuns: number; seed?: number } {
  const runs = Number(process.env.CCBUNDLE_FUZZ_RUNS);
  const seed = Number(process.env.CCBUNDLE_FUZZ_SEED);
  return {
    numRuns: Number.isFinite(runs) && runs > 0 ? Math.max(base, runs) : base,
    ...(Number.isFinite(seed) ? { seed } : {}),
  };
}

/** Per-test timeout that grows with the run count, with room for a loaded 2-core machine. */
export function fuzzTimeout(base: number, msPerCase: number): number {
  return 60_000 + fuzzRuns(base).numRuns * msPerCase * 4;
}

/** Only ccbundle's own typed errors may escape a parser; anything else is a bug. */
export function expectTyped(err: unknown): void {
  if (!(err instanceof CcbError)) {
    throw new Error(`an untyped error escaped: ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}`);
  }
  expect(err.exitCode).toBeGreaterThan(0);
  expect(err.message).not.toMatch(/\n/);
}

export async function onlyTyped(fn: () => unknown): Promise<unknown> {
  try {
    return await fn();
  } catch (err) {
    expectTyped(err);
    return undefined;
  }
}
