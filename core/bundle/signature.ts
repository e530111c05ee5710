import { decodeZ32PublicKey, verifyEd25519 } from "../crypto/keys.js";
import { IntegrityError } from "../errors.js";
import { type Manifest, signableBytes } from "./manifest.js";

/** Check a manifest's ed25519 signature; returns the signer's z32 key. */
export function verifyManifestSignature(manifest: Manifest): string {
  if (!manifest.publisher || !manifest.signature) {
    throw new IntegrityError("bundle is not signed", {
      hint: "only bundles made by ccbundle push/export/backup are accepted",
    });
  }
  let publicKey: Uint8Array;
  try {
    publicKey = decodeZ32PublicKey(manifest.publisher);
  } catch {
    throw new IntegrityError("bundle signer is not a valid key");
  }
  const signature = Buffer.from(manifest.signature, "base64");
  if (signature.length !== 64 || !verifyEd25519(publicKey, signableBytes(manifest), signature)) {
    throw new IntegrityError("bundle signature does not verify", {
      hint: "the bundle was modified after it was signed; do not trust it",
    });
  }
  return manifest.publisher;
}
