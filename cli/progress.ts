import { createRequire } from "node:module";
import type cliProgress from "cli-progress";
import type { ProgressEvent } from "../core/backup/progress.js";
import { formatBytes } from "../core/duration.js";
import { onInterrupt } from "../core/interrupt.js";
import type { Output } from "./output.js";

/**
 * Progress bars on stderr, one per phase (scan, upload, download), with
 * amount, rate and ETA. Only on a terminal: in cron, with --json or --quiet,
 * nothing is drawn.
 */
// Required on the first bar, not imported: cli-progress (and string-width under it) costs
// ~20 ms to load, and most runs (cron, --json, pipes) draw no bar at all.
const require = createRequire(import.meta.url);

export class PhaseBars {
  private bar: cliProgress.SingleBar | undefined;
  private phase: string | undefined;
  private started = 0;
  /** A bar hides the cursor and turns line wrap off: Ctrl-C must give both back (stop does). */
  private forgetInterrupt: (() => void) | undefined;
  /** Set by a signal: events that still arrive while cleanups run must not draw a new bar. */
  private interrupted = false;

  constructor(private readonly out: Output) {}

  /**
   * The listener to hand to a use case; undefined when no bars are drawn. With `minTotal`, a
   * phase smaller than that draws nothing (a push of a small session is over before a bar says
   * anything).
   */
  listener(options: { minTotal?: number } = {}): ((event: ProgressEvent) => void) | undefined {
    if (!this.out.interactive) return undefined;
    const min = options.minTotal ?? 0;
    return (event) => {
      if (event.total >= min) this.update(event);
    };
  }

  private update(event: ProgressEvent): void {
    if (this.interrupted) return;
    if (event.phase !== this.phase) {
      this.stop();
      this.phase = event.phase;
      this.started = Date.now();
      const bytes = event.unit === "bytes";
      const bars = require("cli-progress") as typeof cliProgress;
      this.bar = new bars.SingleBar(
        {
          format: `${event.phase.padEnd(8)} [{bar}] {percentage}% | {value} / {total}${bytes ? " | {rate}/s" : ""} | ETA {eta_formatted}`,
          stream: process.stderr,
          hideCursor: true,
          barsize: 24,
          etaBuffer: 40,
          fps: 8,
          formatValue: (value, _options, type) =>
            bytes && (type === "value" || type === "total") ? formatBytes(Number(value)) : String(value),
        },
        bars.Presets.shades_classic,
      );
      this.forgetInterrupt ??= onInterrupt(() => {
        this.interrupted = true;
        this.stop();
      });
      this.bar.start(Math.max(event.total, 1), 0, { rate: formatBytes(0) });
    }
    const seconds = Math.max((Date.now() - this.started) / 1000, 0.001);
    // A session's size is known only once read, and tar headers add a little: never past 100 %.
    this.bar!.setTotal(Math.max(event.total, event.done, 1));
    this.bar!.update(event.done, { rate: formatBytes(Math.round(event.done / seconds)) });
  }

  stop(): void {
    this.bar?.stop();
    this.bar = undefined;
    this.phase = undefined;
    this.forgetInterrupt?.();
    this.forgetInterrupt = undefined;
  }
}
