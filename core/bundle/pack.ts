import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import tar from "tar-stream";
import { CcbError } from "../errors.js";
import { MANIFEST_NAME } from "./manifest.js";

/** A file to pack: read `size` bytes from `source` (or take `content`) and check they hash to `sha256`. */
export interface PackFile {
  path: string;
  size: number;
  sha256: string;
  source?: string | undefined;
  content?: Buffer | undefined;
}

/**
 * The tar stream of a bundle: the manifest first, then each file exactly as the
 * manifest lists it. Files are read a second time here (the first pass hashed
 * them); if the bytes changed in between, packing fails rather than ship a
 * bundle whose manifest lies.
 */
export function packBundle(manifestJson: Buffer, files: PackFile[]): Readable {
  const pack = tar.pack();
  (async () => {
    await writeEntry(pack, { name: MANIFEST_NAME, size: manifestJson.length }, manifestJson);
    for (const file of files) {
      if (file.content !== undefined || file.size === 0) {
        const content = file.content ?? Buffer.alloc(0);
        checkHash(file, createHash("sha256").update(content).digest("hex"));
        await writeEntry(pack, { name: file.path, size: content.length }, content);
        continue;
      }
      const hash = createHash("sha256");
      const hasher = new Transform({
        transform(chunk: Buffer, _enc, done) {
          hash.update(chunk);
          done(null, chunk);
        },
      });
      // tar-stream's entry sink is a streamx Writable; node's pipeline drives it fine.
      const sink = pack.entry({ ...HEADER, name: file.path, size: file.size, mtime: new Date() });
      await pipeline(
        createReadStream(file.source!, { start: 0, end: file.size - 1, highWaterMark: 1 << 20 }),
        hasher,
        sink as unknown as NodeJS.WritableStream,
      );
      checkHash(file, hash.digest("hex"));
    }
    pack.finalize();
  })().catch((err: unknown) => pack.destroy(err as Error));
  // tar-stream is built on streamx; hand callers a plain node Readable.
  return Readable.from(pack as AsyncIterable<Buffer>, { objectMode: false });
}

const HEADER = { mode: 0o600, uname: "", gname: "" } as const;

function writeEntry(pack: tar.Pack, header: { name: string; size: number }, content: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    pack.entry({ ...HEADER, ...header, mtime: new Date() }, content, (err) => (err ? reject(err) : resolve()));
  });
}

function checkHash(file: PackFile, actual: string): void {
  if (actual !== file.sha256) {
    throw new CcbError(`${file.path} changed while it was being packed`, 1, {
      hint: "run the command again (Claude Code rewrote the file meanwhile)",
    });
  }
}
