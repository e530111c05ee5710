import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { GIT_MAX_OUTPUT, GIT_TIMEOUT_MS, type GitRunner, git } from "../claude/git.js";
import { withoutSecrets } from "../crypto/secrets.js";

/**
 * Runs backup's git commands through one `/bin/sh` started at the beginning of
 * the run, instead of one spawn per command. Why: Node forks itself for every
 * child, and the fork's cost grows with the process's memory; by the time
 * backup asks git about a project, worker threads and buffers have taken the
 * process to ~150 MB, and 60 git spawns (20 projects, 3 each) cost the main
 * thread ~0.45 s (from a 60 MB process: ~0.1 s). The shell is forked once
 * while the process is still small, and it forks git cheaply. (The bench's
 * projects are no checkouts: gitContext spawns nothing for them at all.)
 *
 * Commands run one at a time, in order; each one's output ends with a marker
 * line carrying its exit status. A command that runs over its timeout kills
 * the shell (and its git) and fails; should the shell be gone (it could not
 * start, or died), every command still waiting spawns git directly, as
 * gitContext does on its own. Not on Windows (no /bin/sh there).
 */

interface Request {
  cwd: string;
  args: string[];
  command: string;
  resolve: (output: string | undefined) => void;
}

export class GitShell {
  readonly #marker = `ccbundle-git-${randomBytes(12).toString("hex")}`;
  #shell: ChildProcess | undefined;
  readonly #queue: Request[] = [];
  #output: Buffer[] = [];
  #outputBytes = 0;
  #timer: NodeJS.Timeout | undefined;

  constructor() {
    if (process.platform === "win32") return;
    try {
      const shell = spawn("/bin/sh", [], {
        stdio: ["pipe", "pipe", "ignore"],
        detached: true,
        env: withoutSecrets(process.env),
      });
      shell.on("error", () => this.#fail());
      shell.on("exit", () => this.#fail());
      shell.stdin!.on("error", () => this.#fail());
      shell.stdout!.on("data", (bytes: Buffer) => this.#received(bytes));
      this.#shell = shell;
      this.#idle();
    } catch {
      this.#shell = undefined;
    }
  }

  readonly run: GitRunner = (cwd, args) => {
    if (!this.#shell) return git(cwd, args);
    const words = ["git", "-C", cwd, ...args].map(quote).join(" ");
    const command = `${words} </dev/null 2>/dev/null; printf '\\n${this.#marker} %d\\n' "$?"\n`;
    return new Promise((resolve) => {
      this.#queue.push({ cwd, args, command, resolve });
      // Referenced while a command is out: an unref'd shell must not let the process exit under an await.
      this.#shell!.ref();
      (this.#shell!.stdout as unknown as { ref(): void }).ref();
      if (this.#queue.length === 1) this.#start();
    });
  };

  /** Lets the shell exit (end of input); commands still queued finish first. */
  close(): void {
    this.#shell?.stdin?.end();
  }

  #start(): void {
    const request = this.#queue[0];
    if (!request || !this.#shell) return;
    this.#timer = setTimeout(() => this.#kill(), GIT_TIMEOUT_MS);
    this.#shell.stdin!.write(request.command);
  }

  #received(bytes: Buffer): void {
    this.#output.push(bytes);
    this.#outputBytes += bytes.length;
    for (;;) {
      const all = this.#output.length === 1 ? this.#output[0]! : Buffer.concat(this.#output);
      const end = all.indexOf(`\n${this.#marker} `);
      const lineEnd = end < 0 ? -1 : all.indexOf("\n", end + 1);
      if (lineEnd < 0) {
        this.#output = [all];
        return;
      }
      const status = all.toString("latin1", end + this.#marker.length + 2, lineEnd);
      const rest = all.subarray(lineEnd + 1);
      this.#output = rest.length > 0 ? [rest] : [];
      this.#outputBytes = rest.length;
      clearTimeout(this.#timer);
      const request = this.#queue.shift();
      const ok = status === "0" && end <= GIT_MAX_OUTPUT;
      request?.resolve(ok ? all.toString("utf8", 0, end).trim() : undefined);
      if (this.#queue.length > 0) this.#start();
      else this.#idle();
      if (this.#output.length === 0) return;
    }
  }

  #idle(): void {
    this.#shell?.unref();
    (this.#shell?.stdout as unknown as { unref(): void } | undefined)?.unref();
  }

  /** A command ran over its time: end the shell and its process group (git included). */
  #kill(): void {
    const shell = this.#shell;
    if (shell?.pid !== undefined) {
      try {
        process.kill(-shell.pid, "SIGKILL");
      } catch {
        shell.kill("SIGKILL");
      }
    }
    this.#fail(true);
  }

  /**
   * The shell is gone. A command that ran over its time fails (as execFile's timeout does); every
   * other command still waiting, including one cut off by the shell's own end (it failed to start,
   * or died), runs as a git process of its own.
   */
  #fail(timedOut = false): void {
    if (!this.#shell) return;
    this.#shell = undefined;
    clearTimeout(this.#timer);
    const requests = this.#queue.splice(0);
    if (timedOut) requests.shift()?.resolve(undefined);
    for (const request of requests) void git(request.cwd, request.args).then(request.resolve);
  }
}

function quote(word: string): string {
  return `'${word.replaceAll("'", `'\\''`)}'`;
}
