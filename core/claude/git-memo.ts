import { remembered } from "../remembered.js";
import { askGit, findCheckout, type GitAsker, type GitCheckout, subdirOf } from "./git.js";

/**
 * Git answers remembered for one receiving run, per checkout rather than per
 * folder: remote, branch, HEAD and dirtiness belong to the checkout, and
 * `restore --all` asks about many project folders of the same repository (the
 * bench corpus: 20 folders in one checkout, 60 git processes, ~0.4 s of
 * spawning on the main thread, for three processes' worth of answers).
 *
 * The checkout a folder belongs to is found as git finds it: up from the
 * folder's real path to the first `.git`, stopping at a file system boundary.
 * Whenever that walk might disagree with git (GIT_* variables in the
 * environment that change discovery, a folder inside a git dir or a bare repository, a boundary, an
 * unreadable folder), the folder is its own key: asked on its own, as before.
 */
export class GitMemo implements GitAsker {
  readonly #keys = new Map<string, string>();
  readonly #checkouts = new Map<string, Promise<GitCheckout | undefined>>();
  readonly #heads = new Map<string, Promise<string>>();

  async checkout(cwd: string): Promise<GitCheckout | undefined> {
    const checkout = await remembered(this.#checkouts, this.#key(cwd), () => askGit.checkout(cwd));
    // The subdir is the one fact of the folder itself (the first folder asked answered for all).
    if (!checkout) return undefined;
    return { root: checkout.root, context: { ...checkout.context, subdir: subdirOf(checkout.root, cwd) } };
  }

  heads(cwd: string, here: string, theirs: string): Promise<string> {
    return remembered(this.#heads, `${this.#key(cwd)}\0${here}\0${theirs}`, () => askGit.heads(cwd, here, theirs));
  }

  #key(cwd: string): string {
    return remembered(this.#keys, cwd, () => {
      const root = checkoutRoot(cwd);
      return root === undefined ? `folder:${cwd}` : `checkout:${root}`;
    });
  }
}

/**
 * The folder holding the `.git` that git would use for `cwd`, or undefined when that is not
 * certain (then the caller asks git about `cwd` alone).
 */
export function checkoutRoot(cwd: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const found = findCheckout(cwd, env);
  return typeof found === "object" ? found.root : undefined;
}
