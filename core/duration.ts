import { UsageError } from "./errors.js";

const UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 };

/** Longer than any duration a command means; a date this far ahead has no JavaScript Date. */
const LONGEST = 100 * 365 * 86400;

/**
 * "90s", "30m", "24h", "7d", "2w", or combinations like "1d12h" → seconds, at most `max`
 * (`maxText` says it to the user).
 */
export function parseDuration(text: string, flag = "duration", max = LONGEST, maxText = "100 years"): number {
  const trimmed = text.trim().toLowerCase();
  // `--ttl $UNSET`, `--since ""`: an empty value is a mistake, not a default.
  if (trimmed === "") throw new UsageError(`${flag} needs a duration`, { hint: "use e.g. 30m, 24h, 7d or 2w" });
  const re = /(\d+)\s*([smhdw])/g;
  let total = 0;
  let consumed = 0;
  for (const match of trimmed.matchAll(re)) {
    total += Number(match[1]) * UNITS[match[2]!]!;
    // Spaces are left out of both counts: "1 d" and "1d 12h" read as "1d" and "1d12h".
    consumed += match[0].replace(/\s+/g, "").length;
  }
  if (consumed === 0 || consumed !== trimmed.replace(/\s+/g, "").length || total <= 0) {
    throw new UsageError(`${flag}: cannot read "${text}" as a duration`, { hint: "use e.g. 30m, 24h, 7d or 2w" });
  }
  if (total > max)
    throw new UsageError(`${flag}: ${text} is longer than ${maxText}`, { hint: `use at most ${maxText}` });
  return total;
}

export function formatDuration(seconds: number): string {
  if (seconds % 604800 === 0) return `${seconds / 604800}w`;
  if (seconds % 86400 === 0) return `${seconds / 86400}d`;
  if (seconds % 3600 === 0) return `${seconds / 3600}h`;
  if (seconds % 60 === 0) return `${seconds / 60}m`;
  return `${seconds}s`;
}

export function formatBytes(bytes: number): string {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return `${unit === 0 ? value : value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

/** A record's time (seconds since 1970) as ISO text; a value no Date can hold (a hostile or very old record) says so. */
export function isoTime(seconds: number): string {
  const date = new Date(seconds * 1000);
  return Number.isNaN(date.getTime()) ? `(out of range: ${seconds})` : date.toISOString();
}
