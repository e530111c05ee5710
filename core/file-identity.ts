/**
 * What stat says about a file: enough to notice that it was rewritten or
 * appended to since we hashed it (inode, size, mtime in ns-backed ms), as
 * restic and rsync decide whether to read a file again.
 */
export interface FileIdentity {
  ino: number;
  size: number;
  mtimeMs: number;
}

export function fileIdentity(info: { ino: number; size: number; mtimeMs: number }): FileIdentity {
  return { ino: info.ino, size: info.size, mtimeMs: info.mtimeMs };
}

export function sameFile(a: FileIdentity, b: FileIdentity): boolean {
  return a.ino === b.ino && a.size === b.size && a.mtimeMs === b.mtimeMs;
}
