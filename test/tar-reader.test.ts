import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import tar from "tar-stream";
import { describe, expect, it } from "vitest";
import { END_OF_ARCHIVE, fileHeader, padding } from "../core/bundle/tar-header.js";
import { type TarEvent, TarReader } from "../core/bundle/tar-reader.js";

/**
 * The tar reader against archives written by other tools (GNU tar in its three
 * formats, tar-stream) and by ours, cut at every kind of boundary, and against
 * broken archives. Its events must say what `tar -t` and tar-stream's extract say.
 */

const root = mkdtempSync(path.join(os.tmpdir(), "ccb-tar-reader-"));

interface Entry {
  name: string;
  type: string;
  size: number;
  sha256: string | undefined;
  /** sha256 of the data events' bytes, joined. */
  data: string;
}

/** Read `archive` cut into `piece`-byte chunks. */
function read(archive: Buffer, piece: number): Entry[] {
  const reader = new TarReader();
  const entries: Entry[] = [];
  let parts: Buffer[] = [];
  for (let at = 0; at < archive.length; at += piece) {
    const events: TarEvent[] = [];
    reader.push(archive.subarray(at, at + piece), events);
    for (const event of events) {
      if (event.type === "entry") {
        entries.push({ name: event.name, type: event.entryType, size: event.size, sha256: undefined, data: "" });
        parts = [];
      } else if (event.type === "data") parts.push(Buffer.from(event.bytes));
      else {
        const last = entries.at(-1)!;
        last.sha256 = event.sha256;
        last.data = sha(Buffer.concat(parts));
      }
    }
  }
  reader.end();
  return entries;
}

const sha = (bytes: Buffer) => createHash("sha256").update(bytes).digest("hex");

/** What tar-stream's extract reads from the same archive. */
async function tarStreamRead(archive: Buffer): Promise<Entry[]> {
  const extract = tar.extract();
  const entries: Entry[] = [];
  extract.end(archive);
  for await (const entry of extract) {
    const parts: Buffer[] = [];
    for await (const chunk of entry) parts.push(chunk as Buffer);
    const data = sha(Buffer.concat(parts));
    const file = entry.header.type === "file";
    entries.push({
      name: entry.header.name,
      type: entry.header.type ?? "file",
      size: file ? (entry.header.size ?? 0) : 0,
      sha256: file ? data : undefined,
      data,
    });
  }
  return entries;
}

/** Cut sizes that hit headers, data and padding at every offset kind. */
const PIECES = [1, 7, 511, 512, 513, 4096, 100_000];

describe("tar reader", () => {
  const dir = path.join(root, "src");
  const long = `${"deep/".repeat(40)}name-${"é".repeat(30)}.jsonl`;
  mkdirSync(path.dirname(path.join(dir, long)), { recursive: true });
  const files: [string, Buffer][] = [
    ["a.jsonl", Buffer.from('{"a":1}\n'.repeat(1000))],
    ["empty", Buffer.alloc(0)],
    ["block", Buffer.alloc(512, 7)],
    [long, Buffer.from("long name\n")],
  ];
  for (const [name, content] of files) writeFileSync(path.join(dir, name), content);

  for (const format of ["gnu", "ustar", "pax"]) {
    it(`reads GNU tar's ${format} format (names, sizes, bytes, hashes), however it is cut`, async () => {
      // ustar cannot hold the long name: GNU tar refuses it there.
      const names = files.map(([name]) => name).filter((name) => format !== "ustar" || name !== long);
      const archive = execFileSync("tar", [`--format=${format}`, "-C", dir, "-cf", "-", ...names]);
      const expected = names.map((name) => {
        const content = files.find(([n]) => n === name)![1];
        return { name, type: "file", size: content.length, sha256: sha(content), data: sha(content) };
      });
      for (const piece of PIECES) expect(read(archive, piece)).toEqual(expected);
      expect(await tarStreamRead(archive)).toEqual(expected);
    });
  }

  it("reads what ccbundle's tar writer and tar-stream's pack write, links and folders included", async () => {
    const ours = Buffer.concat([
      ...files.flatMap(([name, content]) => [
        fileHeader({ name, size: content.length, mode: 0o600, mtime: 0 }),
        content,
        padding(content.length),
      ]),
      END_OF_ARCHIVE,
    ]);
    const expected = files.map(([name, content]) => ({
      name,
      type: "file",
      size: content.length,
      sha256: sha(content),
      data: sha(content),
    }));
    for (const piece of PIECES) expect(read(ours, piece)).toEqual(expected);

    const pack = tar.pack();
    pack.entry({ name: "claude/", type: "directory" });
    pack.entry({ name: "link", type: "symlink", linkname: "/etc/passwd" });
    pack.entry({ name: long, size: 3 }, Buffer.from("abc"));
    pack.finalize();
    const parts: Buffer[] = [];
    for await (const chunk of pack as AsyncIterable<Buffer>) parts.push(chunk);
    const theirs = Buffer.concat(parts);
    const read512 = read(theirs, 512);
    expect(read512.map((e) => [e.name, e.type])).toEqual([
      ["claude/", "directory"],
      ["link", "symlink"],
      [long, "file"],
    ]);
    expect(read512.map((e) => [e.name, e.type])).toEqual((await tarStreamRead(theirs)).map((e) => [e.name, e.type]));
    for (const piece of PIECES) expect(read(theirs, piece)).toEqual(read512);
  });

  it("refuses a bad checksum, a size that is not a number, a cut archive and data after the end", () => {
    const content = Buffer.from("hello\n");
    const good = Buffer.concat([
      fileHeader({ name: "a", size: content.length, mode: 0o600, mtime: 0 }),
      content,
      padding(content.length),
      END_OF_ARCHIVE,
    ]);
    expect(read(good, 512).map((e) => e.name)).toEqual(["a"]);

    const badSum = Buffer.from(good);
    badSum[0] = "b".charCodeAt(0);
    expect(() => read(badSum, 512)).toThrow("invalid tar header (bad checksum)");

    const notNumber = Buffer.from(good);
    notNumber.write("0000000009x\0", 124, "latin1");
    // Re-sum so that only the size field is wrong.
    notNumber.fill(0x20, 148, 156);
    let sum = 0;
    for (let i = 0; i < 512; i++) sum += notNumber[i]!;
    notNumber.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148, "latin1");
    expect(() => read(notNumber, 512)).toThrow("size is not a number");

    for (const cut of [100, 512, 515, 1024 - 1]) {
      expect(() => read(good.subarray(0, cut), 64)).toThrow("unexpected end of data");
    }
    // Zeros after the end are padding (GNU tar writes 10 KiB records); anything else is refused.
    expect(read(Buffer.concat([good, Buffer.alloc(9000)]), 4096).map((e) => e.name)).toEqual(["a"]);
    expect(() => read(Buffer.concat([good, Buffer.from("trailing")]), 4096)).toThrow("data after the end");
  });

  it("refuses malformed pax records and oversized extended headers", () => {
    const paxEntry = (body: Buffer) => {
      const header = fileHeader({ name: `${"x/".repeat(200)}y`, size: 1, mode: 0o600, mtime: 0 });
      // fileHeader wrote a pax header first (the name is too long for ustar): replace its body.
      const h = Buffer.from(header.subarray(0, 512));
      h.write(`${body.length.toString(8).padStart(11, "0")}\0`, 124, "latin1");
      h.fill(0x20, 148, 156);
      let sum = 0;
      for (let i = 0; i < 512; i++) sum += h[i]!;
      h.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148, "latin1");
      return Buffer.concat([h, body, padding(body.length), END_OF_ARCHIVE]);
    };
    expect(() => read(paxEntry(Buffer.from("99 path=x\n")), 512)).toThrow("invalid pax record");
    expect(() => read(paxEntry(Buffer.from("garbage\n")), 512)).toThrow("invalid pax record");
    expect(() => read(paxEntry(Buffer.from("11 size=-1\n")), 512)).toThrow("invalid pax size");
    expect(() => read(paxEntry(Buffer.alloc(2 << 20, 0x31)), 512)).toThrow("extended header too large");
  });
});
