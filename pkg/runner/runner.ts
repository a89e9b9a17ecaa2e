// The runner: one backup or restore at a time, catalog, retention, status.
// It knows nothing of Kubernetes or of any particular engine.
import { randomUUID } from "node:crypto";
import type { Logger } from "winston";
import type { RunnerConfig } from "../apis/index.ts";
import type { BackupEngine, EngineBackupResult, Progress, RestoreOptions, RestoreResult } from "../backupengine/types.ts";
import type { ObjectStore } from "../storage/index.ts";
import { Catalog, readManifestAt, writeManifestAt, type CatalogEntry } from "./catalog.ts";
import { StoreSink, StoreSource } from "./bridge.ts";
import { BackupNotFoundError, BusyError, ShuttingDownError, describeError } from "./errors.ts";
import { newBackupId, isBackupId } from "./ids.ts";
import { MANIFEST_FORMAT, MANIFEST_NAME, type Manifest } from "./manifest.ts";
import { applyRetention, type RetentionBackup, type RetentionDecision, type RetentionLabel } from "./retention.ts";

export type OperationKind = "backup" | "restore";
export type OperationState = "running" | "succeeded" | "failed" | "aborted";
export type BackupTrigger = Manifest["trigger"];

export interface Operation {
  id: string;
  kind: OperationKind;
  trigger: string;
  state: OperationState;
  startedAt: string;
  endedAt?: string | undefined;
  durationMs?: number | undefined;
  progress: Progress;
  backupId?: string | undefined;
  error?: string | undefined;
  retryable?: boolean | undefined;
  result?: Record<string, unknown> | undefined;
}

export interface RestoreRequest extends RestoreOptions {
  /** Backup id or "latest". */
  backup: string;
}

/** Hooks for metrics; every method optional. */
export interface RunnerObserver {
  operationStarted?(op: Operation): void;
  operationFinished?(op: Operation): void;
  bytes?(kind: OperationKind, n: number): void;
  rows?(kind: OperationKind, n: number): void;
  retention?(labels: Record<string, number>, total: number): void;
}

export interface RunnerDeps {
  config: RunnerConfig;
  store: ObjectStore;
  engine: BackupEngine;
  logger: Logger;
  clock?: () => Date;
  observer?: RunnerObserver;
  /** How many finished operations to remember for GET /operations/{id}. */
  historySize?: number;
}

export interface RunnerStatus {
  namespace: string;
  definition: string;
  mode: string;
  engine: string;
  method: string;
  storage: string;
  current?: Operation | undefined;
  lastSuccess: Partial<Record<OperationKind, Operation>>;
  lastFailure: Partial<Record<OperationKind, Operation>>;
  consecutiveFailures: number;
  backups: number;
}

const emptyProgress = (): Progress => ({ phase: "starting", tablesDone: 0, tablesTotal: 0, bytes: 0, rows: 0 });

function isAbort(err: unknown, signal: AbortSignal): boolean {
  return signal.aborted || (err instanceof Error && (err.name === "AbortError" || err.name === "StorageAbortedError"));
}

function retryableOf(err: unknown): boolean {
  let cur: unknown = err;
  for (let i = 0; i < 5 && cur instanceof Error; i++) {
    if ("retryable" in cur && typeof cur.retryable === "boolean") return cur.retryable;
    cur = cur.cause;
  }
  return false;
}

export function manifestToEngineResult(m: Manifest): EngineBackupResult {
  return {
    engineVersion: m.engineVersion,
    method: m.method,
    databases: m.databases,
    tables: m.tables,
    objects: m.objects,
    baseBackupId: m.baseBackupId,
    details: m.details,
  };
}

export class Runner {
  readonly catalog: Catalog;
  readonly #cfg: RunnerConfig;
  readonly #store: ObjectStore;
  readonly #engine: BackupEngine;
  readonly #log: Logger;
  readonly #now: () => Date;
  readonly #observer: RunnerObserver;
  readonly #history = new Map<string, Operation>();
  readonly #historySize: number;
  #current: { op: Operation; abort: AbortController; done: Promise<void> } | undefined;
  #shuttingDown = false;
  #consecutiveFailures = 0;
  readonly #lastSuccess: Partial<Record<OperationKind, Operation>> = {};
  readonly #lastFailure: Partial<Record<OperationKind, Operation>> = {};

  constructor(deps: RunnerDeps) {
    this.#cfg = deps.config;
    this.#store = deps.store;
    this.#engine = deps.engine;
    this.#log = deps.logger;
    this.#now = deps.clock ?? (() => new Date());
    this.#observer = deps.observer ?? {};
    this.#historySize = deps.historySize ?? 100;
    const d = deps.config.definition;
    this.catalog = new Catalog(deps.store, `${d.namespace}/${d.name}`, deps.logger);
  }

  get config(): RunnerConfig {
    return this.#cfg;
  }

  /** Rebuilds the catalog from the bucket, removes incomplete leftovers and applies retention. */
  async init(signal?: AbortSignal): Promise<void> {
    const incomplete = await this.catalog.rebuild(signal);
    for (const inc of incomplete) {
      // Only one runner per definition runs at a time (StatefulSet), so any backup without a manifest is a leftover.
      const removed = await this.catalog.removeKeys(this.catalog.dir(inc.id), signal);
      this.#log.warn("removed incomplete backup", { backupId: inc.id, objects: removed });
    }
    if (this.#store.cleanupIncomplete) {
      const n = await this.#store.cleanupIncomplete(`${this.catalog.root}/`, this.#now());
      if (n) this.#log.warn("aborted incomplete uploads", { count: n });
    }
    this.#log.info("catalog loaded", { backups: this.catalog.list().length, incompleteRemoved: incomplete.length });
    if (this.#cfg.definition.mode === "scheduled") await this.enforceRetention();
  }

  status(): RunnerStatus {
    return {
      namespace: this.#cfg.definition.namespace,
      definition: this.#cfg.definition.name,
      mode: this.#cfg.definition.mode,
      engine: this.#engine.name,
      method: this.#cfg.definition.clickhouse.method,
      storage: this.#store.describe(),
      current: this.#current ? { ...this.#current.op } : undefined,
      lastSuccess: this.#lastSuccess,
      lastFailure: this.#lastFailure,
      consecutiveFailures: this.#consecutiveFailures,
      backups: this.catalog.list().length,
    };
  }

  /** Readiness: can the storage and the database be reached? Each value is "ok" or the error message. */
  async health(signal?: AbortSignal): Promise<{ storage: string; engine: string; engineVersion?: string | undefined }> {
    const sig = signal ?? AbortSignal.timeout(5000);
    const [storage, engine] = await Promise.allSettled([this.#store.check(sig), this.#engine.check(sig)]);
    return {
      storage: storage.status === "fulfilled" ? "ok" : describeError(storage.reason),
      engine: engine.status === "fulfilled" ? "ok" : describeError(engine.reason),
      engineVersion: engine.status === "fulfilled" ? engine.value.version : undefined,
    };
  }

  currentOperation(): Operation | undefined {
    return this.#current?.op;
  }

  operation(id: string): Operation | undefined {
    if (this.#current?.op.id === id) return this.#current.op;
    return this.#history.get(id);
  }

  /** Labels each backup holds under the policy right now. */
  retentionDecision(): RetentionDecision {
    return applyRetention(this.#retentionInput(this.catalog.list()), this.#cfg.definition.retention, this.#cfg.definition.schedule?.timeZone ?? "UTC");
  }

  #retentionInput(entries: CatalogEntry[]): RetentionBackup[] {
    return entries.map((e) => ({
      id: e.manifest.id,
      time: new Date(e.manifest.startedAt),
      pinned: e.pinned,
      baseBackupId: e.manifest.baseBackupId,
    }));
  }

  /** Deletes every backup that holds no label any more (never pinned, newest or depended-on ones). */
  async enforceRetention(signal?: AbortSignal): Promise<string[]> {
    const decision = this.retentionDecision();
    for (const id of decision.delete) {
      await this.catalog.remove(id, signal);
      this.#log.info("retention deleted backup", { backupId: id });
    }
    const counts: Record<string, number> = {};
    for (const labels of decision.labels.values()) for (const l of labels) counts[l] = (counts[l] ?? 0) + 1;
    this.#observer.retention?.(counts, this.catalog.list().length);
    return decision.delete;
  }

  #begin(kind: OperationKind, trigger: string): { op: Operation; abort: AbortController } {
    if (this.#shuttingDown) throw new ShuttingDownError();
    if (this.#current) throw new BusyError(this.#current.op.id, this.#current.op.kind);
    const op: Operation = {
      id: randomUUID(),
      kind,
      trigger,
      state: "running",
      startedAt: this.#now().toISOString(),
      progress: emptyProgress(),
    };
    return { op, abort: new AbortController() };
  }

  #run(op: Operation, abort: AbortController, work: (signal: AbortSignal) => Promise<Record<string, unknown>>): Promise<Operation> {
    const log = this.#log.child({ operationId: op.id, kind: op.kind });
    this.#observer.operationStarted?.(op);
    log.info("operation started", { trigger: op.trigger });
    const done = (async () => {
      try {
        op.result = await work(abort.signal);
        op.state = "succeeded";
        this.#consecutiveFailures = 0;
        this.#lastSuccess[op.kind] = op;
      } catch (err: unknown) {
        op.state = isAbort(err, abort.signal) ? "aborted" : "failed";
        op.error = describeError(err);
        op.retryable = retryableOf(err);
        this.#consecutiveFailures++;
        this.#lastFailure[op.kind] = op;
      } finally {
        const end = this.#now();
        op.endedAt = end.toISOString();
        op.durationMs = end.getTime() - new Date(op.startedAt).getTime();
        this.#current = undefined;
        this.#remember(op);
        this.#observer.operationFinished?.(op);
        if (op.state === "succeeded") log.info("operation succeeded", { durationMs: op.durationMs, backupId: op.backupId });
        else log.error("operation failed", { state: op.state, durationMs: op.durationMs, backupId: op.backupId, error: op.error, retryable: op.retryable });
      }
    })();
    this.#current = { op, abort, done };
    return done.then(() => op);
  }

  #remember(op: Operation): void {
    this.#history.set(op.id, op);
    while (this.#history.size > this.#historySize) {
      const first = this.#history.keys().next().value;
      if (first === undefined) break;
      this.#history.delete(first);
    }
  }

  #progress(op: Operation, kind: OperationKind): (p: Progress) => void {
    return (p) => {
      const dRows = p.rows - op.progress.rows;
      if (dRows > 0) this.#observer.rows?.(kind, dRows);
      op.progress = { ...p, bytes: Math.max(p.bytes, op.progress.bytes) };
    };
  }

  /** Starts a backup; resolves with the operation once started (use `finished` to wait). */
  startBackup(trigger: BackupTrigger): { operation: Operation; finished: Promise<Operation> } {
    const { op, abort } = this.#begin("backup", trigger);
    const finished = this.#run(op, abort, (signal) => this.#backup(op, trigger, signal));
    return { operation: op, finished };
  }

  /**
   * Single-backup mode: one backup written to exactly `target` (a key prefix
   * or directory relative to the storage location): no catalog, no labels, no
   * retention. Refuses a target that already holds a backup.
   */
  startSingleBackup(target: string): { operation: Operation; finished: Promise<Operation> } {
    const dir = normalizeTarget(target);
    const { op, abort } = this.#begin("backup", "single");
    const finished = this.#run(op, abort, (signal) => this.#backup(op, "single", signal, dir));
    return { operation: op, finished };
  }

  /** Whether a single-backup target already holds a complete backup. */
  async targetHasBackup(target: string): Promise<boolean> {
    return (await this.#store.head(`${normalizeTarget(target)}/${MANIFEST_NAME}`)) !== undefined;
  }

  /** Restores the backup written by single-backup mode at `target`. */
  startTargetRestore(target: string, opts: RestoreOptions, trigger = "cli"): { operation: Operation; finished: Promise<Operation> } {
    const dir = normalizeTarget(target);
    const { op, abort } = this.#begin("restore", trigger);
    const finished = this.#run(op, abort, async (signal) => {
      const manifest = await readManifestAt(this.#store, dir, signal);
      op.backupId = manifest.id;
      const r = await this.restoreFrom(manifest, dir, opts, signal, op);
      return { backupId: manifest.id, target: dir, databases: r.databases, tables: r.tables.length, rows: r.tables.reduce((s, t) => s + t.rows, 0) };
    });
    return { operation: op, finished };
  }

  async #backup(op: Operation, trigger: BackupTrigger, signal: AbortSignal, singleTarget?: string): Promise<Record<string, unknown>> {
    const def = this.#cfg.definition;
    const started = this.#now();
    const id = newBackupId(started);
    op.backupId = id;
    if (singleTarget !== undefined && (await this.targetHasBackup(singleTarget))) {
      throw new Error(`single backup target "${singleTarget}" already holds a backup; choose another target or remove it`);
    }
    const dir = singleTarget ?? this.catalog.dir(id);
    const log = this.#log.child({ operationId: op.id, backupId: id });
    const sink = new StoreSink(this.#store, dir, this.#cfg.storage, (n) => {
      op.progress.bytes += n;
      this.#observer.bytes?.("backup", n);
    });
    const base = singleTarget === undefined ? this.#chooseBase(started) : undefined;
    let result: EngineBackupResult;
    try {
      result = await this.#engine.backup({
        backupId: id,
        signal,
        sink,
        logger: log,
        onProgress: this.#progress(op, "backup"),
        base: base
          ? {
              backupId: base.manifest.id,
              source: new StoreSource(this.#store, this.catalog.dir(base.manifest.id), base.manifest.objects, this.#cfg.storage),
              result: manifestToEngineResult(base.manifest),
            }
          : undefined,
      });
      signal.throwIfAborted();
    } catch (err: unknown) {
      await this.#discard(dir, log);
      throw new Error(`backup ${id}`, { cause: err });
    }
    const ended = this.#now();
    const manifest: Manifest = {
      format: MANIFEST_FORMAT,
      id,
      namespace: def.namespace,
      definition: def.name,
      mode: singleTarget === undefined ? "scheduled" : "single",
      trigger,
      engine: this.#engine.name,
      method: result.method,
      engineVersion: result.engineVersion,
      startedAt: started.toISOString(),
      endedAt: ended.toISOString(),
      durationMs: ended.getTime() - started.getTime(),
      databases: result.databases,
      tables: result.tables,
      objects: mergeObjects(sink.written, result.objects),
      totalBytes: 0,
      totalRows: result.tables.reduce((s, t) => s + t.rows, 0),
      baseBackupId: result.baseBackupId,
      labels: [],
      details: result.details,
    };
    manifest.totalBytes = manifest.objects.reduce((s, o) => s + o.size, 0) + (result.storedBytes ?? 0);
    if (singleTarget !== undefined) {
      try {
        await writeManifestAt(this.#store, dir, manifest, signal);
      } catch (err: unknown) {
        await this.#discard(dir, log);
        throw new Error(`backup ${id}: write manifest`, { cause: err });
      }
      log.info("single backup complete", { target: dir, tables: manifest.tables.length, bytes: manifest.totalBytes, rows: manifest.totalRows });
      return { backupId: id, target: dir, bytes: manifest.totalBytes, rows: manifest.totalRows, tables: manifest.tables.length };
    }
    const labels = applyRetention(
      [...this.#retentionInput(this.catalog.list()), { id, time: started, pinned: false, baseBackupId: manifest.baseBackupId }],
      def.retention,
      def.schedule?.timeZone ?? "UTC",
    ).labels.get(id);
    manifest.labels = (labels ?? []) as RetentionLabel[];
    try {
      await this.catalog.commit(manifest, signal);
    } catch (err: unknown) {
      await this.#discard(dir, log);
      throw new Error(`backup ${id}: write manifest`, { cause: err });
    }
    log.info("backup complete", { tables: manifest.tables.length, bytes: manifest.totalBytes, rows: manifest.totalRows, labels: manifest.labels });
    const deleted = await this.enforceRetention().catch((err: unknown) => {
      log.error("retention failed", { error: describeError(err) });
      return [] as string[];
    });
    return { backupId: id, bytes: manifest.totalBytes, rows: manifest.totalRows, tables: manifest.tables.length, labels: manifest.labels, deleted };
  }

  /** Native incremental backups: build on the newest backup unless a full one is due. */
  #chooseBase(now: Date): CatalogEntry | undefined {
    const ch = this.#cfg.definition.clickhouse;
    if (ch.method !== "native") return undefined;
    const latest = this.catalog.latest();
    if (!latest || latest.manifest.method !== "native") return undefined;
    // Length of the chain since the last full backup.
    let chain = 1;
    let full: CatalogEntry = latest;
    while (full.manifest.baseBackupId) {
      const b = this.catalog.get(full.manifest.baseBackupId);
      if (!b) return undefined; // broken chain: take a full backup
      full = b;
      chain++;
    }
    if (chain >= ch.native.fullEvery) return undefined;
    if (ch.native.fullIntervalHours && now.getTime() - new Date(full.manifest.startedAt).getTime() >= ch.native.fullIntervalHours * 3_600_000) return undefined;
    return latest;
  }

  async #discard(dir: string, log: Logger): Promise<void> {
    try {
      const n = await this.catalog.removeKeys(dir);
      if (n) log.warn("removed objects of failed backup", { objects: n });
    } catch (err: unknown) {
      log.error("could not remove objects of failed backup; they are removed at next start", { error: describeError(err) });
    }
  }

  resolveBackup(ref: string): CatalogEntry {
    if (ref === "latest") {
      const l = this.catalog.latest();
      if (!l) throw new BackupNotFoundError("latest");
      return l;
    }
    if (!isBackupId(ref)) throw new BackupNotFoundError(ref);
    const e = this.catalog.get(ref);
    if (!e) throw new BackupNotFoundError(ref);
    return e;
  }

  startRestore(req: RestoreRequest, trigger = "api"): { operation: Operation; finished: Promise<Operation> } {
    const entry = this.resolveBackup(req.backup);
    const { op, abort } = this.#begin("restore", trigger);
    op.backupId = entry.manifest.id;
    const finished = this.#run(op, abort, async (signal) => {
      const r = await this.restoreFrom(entry.manifest, this.catalog.dir(entry.manifest.id), req, signal, op);
      return { backupId: entry.manifest.id, databases: r.databases, tables: r.tables.length, rows: r.tables.reduce((s, t) => s + t.rows, 0) };
    });
    return { operation: op, finished };
  }

  async restoreFrom(manifest: Manifest, dir: string, opts: RestoreOptions, signal: AbortSignal, op?: Operation): Promise<RestoreResult> {
    const source = new StoreSource(this.#store, dir, manifest.objects, this.#cfg.storage, (n) => this.#observer.bytes?.("restore", n));
    const progress = op ? this.#progress(op, "restore") : undefined;
    try {
      return await this.#engine.restore({
        signal,
        source,
        backup: manifestToEngineResult(manifest),
        options: opts,
        logger: this.#log.child({ backupId: manifest.id, operationId: op?.id }),
        onProgress: progress,
      });
    } catch (err: unknown) {
      throw new Error(`restore ${manifest.id}`, { cause: err });
    }
  }

  /** Stops accepting work and aborts the running operation; resolves when it has ended (or graceMs passed). */
  async shutdown(graceMs: number): Promise<void> {
    this.#shuttingDown = true;
    const cur = this.#current;
    if (!cur) return;
    this.#log.warn("aborting running operation for shutdown", { operationId: cur.op.id, kind: cur.op.kind });
    cur.abort.abort(new ShuttingDownError());
    await Promise.race([cur.done, new Promise((r) => setTimeout(r, graceMs).unref())]);
  }
}

/** A single-backup target: relative, no "..", no leading/trailing slash. */
export function normalizeTarget(target: string): string {
  const t = target.replace(/^\/+|\/+$/g, "");
  if (!t || t.split("/").some((seg) => seg === "" || seg === "." || seg === "..") || /[\\\0]/.test(t)) {
    throw new Error(`invalid single backup target "${target}": use a relative path like exports/2026-11-24`);
  }
  return t;
}

function mergeObjects(written: readonly { name: string; size: number; sha256: string }[], reported: readonly { name: string; size: number; sha256: string }[]) {
  const byName = new Map(written.map((o) => [o.name, o]));
  for (const o of reported) if (!byName.has(o.name)) byName.set(o.name, o);
  return [...byName.values()].sort((a, b) => a.name.localeCompare(b.name));
}
