// Prometheus metrics of the runner, fed by the Runner's observer hooks.
// Every metric lives in a Registry owned by this instance (never prom-client's
// global default registry), so several runners or tests can coexist.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import { OPERATION_KINDS, type Operation, type OperationKind, type RunnerObserver } from "../runner.ts";
import { RETENTION_LABELS } from "../retention.ts";

const PREFIX = "chbackup_runner_";
const KINDS: readonly OperationKind[] = OPERATION_KINDS;
const RESULTS = ["succeeded", "failed", "aborted", "cancelled"] as const;

/** Seconds: a tiny test database takes about a second, a big one hours. */
export const DURATION_BUCKETS: readonly number[] = [1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14_400, 28_800, 57_600, 86_400];

export interface RunnerMetricsOptions {
  /** Registry to register in; a new one by default. */
  registry?: Registry;
  /** Also collect Node's default process metrics (default true). */
  defaultMetrics?: boolean;
}

export class RunnerMetrics {
  readonly registry: Registry;
  readonly #operations: Counter<"kind" | "result">;
  readonly #duration: Histogram<"kind">;
  readonly #bytes: Counter<"kind">;
  readonly #rows: Counter<"kind">;
  readonly #lastSuccess: Gauge<"kind">;
  readonly #consecutiveFailures: Gauge;
  readonly #current: Gauge<"kind">;
  readonly #backups: Gauge;
  readonly #byLabel: Gauge<"label">;
  #failures = 0;
  /**
   * The running restore, for its bytes: the runner reports restore progress
   * (bytes read) but may not call the bytes hook for restores, so bytes_total
   * {kind="restore"} follows max(hook bytes, progress bytes) of the operation.
   */
  #restore: { op: Operation; hooked: number; counted: number } | undefined;

  constructor(opts: RunnerMetricsOptions = {}) {
    this.registry = opts.registry ?? new Registry();
    const registers = [this.registry];
    if (opts.defaultMetrics ?? true) collectDefaultMetrics({ register: this.registry });
    this.#operations = new Counter({
      name: `${PREFIX}operations_total`,
      help: "Finished backup, restore and verify operations by result (succeeded, failed, aborted, cancelled)",
      labelNames: ["kind", "result"],
      registers,
    });
    this.#duration = new Histogram({
      name: `${PREFIX}operation_duration_seconds`,
      help: "Duration of finished operations in seconds",
      labelNames: ["kind"],
      buckets: [...DURATION_BUCKETS],
      registers,
    });
    const self = this;
    this.#bytes = new Counter({
      name: `${PREFIX}bytes_total`,
      help: "Bytes written to storage by backups (kind=backup) and read from storage by restores (kind=restore) and verify (kind=verify)",
      labelNames: ["kind"],
      registers,
      collect() {
        self.#syncRestoreBytes();
      },
    });
    this.#rows = new Counter({
      name: `${PREFIX}rows_total`,
      help: "Rows backed up (kind=backup), restored (kind=restore) and verified (kind=verify)",
      labelNames: ["kind"],
      registers,
    });
    this.#lastSuccess = new Gauge({
      name: `${PREFIX}last_success_timestamp_seconds`,
      help: "Unix time at which the last successful operation of a kind ended",
      labelNames: ["kind"],
      registers,
    });
    this.#consecutiveFailures = new Gauge({
      name: `${PREFIX}consecutive_failures`,
      help: "Operations that failed in a row since the last success",
      registers,
    });
    this.#current = new Gauge({
      name: `${PREFIX}current_operation`,
      help: "1 while an operation of the kind runs, else 0",
      labelNames: ["kind"],
      registers,
    });
    this.#backups = new Gauge({
      name: `${PREFIX}backups`,
      help: "Complete backups in the catalog",
      registers,
    });
    this.#byLabel = new Gauge({
      name: `${PREFIX}backups_by_label`,
      help: "Backups holding each retention label",
      labelNames: ["label"],
      registers,
    });
    // Series exist from the start, so rate() and increase() see the first event.
    for (const kind of KINDS) {
      for (const result of RESULTS) this.#operations.inc({ kind, result }, 0);
      this.#bytes.inc({ kind }, 0);
      this.#rows.inc({ kind }, 0);
      this.#current.set({ kind }, 0);
    }
    this.#consecutiveFailures.set(0);
  }

  #syncRestoreBytes(): void {
    const r = this.#restore;
    if (!r) return;
    const total = Math.max(r.hooked, r.op.progress.bytes);
    if (total > r.counted) {
      this.#bytes.inc({ kind: "restore" }, total - r.counted);
      r.counted = total;
    }
  }

  /** Hooks to pass to the Runner (RunnerDeps.observer). */
  observer(): RunnerObserver {
    return {
      operationStarted: (op) => {
        this.#current.set({ kind: op.kind }, 1);
        if (op.kind === "restore") this.#restore = { op, hooked: 0, counted: 0 };
      },
      operationFinished: (op) => {
        if (op.kind === "restore" && this.#restore?.op === op) {
          this.#syncRestoreBytes();
          this.#restore = undefined;
        }
        this.#current.set({ kind: op.kind }, 0);
        const result = op.state === "running" ? "failed" : op.state;
        this.#operations.inc({ kind: op.kind, result });
        if (op.durationMs !== undefined) this.#duration.observe({ kind: op.kind }, op.durationMs / 1000);
        if (op.state === "succeeded") {
          this.#failures = 0;
          const end = op.endedAt ? Date.parse(op.endedAt) : Date.now();
          this.#lastSuccess.set({ kind: op.kind }, end / 1000);
        } else {
          // same rule as the runner: aborted operations count as failures too
          this.#failures++;
        }
        this.#consecutiveFailures.set(this.#failures);
      },
      bytes: (kind, n) => {
        if (!(n > 0)) return;
        if (kind === "restore") {
          if (this.#restore) {
            this.#restore.hooked += n;
            this.#syncRestoreBytes();
            return;
          }
        }
        this.#bytes.inc({ kind }, n);
      },
      rows: (kind, n) => {
        if (n > 0) this.#rows.inc({ kind }, n);
      },
      retention: (labels, total) => {
        this.#backups.set(total);
        for (const label of RETENTION_LABELS) this.#byLabel.set({ label }, labels[label] ?? 0);
        for (const [label, n] of Object.entries(labels)) {
          if (!(RETENTION_LABELS as readonly string[]).includes(label)) this.#byLabel.set({ label }, n);
        }
      },
    };
  }
}
