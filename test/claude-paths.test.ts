import { describe, expect, it } from "vitest";
import { javaHash, projectFolderName } from "../core/claude/paths.js";

describe("Claude Code project folder names", () => {
  it("replaces every non-alphanumeric UTF-16 unit with a dash", () => {
    expect(projectFolderName("/home/bob/my.app_v2")).toBe("-home-bob-my-app-v2");
    // DESIGN.md: checked against Claude Code itself.
    expect(projectFolderName("/tmp/x/café 😀 x")).toBe("-tmp-x-caf-----x");
  });

  it("hashes paths over 200 characters the way Claude Code does", () => {
    const long = `/home/bob/${"a".repeat(250)}`;
    const name = projectFolderName(long);
    const sanitized = long.replace(/[^a-zA-Z0-9]/g, "-");
    expect(name.startsWith(`${sanitized.slice(0, 200)}-`)).toBe(true);
    expect(name.slice(201)).toBe(Math.abs(javaHash(long)).toString(36));
    expect(projectFolderName("/x".repeat(100))).toBe("-x".repeat(100)); // exactly 200: no hash
  });

  it("javaHash is Java's String.hashCode", () => {
    expect(javaHash("")).toBe(0);
    expect(javaHash("hello")).toBe(99162322);
    expect(javaHash("Hello World")).toBe(-862545276);
  });
});
