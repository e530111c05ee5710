import { describe, expect, it } from "vitest";
import { parseDuration } from "../core/duration.js";

describe("parseDuration", () => {
  it("reads units with or without spaces between number, unit and parts", () => {
    expect(parseDuration("90s")).toBe(90);
    expect(parseDuration("1d12h")).toBe(129_600);
    expect(parseDuration("1d 12h")).toBe(129_600);
    // The space between number and unit used to be counted on one side only: "1 d" was refused.
    expect(parseDuration("1 d")).toBe(86_400);
    expect(parseDuration(" 1 h 30 m ")).toBe(5_400);
  });

  it("refuses what is not a duration, with the usage exit code", () => {
    for (const text of ["", "abc", "1 x", "1d x", "d", "1.5h", "0s"]) {
      expect(() => parseDuration(text, "--ttl")).toThrow(/--ttl/);
    }
  });
});
