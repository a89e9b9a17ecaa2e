// The long-running service: catalog, schedule (or the one single backup),
// until the shutdown signal. The HTTP API is attached by the caller.
import type { Logger } from "winston";
import type { Runner } from "./runner.ts";
import { Scheduler, missedRun } from "./schedule.ts";
import { describeError } from "./errors.ts";

export interface ServiceDeps {
  runner: Runner;
  logger: Logger;
  clock?: () => Date;
}

export class RunnerService {
  readonly runner: Runner;
  readonly #log: Logger;
  readonly #now: () => Date;
  #scheduler: Scheduler | undefined;
  #ready = false;

  constructor(deps: ServiceDeps) {
    this.runner = deps.runner;
    this.#log = deps.logger;
    this.#now = deps.clock ?? (() => new Date());
  }

  get ready(): boolean {
    return this.#ready;
  }

  nextRun(): Date | undefined {
    return this.#scheduler?.nextRun();
  }

  /** Loads the catalog and starts the schedule; runs one backup right away if a scheduled run was missed. */
  async start(signal?: AbortSignal): Promise<void> {
    const def = this.runner.config.definition;
    await this.runner.init(signal);
    this.#ready = true;
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

  async stop(graceMs: number): Promise<void> {
    await this.#scheduler?.stop().catch((err: unknown) => this.#log.error("stopping schedule failed", { error: describeError(err) }));
    await this.runner.shutdown(graceMs);
  }
}
