// z32 (mafintosh/z32) ships no types. z-base-32 as pkarr uses it for keys.
declare module "z32" {
  export function encode(data: Uint8Array | string): string;
  export function decode(s: string, out?: Uint8Array): Uint8Array;
  export const ALPHABET: string;
  const z32: { encode: typeof encode; decode: typeof decode; ALPHABET: string };
  export default z32;
}
