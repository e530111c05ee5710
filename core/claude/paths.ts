import path from "node:path";

/**
 * Claude Code's on-disk naming (DESIGN.md "Claude Code on disk"). A project's
 * sessions live in `projects/<folder>/` where the folder name is derived from
 * the realpath of the directory Claude Code was started in.
 */

const MAX_FOLDER_NAME = 200;

/** Java's String.hashCode over UTF-16 units, as Claude Code computes it. */
export function javaHash(text: string): number {
  let hash = 0;
  for (let i = 0; i < text.length; i++) {
    hash = ((hash << 5) - hash + text.charCodeAt(i)) | 0;
  }
  return hash;
}

/** `realpath(cwd).replace(/[^a-zA-Z0-9]/g, "-")`, hashed past 200 characters. */
export function projectFolderName(realProjectPath: string): string {
  const sanitized = realProjectPath.replace(/[^a-zA-Z0-9]/g, "-");
  if (sanitized.length <= MAX_FOLDER_NAME) return sanitized;
  return `${sanitized.slice(0, MAX_FOLDER_NAME)}-${Math.abs(javaHash(realProjectPath)).toString(36)}`;
}

/** Paths inside a Claude Code config dir. */
export function claudeLayout(claudeDir: string) {
  return {
    root: claudeDir,
    projects: path.join(claudeDir, "projects"),
    projectDir: (folder: string) => path.join(claudeDir, "projects", folder),
    transcript: (folder: string, sessionId: string) => path.join(claudeDir, "projects", folder, `${sessionId}.jsonl`),
    history: path.join(claudeDir, "history.jsonl"),
  };
}

/** A session id as Claude Code makes them (a UUID); anything else is refused before it touches a path. */
export const SESSION_ID_PATTERN = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

export function isSessionId(value: string): boolean {
  return SESSION_ID_PATTERN.test(value);
}
