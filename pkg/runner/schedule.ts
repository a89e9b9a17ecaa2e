// Cron scheduling (node-cron, with time zone) and missed-run detection.
import cron, { type ScheduledTask } from "node-cron";
import type { Logger } from "winston";
import { BusyError, ShuttingDownError, describeError } from "./errors.ts";

/** Problems with a cron expression, empty when valid. */
export function cronProblems(expr: string): string[] {
  const r = cron.validateDetailed(expr);
  return r.valid ? [] : r.errors.map((e) => `${e.field}: ${e.message}`);
}

/** A matcher for the expression in the zone; the returned task is never started. */
export function cronMatcher(expr: string, timeZone: string): (d: Date) => boolean {
  const task = cron.createTask(expr, () => undefined, { timezone: timeZone });
  const match = (d: Date) => task.match(d);
  void task.destroy();
  return match;
}

/**
 * The latest time ≤ now at which the schedule fired, looking back at most
 * `lookbackDays`. Steps by second for 6-field expressions, by minute otherwise.
 */
export function previousTick(expr: string, timeZone: string, now: Date, lookbackDays = 400): Date | undefined {
  const match = cronMatcher(expr, timeZone);
  const step = expr.trim().split(/\s+/).length === 6 ? 1000 : 60_000;
  let t = Math.floor(now.getTime() / step) * step;
  const stop = now.getTime() - lookbackDays * 86_400_000;
  for (; t >= stop; t -= step) if (match(new Date(t))) return new Date(t);
  return undefined;
}

/** True when the schedule fired after the newest backup (or there is none), so one backup is owed. */
export function missedRun(expr: string, timeZone: string, newestBackup: Date | undefined, now: Date): boolean {
  if (!newestBackup) return true;
  const prev = previousTick(expr, timeZone, now);
  return prev !== undefined && prev.getTime() > newestBackup.getTime();
}

export interface SchedulerDeps {
  cron: string;
  timeZone: string;
  logger: Logger;
  /** Starts a backup; throws BusyError if an operation is running. */
  trigger: (reason: "schedule" | "missed") => void;
}

export class Scheduler {
  readonly #deps: SchedulerDeps;
  #task: ScheduledTask | undefined;

  constructor(deps: SchedulerDeps) {
    const problems = cronProblems(deps.cron);
    if (problems.length) throw new Error(`invalid cron expression "${deps.cron}": ${problems.join("; ")}`);
    this.#deps = deps;
  }

  start(): void {
    const { logger } = this.#deps;
    this.#task = cron.schedule(
      this.#deps.cron,
      () => {
        this.fire("schedule");
      },
      { timezone: this.#deps.timeZone, name: "backup", noOverlap: false, suppressMissedWarning: true },
    );
    logger.info("schedule started", { cron: this.#deps.cron, timeZone: this.#deps.timeZone, nextRun: this.nextRun()?.toISOString() });
  }

  /** Starts a backup now unless one is running (then the tick is skipped and logged). */
  fire(reason: "schedule" | "missed"): boolean {
    try {
      this.#deps.trigger(reason);
      return true;
    } catch (err: unknown) {
      if (err instanceof BusyError || err instanceof ShuttingDownError) {
        this.#deps.logger.warn("scheduled backup skipped", { reason: err.message });
        return false;
      }
      this.#deps.logger.error("scheduled backup could not start", { error: describeError(err) });
      return false;
    }
  }

  nextRun(): Date | undefined {
    return this.#task?.getNextRun() ?? undefined;
  }

  async stop(): Promise<void> {
    await this.#task?.destroy();
    this.#task = undefined;
  }
}
