/**
 * Which snapshots a prune keeps (restic's forget policy, the parts ccbundle
 * has): the newest N; the newest of each of the last N days that have one
 * (local time); every one made within a duration. A snapshot any rule keeps
 * stays. The newest snapshot always stays, whatever the flags: it is the one a
 * running backup builds on and the one `restore --all` uses.
 */

export interface KeepPolicy {
  last?: number | undefined;
  daily?: number | undefined;
  withinSeconds?: number | undefined;
}

export type KeepReason = "newest" | "last" | "daily" | "within";

export interface PolicyResult {
  keep: Array<{ id: string; reasons: KeepReason[] }>;
  remove: string[];
}

export function applyPolicy(
  /**
   * `time` orders them (the id's time); `madeAt`, when known, is when the snapshot was really made,
   * for days and durations: an id that had to follow a parent dated ahead of the clock (see
   * newSnapshotId) carries the parent's time, not its own.
   */
  snapshots: Array<{ id: string; time: number; madeAt?: number }>,
  policy: KeepPolicy,
  now: number = Date.now(),
): PolicyResult {
  const ordered = [...snapshots].sort((a, b) => b.time - a.time || (a.id < b.id ? 1 : -1));
  const when = (snapshot: { time: number; madeAt?: number }) =>
    snapshot.madeAt === undefined || Number.isNaN(snapshot.madeAt)
      ? snapshot.time
      : Math.min(snapshot.time, snapshot.madeAt);
  const reasons = new Map<string, KeepReason[]>(ordered.map((snapshot) => [snapshot.id, []]));
  const add = (id: string, reason: KeepReason) => {
    reasons.get(id)!.push(reason);
  };
  if (ordered[0]) add(ordered[0].id, "newest");
  for (const snapshot of ordered.slice(0, policy.last ?? 0)) add(snapshot.id, "last");
  if (policy.daily) {
    const days = new Set<string>();
    for (const snapshot of ordered) {
      const day = localDay(when(snapshot));
      if (days.has(day)) continue;
      if (days.size >= policy.daily) break;
      days.add(day);
      add(snapshot.id, "daily");
    }
  }
  if (policy.withinSeconds !== undefined) {
    const since = now - policy.withinSeconds * 1000;
    for (const snapshot of ordered) if (when(snapshot) >= since) add(snapshot.id, "within");
  }
  return {
    keep: ordered.filter((s) => reasons.get(s.id)!.length > 0).map((s) => ({ id: s.id, reasons: reasons.get(s.id)! })),
    remove: ordered.filter((s) => reasons.get(s.id)!.length === 0).map((s) => s.id),
  };
}

function localDay(time: number): string {
  const date = new Date(time);
  return `${date.getFullYear()}-${date.getMonth() + 1}-${date.getDate()}`;
}
