// The runner: one backup or restore at a time, catalog, retention, status.
// It knows nothing of Kubernetes or of any particular engine.
import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { text } from "node:stream/consumers";
import type { Logger } from "winston";
import type { RunnerConfig } from "../apis/index.ts";
import type { BackupEngine, EngineBackupResult, InterruptedCleanup, Progress, RestoreOptions, RestoreResult, VerifyResult } from "../backupengine/types.ts";
import type { ObjectStore } from "../storage/index.ts";
import { Catalog, readInProgressAt, readManifestAt, writeInProgressAt, writeManifestAt, type CatalogEntry, type IncompleteBackup, type ReadRetry } from "./catalog.ts";
import { StoreSink, StoreSource } from "./bridge.ts";
import { DecryptingSource, EncryptingSink, manifestEncryption, requireIdentity, verifyIntegrityOnly } from "./encryption.ts";
import type { AgeIdentities } from "../encryption/identity.ts";
import {
  BackupNotFoundError,
  BackupNotWholeError,
  BackupUnreadableError,
  BusyError,
  CancelledError,
  OperationFinishedError,
  OperationNotFoundError,
  ShuttingDownError,
  describeError,
} from "./errors.ts";
import { OperationJournal, markInterrupted, parseJournalEntry, remoteJournalKey, type RemoteTarget } from "./journal.ts";
import { StorageProbe } from "./storageprobe.ts";
import { newBackupId, isBackupId, backupIdTime } from "./ids.ts";
import { INPROGRESS_NAME, MANIFEST_FORMAT, MANIFEST_NAME, type InProgressMarker, type Manifest, type Owner } from "./manifest.ts";
import { describeOwner, isOwnedBy, runnerOwner } from "./owner.ts";
import { applyRetention, type RetentionBackup, type RetentionDecision, type RetentionLabel } from "./retention.ts";

export type OperationKind = "backup" | "restore" | "verify";
export const OPERATION_KINDS: readonly OperationKind[] = ["backup", "restore", "verify"];
/**
 * running; then succeeded, failed, cancelled (by a user: DELETE
 * /api/v1/operations/{id}, Ctrl-C), aborted (the runner shut down) or
 * interrupted (the runner was killed or crashed while it ran; found in the
 * journal at the next start).
 */
export type OperationState = "running" | "succeeded" | "failed" | "aborted" | "cancelled" | "interrupted";
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
  /** The single-backup target (directory) a restore or verify read, when not a catalog backup. */
  target?: string | undefined;
  error?: string | undefined;
  retryable?: boolean | undefined;
  result?: Record<string, unknown> | undefined;
  /** The client's Idempotency-Key (restores): a repeated key never starts a second operation. */
  idempotencyKey?: string | undefined;
}

/** The newest verify: which backup, when it ended, whether it was whole. */
export interface LastVerified {
  backupId: string;
  operationId: string;
  at: string;
  ok: boolean;
}

export interface RestoreRequest extends RestoreOptions {
  /** Backup id or "latest". */
  backup: string;
  /** Identities that open an encrypted backup (never stored, logged or shown). */
  identities?: AgeIdentities | undefined;
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
  /** Retries of manifest reads while the catalog is rebuilt (default 4 attempts from 250 ms). */
  manifestReadRetry?: ReadRetry;
  /** The operation journal (default: in config.definition.stateDir, the newest `historySize` files kept). */
  journal?: OperationJournal;
  /** Readiness of the storage (default: reachability plus a cached write probe). */
  storageProbe?: StorageProbe;
}

/** Another owner's backups or in-progress backups seen in this runner's prefix. */
export interface ForeignOwner {
  owner: Owner;
  /** Complete backups it wrote. */
  backups: number;
  /** Backups it has in progress (in-progress marker, no manifest yet). */
  inProgress: number;
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
  /** The newest operation of each kind that did not succeed (failed, cancelled, aborted or interrupted). */
  lastFailure: Partial<Record<OperationKind, Operation>>;
  lastVerified: LastVerified | undefined;
  /** What the start-up clean-up of interrupted restores found (undefined until it ran). */
  interruptedCleanup: (InterruptedCleanup & { at: string }) | undefined;
  consecutiveFailures: number;
  backups: number;
  /** Backups whose manifest could not be read (kept, not restorable). */
  unreadableBackups: number;
  /** This runner's identity, recorded in every manifest and in-progress marker. */
  owner: Owner;
  /** Other owners seen in this prefix at start (see Runner.init). */
  foreignOwners: ForeignOwner[];
  /** Things an operator should look at; none of them stops the runner. */
  warnings: string[];
}

const emptyProgress = (): Progress => ({ phase: "starting", tablesDone: 0, tablesTotal: 0, bytes: 0, rows: 0 });

function isAbort(err: unknown, signal: AbortSignal): boolean {
  return signal.aborted || (err instanceof Error && (err.name === "AbortError" || err.name === "StorageAbortedError"));
}

/** The tables (and other objects) of a verify result that are not whole, each with why. */
export function damagedParts(r: VerifyResult): string[] {
  return [
    ...r.tables.filter((t) => !t.ok).map((t) => `${t.database}.${t.name}${t.host ? ` on ${t.host}` : ""} (${t.error ?? "not whole"})`),
    ...r.otherObjects.filter((o) => !o.ok).map((o) => `object ${o.name} (${o.error ?? "not whole"})`),
  ];
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
  readonly #owner: Owner;
  #foreignOwners: ForeignOwner[] = [];
  readonly #journal: OperationJournal;
  #journalLoaded: Promise<void> | undefined;
  #lastVerified: LastVerified | undefined;
  #interruptedCleanup: (InterruptedCleanup & { at: string }) | undefined;
  readonly #storageProbe: StorageProbe;

  constructor(deps: RunnerDeps) {
    this.#cfg = deps.config;
    this.#store = deps.store;
    this.#engine = deps.engine;
    this.#log = deps.logger;
    this.#now = deps.clock ?? (() => new Date());
    this.#observer = deps.observer ?? {};
    this.#historySize = deps.historySize ?? 100;
    const d = deps.config.definition;
    this.catalog = new Catalog(deps.store, `${d.namespace}/${d.name}`, deps.logger, deps.manifestReadRetry ? { readRetry: deps.manifestReadRetry } : {});
    this.#owner = runnerOwner(deps.config);
    this.#journal =
      deps.journal ?? new OperationJournal({ dir: journalDir(d.stateDir, this.#owner), owner: this.#owner, logger: deps.logger, keep: this.#historySize, clock: this.#now });
    this.#storageProbe =
      deps.storageProbe ?? new StorageProbe({ store: deps.store, prefix: this.catalog.root, filesystemRoot: deps.config.storage.filesystem?.path });
  }

  /** The operation journal (its writes can be awaited with flush before a command exits). */
  get journal(): OperationJournal {
    return this.#journal;
  }

  /**
   * Reads the operation journal once: finished operations are remembered
   * again, and one that was running when the runner stopped is listed as
   * interrupted, shown in lastFailure and logged once. Needs neither storage
   * nor the database.
   */
  loadJournal(): Promise<void> {
    this.#journalLoaded ??= (async () => {
      let loaded;
      try {
        loaded = await this.#journal.load();
      } catch (err: unknown) {
        this.#log.warn("operation journal could not be read; earlier operations are not shown", { stateDir: this.#journal.dir, error: describeError(err) });
        return;
      }
      for (const u of loaded.unreadable) this.#log.warn("unreadable operation journal file skipped", u);
      for (const op of loaded.operations) this.#adopt(op);
      for (const op of loaded.interrupted) this.#logInterrupted(op, "journal");
      for (const op of loaded.runningElsewhere) {
        this.#log.warn("the journal shows an operation that another live process on this host is running", { operationId: op.id, kind: op.kind, backupId: op.backupId });
      }
    })();
    return this.#journalLoaded;
  }

  /** A journaled operation becomes part of the history and of last success / failure / verified again. */
  #adopt(op: Operation): void {
    if (this.#current?.op.id === op.id) return;
    this.#remember(op);
    if (op.state === "running") return;
    const end = (o: Operation | undefined) => (o?.endedAt ? Date.parse(o.endedAt) : -Infinity);
    const slot = op.state === "succeeded" ? this.#lastSuccess : this.#lastFailure;
    if (end(op) >= end(slot[op.kind])) slot[op.kind] = op;
    if (op.kind === "verify") this.#noteVerified(op);
  }

  #noteVerified(op: Operation): void {
    const ok = op.result?.["ok"];
    if (op.kind !== "verify" || typeof ok !== "boolean" || !op.backupId || !op.endedAt) return;
    if (this.#lastVerified && Date.parse(this.#lastVerified.at) > Date.parse(op.endedAt)) return;
    this.#lastVerified = { backupId: op.backupId, operationId: op.id, at: op.endedAt, ok };
  }

  #logInterrupted(op: Operation, from: "journal" | "storage"): void {
    this.#log.warn("an operation was interrupted: the runner stopped while it ran", {
      operationId: op.id,
      kind: op.kind,
      backupId: op.backupId,
      startedAt: op.startedAt,
      lastSeen: op.endedAt,
      progress: op.progress,
      foundIn: from,
    });
  }

  /**
   * Restores whose journal copy in storage says running and that this
   * runner does not know (its volume was lost): listed as interrupted like
   * the ones in the local journal. Reads at most the `limit` newest copies
   * written in the last week (an interrupted restore is a recent one).
   */
  async #loadRemoteJournals(signal: AbortSignal | undefined, limit = 20): Promise<void> {
    const since = this.#now().getTime() - 7 * 86_400_000;
    const unknown = this.catalog
      .restoreJournals()
      .filter((j) => (j.lastModified?.getTime() ?? 0) >= since && !this.operation(j.operationId))
      .slice(0, limit);
    for (const j of unknown) {
      try {
        const entry = parseJournalEntry(await text(await this.#store.get(j.key, { signal })), j.key);
        if (!isOwnedBy(entry.owner, this.#owner)) continue;
        let op = entry.operation as Operation;
        if (this.operation(op.id)) continue;
        if (op.state === "running") {
          op = markInterrupted(op, entry.updatedAt);
          this.#logInterrupted(op, "storage");
          // Rewritten so that the next start does not report it again.
          const journal = new OperationJournal({ dir: this.#journal.dir, owner: this.#owner, logger: this.#log, clock: this.#now });
          journal.begin(op, { store: this.#store, key: j.key });
          await journal.end(op);
          await journal.flush(5_000);
        }
        this.#adopt(op);
      } catch (err: unknown) {
        signal?.throwIfAborted();
        this.#log.warn("a restore journal in storage could not be read", { key: j.key, error: describeError(err) });
      }
    }
  }

  get config(): RunnerConfig {
    return this.#cfg;
  }

  /** This runner's identity (see owner.ts). */
  get owner(): Owner {
    return this.#owner;
  }

  /** Whether a catalog backup is this runner's (see isOwnedBy): only those are labelled and deleted by retention. */
  isOwn(entry: CatalogEntry): boolean {
    return isOwnedBy(entry.manifest.owner, this.#owner);
  }

  /** This runner's complete, readable backups, newest first. */
  ownBackups(): CatalogEntry[] {
    return this.catalog.list().filter((e) => this.isOwn(e));
  }

  /** The newest of this runner's backups: what "latest" means for restores, incrementals and missed runs. */
  latest(): CatalogEntry | undefined {
    return this.ownBackups()[0];
  }

  /** How long another owner's (or an unmarked) incomplete backup must have been idle before init removes it. */
  get incompleteCleanupAfterMs(): number {
    return this.#cfg.definition.incompleteCleanupAfterHours * 3_600_000;
  }

  /**
   * Rebuilds the catalog from the bucket, removes incomplete leftovers and
   * applies retention. An incomplete backup (no manifest) is removed when its
   * in-progress marker is this runner's, or when it has been idle (marker
   * start and newest object) for incompleteCleanupAfterHours; another
   * runner's recent one is left alone. Other owners are reported, not fatal.
   */
  async init(signal?: AbortSignal): Promise<void> {
    await this.loadJournal();
    const incomplete = await this.catalog.rebuild(signal);
    await this.#loadRemoteJournals(signal);
    const now = this.#now();
    const cutoff = new Date(now.getTime() - this.incompleteCleanupAfterMs);
    const keptForeign: IncompleteBackup[] = [];
    let removedCount = 0;
    for (const inc of incomplete) {
      const dir = this.catalog.dir(inc.id);
      const own = inc.marker !== undefined && isOwnedBy(inc.marker.owner, this.#owner);
      const last = lastActivity(inc);
      const stale = last.getTime() <= cutoff.getTime();
      const meta = { backupId: inc.id, marker: inc.marker ? describeOwner(inc.marker.owner) : inc.markerError ? `unreadable: ${inc.markerError}` : "none", lastActivity: last.toISOString() };
      if (!own && !stale) {
        keptForeign.push(inc);
        this.#log.warn("kept an incomplete backup that is not this runner's and was active recently", { ...meta, removableAfter: new Date(last.getTime() + this.incompleteCleanupAfterMs).toISOString() });
        continue;
      }
      const removed = await this.catalog.removeKeys(dir, signal);
      removedCount++;
      // This runner's own interrupted multipart uploads in that directory go too (others' are left to age out below).
      if (own && this.#store.cleanupIncomplete) await this.#store.cleanupIncomplete(`${dir}/`, now);
      this.#log.warn("removed incomplete backup", { ...meta, reason: own ? "this runner's leftover" : "idle longer than incompleteCleanupAfterHours", objects: removed });
    }
    if (this.#store.cleanupIncomplete) {
      // Only uploads older than the timeout: a recent one may belong to another runner's running backup.
      const n = await this.#store.cleanupIncomplete(`${this.catalog.root}/`, cutoff);
      if (n) this.#log.warn("aborted incomplete uploads", { count: n });
    }
    this.#foreignOwners = this.#findForeignOwners(keptForeign);
    if (this.#foreignOwners.length) {
      this.#log.warn("another runner writes to this runner's backup prefix: its backups are never deleted here, and retention here applies only to this runner's backups", {
        prefix: this.catalog.root,
        self: this.#owner,
        others: this.#foreignOwners,
      });
    }
    const unreadable = this.catalog.unreadable();
    this.#log.info("catalog loaded", { backups: this.catalog.list().length, unreadable: unreadable.length, incompleteRemoved: removedCount, incompleteKept: keptForeign.length });
    if (this.#cfg.definition.mode === "scheduled") await this.enforceRetention();
  }

  #findForeignOwners(inProgress: IncompleteBackup[]): ForeignOwner[] {
    const byId = new Map<string, ForeignOwner>();
    const add = (owner: Owner, kind: "backups" | "inProgress") => {
      const f = byId.get(owner.id) ?? { owner, backups: 0, inProgress: 0 };
      f[kind]++;
      byId.set(owner.id, f);
    };
    for (const e of this.catalog.list()) if (!this.isOwn(e) && e.manifest.owner) add(e.manifest.owner, "backups");
    for (const inc of inProgress) if (inc.marker && !isOwnedBy(inc.marker.owner, this.#owner)) add(inc.marker.owner, "inProgress");
    return [...byId.values()];
  }

  /**
   * Asks the engine to remove what interrupted restores left (staging
   * tables) and to put back what they had moved aside. Call it once the
   * database answers and before any restore starts: it removes every staging
   * table it finds. Copies it keeps (the swap had happened) become a warning.
   */
  async cleanupInterrupted(signal: AbortSignal): Promise<InterruptedCleanup | undefined> {
    if (!this.#engine.cleanupInterrupted) return undefined;
    const r = await this.#engine.cleanupInterrupted(signal);
    this.#interruptedCleanup = { ...r, at: this.#now().toISOString() };
    if (r.removed.length || r.restored.length || r.kept.length) {
      this.#log.warn("cleaned up after interrupted restores", { removed: r.removed, restored: r.restored, kept: r.kept });
    } else {
      this.#log.info("no interrupted restore left anything behind", {});
    }
    return r;
  }

  #warnings(): string[] {
    const w: string[] = [];
    const kept = this.#interruptedCleanup?.kept ?? [];
    if (kept.length) {
      w.push(
        `an interrupted restore left ${kept.length} pre-restore cop${kept.length === 1 ? "y" : "ies"} of tables that it had already replaced: ${kept.join(", ")}; check the restored tables and drop these copies when they are no longer needed`,
      );
    }
    if (this.#foreignOwners.length) {
      const others = this.#foreignOwners.map((f) => `${describeOwner(f.owner)}: ${f.backups} backup(s), ${f.inProgress} in progress`).join("; ");
      w.push(`another runner writes to ${this.catalog.root} (this runner: ${describeOwner(this.#owner)}; others: ${others}); their backups are never deleted by this runner`);
    }
    const unreadable = this.catalog.unreadable();
    if (unreadable.length) w.push(`${unreadable.length} backup(s) have an unreadable manifest and are kept but cannot be restored: ${unreadable.map((u) => u.id).join(", ")}`);
    return w;
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
      lastVerified: this.#lastVerified,
      interruptedCleanup: this.#interruptedCleanup,
      consecutiveFailures: this.#consecutiveFailures,
      backups: this.catalog.list().length,
      unreadableBackups: this.catalog.unreadable().length,
      owner: this.#owner,
      foreignOwners: this.#foreignOwners,
      warnings: this.#warnings(),
    };
  }

  /** Readiness: can the storage and the database be reached? Each value is "ok" or the error message. */
  async health(signal?: AbortSignal): Promise<{ storage: string; engine: string; engineVersion?: string | undefined }> {
    const sig = signal ?? AbortSignal.timeout(5000);
    const [storage, engine] = await Promise.allSettled([this.#storageProbe.check(sig), this.#engine.check(sig)]);
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

  /** The running operation and the remembered ones (journaled ones included), newest first. */
  operations(): Operation[] {
    const all = [...this.#history.values()];
    if (this.#current && !this.#history.has(this.#current.op.id)) all.push(this.#current.op);
    return all.sort((a, b) => Date.parse(b.startedAt) - Date.parse(a.startedAt) || b.id.localeCompare(a.id));
  }

  /**
   * Cancels the running operation `id`: it stops, with the same guarantees
   * as a failure (a backup's objects are removed, a restore rolls back), and
   * ends `cancelled`. Returns the operation at once (still running; `idle()`
   * resolves once it has ended). Unknown ids throw OperationNotFoundError,
   * ended ones OperationFinishedError.
   */
  cancel(id: string, by: string): Operation {
    const cur = this.#current;
    if (!cur || cur.op.id !== id) {
      const op = this.#history.get(id);
      if (!op) throw new OperationNotFoundError(id);
      throw new OperationFinishedError(id, op.state);
    }
    if (!cur.abort.signal.aborted) {
      this.#log.warn("cancelling operation", { operationId: id, kind: cur.op.kind, by });
      cur.abort.abort(new CancelledError(by));
    }
    return cur.op;
  }

  /** Resolves once the running operation (if any) has ended. */
  async idle(): Promise<void> {
    await this.#current?.done;
  }

  /**
   * Labels each backup holds under the policy right now. Only this runner's
   * readable backups take part: another owner's backups and unreadable ones
   * get no labels, are never deleted, and are never "the newest".
   */
  retentionDecision(): RetentionDecision {
    return applyRetention(this.#retentionInput(), this.#cfg.definition.retention, this.#cfg.definition.schedule?.timeZone ?? "UTC");
  }

  #retentionInput(): RetentionBackup[] {
    const own = this.ownBackups();
    // An own backup that another owner's incremental builds on is kept as if pinned.
    const basesOfOthers = new Set(this.catalog.list().filter((e) => !this.isOwn(e) && e.manifest.baseBackupId).map((e) => e.manifest.baseBackupId));
    return own.map((e) => ({
      id: e.manifest.id,
      time: new Date(e.manifest.startedAt),
      pinned: e.pinned || basesOfOthers.has(e.manifest.id),
      baseBackupId: e.manifest.baseBackupId,
    }));
  }

  /**
   * Deletes every own backup that holds no label any more (never pinned,
   * newest or depended-on ones). Deciding and deleting run as one exclusive
   * section of the catalog, so a pin either lands before the decision (and
   * keeps the backup) or waits and then finds the backup gone.
   */
  async enforceRetention(signal?: AbortSignal): Promise<string[]> {
    return this.catalog.exclusive(async () => {
      const decision = this.retentionDecision();
      const deleted: string[] = [];
      for (const id of decision.delete) {
        const e = this.catalog.get(id);
        // Belt and braces: the decision only holds own, unpinned backups; check again right before deleting.
        if (!e || e.pinned || !this.isOwn(e)) continue;
        await this.catalog.remove(id, signal);
        deleted.push(id);
        this.#log.info("retention deleted backup", { backupId: id });
      }
      const counts: Record<string, number> = {};
      for (const labels of decision.labels.values()) for (const l of labels) counts[l] = (counts[l] ?? 0) + 1;
      this.#observer.retention?.(counts, this.catalog.list().length);
      return deleted;
    });
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

  #run(op: Operation, abort: AbortController, work: (signal: AbortSignal) => Promise<Record<string, unknown>>, remote?: RemoteTarget): Promise<Operation> {
    const log = this.#log.child({ operationId: op.id, kind: op.kind });
    this.#observer.operationStarted?.(op);
    log.info("operation started", { trigger: op.trigger, backupId: op.backupId, target: op.target });
    this.#journal.begin(op, remote);
    const done = (async () => {
      try {
        op.result = await work(abort.signal);
        op.state = "succeeded";
        this.#consecutiveFailures = 0;
        this.#lastSuccess[op.kind] = op;
      } catch (err: unknown) {
        const reason: unknown = abort.signal.aborted ? abort.signal.reason : undefined;
        op.state = reason instanceof CancelledError ? "cancelled" : isAbort(err, abort.signal) ? "aborted" : "failed";
        op.error = describeError(err);
        op.retryable = retryableOf(err);
        if (err instanceof OperationResultError) op.result = err.result;
        this.#consecutiveFailures++;
        this.#lastFailure[op.kind] = op;
      } finally {
        const end = this.#now();
        op.endedAt = end.toISOString();
        op.durationMs = end.getTime() - new Date(op.startedAt).getTime();
        if (op.kind === "verify") this.#noteVerified(op);
        this.#current = undefined;
        this.#remember(op);
        this.#observer.operationFinished?.(op);
        await this.#journal.end(op);
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
      this.#journal.update(op);
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
  startTargetRestore(target: string, opts: RestoreOptions, trigger = "cli", identities?: AgeIdentities): { operation: Operation; finished: Promise<Operation> } {
    const dir = normalizeTarget(target);
    const { op, abort } = this.#begin("restore", trigger);
    op.target = dir;
    const finished = this.#run(
      op,
      abort,
      async (signal) => {
        const manifest = await readManifestAt(this.#store, dir, signal);
        op.backupId = manifest.id;
        const r = await this.restoreFrom(manifest, dir, opts, signal, op, identities);
        return restoreResultView(manifest.id, r, dir);
      },
      { store: this.#store, key: remoteJournalKey(dir, op.id) },
    );
    return { operation: op, finished };
  }

  /** Verifies the backup written by single-backup mode at `target` (see startVerify). */
  startTargetVerify(target: string, trigger = "cli", identities?: AgeIdentities): { operation: Operation; finished: Promise<Operation> } {
    const dir = normalizeTarget(target);
    const { op, abort } = this.#begin("verify", trigger);
    op.target = dir;
    const finished = this.#run(op, abort, async (signal) => {
      const manifest = await readManifestAt(this.#store, dir, signal);
      op.backupId = manifest.id;
      return this.#verify(op, manifest, dir, signal, identities);
    });
    return { operation: op, finished };
  }

  /**
   * Proves a backup whole from storage alone (no database): every object is
   * read and checked, decompressed and its rows counted against the
   * manifest. The operation succeeds when the backup is whole; otherwise it
   * fails with a message naming every damaged table. Either way its result
   * holds the engine's VerifyResult, table by table.
   */
  startVerify(ref: string, trigger = "api", identities?: AgeIdentities): { operation: Operation; finished: Promise<Operation> } {
    const entry = this.resolveBackup(ref);
    const { op, abort } = this.#begin("verify", trigger);
    op.backupId = entry.manifest.id;
    const finished = this.#run(op, abort, (signal) => this.#verify(op, entry.manifest, this.catalog.dir(entry.manifest.id), signal, identities));
    return { operation: op, finished };
  }

  async #verify(op: Operation, manifest: Manifest, dir: string, signal: AbortSignal, identities?: AgeIdentities): Promise<Record<string, unknown>> {
    const engine = this.#engine;
    if (!engine.verify) throw new Error(`the ${engine.name} engine cannot verify backups`);
    const stored = new StoreSource(this.#store, dir, manifest.objects, this.#cfg.storage, (n) => this.#observer.bytes?.("verify", n));
    let r: VerifyResult;
    if (manifest.encryption && !identities) {
      // No key: the stored bytes are proven (size and SHA-256 of every object); the rows need an identity.
      const progress = this.#progress(op, "verify");
      r = await verifyIntegrityOnly(manifest, stored, signal, (done, total) =>
        progress({ phase: "verify (integrity only: encrypted, no identity)", tablesDone: done, tablesTotal: total, bytes: op.progress.bytes, rows: 0 }),
      ).catch((err: unknown) => {
        throw new Error(`verify ${manifest.id}`, { cause: err });
      });
      const result: Record<string, unknown> = {
        backupId: manifest.id,
        ...(op.target ? { target: op.target } : {}),
        ok: r.ok,
        contentChecked: false,
        encrypted: true,
        tables: r.tables,
        otherObjects: r.otherObjects,
      };
      if (!r.ok) throw new OperationResultError(new BackupNotWholeError(manifest.id, damagedParts(r)), result);
      return result;
    }
    if (manifest.encryption) requireIdentity(manifest, identities, "verify");
    const source = manifest.encryption && identities ? new DecryptingSource(stored, identities, manifest) : stored;
    try {
      r = await engine.verify({
        signal,
        source,
        backup: manifestToEngineResult(manifest),
        logger: this.#log.child({ backupId: manifest.id, operationId: op.id }),
        onProgress: this.#progress(op, "verify"),
      });
    } catch (err: unknown) {
      throw new Error(`verify ${manifest.id}`, { cause: err });
    }
    const result: Record<string, unknown> = {
      backupId: manifest.id,
      ...(op.target ? { target: op.target } : {}),
      ok: r.ok,
      ...(manifest.encryption ? { encrypted: true, contentChecked: true } : {}),
      tables: r.tables,
      otherObjects: r.otherObjects,
    };
    if (!r.ok) throw new OperationResultError(new BackupNotWholeError(manifest.id, damagedParts(r)), result);
    return result;
  }

  async #backup(op: Operation, trigger: BackupTrigger, signal: AbortSignal, singleTarget?: string): Promise<Record<string, unknown>> {
    const def = this.#cfg.definition;
    const started = this.#now();
    const id = newBackupId(started);
    op.backupId = id;
    if (singleTarget !== undefined) {
      if (await this.targetHasBackup(singleTarget)) {
        throw new Error(`single backup target "${singleTarget}" already holds a backup; choose another target or remove it`);
      }
      await this.#refuseForeignInProgress(singleTarget, started);
    }
    const dir = singleTarget ?? this.catalog.dir(id);
    const log = this.#log.child({ operationId: op.id, backupId: id });
    // The marker comes first, before any data: whoever finds this directory without a manifest knows whose it is.
    const marker: InProgressMarker = { owner: this.#owner, startedAt: started.toISOString(), backupId: id };
    try {
      await writeInProgressAt(this.#store, dir, marker, signal);
    } catch (err: unknown) {
      await this.#discard(dir, log);
      throw new Error(`backup ${id}: write in-progress marker`, { cause: err });
    }
    const stored = new StoreSink(this.#store, dir, this.#cfg.storage, (n) => {
      op.progress.bytes += n;
      this.#observer.bytes?.("backup", n);
    });
    // With encryption every object the engine writes becomes an age file; the runner holds no identity.
    const recipients = def.encryption?.recipients;
    const sink = recipients ? new EncryptingSink(stored, recipients) : stored;
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
      objects: mergeObjects(stored.written, result.objects),
      totalBytes: 0,
      totalRows: result.tables.reduce((s, t) => s + t.rows, 0),
      baseBackupId: result.baseBackupId,
      labels: [],
      details: result.details,
      owner: this.#owner,
      ...(recipients ? { encryption: manifestEncryption(recipients) } : {}),
    };
    manifest.totalBytes = manifest.objects.reduce((s, o) => s + o.size, 0) + (result.storedBytes ?? 0);
    if (singleTarget !== undefined) {
      try {
        await writeManifestAt(this.#store, dir, manifest, signal);
      } catch (err: unknown) {
        await this.#discard(dir, log);
        throw new Error(`backup ${id}: write manifest`, { cause: err });
      }
      await this.#removeMarker(dir, log);
      log.info("single backup complete", { target: dir, tables: manifest.tables.length, bytes: manifest.totalBytes, rows: manifest.totalRows });
      return { backupId: id, target: dir, bytes: manifest.totalBytes, rows: manifest.totalRows, tables: manifest.tables.length };
    }
    const labels = applyRetention(
      [...this.#retentionInput(), { id, time: started, pinned: false, baseBackupId: manifest.baseBackupId }],
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
    await this.#removeMarker(dir, log);
    log.info("backup complete", { tables: manifest.tables.length, bytes: manifest.totalBytes, rows: manifest.totalRows, labels: manifest.labels });
    const deleted = await this.enforceRetention().catch((err: unknown) => {
      log.error("retention failed", { error: describeError(err) });
      return [] as string[];
    });
    return { backupId: id, bytes: manifest.totalBytes, rows: manifest.totalRows, tables: manifest.tables.length, labels: manifest.labels, deleted };
  }

  /** After the manifest: the backup is complete, the marker has done its job. A marker left behind is harmless. */
  async #removeMarker(dir: string, log: Logger): Promise<void> {
    try {
      await this.#store.delete([`${dir}/${INPROGRESS_NAME}`]);
    } catch (err: unknown) {
      log.warn("could not remove the in-progress marker of a complete backup (harmless)", { error: describeError(err) });
    }
  }

  /** A single-backup target that another runner is writing to right now is refused. */
  async #refuseForeignInProgress(target: string, now: Date): Promise<void> {
    let marker: InProgressMarker | undefined;
    try {
      marker = await readInProgressAt(this.#store, target);
    } catch (err: unknown) {
      this.#log.warn("unreadable in-progress marker in the single backup target; overwriting it", { target, error: describeError(err) });
      return;
    }
    if (!marker || isOwnedBy(marker.owner, this.#owner)) return;
    const started = Date.parse(marker.startedAt);
    if (Number.isFinite(started) && now.getTime() - started < this.incompleteCleanupAfterMs) {
      throw new Error(
        `single backup target "${target}" has a backup in progress by another runner (${describeOwner(marker.owner)}, started ${marker.startedAt}); this runner is ${describeOwner(this.#owner)}`,
      );
    }
  }

  /** Native incremental backups: build on the newest own backup unless a full one is due. */
  #chooseBase(now: Date): CatalogEntry | undefined {
    const ch = this.#cfg.definition.clickhouse;
    if (ch.method !== "native") return undefined;
    const latest = this.latest();
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

  /** "latest" (this runner's newest readable backup) or an id (any readable backup); unreadable ones are refused. */
  resolveBackup(ref: string): CatalogEntry {
    if (ref === "latest") {
      const l = this.latest();
      if (!l) throw new BackupNotFoundError("latest");
      return l;
    }
    if (!isBackupId(ref)) throw new BackupNotFoundError(ref);
    const e = this.catalog.get(ref);
    if (!e) {
      const u = this.catalog.getUnreadable(ref);
      if (u) throw new BackupUnreadableError(ref, u.error);
      throw new BackupNotFoundError(ref);
    }
    return e;
  }

  /**
   * Starts a restore. With an idempotency key that a remembered restore (running, finished or
   * journaled before a restart) already carries, nothing starts: that operation is returned with
   * `replayed: true`, whatever the runner is doing now. The check and the start happen in one
   * synchronous step, so two requests with one key never both start.
   */
  startRestore(req: RestoreRequest, trigger = "api", idempotencyKey?: string): { operation: Operation; finished: Promise<Operation>; replayed?: true } {
    if (idempotencyKey !== undefined) {
      const seen = this.operations().find((o) => o.kind === "restore" && o.idempotencyKey === idempotencyKey);
      if (seen) {
        const cur = this.#current;
        return { operation: seen, finished: cur && cur.op === seen ? cur.done.then(() => seen) : Promise.resolve(seen), replayed: true };
      }
    }
    const entry = this.resolveBackup(req.backup);
    const { op, abort } = this.#begin("restore", trigger);
    op.backupId = entry.manifest.id;
    if (idempotencyKey !== undefined) op.idempotencyKey = idempotencyKey;
    const dir = this.catalog.dir(entry.manifest.id);
    const finished = this.#run(
      op,
      abort,
      async (signal) => {
        const { identities, backup: _backup, ...opts } = req;
        const r = await this.restoreFrom(entry.manifest, dir, opts, signal, op, identities);
        return restoreResultView(entry.manifest.id, r);
      },
      { store: this.#store, key: remoteJournalKey(dir, op.id) },
    );
    return { operation: op, finished };
  }

  async restoreFrom(manifest: Manifest, dir: string, opts: RestoreOptions, signal: AbortSignal, op?: Operation, identities?: AgeIdentities): Promise<RestoreResult> {
    // An encrypted backup without an identity of one of its recipients is refused before anything is read or changed.
    try {
      requireIdentity(manifest, identities, "restore");
    } catch (err: unknown) {
      throw new Error(`restore ${manifest.id}`, { cause: err });
    }
    const stored = new StoreSource(this.#store, dir, manifest.objects, this.#cfg.storage, (n) => this.#observer.bytes?.("restore", n));
    const source = manifest.encryption && identities ? new DecryptingSource(stored, identities, manifest) : stored;
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

/**
 * The runner's journal directory: `<stateDir>/journal/<owner id>`, so that
 * runners sharing a state directory (a workstation, a test) never read or
 * prune each other's journal.
 */
export function journalDir(stateDir: string | undefined, owner: Owner): string | undefined {
  return stateDir === undefined ? undefined : join(stateDir, "journal", owner.id);
}

/** A failure that still carries the operation's result (verify: the table-by-table report of a damaged backup). */
export class OperationResultError extends Error {
  readonly result: Record<string, unknown>;
  constructor(cause: Error, result: Record<string, unknown>) {
    super(cause.message, { cause: cause.cause });
    this.name = cause.name;
    this.result = result;
  }
}

/** What a restore reports: rows per table as counted in the data it sent. */
function restoreResultView(backupId: string, r: RestoreResult, target?: string): Record<string, unknown> {
  return {
    backupId,
    ...(target ? { target } : {}),
    databases: r.databases,
    tables: r.tables.length,
    rows: r.tables.reduce((s, t) => s + t.rows, 0),
    tableRows: r.tables.map((t) => ({ database: t.database, name: t.name, rows: t.rows })),
  };
}

/** When an incomplete backup was last touched: its marker's start or its newest object, whichever is later (else its id's time). */
function lastActivity(inc: IncompleteBackup): Date {
  const times = [inc.newest?.getTime(), inc.marker ? Date.parse(inc.marker.startedAt) : undefined].filter((t): t is number => t !== undefined && Number.isFinite(t));
  if (times.length) return new Date(Math.max(...times));
  return backupIdTime(inc.id) ?? new Date(0);
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
