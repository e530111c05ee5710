/**
 * Progress of a long phase, for the CLI to draw (bars on a terminal, nothing
 * in cron). `done` and `total` are in `unit`; `total` may grow while a phase
 * runs (a session's size is known only once it is read).
 */
export interface ProgressEvent {
  phase: "scan" | "upload" | "download";
  unit: "sessions" | "bytes";
  done: number;
  total: number;
}

export type ProgressListener = (event: ProgressEvent) => void;
