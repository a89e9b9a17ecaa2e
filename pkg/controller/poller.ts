// Mirrors each runner into its BackupDefinition's status: the figures its API
// reports (newest backup, failures, next run, catalog, verify, the running
// operation) and two conditions, RunnerReady and BackupHealthy (health.ts).
// Writes only on change (one status merge patch, guarded by resourceVersion),
// records an Event on each condition transition, and keeps the last known
// figures when the runner cannot be reached (the conditions say so).
import type { Logger } from "winston";
import { runPool } from "../concurrency/pool.ts";
import { describeError } from "../common/errors.ts";
import { nextCondition, setCondition } from "./conditions.ts";
import { backupHealthy, parseDuration, runnerReady, ScheduleIntervals, type ConditionVerdict } from "./health.ts";
import type { Informer } from "./informer.ts";
import { KubeApiError, RESOURCES, type KubeClient } from "./kube.ts";
import { defKey } from "./names.ts";
import { lastAttemptFailed, mirrorFigures, type MirroredFigures, type RunnerSnapshotFetcher } from "./runnerstatus.ts";
import type { BackupDefinitionObject, BackupDefinitionStatus, KubeObject } from "./types.ts";

/** Per definition, for the metrics: newest success (Unix seconds) and whether BackupHealthy is True; undefined = forget. */
export type HealthReport = (namespace: string, name: string, h: { lastSuccessSeconds?: number; healthy?: boolean; suspended: boolean } | undefined) => void;

export interface RunnerPollerDeps {
  client: KubeClient;
  logger: Logger;
  now: () => Date;
  defs: Informer<BackupDefinitionObject>;
  statefulSets: Informer<KubeObject>;
  /** The runner's API token, from its Secret. */
  token: (secretName: string) => string | undefined;
  fetch: RunnerSnapshotFetcher;
  /** Records an Event on the definition (best effort). */
  event: (def: BackupDefinitionObject, type: "Normal" | "Warning", reason: string, message: string, log: Logger) => Promise<void>;
  /** BackupHealthy tolerance: the threshold is tolerance × the schedule's interval unless spec.staleAfter says otherwise. */
  tolerance: number;
  health?: HealthReport;
  /** After each read of a runner's API: whether it answered. */
  polled?: (ok: boolean) => void;
  /** Runners polled at once (default 8). */
  concurrency?: number;
}

const FIGURE_KEYS = ["lastBackup", "lastFailure", "consecutiveFailures", "nextRun", "backups", "lastVerified", "currentOperation"] as const;

export class RunnerPoller {
  readonly #d: RunnerPollerDeps;
  readonly #intervals = new ScheduleIntervals();
  /** When each runner last answered (this process's memory; for messages). */
  readonly #lastContact = new Map<string, string>();
  readonly #reported = new Set<string>();
  #polling = false;

  constructor(deps: RunnerPollerDeps) {
    this.#d = deps;
  }

  /** Polls every definition whose runner objects are in place; a poll still running skips this one. */
  async pollAll(signal: AbortSignal): Promise<void> {
    if (this.#polling) return;
    this.#polling = true;
    try {
      const defs = this.#d.defs.list().filter((d) => {
        const ready = d.status?.conditions?.find((c) => c.type === "Ready");
        return d.status?.runner && ready?.status === "True" && !d.metadata.deletionTimestamp;
      });
      const present = new Set(defs.map((d) => defKey(d.metadata.namespace ?? "", d.metadata.name)));
      for (const k of [...this.#reported]) {
        if (present.has(k)) continue;
        this.#reported.delete(k);
        this.#lastContact.delete(k);
        const [namespace, name] = [k.slice(0, k.indexOf("/")), k.slice(k.indexOf("/") + 1)];
        this.#d.health?.(namespace, name, undefined);
      }
      // pollOne never throws: one unreachable runner does not stop the others.
      await runPool(defs, this.#d.concurrency ?? 8, signal, (def, sig) => this.#pollOne(def, sig));
    } catch (err: unknown) {
      if (!signal.aborted) throw err;
    } finally {
      this.#polling = false;
    }
  }

  async #pollOne(def: BackupDefinitionObject, signal: AbortSignal): Promise<void> {
    const ns = def.metadata.namespace ?? "";
    const key = defKey(ns, def.metadata.name);
    const log = this.#d.logger.child({ definition: key });
    const runner = def.status!.runner!;
    const now = this.#d.now();
    const stamp = now.toISOString().replace(/\.\d{3}Z$/, "Z");
    const token = this.#d.token(runner.secret);
    let figures: MirroredFigures | undefined;
    let poll: Parameters<typeof runnerReady>[0]["poll"];
    let failing: { consecutive: number; since?: string; message: string } | undefined;
    try {
      if (!token) throw new Error("the runner Secret holds no API token yet");
      // The round's signal as it is: a per-runner AbortSignal.any with a timeout would register
      // a dependent on that long-lived signal per poll (the fetcher times out requests itself).
      const snap = await this.#d.fetch({ name: runner.service, namespace: runner.namespace }, token, signal);
      figures = mirrorFigures(snap);
      poll = { ok: true, readiness: snap.readiness };
      if (lastAttemptFailed(snap.status) && figures.lastFailure) {
        failing = { consecutive: Math.max(1, figures.consecutiveFailures), since: figures.lastFailure.time, message: figures.lastFailure.message };
      }
      this.#lastContact.set(key, stamp);
      this.#d.polled?.(true);
    } catch (err: unknown) {
      if (signal.aborted) return;
      poll = { ok: false, error: describeError(err) };
      this.#d.polled?.(false);
      log.debug("runner status not available", { error: poll.error });
    }
    // Work from the newest cached state: a reconcile may have written since the list was taken.
    const current = this.#d.defs.get(ns, def.metadata.name) ?? def;
    const old: BackupDefinitionStatus = current.status ?? {};
    const sts = this.#d.statefulSets.get(runner.namespace, runner.statefulSet) as (KubeObject & { status?: { readyReplicas?: number } }) | undefined;
    const rr = runnerReady({ readyReplicas: sts ? (sts.status?.readyReplicas ?? 0) : undefined, poll });
    // Unreachable: the last known figures stay (never shown as current: the conditions say since when).
    const known: Partial<MirroredFigures> = figures ?? figuresOf(old);
    const prevRunner = old.conditions?.find((c) => c.type === "RunnerReady");
    const unreachableSince = !poll.ok ? (prevRunner && prevRunner.status === "False" && prevRunner.reason === rr.reason ? prevRunner.lastTransitionTime : (this.#lastContact.get(key) ?? stamp)) : undefined;
    const spec = current.spec;
    const schedule = spec?.schedule ? { cron: spec.schedule.cron, timeZone: spec.schedule.timeZone ?? "UTC" } : undefined;
    let bh: ConditionVerdict | undefined;
    try {
      bh = backupHealthy({
        now,
        mode: spec?.mode === "single" ? "single" : "scheduled",
        suspended: spec?.suspend === true,
        schedule,
        staleAfterMs: spec?.staleAfter ? parseDuration(spec.staleAfter) : undefined,
        intervalMs: schedule ? this.#intervals.intervalMs(schedule.cron, schedule.timeZone, now) : 86_400_000,
        tolerance: this.#d.tolerance,
        createdAt: new Date(current.metadata.creationTimestamp ?? stamp),
        newestBackup: known.lastBackup ? new Date(known.lastBackup.time) : undefined,
        failing: poll.ok ? failing : old.consecutiveFailures && old.lastFailure ? { consecutive: old.consecutiveFailures, since: old.lastFailure.time, message: old.lastFailure.message } : undefined,
        blocked: rr.reason === "ClickHouseUnavailable" || rr.reason === "StorageUnavailable" ? rr.message : undefined,
        unreachable: unreachableSince !== undefined ? { since: unreachableSince, error: poll.ok ? "" : poll.error } : undefined,
      });
    } catch (err: unknown) {
      log.warn("backup health could not be judged", { error: describeError(err) });
    }
    const conds: { type: string; v: ConditionVerdict }[] = [{ type: "RunnerReady", v: rr }, ...(bh ? [{ type: "BackupHealthy", v: bh }] : [])];
    let conditions = old.conditions;
    const transitions: { type: string; v: ConditionVerdict }[] = [];
    for (const { type, v } of conds) {
      const prev = old.conditions?.find((c) => c.type === type);
      // An Event for each change; a condition's first value (a new definition's runner not ready
      // yet, say) is only logged: it is how every definition starts, not news.
      if (!prev) this.#d.logger.child({ definition: key }).info("condition set", { condition: type, status: v.status, reason: v.reason });
      else if (prev.status !== v.status || prev.reason !== v.reason) transitions.push({ type, v });
      conditions = setCondition(conditions, nextCondition(prev, type, v, current.metadata.generation, stamp));
    }
    // Figures only when read now; messages that only say "N minutes ago" are not rewritten every poll.
    const next: BackupDefinitionStatus = { ...old, ...(figures ? figuresOf(figures) : {}), conditions: conditions ?? [] };
    if (figures && !figures.currentOperation) delete next.currentOperation;
    if (figures && !figures.lastFailure) delete next.lastFailure;
    this.#d.health?.(ns, def.metadata.name, {
      ...(known.lastBackup ? { lastSuccessSeconds: Date.parse(known.lastBackup.time) / 1000 } : {}),
      ...(bh ? { healthy: bh.status === "True" } : {}),
      suspended: spec?.suspend === true,
    });
    this.#reported.add(key);
    if (sameStatus(old, next)) return;
    try {
      // resourceVersion makes this a compare-and-swap with the reconcile's status writes: a 409 waits for the next poll.
      const body = { metadata: { resourceVersion: current.metadata.resourceVersion }, status: { ...next, ...nulls(old, next) } };
      const updated = await this.#d.client.patch<BackupDefinitionObject>(RESOURCES.backupDefinitions, ns, def.metadata.name, body, "status");
      this.#d.defs.wrote(updated);
    } catch (err: unknown) {
      if (err instanceof KubeApiError && err.status === 409) return;
      log.warn("definition status not written", { error: describeError(err) });
      return;
    }
    for (const { type, v } of transitions) {
      const level = v.status === "True" ? "info" : "warn";
      log[level]("condition changed", { condition: type, status: v.status, reason: v.reason, detail: v.message });
      await this.#d.event(current, v.status === "False" ? "Warning" : "Normal", v.reason, v.message, log);
    }
  }
}

/** The mirrored figures that are set, from a status or from a poll (the same fields in both). */
function figuresOf(x: Partial<Record<(typeof FIGURE_KEYS)[number], unknown>>): Partial<MirroredFigures> & Partial<BackupDefinitionStatus> {
  const out: Record<string, unknown> = {};
  for (const k of FIGURE_KEYS) if (x[k] !== undefined) out[k] = x[k];
  return out;
}

/** Fields the old status had and the new one drops, as merge-patch nulls. */
function nulls(old: BackupDefinitionStatus, next: BackupDefinitionStatus): Record<string, null> {
  const out: Record<string, null> = {};
  for (const k of FIGURE_KEYS) if (old[k] !== undefined && next[k] === undefined) out[k] = null;
  return out;
}

/** Equal as stored: every figure, and each condition's type, status, reason, message and generation. */
function sameStatus(a: BackupDefinitionStatus, b: BackupDefinitionStatus): boolean {
  const norm = (s: BackupDefinitionStatus) =>
    JSON.stringify([
      FIGURE_KEYS.map((k) => canonical(s[k])),
      (s.conditions ?? []).map((c) => [c.type, c.status, c.reason, c.message, c.observedGeneration]),
    ]);
  return norm(a) === norm(b);
}

function canonical(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(canonical);
  if (v && typeof v === "object") return Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([x], [y]) => x.localeCompare(y)).map(([k, x]) => [k, canonical(x)]));
  return v;
}
