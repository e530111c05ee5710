import {
  createHash,
  createPrivateKey,
  createPublicKey,
  type KeyObject,
  sign as nativeSign,
  verify as nativeVerify,
} from "node:crypto";

/**
 * ed25519 without @noble/curves: key derivation and signing run in OpenSSL
 * (node:crypto KeyObjects: private keys from the fixed RFC 8410 DER prefix,
 * public keys as JWK), and the few curve facts OpenSSL does not expose
 * (strict RFC 8032 point decoding, the small-order check, the
 * Edwards→Montgomery map) are computed here with BigInt.
 * Why: every ccbundle process derives the user's keys, and loading noble plus
 * building its base-point tables cost ~80 ms of CPU per process, twice per
 * handoff (push + pull); OpenSSL does the same work in well under 1 ms.
 *
 * Results are byte-identical to noble's (ed25519 signing is deterministic);
 * `verify` keeps noble's strict mode: canonical encodings only, S < L,
 * small-order public keys refused, cofactored equation.
 */

const SEED_SIZE = 32;
const PKCS8_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex");

function privateKeyObject(seed: Uint8Array): KeyObject {
  const der = Buffer.concat([PKCS8_PREFIX, seed]);
  try {
    return createPrivateKey({ key: der, format: "der", type: "pkcs8" });
  } finally {
    der.fill(0);
  }
}

/**
 * What a public key works out to, kept for the last few keys: a restore checks hundreds of
 * manifests by one signer, and each result costs ~0.5 ms to make again.
 */
function rememberedPerKey<T>(make: (publicKey: Uint8Array) => T): (publicKey: Uint8Array) => T {
  const kept = new Map<string, T>();
  return (publicKey) => {
    const id = Buffer.from(publicKey).toString("hex");
    if (kept.has(id)) return kept.get(id) as T;
    const value = make(publicKey);
    if (kept.size >= 64) kept.clear();
    kept.set(id, value);
    return value;
  };
}

const publicKeyObject = rememberedPerKey(
  (publicKey): KeyObject =>
    // JWK, not DER: OpenSSL 3's DER decoder costs ~0.12 ms a key, JWK ~0.02 ms (see age/x25519.ts).
    createPublicKey({
      key: { kty: "OKP", crv: "Ed25519", x: Buffer.from(publicKey).toString("base64url") },
      format: "jwk",
    }),
);

/**
 * OpenSSL's ed25519 verification alone (no strict checks), with the key object kept per key:
 * the DHT checks every value it is sent, from one key, a KeyObject (~0.2 ms) each.
 */
export function verifyNative(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  return nativeVerify(null, message, publicKeyObject(publicKey), signature);
}

/** The 32-byte public key of a 32-byte seed (RFC 8032 private key). */
export function publicKeyFromSeed(seed: Uint8Array): Uint8Array {
  checkSeed(seed);
  const { x } = createPublicKey(privateKeyObject(seed)).export({ format: "jwk" });
  return new Uint8Array(Buffer.from(x ?? "", "base64url"));
}

/**
 * The private KeyObject made for a seed array, kept while that array lives: backup signs one
 * manifest per session, and making the KeyObject from DER each time cost ~0.7 ms (0.2 s of main
 * thread for 300 sessions). Keyed by the array itself (no seed bytes in a key); the SHA-256 of the
 * seed notices a seed zeroed or rewritten in place (UserKey.destroy).
 */
const signingKeys = new WeakMap<Uint8Array, { digest: string; key: KeyObject }>();

function signingKey(seed: Uint8Array): KeyObject {
  const digest = createHash("sha256").update(seed).digest("base64");
  const kept = signingKeys.get(seed);
  if (kept?.digest === digest) return kept.key;
  const key = privateKeyObject(seed);
  signingKeys.set(seed, { digest, key });
  return key;
}

/** RFC 8032 signature (64 bytes) of `message` by `seed`. */
export function signWithSeed(message: Uint8Array, seed: Uint8Array): Uint8Array {
  checkSeed(seed);
  return new Uint8Array(nativeSign(null, message, signingKey(seed)));
}

/** libsodium's crypto_sign_ed25519_sk_to_curve25519: clamp(SHA-512(seed)[0..32]). */
export function montgomerySecret(seed: Uint8Array): Uint8Array {
  checkSeed(seed);
  const hash = createHash("sha512").update(seed).digest();
  const secret = Uint8Array.from(hash.subarray(0, 32));
  hash.fill(0);
  secret[0]! &= 248;
  secret[31]! &= 127;
  secret[31]! |= 64;
  return secret;
}

/**
 * libsodium's crypto_sign_ed25519_pk_to_curve25519: u = (1 + y) / (1 - y).
 * Throws on a key that is not a canonical curve point, or on y = 1 (no u).
 */
export function montgomeryPublic(publicKey: Uint8Array): Uint8Array {
  const point = decodedKey(publicKey);
  if (!point) throw new Error("bad point: not a canonical ed25519 public key");
  const denominator = mod(1n - point.y);
  if (denominator === 0n) throw new Error("invert: expected non-zero number");
  return numberToBytesLE(mod((1n + point.y) * invert(denominator)));
}

/** True when `bytes` decode to an ed25519 point (strict RFC 8032: y < p, x = 0 only with sign 0). */
export function isPoint(bytes: Uint8Array): boolean {
  return decodePoint(bytes) !== undefined;
}

/** True for the 8 points of small order (undefined for bytes that are no point). */
export function isSmallOrderPoint(bytes: Uint8Array): boolean | undefined {
  const point = decodedKey(bytes);
  return point ? isSmallOrder(extended(point)) : undefined;
}

/**
 * Strict RFC 8032 verification, as noble's `verify(…, { zip215: false })`:
 * canonical A and R, S < L, A not of small order, and the cofactored equation
 * [8]([S]B − R − [k]A) = 0. OpenSSL checks the cofactorless [S]B = R + [k]A,
 * which implies the cofactored one; only when it fails is the cofactored one
 * (true also for R or A with a torsion component) worked out here.
 */
export function verifyStrict(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  if (publicKey.length !== 32 || signature.length !== 64) return false;
  const A = strictPublicPoint(publicKey);
  const s = bytesToNumberLE(signature.subarray(32));
  if (!A || s >= L) return false;
  try {
    // OpenSSL recomputes R from S, A and the message and compares its canonical encoding with the
    // signature's R byte for byte: when it says yes, R is a canonical encoding of a curve point,
    // so decoding R (a BigInt square root, ~0.5 ms) is needed only on the slow path below.
    if (nativeVerify(null, message, publicKeyObject(publicKey), signature)) return true;
  } catch {
    // Fall through to the exact check.
  }
  const r = decodePoint(signature.subarray(0, 32));
  if (!r) return false;
  const k = mod(
    bytesToNumberLE(createHash("sha512").update(signature.subarray(0, 32)).update(publicKey).update(message).digest()),
    L,
  );
  const sB = multiply(BASE, s);
  const rkA = add(extended(r), multiply(A, k));
  return isSmallOrder(add(rkA, negate(sB)));
}

/** decodePoint of a public key, kept per key: a restore decodes one signer's key per manifest. */
const decodedKey = rememberedPerKey(decodePoint);

/** A public key decoded strictly (canonical, on the curve, not of small order), or undefined. */
const strictPublicPoint = rememberedPerKey((publicKey): Extended | undefined => {
  const decoded = decodedKey(publicKey);
  return decoded && !isSmallOrder(extended(decoded)) ? extended(decoded) : undefined;
});

/** Encodings libsodium refuses as R (and as a public key), sign bit ignored: the small-order points and y = p, p + 1. */
const SMALL_ORDER_ENCODINGS = [
  "0000000000000000000000000000000000000000000000000000000000000000",
  "0100000000000000000000000000000000000000000000000000000000000000",
  "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
  "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
  "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
  "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
  "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
].map((h) => Buffer.from(h, "hex"));

function onSmallOrderList(bytes: Uint8Array): boolean {
  const normed = Buffer.from(bytes);
  normed[31]! &= 0x7f;
  return SMALL_ORDER_ENCODINGS.some((entry) => entry.equals(normed));
}

/**
 * libsodium's crypto_sign_verify_detached, which pkarr verifies records with:
 * S < L, A canonical, on the curve and not of small order, R not a small-order
 * encoding, then the cofactorless equation (OpenSSL's, which compares R
 * byte for byte as libsodium does).
 */
export function verifySodium(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  if (publicKey.length !== 32 || signature.length !== 64) return false;
  if (bytesToNumberLE(signature.subarray(32)) >= L) return false;
  if (onSmallOrderList(signature.subarray(0, 32)) || onSmallOrderList(publicKey)) return false;
  if (!strictPublicPoint(publicKey)) return false;
  try {
    return nativeVerify(null, message, publicKeyObject(publicKey), signature);
  } catch {
    return false;
  }
}

function checkSeed(seed: Uint8Array): void {
  if (seed.length !== SEED_SIZE) throw new Error("an ed25519 seed must be 32 bytes");
}

// ---------------------------------------------------------------- field and curve arithmetic (not constant time: public data only)

const P = 2n ** 255n - 19n;
const L = 2n ** 252n + 27742317777372353535851937790883648493n;

function mod(a: bigint, m: bigint = P): bigint {
  const r = a % m;
  return r >= 0n ? r : r + m;
}

function pow(base: bigint, exponent: bigint): bigint {
  let result = 1n;
  let b = mod(base);
  let e = exponent;
  while (e > 0n) {
    if (e & 1n) result = (result * b) % P;
    b = (b * b) % P;
    e >>= 1n;
  }
  return result;
}

function invert(a: bigint): bigint {
  return pow(a, P - 2n);
}

// Literals, not computed at load: d = −121665/121666, 2d, and √−1 = 2^((p−1)/4) (RFC 8032 §5.1).
const D = 37095705934669439343138083508754565189542113879843219016388785533085940283555n;
const D2 = 16295367250680780974490674513165176452449235426866156013048779062215315747161n;
const SQRT_M1 = 19681161376707505956807079304988542015446066515923890162744021073123829784752n;

interface Affine {
  x: bigint;
  y: bigint;
}

/** Extended coordinates (X:Y:Z:T), x = X/Z, y = Y/Z, xy = T/Z. */
interface Extended {
  X: bigint;
  Y: bigint;
  Z: bigint;
  T: bigint;
}

const ZERO: Extended = { X: 0n, Y: 1n, Z: 1n, T: 0n };
const BASE = extended({
  x: 15112221349535400772501151409588531511454012693041857206046113283949847762202n,
  y: 46316835694926478169428394003475163141307993866256225615783033603165251855960n,
});

function bytesToNumberLE(bytes: Uint8Array): bigint {
  return BigInt(`0x${Buffer.from(bytes).reverse().toString("hex") || "0"}`);
}

function numberToBytesLE(n: bigint): Uint8Array {
  return new Uint8Array(Buffer.from(n.toString(16).padStart(64, "0"), "hex").reverse());
}

/** RFC 8032 §5.1.3 decoding; undefined for anything that is not a canonical encoding of a point. */
function decodePoint(bytes: Uint8Array): Affine | undefined {
  if (bytes.length !== 32) return undefined;
  const normed = Uint8Array.from(bytes);
  const sign = (normed[31]! & 0x80) !== 0;
  normed[31]! &= 0x7f;
  const y = bytesToNumberLE(normed);
  if (y >= P) return undefined;
  const y2 = (y * y) % P;
  const u = mod(y2 - 1n);
  const v = mod(D * y2 + 1n);
  // x = sqrt(u / v) = u v³ (u v⁷)^((p−5)/8), then fix up by sqrt(−1) if needed.
  const v3 = (v * v * v) % P;
  const v7 = (v3 * v3 * v) % P;
  let x = mod(u * v3 * pow(u * v7, (P - 5n) / 8n));
  const vx2 = mod(v * x * x);
  if (vx2 === mod(-u)) x = mod(x * SQRT_M1);
  else if (vx2 !== u) return undefined;
  if (x === 0n && sign) return undefined;
  if (((x & 1n) === 1n) !== sign) x = mod(-x);
  return { x, y };
}

function extended(point: Affine): Extended {
  return { X: point.x, Y: point.y, Z: 1n, T: mod(point.x * point.y) };
}

function negate(point: Extended): Extended {
  return { X: mod(-point.X), Y: point.Y, Z: point.Z, T: mod(-point.T) };
}

/** Complete addition for a = −1 (add-2008-hwcd-3); also doubles. */
function add(p: Extended, q: Extended): Extended {
  const a = mod((p.Y - p.X) * (q.Y - q.X));
  const b = mod((p.Y + p.X) * (q.Y + q.X));
  const c = mod(p.T * D2 * q.T);
  const d = mod(2n * p.Z * q.Z);
  const e = b - a;
  const f = d - c;
  const g = d + c;
  const h = b + a;
  return { X: mod(e * f), Y: mod(g * h), Z: mod(f * g), T: mod(e * h) };
}

function multiply(point: Extended, scalar: bigint): Extended {
  let result = ZERO;
  let addend = point;
  for (let n = scalar; n > 0n; n >>= 1n) {
    if (n & 1n) result = add(result, addend);
    addend = add(addend, addend);
  }
  return result;
}

function isZero(point: Extended): boolean {
  return mod(point.X) === 0n && mod(point.Y - point.Z) === 0n;
}

function isSmallOrder(point: Extended): boolean {
  let q = point;
  for (let i = 0; i < 3; i++) q = add(q, q);
  return isZero(q);
}
