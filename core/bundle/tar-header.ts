/**
 * POSIX tar (ustar + pax) headers for the entries ccbundle writes: regular
 * files only. Written by hand because tar-stream's pack (streamx) capped the
 * whole bundle pipeline at ~390 MB/s in memory on the bench corpus, below
 * `zstd -3` itself; a header is 512 bytes of fixed fields. GNU tar and
 * tar-stream's extract read what this writes (test/bundle-pipeline.test.ts), and
 * so does tar-reader.ts (test/tar-reader.test.ts).
 */

export const BLOCK = 512;
/** Two zero blocks end an archive. */
export const END_OF_ARCHIVE = Buffer.alloc(2 * BLOCK);
const ZEROS = Buffer.alloc(BLOCK);
/** The largest size the 11 octal digits of a ustar size field hold; beyond it a pax `size` record says it. */
const MAX_USTAR_SIZE = 0o77777777777;

export interface FileHeader {
  name: string;
  size: number;
  mode: number;
  /** Seconds since the epoch. */
  mtime: number;
}

/** The header block(s) for one regular file: a pax extended header first when ustar cannot hold the name or size. */
export function fileHeader(entry: FileHeader): Buffer {
  const name = Buffer.from(entry.name, "utf8");
  const split = splitName(name);
  const records: string[] = [];
  if (!split) records.push(paxRecord("path", entry.name));
  if (entry.size > MAX_USTAR_SIZE) records.push(paxRecord("size", String(entry.size)));
  const ustar = ustarHeader({
    name: split ? split.name : name.subarray(Math.max(0, name.length - 100)),
    prefix: split ? split.prefix : Buffer.alloc(0),
    size: entry.size > MAX_USTAR_SIZE ? 0 : entry.size,
    mode: entry.mode,
    mtime: entry.mtime,
    type: "0",
  });
  if (records.length === 0) return ustar;
  const body = Buffer.from(records.join(""), "utf8");
  const pax = ustarHeader({
    name: Buffer.from("PaxHeader", "latin1"),
    prefix: Buffer.alloc(0),
    size: body.length,
    mode: 0o644,
    mtime: entry.mtime,
    type: "x",
  });
  return Buffer.concat([pax, body, padding(body.length), ustar]);
}

/** How many zero bytes fill the last block of an entry of `size` bytes. */
export function paddingSize(size: number): number {
  return (BLOCK - (size % BLOCK)) % BLOCK;
}

/** Zero bytes that fill the last block of an entry of `size` bytes. */
export function padding(size: number): Buffer {
  return ZEROS.subarray(0, paddingSize(size));
}

/** Split a name into ustar's prefix (≤155 bytes) and name (≤100 bytes) at a slash, if it fits. */
function splitName(name: Buffer): { prefix: Buffer; name: Buffer } | undefined {
  if (name.length <= 100) return { prefix: Buffer.alloc(0), name };
  if (name.length > 256) return undefined;
  for (let i = Math.min(155, name.length - 2); i > 0; i--) {
    if (name[i] === 0x2f && name.length - i - 1 <= 100)
      return { prefix: name.subarray(0, i), name: name.subarray(i + 1) };
  }
  return undefined;
}

/** One pax record: "<length> <key>=<value>\n", where length counts itself. */
function paxRecord(key: string, value: string): string {
  const rest = Buffer.byteLength(` ${key}=${value}\n`, "utf8");
  let length = rest + String(rest).length;
  if (String(length).length !== String(rest).length) length = rest + String(length).length;
  return `${length} ${key}=${value}\n`;
}

function ustarHeader(h: {
  name: Buffer;
  prefix: Buffer;
  size: number;
  mode: number;
  mtime: number;
  type: "0" | "x";
}): Buffer {
  const block = Buffer.alloc(BLOCK);
  h.name.copy(block, 0, 0, 100);
  octal(block, 100, 8, h.mode);
  octal(block, 108, 8, 0); // uid
  octal(block, 116, 8, 0); // gid
  octal(block, 124, 12, h.size);
  octal(block, 136, 12, h.mtime);
  block.write(h.type, 156, "latin1");
  block.write("ustar\u000000", 257, "latin1");
  h.prefix.copy(block, 345, 0, 155);
  // The checksum is computed with its own field as eight spaces.
  block.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += block[i]!;
  block.write(`${sum.toString(8).padStart(6, "0")}\u0000 `, 148, "latin1");
  return block;
}

/** A zero-padded octal number, NUL-terminated, in a field of `width` bytes. */
function octal(block: Buffer, offset: number, width: number, value: number): void {
  block.write(
    `${Math.floor(value)
      .toString(8)
      .padStart(width - 1, "0")}\u0000`,
    offset,
    "latin1",
  );
}
