import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadZstd, PLAIN_CHUNK, ZstdDecoder, zstdEncoder } from "../core/bundle/codec.js";
import { JsZstdDecoder } from "../core/bundle/zstd-js.js";
import { sample } from "./helpers/sample.js";

/**
 * The JavaScript zstd decoder a machine without the zstd-napi addon reads bundles with: the same
 * bytes out as the zstd CLI and the addon for everything they write, and refusals where the addon
 * refuses (truncated data, garbage, windows over 128 MiB, more output than allowed).
 */

const root = mkdtempSync(path.join(os.tmpdir(), "ccb-zstd-js-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function byCli(data: Buffer, ...flags: string[]): Buffer {
  const file = path.join(root, `in-${data.length}.bin`);
  writeFileSync(file, data);
  return execFileSync("zstd", ["-q", "-c", ...flags, file], { maxBuffer: 256 << 20 });
}

/** Decode `compressed` fed in `chunk`-byte pieces through a reused buffer, as a stream hands them over. */
function decode(compressed: Buffer, chunk: number, limit = Number.POSITIVE_INFINITY): Buffer {
  const out: Buffer[] = [];
  let produced = 0;
  const decoder = new JsZstdDecoder((data) => {
    produced += data.length;
    if (produced > limit) return false;
    out.push(Buffer.from(data));
    return true;
  });
  const reused = Buffer.alloc(chunk);
  for (let at = 0; at < compressed.length; at += chunk) {
    const piece = compressed.subarray(at, at + chunk);
    piece.copy(reused);
    decoder.write(reused.subarray(0, piece.length));
    reused.fill(0xee); // what the decoder kept of this chunk must have been copied
  }
  decoder.end();
  return Buffer.concat(out);
}

function decodeNative(compressed: Buffer): Buffer {
  const out: Buffer[] = [];
  const decoder = new ZstdDecoder(loadZstd()!, (data) => {
    out.push(Buffer.from(data));
    return true;
  });
  try {
    decoder.write(compressed);
    decoder.end();
  } finally {
    decoder.release();
  }
  return Buffer.concat(out);
}

function ours(data: Buffer, workers: number): Buffer {
  const encoder = zstdEncoder({ codec: "zstd", level: 3, workers })!;
  const out: Buffer[] = [];
  const keep = (bytes: Buffer) => out.push(Buffer.from(bytes));
  for (let at = 0; at < data.length; at += 1 << 20) encoder.write(data.subarray(at, at + (1 << 20)), keep);
  encoder.end(keep);
  return Buffer.concat(out);
}

/** A skippable frame (RFC 8878 §3.1.2), which decoders pass over. */
function skippable(payload: Buffer): Buffer {
  const header = Buffer.alloc(8);
  header.writeUInt32LE(0x184d2a53, 0);
  header.writeUInt32LE(payload.length, 4);
  return Buffer.concat([header, payload]);
}

describe("zstd in JavaScript, for machines without the addon", () => {
  const data = sample(3 << 20);

  it("decodes the zstd CLI's and our encoder's output, whatever the chunking", () => {
    const small = data.subarray(0, 300_000);
    const cases: [string, Buffer, Buffer][] = [
      ["zstd -3", byCli(data, "-3"), data],
      ["zstd -1 --no-check", byCli(data, "-1", "--no-check"), data],
      ["zstd -19 (small)", byCli(small, "-19"), small],
      [
        "zstd -3 from stdin (no content size)",
        execFileSync("zstd", ["-3", "-q", "-c"], { input: data, maxBuffer: 64 << 20 }),
        data,
      ],
      ["ours, one thread", ours(data, 0), data],
      ["ours, two zstd threads", ours(data, 2), data],
      ["frames one after another", Buffer.concat([byCli(small, "-3"), ours(data, 0)]), Buffer.concat([small, data])],
      [
        "a skippable frame between two",
        Buffer.concat([byCli(small, "-3"), skippable(randomBytes(1000)), byCli(small, "-5")]),
        Buffer.concat([small, small]),
      ],
      ["empty input", byCli(Buffer.alloc(0)), Buffer.alloc(0)],
    ];
    for (const [name, compressed, expected] of cases) {
      expect(decodeNative(compressed).equals(expected), `${name}: the addon`).toBe(true);
      for (const chunk of [compressed.length || 1, 65_536, 4096, 7]) {
        expect(decode(compressed, chunk).equals(expected), `${name} in ${chunk}-byte pieces`).toBe(true);
      }
    }
  });

  it("decodes frames that end exactly where an output buffer fills", () => {
    for (const size of [PLAIN_CHUNK, 3 * PLAIN_CHUNK, PLAIN_CHUNK - 1, PLAIN_CHUNK + 1]) {
      const exact = data.subarray(0, size);
      const compressed = Buffer.concat([byCli(exact, "-3", "--check"), ours(exact, 0)]);
      expect(decode(compressed, 4096).equals(Buffer.concat([exact, exact])), `${size} bytes`).toBe(true);
    }
  });

  it("refuses data that ends inside a frame, as the addon does", () => {
    const whole = byCli(data.subarray(0, 400_000), "-3", "--check");
    const cuts = {
      "in the checksum": whole.subarray(0, whole.length - 2),
      "in the last block": whole.subarray(0, whole.length - 9),
      "in the frame header": whole.subarray(0, 5),
      "in a next frame's header": Buffer.concat([whole, whole.subarray(0, 6)]),
    };
    for (const [where, cut] of Object.entries(cuts)) {
      expect(() => decodeNative(cut), `${where}: the addon`).toThrow();
      for (const chunk of [cut.length, 1000]) expect(() => decode(cut, chunk), `${where}, ${chunk}`).toThrow();
    }
  });

  it("refuses garbage after a frame, and a frame whose window is over 128 MiB before decoding it", () => {
    const frame = byCli(data.subarray(0, 100_000), "-3");
    expect(() => decode(Buffer.concat([frame, Buffer.from("not zstd at all")]), 4096)).toThrow(/invalid zstd data/);
    // --long=28 on a stream of unknown size: the frame asks for a 256 MiB window.
    const huge = execFileSync("zstd", ["-q", "-c", "--long=28"], { input: data.subarray(0, 100_000) });
    expect(() => decodeNative(huge), "the addon refuses it too").toThrow();
    let emitted = 0;
    const decoder = new JsZstdDecoder(() => {
      emitted++;
      return true;
    });
    expect(() => decoder.write(huge.subarray(0, 6))).toThrow(/256 MiB window, more than the 128 MiB allowed/);
    expect(emitted).toBe(0);
    // 128 MiB itself is allowed (and a window is only as large as the data needs in memory terms).
    const allowed = execFileSync("zstd", ["-q", "-c", "--long=27"], { input: data.subarray(0, 100_000) });
    expect(decode(allowed, 65_536).equals(data.subarray(0, 100_000))).toBe(true);
  });

  it("gives a last frame under 18 bytes at end(), when it knows the data ended", () => {
    // A frame of 1000 zero bytes (one RLE block, no checksum): 10 bytes. fzstd waits for more.
    const block = (1000 << 3) | (1 << 1) | 1;
    const tiny = Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x08, block & 255, (block >> 8) & 255, block >> 16, 0]);
    const out: Buffer[] = [];
    const decoder = new JsZstdDecoder((data) => out.push(Buffer.from(data)) > 0);
    decoder.write(tiny);
    expect(out).toEqual([]);
    decoder.end();
    expect(Buffer.concat(out).equals(Buffer.alloc(1000))).toBe(true);
    expect(decodeNative(tiny).equals(Buffer.alloc(1000))).toBe(true);
  });

  it("stops when the caller says the output is over its limit", () => {
    expect(() => decode(byCli(data, "-3"), 65_536, 1 << 20)).toThrow(/output limit/);
  });

  it("throws an Error (never hangs) on damaged frames", () => {
    const frame = byCli(data.subarray(0, 200_000), "-3", "--check");
    let refused = 0;
    for (let round = 0; round < 300; round++) {
      const damaged = Buffer.from(frame);
      for (let flips = 1 + (round % 4); flips > 0; flips--) {
        const at = randomBytes(4).readUInt32LE(0) % damaged.length;
        damaged[at]! ^= 1 + (randomBytes(1)[0]! % 255);
      }
      try {
        decode(damaged, 4096, 1 << 20);
      } catch (err) {
        expect(err).toBeInstanceOf(Error);
        refused++;
      }
    }
    // Most damage is caught by the decoder itself; the rest by the manifest's hashes after it.
    expect(refused).toBeGreaterThan(0);
  });
});
