// The RunnerReady and BackupHealthy conditions of a BackupDefinition, from
// what the controller knows: the runner StatefulSet's ready replicas, the last
// poll of the runner's API (or why it failed) and the definition's schedule.
// Pure: inputs in, condition out.
import cron from "node-cron";

export interface ConditionVerdict {
  status: "True" | "False" | "Unknown";
  reason: string;
  message: string;
}

/** "26h", "90m", "1h30m", "2d", "45s" → milliseconds; undefined when it is not a duration. */
export function parseDuration(s: string): number | undefined {
  const m = /^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$/.exec(s.trim());
  if (!m || s.trim() === "") return undefined;
  const [, d, h, min, sec] = m;
  return ((Number(d ?? 0) * 24 + Number(h ?? 0)) * 60 + Number(min ?? 0)) * 60_000 + Number(sec ?? 0) * 1000;
}

export const DURATION_PATTERN = "^([0-9]+d)?([0-9]+h)?([0-9]+m)?([0-9]+s)?$";

/** "3h 5m" for messages. */
export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  const d = Math.floor(s / 86_400);
  const h = Math.floor((s % 86_400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  const parts = [d ? `${d}d` : "", h ? `${h}h` : "", m ? `${m}m` : "", !d && !h && !m ? `${s % 60}s` : ""].filter(Boolean);
  return parts.join(" ");
}

/**
 * The longest gap between two runs of a cron schedule, measured over the 35 days after `from`
 * (so a weekday-only or monthly schedule gets its real worst gap), at most 400 matches; a schedule
 * that runs at most once in that window counts as yearly. Memoized per expression and zone: the
 * scan costs tens of milliseconds once, then nothing.
 */
export class ScheduleIntervals {
  readonly #cache = new Map<string, number>();

  intervalMs(expr: string, timeZone: string, from: Date): number {
    const key = `${expr}\u0000${timeZone}`;
    const hit = this.#cache.get(key);
    if (hit !== undefined) return hit;
    const task = cron.createTask(expr, () => undefined, { timezone: timeZone });
    try {
      const fields = expr.trim().split(/\s+/);
      const seconds = fields.length === 6;
      let step = seconds ? 1000 : 60_000;
      const windowMs = seconds ? 2 * 86_400_000 : 35 * 86_400_000;
      let t = Math.ceil(from.getTime() / step) * step;
      // A fixed minute ("0 2 * * *", "30 * * * *"): only that minute of each hour can match, so step
      // by hours from the first time the zone's clock shows it (a scan by minutes takes seconds).
      if (!seconds && /^\d+$/.test(fields[0]!)) {
        const minuteOf = new Intl.DateTimeFormat("en-US", { timeZone, minute: "numeric" });
        const want = Number(fields[0]);
        for (let i = 0; i < 60 && Number(minuteOf.format(new Date(t))) !== want; i++) t += 60_000;
        step = 3_600_000;
      }
      const end = t + windowMs;
      let prev: number | undefined;
      let max = 0;
      let matches = 0;
      for (; t <= end && matches < 400; t += step) {
        if (!task.match(new Date(t))) continue;
        if (prev !== undefined) max = Math.max(max, t - prev);
        prev = t;
        matches++;
      }
      const interval = matches >= 2 ? max : 366 * 86_400_000;
      this.#cache.set(key, interval);
      return interval;
    } finally {
      void task.destroy();
    }
  }
}

export interface RunnerReadyInput {
  /** The runner StatefulSet's ready replicas (undefined: no StatefulSet in the cache). */
  readyReplicas: number | undefined;
  /** The last poll: the runner's readiness, or why it could not be read. */
  poll: { ok: true; readiness: { ready: boolean; checks: { runner?: string; storage?: string; engine?: string } } } | { ok: false; error: string };
}

/** RunnerReady: the pod is ready, the runner answers, and it reaches its storage and ClickHouse. */
export function runnerReady(i: RunnerReadyInput): ConditionVerdict {
  if (!i.readyReplicas || i.readyReplicas < 1) {
    return { status: "False", reason: "PodNotReady", message: `the runner pod is not ready (StatefulSet ${i.readyReplicas ?? 0}/1 ready)${i.poll.ok ? "" : `; the runner does not answer: ${i.poll.error}`}` };
  }
  if (!i.poll.ok) return { status: "False", reason: "RunnerUnreachable", message: `the runner pod is ready but its API does not answer: ${i.poll.error}` };
  const c = i.poll.readiness.checks;
  if (c.storage && c.storage !== "ok") return { status: "False", reason: "StorageUnavailable", message: `the runner cannot use its storage: ${c.storage}` };
  if (c.engine && c.engine !== "ok") return { status: "False", reason: "ClickHouseUnavailable", message: `the runner cannot reach ClickHouse: ${c.engine}` };
  if (!i.poll.readiness.ready) return { status: "False", reason: "RunnerNotReady", message: `the runner is not ready: ${c.runner ?? "starting"}` };
  return { status: "True", reason: "RunnerReady", message: "the runner answers and reaches its storage and ClickHouse" };
}

export interface BackupHealthInput {
  now: Date;
  mode: "scheduled" | "single";
  suspended: boolean;
  /** Since when the spec says suspended (the condition's own transition time, if it already said so). */
  schedule?: { cron: string; timeZone: string } | undefined;
  /** spec.staleAfter in ms, when set. */
  staleAfterMs?: number | undefined;
  /** Expected interval of the schedule (ScheduleIntervals). */
  intervalMs: number;
  /** Tolerance × interval when staleAfter is not set (default 2). */
  tolerance: number;
  /** When the definition was created (for "no backup yet"). */
  createdAt: Date;
  /** Newest successful backup's end, as last known (also when the runner is unreachable now). */
  newestBackup?: Date | undefined;
  /** The newest attempt failed, with how many in a row and the last message. */
  failing?: { consecutive: number; since?: string | undefined; message: string } | undefined;
  /** The runner answers but cannot back up: it cannot reach ClickHouse or its storage (RunnerReady's message). */
  blocked?: string | undefined;
  /** The runner could not be read now (since when, and why). */
  unreachable?: { since: string; error: string } | undefined;
}

/** How old the newest backup may be before BackupHealthy turns False. */
export function staleThresholdMs(i: Pick<BackupHealthInput, "staleAfterMs" | "intervalMs" | "tolerance">): number {
  return i.staleAfterMs ?? i.intervalMs * i.tolerance;
}

/**
 * BackupHealthy: True while the newest backup is younger than the threshold. Otherwise False,
 * with the most useful reason first: Suspended, then BackupsFailing (the newest attempts failed, or
 * the runner cannot reach ClickHouse or its storage, so none can run),
 * NoRecentBackup (nothing failed, nothing happened: a stopped runner, a schedule that never
 * fires), and RunnerUnreachable when the runner cannot be read although the last known backup is
 * still recent (the figures cannot be confirmed). Undefined in single-backup mode.
 */
export function backupHealthy(i: BackupHealthInput): ConditionVerdict | undefined {
  if (i.mode !== "scheduled") return undefined;
  if (i.suspended) return { status: "False", reason: "Suspended", message: "scheduled backups are suspended (spec.suspend: true)" };
  const threshold = staleThresholdMs(i);
  const age = i.newestBackup ? i.now.getTime() - i.newestBackup.getTime() : undefined;
  const within = `${formatDuration(threshold)} (${i.staleAfterMs !== undefined ? "spec.staleAfter" : `${i.tolerance} × the schedule's interval of ${formatDuration(i.intervalMs)}`})`;
  const stale = age === undefined ? i.now.getTime() - i.createdAt.getTime() > threshold : age > threshold;
  // Absolute times only: a message that said "3 minutes ago" would change, and be written, on every poll.
  const newest = i.newestBackup ? `the newest backup ended at ${i.newestBackup.toISOString().replace(/\.\d+Z$/, "Z")}` : "there is no backup yet";
  const runnerNote = i.unreachable ? `; the runner has not answered since ${i.unreachable.since}, so this is the last known state` : "";
  if (i.failing && (stale || age === undefined)) {
    return {
      status: "False",
      reason: "BackupsFailing",
      message: `${i.failing.consecutive} backup attempt(s) in a row failed${i.failing.since ? `, the last at ${i.failing.since}` : ""}: ${i.failing.message}; ${newest}${runnerNote}`,
    };
  }
  if (i.blocked && (stale || age === undefined)) {
    return { status: "False", reason: "BackupsFailing", message: `no backup can run: ${i.blocked}; ${newest}` };
  }
  if (stale) return { status: "False", reason: "NoRecentBackup", message: `${newest}: none in the last ${within}${runnerNote}` };
  // A new definition whose runner is not up yet is simply waiting (RunnerReady says why).
  if (age === undefined) return { status: "Unknown", reason: "AwaitingFirstBackup", message: `there is no backup yet; the first is expected within ${within} of the definition's creation` };
  if (i.unreachable) return { status: "False", reason: "RunnerUnreachable", message: `the runner has not answered since ${i.unreachable.since} (${i.unreachable.error}); the last known state: ${newest}` };
  return { status: "True", reason: "RecentBackup", message: `${newest}, within the last ${within}` };
}
