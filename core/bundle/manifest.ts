import { IntegrityError } from "../errors.js";

/**
 * `ccbundle.json`, the first entry of every bundle: who made it, from where,
 * and for each session its files with size and sha256. Unpacking trusts
 * nothing that is not listed here, and the manifest itself is signed by the
 * publisher's ed25519 key (signature over the canonical JSON without the
 * `signature` field).
 */

export const BUNDLE_FORMAT = "ccbundle/1";
export const MANIFEST_NAME = "ccbundle.json";
/** A manifest larger than this is refused before parsing. */
export const MAX_MANIFEST_BYTES = 16 << 20;
const MAX_FILES = 200_000;
const MAX_FILE_BYTES = 2 ** 40;

export interface BundleFile {
  path: string;
  size: number;
  sha256: string;
}

export interface GitContext {
  remote?: string;
  branch?: string;
  head?: string;
  dirty?: boolean;
  /** The session's cwd relative to the repository root ("" at the root). */
  subdir?: string;
  /** When the session ran in a linked worktree: the repository's main checkout. */
  mainWorktree?: string;
}

export interface ManifestSession {
  id: string;
  /** The directory the session ran in, on the source machine. */
  cwd: string;
  /** Its project folder name under `projects/` on the source machine. */
  folder: string;
  title?: string;
  gitBranch?: string;
  claudeVersion?: string;
  firstTimestamp?: string;
  lastTimestamp?: string;
  git?: GitContext;
  files: BundleFile[];
}

export interface Manifest {
  format: typeof BUNDLE_FORMAT;
  created: string;
  tool: { name: string; version: string };
  source: { host: string; user: string; platform: string; home: string; claudeDir: string };
  /** z32 key of the signer. */
  publisher?: string;
  sessions: ManifestSession[];
  /** base64 ed25519 signature over canonicalJson(manifest without `signature`). */
  signature?: string;
}

/** JSON with object keys sorted at every level: the bytes the signature covers. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

export function signableBytes(manifest: Manifest): Buffer {
  const { signature: _signature, ...rest } = manifest;
  return Buffer.from(`ccbundle-manifest-v1\n${canonicalJson(rest)}`);
}

const SHA256 = /^[0-9a-f]{64}$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Parse and validate; anything off is an IntegrityError (exit 5). */
export function parseManifest(bytes: Uint8Array): Manifest {
  if (bytes.length > MAX_MANIFEST_BYTES) throw bad("manifest is too large");
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(bytes).toString("utf8"));
  } catch {
    throw bad("manifest is not JSON");
  }
  const m = value as Manifest;
  if (!isObject(m)) throw bad("manifest is not an object");
  if (m.format !== BUNDLE_FORMAT) {
    throw new IntegrityError(`unknown bundle format ${JSON.stringify(String(m.format)).slice(0, 40)}`, {
      hint: "this bundle was made by a newer ccbundle; upgrade ccbundle",
    });
  }
  if (typeof m.created !== "string" || !isObject(m.tool) || !isObject(m.source))
    throw bad("manifest header is incomplete");
  for (const key of ["host", "user", "platform", "home", "claudeDir"] as const) {
    if (typeof m.source[key] !== "string") throw bad(`manifest source.${key} missing`);
  }
  if (m.publisher !== undefined && (typeof m.publisher !== "string" || m.publisher.length !== 52)) {
    throw bad("manifest publisher is not a key");
  }
  if (m.signature !== undefined && typeof m.signature !== "string") throw bad("manifest signature is malformed");
  if (!Array.isArray(m.sessions) || m.sessions.length === 0) throw bad("manifest lists no sessions");
  const seenPaths = new Set<string>();
  let fileCount = 0;
  for (const session of m.sessions) {
    if (!isObject(session) || typeof session.id !== "string" || !UUID.test(session.id)) throw bad("bad session id");
    if (typeof session.cwd !== "string" || session.cwd.length === 0 || session.cwd.length > 4096) throw bad("bad cwd");
    if (typeof session.folder !== "string" || !isSafeComponent(session.folder)) throw bad("bad project folder");
    for (const key of ["title", "gitBranch", "claudeVersion", "firstTimestamp", "lastTimestamp"] as const) {
      if (session[key] !== undefined && (typeof session[key] !== "string" || session[key].length > 4096)) {
        throw bad(`bad ${key}`);
      }
    }
    if (!Array.isArray(session.files) || session.files.length === 0) throw bad("session lists no files");
    for (const file of session.files) {
      fileCount++;
      if (fileCount > MAX_FILES) throw bad("manifest lists too many files");
      if (!isObject(file) || typeof file.path !== "string") throw bad("bad file entry");
      if (!Number.isSafeInteger(file.size) || file.size < 0 || file.size > MAX_FILE_BYTES) throw bad("bad file size");
      if (typeof file.sha256 !== "string" || !SHA256.test(file.sha256)) throw bad("bad file hash");
      if (!isAllowedPath(file.path, session)) throw bad(`file outside the session's place: ${safeShow(file.path)}`);
      if (seenPaths.has(file.path)) throw bad(`file listed twice: ${safeShow(file.path)}`);
      seenPaths.add(file.path);
    }
  }
  return m;
}

/**
 * Where a session's files may go (DESIGN.md "Bundle"): its transcript and
 * folder, its file-history and tasks, plans, its legacy todos, history lines.
 */
export function isAllowedPath(bundlePath: string, session: Pick<ManifestSession, "id" | "folder">): boolean {
  const parts = bundlePath.split("/");
  if (parts.length < 2 || parts[0] !== "claude" || !parts.slice(1).every(isSafeComponent)) return false;
  const [, top, second, third] = parts;
  const id = session.id;
  switch (top) {
    case "projects":
      return (
        second === session.folder &&
        ((parts.length === 4 && third === `${id}.jsonl`) || (parts.length >= 5 && third === id))
      );
    case "file-history":
    case "tasks":
      return second === id && parts.length >= 4;
    case "plans":
      return parts.length === 3 && second !== undefined && /^[\w.-]+\.md$/.test(second);
    case "todos":
      return (
        parts.length === 3 && second !== undefined && second.startsWith(`${id}-agent-`) && second.endsWith(".json")
      );
    case "history.jsonl":
      return parts.length === 2;
    default:
      return false;
  }
}

function isSafeComponent(part: string): boolean {
  return (
    part.length > 0 &&
    part.length <= 255 &&
    part !== "." &&
    part !== ".." &&
    !part.includes("/") &&
    !part.includes("\\") &&
    !/[\u0000-\u001f]/.test(part)
  );
}

function isObject(value: unknown): value is Record<string, never> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function safeShow(text: string): string {
  return JSON.stringify(text.slice(0, 120));
}

function bad(what: string): IntegrityError {
  return new IntegrityError(`bundle rejected: ${what}`, { hint: "the bundle is damaged or was not made by ccbundle" });
}
