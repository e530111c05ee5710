import { readdir } from "node:fs/promises";
import path from "node:path";
import { claudeLayout } from "./paths.js";

/**
 * Which project folders hold a file of a given name, listed once per receiving
 * run and kept up to date with the transcripts the run installs. It narrows
 * `otherCopiesWarning` (which still lstats each candidate) from every project
 * folder to the few that may hold a copy: asked per session, a stat of every
 * folder cost 20 threadpool round trips per session on the bench corpus.
 * Files Claude Code creates meanwhile in other folders are missed: the check
 * is a warning, not a guarantee.
 */
export class TranscriptIndex {
  readonly #projects: string;
  #byName: Promise<Map<string, string[]>> | undefined;

  constructor(claudeDir: string) {
    this.#projects = claudeLayout(claudeDir).projects;
  }

  /** Project folders holding an entry named like `transcript` (its own folder included). */
  async foldersWith(transcript: string): Promise<string[]> {
    this.#byName ??= this.#list();
    return [...((await this.#byName).get(path.basename(transcript)) ?? [])];
  }

  /** Record a transcript just installed. */
  async add(transcript: string): Promise<void> {
    this.#byName ??= this.#list();
    const byName = await this.#byName;
    const name = path.basename(transcript);
    const folder = path.basename(path.dirname(transcript));
    const folders = byName.get(name) ?? [];
    if (!folders.includes(folder)) folders.push(folder);
    byName.set(name, folders);
  }

  async #list(): Promise<Map<string, string[]>> {
    const byName = new Map<string, string[]>();
    const folders = await readdir(this.#projects).catch(() => [] as string[]);
    for (const folder of folders) {
      for (const name of await readdir(path.join(this.#projects, folder)).catch(() => [] as string[])) {
        if (!name.endsWith(".jsonl")) continue;
        const holders = byName.get(name) ?? [];
        holders.push(folder);
        byName.set(name, holders);
      }
    }
    return byName;
  }
}
