// z32 1.x ships no types. Core code uses core/pointer/z32.ts; tests compare against this package.
declare module "z32" {
  const z32: {
    encode(bytes: Uint8Array): string;
    decode(text: string, out?: Uint8Array): Uint8Array;
    ALPHABET: string;
  };
  export default z32;
}
