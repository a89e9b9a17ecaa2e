// The long-running service: catalog, schedule (or the one single backup),
// until the shutdown signal. The HTTP API is attached by the caller.
//
// Start-up never gives up on a transient outage: the operation journal is
// read at once (it is local), then loading the catalog is retried with
// backoff while the storage cannot be read, and the clean-up of interrupted
// restores is retried while the database cannot be reached. Until both are
// done the runner is not ready (/readyz says why) and takes no backup or
// restore; verify, which needs only the storage, works once the catalog is
// loaded.
import { setTimeout as sleep } from "node:timers/promises";
import type { Logger } from "winston";
import type { Runner } from "./runner.ts";
import { Scheduler, missedRun } from "./schedule.ts";
import { describeError } from "./errors.ts";

export interface RetryPolicy {
  /** First wait after a failure (default 1 s); doubles up to maxMs (default 15 s). */
  baseMs: number;
  maxMs: number;
}

export interface ServiceDeps {
  runner: Runner;
  logger: Logger;
  clock?: () => Date;
  retry?: RetryPolicy;
}

/** Where start-up is: loading the catalog (storage), cleaning up interrupted restores (database), ready. */
export type StartPhase = "loading-catalog" | "cleaning-up" | "ready";

export class RunnerService {
  readonly runner: Runner;
  readonly #log: Logger;
  readonly #now: () => Date;
  readonly #retry: RetryPolicy;
  #scheduler: Scheduler | undefined;
  #phase: StartPhase = "loading-catalog";
  #problem: string | undefined;
  #stopped = false;

  constructor(deps: ServiceDeps) {
    this.runner = deps.runner;
    this.#log = deps.logger;
    this.#now = deps.clock ?? (() => new Date());
    this.#retry = deps.retry ?? { baseMs: 1_000, maxMs: 15_000 };
  }

  /** Ready for every operation: catalog loaded and interrupted restores cleaned up. */
  get ready(): boolean {
    return this.#phase === "ready";
  }

  /** The catalog is loaded: backups can be listed, pinned and verified. */
  get catalogLoaded(): boolean {
    return this.#phase !== "loading-catalog";
  }

  /** Why the runner is not ready yet ("loading the backup catalog: <error>"), undefined once ready. */
  startupProblem(): string | undefined {
    if (this.#phase === "ready") return undefined;
    const what = this.#phase === "loading-catalog" ? "loading the backup catalog from storage" : "cleaning up after interrupted restores in the database";
    return this.#problem ? `${what}: ${this.#problem}` : what;
  }

  nextRun(): Date | undefined {
    return this.#scheduler?.nextRun();
  }

  /**
   * Loads the catalog, cleans up after interrupted restores and starts the
   * schedule (one backup at once if a scheduled run was missed), retrying
   * each step with backoff until it works. Resolves once ready; rejects only
   * when `signal` aborts.
   */
  async start(signal?: AbortSignal): Promise<void> {
    const def = this.runner.config.definition;
    await this.runner.loadJournal();
    await this.#untilDone("catalog", signal, () => this.runner.init(signal));
    this.#phase = "cleaning-up";
    this.#problem = undefined;
    await this.#untilDone("cleanup", signal, async () => {
      const ac = new AbortController();
      const onAbort = () => ac.abort(signal?.reason);
      signal?.addEventListener("abort", onAbort, { once: true });
      try {
        await this.runner.cleanupInterrupted(ac.signal);
      } finally {
        signal?.removeEventListener("abort", onAbort);
      }
    });
    if (this.#stopped) return;
    this.#phase = "ready";
    this.#problem = undefined;
    this.#log.info("runner ready", {});
    if (def.mode === "single") {
      const target = def.singleBackup!.target;
      if (await this.runner.targetHasBackup(target)) {
        this.#log.info("single backup already taken", { target });
      } else {
        this.runner.startSingleBackup(target);
      }
      return;
    }
    if (def.suspend) {
      this.#log.warn("schedule suspended", {});
      return;
    }
    const schedule = def.schedule!;
    this.#scheduler = new Scheduler({
      cron: schedule.cron,
      timeZone: schedule.timeZone,
      logger: this.#log,
      trigger: (reason) => {
        this.runner.startBackup(reason);
      },
    });
    this.#scheduler.start();
    const latest = this.runner.latest();
    if (missedRun(schedule.cron, schedule.timeZone, latest ? new Date(latest.manifest.startedAt) : undefined, this.#now())) {
      this.#log.info("scheduled run was missed; backing up now", { newestBackup: latest?.manifest.id });
      this.#scheduler.fire("missed");
    }
  }

  async #untilDone(step: "catalog" | "cleanup", signal: AbortSignal | undefined, fn: () => Promise<void>): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      signal?.throwIfAborted();
      if (this.#stopped) return;
      try {
        await fn();
        if (attempt > 1) this.#log.info("runner start: step succeeded after retries", { step, attempts: attempt });
        return;
      } catch (err: unknown) {
        signal?.throwIfAborted();
        this.#problem = describeError(err);
        const delayMs = Math.min(this.#retry.maxMs, this.#retry.baseMs * 2 ** Math.min(attempt - 1, 20));
        this.#log.warn(step === "catalog" ? "runner start: cannot load the catalog from storage; retrying" : "runner start: cannot clean up interrupted restores (database unreachable?); retrying", {
          attempt,
          retryInMs: delayMs,
          error: this.#problem,
        });
        await sleep(delayMs, undefined, signal ? { signal } : undefined).catch(() => signal?.throwIfAborted());
      }
    }
  }

  async stop(graceMs: number): Promise<void> {
    this.#stopped = true;
    await this.#scheduler?.stop().catch((err: unknown) => this.#log.error("stopping schedule failed", { error: describeError(err) }));
    await this.runner.shutdown(graceMs);
  }
}
