import { randomBytes } from "node:crypto";

/** Text that compresses like a transcript, with some incompressible bytes. */
export function sample(bytes: number): Buffer {
  const words = "const value await import export function return session transcript claude".split(" ");
  const parts: string[] = [];
  let n = 0;
  for (let i = 0; n < bytes; i++) {
    const piece = i % 50 === 0 ? randomBytes(300).toString("base64") : `${words[i % words.length]}_${i % 977} `;
    parts.push(piece);
    n += piece.length;
  }
  return Buffer.from(parts.join("")).subarray(0, bytes);
}
