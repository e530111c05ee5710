// pkarr 1.3.0 ships types under pkarr/types but no `exports` map; we deep-import
// only the SignedPacket and key helpers so that loading them never pulls in its DHT
// wrapper (which reads ~/.config/pkarr and registers exit handlers).
declare module "pkarr/lib/signed_packet.js" {
  import SignedPacket from "pkarr/types/lib/signed_packet.js";
  export default SignedPacket;
}
declare module "pkarr/lib/tools.js" {
  export function generateKeyPair(seed?: Uint8Array): { publicKey: Uint8Array; secretKey: Uint8Array };
  export function encodeSigData(msg: { seq: number; v: Uint8Array }): Uint8Array;
}
