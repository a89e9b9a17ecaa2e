// Restore objects: a Restore in an app namespace is sent to the runner of the BackupDefinition it
// names (same namespace), and the runner's operation is mirrored into the Restore's status until it
// ends.
//
// Exactly once. The request carries the Restore's uid as its Idempotency-Key: the runner starts
// one operation per key and answers a repeated key with the operation it already started (200
// instead of 202), also after its own restart (the key is journaled with the operation). So a
// controller that crashed between the POST and the status write, or two controllers that overlap
// during a leader change, send the same key and get the same operation: nothing runs twice. A
// Restore whose status holds an operationId is only polled, never sent again. The one gap: a
// runner that forgot the operation (it keeps the newest 100, on its volume) while no status named
// it; see the README.
//
// Status is written only when it changes (a quiet Restore costs no write), each phase or reason
// change gets an Event, and a terminal phase (Succeeded, Failed) is never left.
import { randomBytes } from "node:crypto";
import type { Logger } from "winston";
import { describeError } from "../common/errors.ts";
import { restoreSpec, type RestorePhase, type RestoreSpec, type RestoreStatus } from "../apis/restore.ts";
import { formatIssues } from "../apis/common.ts";
import { ANNOTATIONS, LABELS, MANAGED_BY, RUNNER_CONTAINER } from "./contract.ts";
import type { EventHandler } from "./informer.ts";
import { Informer } from "./informer.ts";
import { RESOURCES, apiVersionOf, type KubeClient, type ResourceType } from "./kube.ts";
import type { ControllerMetrics } from "./metrics.ts";
import { defKey, splitKey } from "./names.ts";
import { WorkQueue } from "./queue.ts";
import type { RunnerUrl } from "./runnerstatus.ts";
import type { ControllerSettings } from "./settings.ts";
import type { BackupDefinitionObject, KubeObject, SecretObject } from "./types.ts";

export const RESTORES: ResourceType = { group: "chbackup.dev", version: "v1alpha1", resource: "restores", kind: "Restore", namespaced: true };

export interface RestoreObject extends KubeObject {
  /** As stored; parsed with restoreSpec before use. */
  spec?: unknown;
  status?: RestoreStatus;
}

/** What the runner API shows of an operation, as far as this controller reads it. */
export interface RunnerOperation {
  id: string;
  kind: string;
  state: string;
  backupId: string | null;
  startedAt: string;
  endedAt: string | null;
  progress: { phase: string; tablesDone: number; tablesTotal: number; bytes: number; rows: number };
  error: string | null;
  result: Record<string, unknown> | null;
  idempotencyKey?: string | null;
}

/** Where and as whom to reach a definition's runner. */
export interface RunnerTarget {
  service: { namespace: string; name: string };
  token: string;
}

export type SubmitOutcome =
  | { kind: "accepted"; operation: RunnerOperation }
  | { kind: "busy"; message: string }
  | { kind: "notReady"; message: string }
  | { kind: "unreachable"; message: string }
  | { kind: "refused"; reason: "BackupNotFound" | "InvalidSpec" | "Refused"; message: string };

export type FollowOutcome = { kind: "found"; operation: RunnerOperation } | { kind: "notFound"; message: string } | { kind: "unreachable"; message: string };

/** The runner API calls a Restore makes. */
export interface RunnerRestoreClient {
  submit(target: RunnerTarget, body: Record<string, unknown>, idempotencyKey: string, signal: AbortSignal): Promise<SubmitOutcome>;
  follow(target: RunnerTarget, operationId: string, signal: AbortSignal): Promise<FollowOutcome>;
}

/** The runner's JSON error body: `{"error": {"code", "message"}}`. */
async function runnerError(res: Response): Promise<{ code: string; message: string }> {
  try {
    const body = (await res.json()) as { error?: { code?: unknown; message?: unknown } };
    return { code: String(body.error?.code ?? ""), message: String(body.error?.message ?? `HTTP ${res.status}`) };
  } catch {
    return { code: "", message: `HTTP ${res.status}` };
  }
}

/** The runner's API over HTTP, with the bearer token (never logged, never written anywhere). */
export function httpRunnerRestoreClient(url: RunnerUrl, timeoutMs = 10_000): RunnerRestoreClient {
  const call = async (target: RunnerTarget, path: string, init: RequestInit, signal: AbortSignal): Promise<Response> =>
    fetch(`${url(target.service)}${path}`, {
      ...init,
      headers: { ...(init.headers as Record<string, string> | undefined), authorization: `Bearer ${target.token}` },
      signal: AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]),
    });
  const where = (t: RunnerTarget) => `runner ${t.service.namespace}/${t.service.name}`;
  return {
    async submit(target, body, idempotencyKey, signal) {
      let res: Response;
      try {
        res = await call(target, "/api/v1/restores", { method: "POST", headers: { "content-type": "application/json", "idempotency-key": idempotencyKey }, body: JSON.stringify(body) }, signal);
      } catch (err: unknown) {
        return { kind: "unreachable", message: `${where(target)} did not answer: ${describeError(err)}` };
      }
      if (res.status === 200 || res.status === 202) return { kind: "accepted", operation: ((await res.json()) as { operation: RunnerOperation }).operation };
      const e = await runnerError(res);
      if (res.status === 409 && e.code === "busy") return { kind: "busy", message: e.message };
      if (res.status === 503) return { kind: "notReady", message: `${where(target)}: ${e.message}` };
      if (res.status === 404) return { kind: "refused", reason: "BackupNotFound", message: e.message };
      if (res.status === 400) return { kind: "refused", reason: "InvalidSpec", message: e.message };
      if (res.status === 409) return { kind: "refused", reason: "Refused", message: e.message };
      // 401 (a token the runner does not know yet: its pod still has the old Secret), 5xx: try again.
      return { kind: "unreachable", message: `${where(target)}: HTTP ${res.status} ${e.code}: ${e.message}` };
    },
    async follow(target, operationId, signal) {
      let res: Response;
      try {
        res = await call(target, `/api/v1/restores/${encodeURIComponent(operationId)}`, { method: "GET" }, signal);
      } catch (err: unknown) {
        return { kind: "unreachable", message: `${where(target)} did not answer: ${describeError(err)}` };
      }
      if (res.status === 200) return { kind: "found", operation: ((await res.json()) as { operation: RunnerOperation }).operation };
      const e = await runnerError(res);
      if (res.status === 404) return { kind: "notFound", message: e.message };
      return { kind: "unreachable", message: `${where(target)}: HTTP ${res.status} ${e.code}: ${e.message}` };
    },
  };
}

// ---- pure logic ------------------------------------------------------------------------------

export const TERMINAL: readonly RestorePhase[] = ["Succeeded", "Failed"];

export type RestoreReason =
  | "DefinitionNotFound"
  | "DefinitionNotReady"
  | "RunnerNotReady"
  | "RunnerUnreachable"
  | "RunnerBusy"
  | "Running"
  | "Succeeded"
  | "Failed"
  | "Cancelled"
  | "Aborted"
  | "Interrupted"
  | "BackupNotFound"
  | "InvalidSpec"
  | "Refused"
  | "OperationLost"
  | "DefinitionDeleted";

/** The runner API request body of a spec (the same fields; defaults spelled out). */
export function requestBody(spec: RestoreSpec): Record<string, unknown> {
  return {
    backup: spec.backup,
    existingTables: spec.existingTables,
    ...(spec.allowUnstagedDrop ? { allowUnstagedDrop: true } : {}),
    ...(spec.mergeShards ? { mergeShards: true } : {}),
    ...(spec.identityFile !== undefined ? { identityFile: spec.identityFile } : {}),
    ...(spec.databases ? { databases: spec.databases } : {}),
    ...(spec.tables ? { tables: spec.tables } : {}),
    ...(spec.renameDatabases ? { renameDatabases: spec.renameDatabases } : {}),
  };
}

/** Status while waiting: Pending with the reason; what is known of an earlier attempt stays. */
export function pendingStatus(prev: RestoreStatus, reason: RestoreReason, message: string, runner?: string): RestoreStatus {
  return { ...prev, phase: "Pending", reason, message, ...(runner ? { runner } : {}) };
}

/** Status of a Restore that failed without (or after losing) its operation. */
export function failedStatus(prev: RestoreStatus, reason: RestoreReason, message: string, now: string): RestoreStatus {
  return { ...prev, phase: "Failed", reason, message, error: message, completedAt: prev.completedAt ?? now };
}

const int = (n: unknown): number | undefined => (typeof n === "number" && Number.isFinite(n) ? Math.trunc(n) : undefined);

/** The status that mirrors a runner operation. */
export function statusOf(prev: RestoreStatus, op: RunnerOperation, runner: string): RestoreStatus {
  const p = op.progress;
  const base: RestoreStatus = {
    ...prev,
    operationId: op.id,
    runner,
    ...(op.backupId ? { backupId: op.backupId } : {}),
    startedAt: op.startedAt.replace(/\.\d+Z$/, "Z"),
    progress: { phase: p.phase, tablesDone: p.tablesDone, tablesTotal: p.tablesTotal, bytes: p.bytes, rows: p.rows },
  };
  if (op.state === "running") {
    return { ...base, phase: "Running", reason: "Running", message: `the runner is restoring backup ${op.backupId ?? "?"} (operation ${op.id})` };
  }
  const completedAt = (op.endedAt ?? new Date().toISOString()).replace(/\.\d+Z$/, "Z");
  if (op.state === "succeeded") {
    const rows = int(op.result?.["rows"]) ?? p.rows;
    const tables = int(op.result?.["tables"]) ?? p.tablesDone;
    return {
      ...base,
      phase: "Succeeded",
      reason: "Succeeded",
      message: `restored ${rows} rows in ${tables} tables from backup ${op.backupId ?? "?"}`,
      completedAt,
      rowsRestored: rows,
      bytesRestored: p.bytes,
    };
  }
  const reason: RestoreReason = op.state === "cancelled" ? "Cancelled" : op.state === "aborted" ? "Aborted" : op.state === "interrupted" ? "Interrupted" : "Failed";
  const error = op.error ?? `the operation ended ${op.state}`;
  return { ...base, phase: "Failed", reason, message: `the runner's restore ended ${op.state}: ${error}`, error, completedAt };
}

/** Whether two statuses differ in anything this controller writes. */
export function statusDiffers(a: RestoreStatus, b: RestoreStatus): boolean {
  return JSON.stringify(canonical(a)) !== JSON.stringify(canonical(b));
}

function canonical(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(canonical);
  if (v && typeof v === "object") {
    return Object.fromEntries(
      Object.entries(v as Record<string, unknown>)
        .filter(([, x]) => x !== undefined && x !== null)
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([k, x]) => [k, canonical(x)]),
    );
  }
  return v;
}

/** Whether two statuses differ in progress only (what a running restore changes on every poll). */
export function onlyProgressDiffers(a: RestoreStatus, b: RestoreStatus): boolean {
  return statusDiffers(a, b) && !statusDiffers({ ...a, progress: undefined }, { ...b, progress: undefined });
}

/** A merge patch that turns status `prev` into `next` (fields `next` lacks are removed with null). */
export function statusPatch(prev: RestoreStatus, next: RestoreStatus): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of new Set([...Object.keys(prev), ...Object.keys(next)])) {
    const v = (next as Record<string, unknown>)[k];
    out[k] = v === undefined ? null : v;
  }
  return out;
}

/** Delay before a Pending Restore is tried again: 1 s, doubling, at most maxMs. */
export function retryDelayMs(attempt: number, baseMs = 1000, maxMs = 30_000): number {
  return Math.min(baseMs * 2 ** Math.max(0, Math.min(attempt, 20)), maxMs);
}

/** The runner of a definition, or why there is none to send to yet. */
export function runnerTargetOf(
  def: BackupDefinitionObject | undefined,
  key: string,
  secret: (namespace: string, name: string) => SecretObject | undefined,
): { ok: true; target: RunnerTarget } | { ok: false; reason: RestoreReason; message: string } {
  const { namespace, name } = splitKey(key);
  if (!def) return { ok: false, reason: "DefinitionNotFound", message: `BackupDefinition ${namespace}/${name} does not exist (a Restore names a definition of its own namespace)` };
  const ready = def.status?.conditions?.find((c) => c.type === "Ready");
  const runner = def.status?.runner;
  if (def.metadata.deletionTimestamp) return { ok: false, reason: "DefinitionNotReady", message: `BackupDefinition ${key} is being deleted` };
  if (!runner || ready?.status !== "True") {
    return { ok: false, reason: "DefinitionNotReady", message: `BackupDefinition ${key} is not Ready${ready ? ` (${ready.reason}: ${ready.message})` : ""}; waiting for its runner` };
  }
  const s = secret(runner.namespace, runner.secret);
  // Only a runner Secret that stands for this very definition (one owner per object).
  if (!s || s.metadata.labels?.[LABELS.managedBy] !== MANAGED_BY || s.metadata.annotations?.[ANNOTATIONS.source] !== key) {
    return { ok: false, reason: "RunnerNotReady", message: `the runner Secret ${runner.namespace}/${runner.secret} of BackupDefinition ${key} is not there yet` };
  }
  const b64 = s.data?.[RUNNER_CONTAINER.tokenKey];
  if (!b64) return { ok: false, reason: "RunnerNotReady", message: `the runner Secret ${runner.namespace}/${runner.secret} holds no API token yet` };
  return { ok: true, target: { service: { namespace: runner.namespace, name: runner.service }, token: Buffer.from(b64, "base64").toString("utf8") } };
}

// ---- the controller -------------------------------------------------------------------------

export interface RestoreControllerDeps {
  client: KubeClient;
  settings: ControllerSettings;
  logger: Logger;
  /** The definition controller's caches (BackupDefinitions; Secrets of the controller's namespace in full). */
  definitions: Pick<Informer<BackupDefinitionObject>, "get" | "on">;
  secrets: Pick<Informer<SecretObject>, "get">;
  /** Whether those caches are synced: nothing is sent before. */
  cachesReady: () => boolean;
  runner: RunnerRestoreClient;
  metrics?: ControllerMetrics;
  /** How often a Running Restore is polled (default 2000 ms). */
  pollIntervalMs?: number;
  /** A change of progress alone is written at most this often (default 10000 ms); phase changes at once. */
  progressEveryMs?: number;
  /** First retry delay of a Pending Restore, doubling up to maxRetryMs (defaults 1000, 30000). */
  retryBaseMs?: number;
  maxRetryMs?: number;
  now?: () => Date;
}

export class RestoreController {
  readonly informer: Informer<RestoreObject>;
  readonly queue: WorkQueue;
  readonly #d: RestoreControllerDeps;
  readonly #log: Logger;
  readonly #attempts = new Map<string, number>();
  /** When each Restore's status was last written (performance.now()), for the progress throttle. */
  readonly #written = new Map<string, number>();
  #abort = new AbortController();
  #started = false;

  constructor(deps: RestoreControllerDeps) {
    this.#d = deps;
    this.#log = deps.logger.child({ component: "restores" });
    this.informer = new Informer<RestoreObject>({ client: deps.client, resource: RESTORES, logger: this.#log, pageSize: deps.settings.listPageSize });
    this.queue = new WorkQueue({
      workers: Math.max(1, Math.min(deps.settings.workers, 4)),
      handle: (key) => this.reconcile(key),
      onError: (key, err, retryInMs) => this.#log.warn("restore reconcile failed; will retry", { restore: key, error: describeError(err), retryInMs }),
    });
    const onRestore: EventHandler<RestoreObject> = (r, kind) => {
      const key = defKey(r.metadata.namespace ?? "", r.metadata.name);
      if (kind === "delete") {
        this.#attempts.delete(key);
        this.#written.delete(key);
        this.#countPhases();
        void this.#deletedWhileRunning(r);
        return;
      }
      this.queue.add(key);
    };
    this.informer.on(onRestore);
    // A definition that appears or becomes Ready wakes the Restores of its namespace that wait for it.
    deps.definitions.on((d) => {
      const ns = d.metadata.namespace ?? "";
      for (const r of this.informer.list(ns)) {
        const phase = r.status?.phase;
        if ((phase === undefined || phase === "Pending") && (r.spec as { backupDefinition?: unknown } | undefined)?.backupDefinition === d.metadata.name) this.queue.add(defKey(ns, r.metadata.name));
      }
    });
  }

  get ready(): boolean {
    return this.#started && this.informer.synced;
  }

  /** Lists and watches Restores, waits for the definition caches, then reconciles every Restore. */
  async start(): Promise<void> {
    this.#abort = new AbortController();
    const signal = this.#abort.signal;
    await this.informer.start();
    while (!signal.aborted && !this.#d.cachesReady()) await new Promise((r) => setTimeout(r, 100));
    if (signal.aborted) return;
    this.#started = true;
    this.queue.start();
    for (const r of this.informer.list()) this.queue.add(defKey(r.metadata.namespace ?? "", r.metadata.name));
    this.#countPhases();
    this.#log.info("restore controller started", { restores: this.informer.list().length });
  }

  async stop(): Promise<void> {
    this.#abort.abort();
    await this.queue.stop();
    await this.informer.stop();
    this.#started = false;
    // A standby counts nothing: the leader's gauge is the one to read.
    this.#d.metrics?.restores.reset();
  }

  #timestamp(): string {
    return (this.#d.now?.() ?? new Date()).toISOString().replace(/\.\d{3}Z$/, "Z");
  }

  async reconcile(key: string): Promise<{ requeueAfterMs?: number }> {
    const { namespace, name } = splitKey(key);
    const r = this.informer.get(namespace, name);
    if (!r || r.metadata.deletionTimestamp) return {};
    const prev: RestoreStatus = r.status ?? {};
    if (prev.phase && TERMINAL.includes(prev.phase)) {
      this.#attempts.delete(key);
      return {};
    }
    const log = this.#log.child({ restore: key });
    const parsed = restoreSpec.safeParse(r.spec);
    if (!parsed.success) {
      // Stored before the CRD had its rules, or written around them: never sent.
      await this.#write(r, failedStatus(prev, "InvalidSpec", `invalid spec: ${formatIssues(parsed.error, "spec").join("; ")}`, this.#timestamp()), log);
      return {};
    }
    const spec = parsed.data;
    const defName = defKey(namespace, spec.backupDefinition);
    const def = this.#d.definitions.get(namespace, spec.backupDefinition);
    const target = runnerTargetOf(def, defName, (ns, n) => this.#d.secrets.get(ns, n));
    const signal = this.#abort.signal;

    if (prev.operationId) {
      // Sent before (by this process or another): follow it, never send again.
      if (!def) {
        await this.#write(r, failedStatus(prev, "DefinitionDeleted", `BackupDefinition ${defName} was deleted while the restore ran; its runner went with it, so the restore was aborted or its outcome is unknown`, this.#timestamp()), log);
        return {};
      }
      if (!target.ok) return this.#wait(r, prev, target.reason, target.message, log, "Running");
      const runnerName = `${target.target.service.namespace}/${target.target.service.name}`;
      const res = await this.#d.runner.follow(target.target, prev.operationId, signal);
      if (res.kind === "unreachable") return this.#wait(r, prev, "RunnerUnreachable", res.message, log, "Running");
      if (res.kind === "notFound") {
        await this.#write(r, failedStatus(prev, "OperationLost", `the runner no longer knows operation ${prev.operationId} (${res.message}); the restore's outcome is unknown: check the data, then create a new Restore if needed`, this.#timestamp()), log);
        return {};
      }
      this.#attempts.delete(key);
      const next = statusOf(prev, res.operation, runnerName);
      const poll = { requeueAfterMs: this.#d.pollIntervalMs ?? 2000 };
      // Progress alone is written every progressEveryMs at most: a long restore is not a write every poll.
      const since = performance.now() - (this.#written.get(key) ?? -Infinity);
      if (next.phase === "Running" && onlyProgressDiffers(prev, next) && since < (this.#d.progressEveryMs ?? 10_000)) return poll;
      await this.#write(r, next, log);
      return next.phase === "Running" ? poll : {};
    }

    if (!target.ok) return this.#wait(r, prev, target.reason, target.message, log);
    const runnerName = `${target.target.service.namespace}/${target.target.service.name}`;
    const uid = r.metadata.uid;
    if (!uid) throw new Error(`restore ${key} has no uid`);
    const out = await this.#d.runner.submit(target.target, requestBody(spec), `restore-${uid}`, signal);
    switch (out.kind) {
      case "accepted": {
        this.#attempts.delete(key);
        const next = statusOf(prev, out.operation, runnerName);
        if (prev.phase !== "Running") log.info("restore sent to the runner", { operationId: out.operation.id, backupId: out.operation.backupId, runner: runnerName });
        await this.#write(r, next, log);
        return next.phase === "Running" ? { requeueAfterMs: this.#d.pollIntervalMs ?? 2000 } : {};
      }
      case "busy":
        return this.#wait(r, prev, "RunnerBusy", `the runner is busy (${out.message}); the restore starts once it is free`, log, "Pending", runnerName);
      case "notReady":
        return this.#wait(r, prev, "RunnerNotReady", out.message, log, "Pending", runnerName);
      case "unreachable":
        return this.#wait(r, prev, "RunnerUnreachable", out.message, log, "Pending", runnerName);
      case "refused":
        await this.#write(r, failedStatus({ ...prev, runner: runnerName }, out.reason, `the runner refused the restore: ${out.message}`, this.#timestamp()), log);
        return {};
    }
  }

  /** Waits with backoff: Pending (or still Running while its runner cannot be asked) with the reason. */
  async #wait(r: RestoreObject, prev: RestoreStatus, reason: RestoreReason, message: string, log: Logger, phase: "Pending" | "Running" = "Pending", runner?: string): Promise<{ requeueAfterMs: number }> {
    const key = defKey(r.metadata.namespace ?? "", r.metadata.name);
    const n = this.#attempts.get(key) ?? 0;
    this.#attempts.set(key, n + 1);
    const next = phase === "Pending" ? pendingStatus(prev, reason, message, runner) : { ...prev, phase, reason, message };
    await this.#write(r, next, log);
    return { requeueAfterMs: retryDelayMs(n, this.#d.retryBaseMs, this.#d.maxRetryMs) };
  }

  /** Writes the status when it differs (with the object's resourceVersion as precondition), and an Event when phase or reason changed. */
  async #write(r: RestoreObject, nextIn: RestoreStatus, log: Logger): Promise<void> {
    const prev = r.status ?? {};
    const generation = r.metadata.generation;
    const next: RestoreStatus = { ...nextIn, ...(generation !== undefined ? { observedGeneration: generation } : {}) };
    if (!statusDiffers(prev, next)) return;
    const updated = await this.#d.client.patch<RestoreObject>(
      RESTORES,
      r.metadata.namespace ?? "",
      r.metadata.name,
      { metadata: { resourceVersion: r.metadata.resourceVersion }, status: statusPatch(prev, next) },
      "status",
    );
    this.informer.wrote(updated);
    this.#written.set(defKey(r.metadata.namespace ?? "", r.metadata.name), performance.now());
    this.#countPhases();
    if (prev.phase !== next.phase || prev.reason !== next.reason) {
      const warn = next.phase === "Failed" || (next.phase === "Pending" && next.reason !== "RunnerBusy");
      log[warn ? "warn" : "info"]("restore phase changed", { phase: next.phase, reason: next.reason, operationId: next.operationId, detail: next.message });
      await this.#event(updated, warn ? "Warning" : "Normal", next.reason ?? next.phase ?? "Pending", next.message ?? "", log);
    }
  }

  /** Deleting a Restore does not stop the runner's operation: say so (Event and log). */
  async #deletedWhileRunning(r: RestoreObject): Promise<void> {
    const st = r.status;
    if (!this.#started || !st?.operationId || (st.phase && TERMINAL.includes(st.phase))) return;
    const log = this.#log.child({ restore: defKey(r.metadata.namespace ?? "", r.metadata.name) });
    const msg = `Restore deleted while its operation ${st.operationId} runs on runner ${st.runner ?? "?"}: the operation is not stopped and runs to its end (it swaps tables in only once their data is proven). To stop it, cancel it through the runner API: DELETE /api/v1/operations/${st.operationId}`;
    log.warn("restore deleted while its operation runs; the operation goes on", { operationId: st.operationId, runner: st.runner });
    await this.#event(r, "Warning", "DeletedWhileRunning", msg, log);
  }

  #countPhases(): void {
    const gauge = this.#d.metrics?.restores;
    if (!gauge) return;
    const counts: Record<string, number> = { Pending: 0, Running: 0, Succeeded: 0, Failed: 0 };
    for (const r of this.informer.list()) {
      const p = this.informer.get(r.metadata.namespace ?? "", r.metadata.name)?.status?.phase ?? "Pending";
      counts[p] = (counts[p] ?? 0) + 1;
    }
    for (const [phase, n] of Object.entries(counts)) gauge.set({ phase }, n);
  }

  async #event(r: KubeObject, type: "Normal" | "Warning", reason: string, message: string, log: Logger): Promise<void> {
    const now = this.#timestamp();
    const ns = r.metadata.namespace ?? "";
    try {
      await this.#d.client.create(RESOURCES.events, ns, {
        apiVersion: "v1",
        kind: "Event",
        metadata: { name: `${r.metadata.name.slice(0, 200)}.${Date.now().toString(16)}${randomBytes(3).toString("hex")}`, namespace: ns },
        involvedObject: {
          apiVersion: apiVersionOf(RESTORES),
          kind: RESTORES.kind,
          name: r.metadata.name,
          namespace: ns,
          ...(r.metadata.uid ? { uid: r.metadata.uid } : {}),
          ...(r.metadata.resourceVersion ? { resourceVersion: r.metadata.resourceVersion } : {}),
        },
        type,
        reason,
        message: message.slice(0, 1024),
        source: { component: MANAGED_BY },
        reportingComponent: MANAGED_BY,
        reportingInstance: this.#d.settings.leaderElection.identity,
        firstTimestamp: now,
        lastTimestamp: now,
        count: 1,
      });
    } catch (err: unknown) {
      // Events are best effort.
      log.warn("event not recorded", { reason, error: describeError(err) });
    }
  }
}

