// Prometheus metrics of the controller, in a Registry owned by the instance.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { RequestRecord } from "./kube.ts";
import type { ReconcileResult } from "./controller.ts";

const PREFIX = "chbackup_controller_";

export class ControllerMetrics {
  readonly registry = new Registry();
  readonly requests: Counter<"verb" | "resource" | "code">;
  readonly reconciles: Counter<"result">;
  readonly reconcileSeconds: Histogram;
  readonly leader: Gauge;
  readonly runnerPolls: Counter<"result">;
  /** Restore objects by status.phase (one without a status counts as Pending). */
  readonly restores: Gauge<"phase">;
  /** Per BackupDefinition: Unix time at which its newest successful backup ended. */
  readonly definitionLastSuccess: Gauge<"namespace" | "name">;
  /** Per BackupDefinition: 1 while its BackupHealthy condition is True, else 0. */
  readonly definitionHealthy: Gauge<"namespace" | "name">;
  /** Per BackupDefinition: 1 while spec.suspend is true (alerts leave these out), else 0. */
  readonly definitionSuspended: Gauge<"namespace" | "name">;
  /** Writes by verb, for tests and benchmarks (the same numbers as the counter). */
  readonly writes = { total: 0, byVerb: new Map<string, number>() };

  constructor(opts: { defaultMetrics?: boolean } = {}) {
    const registers = [this.registry];
    if (opts.defaultMetrics ?? true) collectDefaultMetrics({ register: this.registry });
    this.requests = new Counter({ name: `${PREFIX}api_requests_total`, help: "Kubernetes API requests by verb, resource and HTTP status (0 = no answer)", labelNames: ["verb", "resource", "code"], registers });
    this.reconciles = new Counter({ name: `${PREFIX}reconciles_total`, help: "Reconciles by result: success, invalid_spec, missing_reference, apply_failed, name_conflict, replacing, error (retried)", labelNames: ["result"], registers });
    this.reconcileSeconds = new Histogram({ name: `${PREFIX}reconcile_duration_seconds`, help: "Duration of one reconcile", buckets: [0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30], registers });
    this.leader = new Gauge({ name: `${PREFIX}leader`, help: "1 while this instance is the leader", registers });
    this.runnerPolls = new Counter({ name: `${PREFIX}runner_polls_total`, help: "Reads of a runner's API into its definition's status, by result (ok, unreachable)", labelNames: ["result"], registers });
    this.restores = new Gauge({ name: `${PREFIX}restores`, help: "Restore objects by phase (Pending, Running, Succeeded, Failed), as the leader sees them", labelNames: ["phase"], registers });
    this.definitionLastSuccess = new Gauge({ name: `${PREFIX}definition_last_success_timestamp_seconds`, help: "Unix time at which the newest successful backup of the BackupDefinition ended", labelNames: ["namespace", "name"], registers });
    this.definitionSuspended = new Gauge({ name: `${PREFIX}definition_suspended`, help: "1 while the BackupDefinition's scheduled backups are suspended (spec.suspend), else 0", labelNames: ["namespace", "name"], registers });
    this.definitionHealthy = new Gauge({ name: `${PREFIX}definition_healthy`, help: "1 while the BackupDefinition's BackupHealthy condition is True, else 0", labelNames: ["namespace", "name"], registers });
  }

  observeRequest = (r: RequestRecord): void => {
    this.requests.inc({ verb: r.verb, resource: r.resource, code: String(r.status) });
    if (r.verb !== "get" && r.verb !== "list" && r.verb !== "watch" && r.verb !== "discovery") {
      this.writes.total++;
      this.writes.byVerb.set(r.verb, (this.writes.byVerb.get(r.verb) ?? 0) + 1);
    }
  };

  observeReconcile = (_key: string, result: ReconcileResult, seconds: number): void => {
    this.reconciles.inc({ result });
    this.reconcileSeconds.observe(seconds);
  };
}
