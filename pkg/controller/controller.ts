// The reconcile loop: informers feed keys into a work queue; each reconcile
// reads the caches, renders the desired runner objects with pure functions,
// and writes only what differs (server-side apply under one field manager).
// A reconcile that finds everything as desired makes no API write.
import { randomBytes } from "node:crypto";
import type { Logger } from "winston";
import { describeError } from "../common/errors.ts";
import type { Condition } from "../apis/resources.ts";
import { ANNOTATIONS, FINALIZER, LABELS, MANAGED_BY, RUNNER_CONTAINER } from "./contract.ts";
import { differingPaths, holds } from "./diff.ts";
import { Informer } from "./informer.ts";
import { KubeApiError, RESOURCES, apiVersionOf, type KubeClient, type ListResult, type ResourceType } from "./kube.ts";
import { defKey, runnerName, splitKey } from "./names.ts";
import { checkStorageLocation, planRunnerConfig, referencedSecrets, type FailureReason } from "./plan.ts";
import { renderRunnerObjects } from "./render.ts";
import { WorkQueue } from "./queue.ts";
import { RunnerPoller, type HealthReport } from "./poller.ts";
import { nextCondition, setCondition } from "./conditions.ts";
import type { RunnerSnapshotFetcher } from "./runnerstatus.ts";
import type { ControllerSettings } from "./settings.ts";
import type { BackupDefinitionObject, BackupDefinitionStatus, KubeObject, SecretObject, StorageLocationObject } from "./types.ts";

export type ReadyReason = FailureReason | "Reconciled" | "ApplyFailed" | "NameConflict" | "Replacing";

/** The apiserver refused a runner object for good (not a transient failure); the message is a sentence. */
export class ApplyRefusedError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "ApplyRefusedError";
  }
}

/**
 * What a reconcile came to, for reconciles_total{result}: success (the runner objects are up to
 * date, or a deleted definition's objects are gone), the Ready reason of a definition that is not
 * Ready (invalid_spec; missing_reference for StorageLocationNotFound, SecretNotFound and
 * SecretKeyNotFound; not_allowed for StorageLocationNotAllowed; apply_failed; name_conflict;
 * replacing), or error (a failure that is retried).
 */
export type ReconcileResult = "success" | "invalid_spec" | "missing_reference" | "not_allowed" | "apply_failed" | "name_conflict" | "replacing" | "error";

const RESULT_OF: Record<ReadyReason, ReconcileResult> = {
  Reconciled: "success",
  InvalidSpec: "invalid_spec",
  StorageLocationNotFound: "missing_reference",
  StorageLocationNotAllowed: "not_allowed",
  SecretNotFound: "missing_reference",
  SecretKeyNotFound: "missing_reference",
  ApplyFailed: "apply_failed",
  NameConflict: "name_conflict",
  Replacing: "replacing",
};

/** How long a definition waits before it looks again at an object being deleted to be replaced. */
const REPLACE_RECHECK_MS = 10_000;

export interface ControllerHooks {
  /** After every reconcile (metrics). */
  reconciled?: (key: string, result: ReconcileResult, seconds: number) => void;
  /** Reads a runner's readiness, status and catalog (mirrored into the definition's status; see poller.ts). */
  runnerSnapshot?: RunnerSnapshotFetcher;
  /** Each definition's newest success and BackupHealthy, after every poll (metrics). */
  health?: HealthReport;
  /** After each read of a runner's API: whether it answered (metrics). */
  polled?: (ok: boolean) => void;
}

export interface ControllerDeps {
  client: KubeClient;
  settings: ControllerSettings;
  logger: Logger;
  hooks?: ControllerHooks;
  now?: () => Date;
}

/** Marks a cached Secret whose data was dropped (it was not referenced when it arrived). */
const SLIM = Symbol("slim");

export class Controller {
  readonly #client: KubeClient;
  readonly #s: ControllerSettings;
  readonly #log: Logger;
  readonly #hooks: ControllerHooks;
  readonly #now: () => Date;
  readonly defs: Informer<BackupDefinitionObject>;
  readonly locations: Informer<StorageLocationObject>;
  readonly namespaces: Informer<KubeObject>;
  readonly locationQueue: WorkQueue;
  /** uids of StorageLocations outside the controller's namespace that got their Warning Event. */
  readonly #warnedLocations = new Set<string>();
  readonly secrets: Informer<SecretObject>;
  readonly statefulSets: Informer<KubeObject>;
  readonly services: Informer<KubeObject>;
  readonly queue: WorkQueue;
  readonly #informers: Informer<KubeObject>[];
  #resyncTimer: NodeJS.Timeout | undefined;
  #statusTimer: NodeJS.Timeout | undefined;
  #started = false;
  readonly #poller: RunnerPoller | undefined;
  #abort = new AbortController();
  #startedAt: number | undefined;
  #refIndex: Map<string, Set<string>> | undefined;
  #syncReportTimer: NodeJS.Timeout | undefined;

  constructor(deps: ControllerDeps) {
    this.#client = deps.client;
    this.#s = deps.settings;
    this.#log = deps.logger;
    this.#hooks = deps.hooks ?? {};
    this.#now = deps.now ?? (() => new Date());
    const ns = this.#s.namespace;
    const base = { client: this.#client, logger: this.#log, pageSize: this.#s.listPageSize };
    this.defs = new Informer({ ...base, resource: RESOURCES.backupDefinitions });
    // StorageLocations of every namespace: only those in the controller's namespace are used; one
    // created elsewhere gets a Warning Event saying so.
    this.locations = new Informer({ ...base, resource: RESOURCES.storageLocations });
    // Namespaces, for their labels (a location's allowedNamespaces.selector).
    this.namespaces = new Informer({ ...base, resource: RESOURCES.namespaces });
    // Secrets of every namespace: a definition's password Secret lives in its own namespace. Only the
    // data of referenced Secrets and of our runner Secrets is kept; the rest is cached as metadata
    // (enough to map a change to its definitions) and read on demand once something refers to it.
    // The list asks for metadata only (see #listSecrets); watch events are slimmed as they come.
    this.secrets = new Informer({ ...base, resource: RESOURCES.secrets, transform: (s) => this.#slimSecret(s), list: () => this.#listSecrets() });
    // Every StatefulSet and Service of the namespace, not only ours: an object that holds a runner's
    // name but belongs to something else must be seen, so that it is never overwritten.
    this.statefulSets = new Informer({ ...base, resource: RESOURCES.statefulSets, namespace: ns });
    this.services = new Informer({ ...base, resource: RESOURCES.services, namespace: ns });
    this.#informers = [this.defs, this.locations, this.namespaces, this.secrets, this.statefulSets, this.services] as Informer<KubeObject>[];
    const fetchSnapshot = this.#hooks.runnerSnapshot;
    this.#poller = fetchSnapshot
      ? new RunnerPoller({
          client: this.#client,
          logger: this.#log,
          now: this.#now,
          defs: this.defs,
          statefulSets: this.statefulSets,
          token: (secretName) => this.#existingToken(secretName),
          fetch: fetchSnapshot,
          event: (def, type, reason, message, log) => this.#event(def, type, reason, message, log),
          tolerance: this.#s.backupHealthTolerance,
          ...(this.#hooks.health ? { health: this.#hooks.health } : {}),
          ...(this.#hooks.polled ? { polled: this.#hooks.polled } : {}),
        })
      : undefined;
    // StorageLocation status: one at a time, apart from the definitions.
    this.locationQueue = new WorkQueue({
      workers: 1,
      handle: (name) => this.reconcileLocation(name),
      onError: (name, err, retryInMs) => this.#log.warn("storage location status failed; will retry", { storageLocation: name, error: describeError(err), retryInMs }),
    });
    this.queue = new WorkQueue({
      workers: this.#s.workers,
      handle: (key) => this.#timedReconcile(key),
      onError: (key, err, retryInMs) =>
        this.#log.warn("reconcile failed; will retry", { definition: key, error: describeError(err), retryInMs }),
    });
    this.#wire();
  }

  #slimSecret(s: SecretObject): SecretObject {
    if (this.#isOwnedSecret(s) || this.#definitionsUsing(s).length > 0 || this.#locationsUsing(s).length > 0) return s;
    return slim(s);
  }

  /** The StorageLocations (of the controller's namespace) whose credentials are this Secret. */
  #locationsUsing(s: SecretObject): StorageLocationObject[] {
    if (s.metadata.namespace !== this.#s.namespace) return [];
    return this.locations.list(this.#s.namespace).filter((l) => l.spec?.s3?.credentialsSecretRef?.name === s.metadata.name);
  }

  /**
   * The Secret cache's list, in pages: the controller's namespace in full (the runner Secrets, whose
   * token and config are compared, and the storage credentials), then every namespace as metadata
   * only (PartialObjectMetadataList), which is what the cache keeps of the others. Secrets of the
   * controller's namespace that changed between the two lists, and that the controller needs, are
   * read again. A Secret of another namespace that a definition refers to is read when a reconcile
   * needs it (#fetchSlimSecrets); the watch then keeps it whole.
   */
  async #listSecrets(): Promise<ListResult<SecretObject>> {
    const ns = this.#s.namespace;
    const pageSize = this.#s.listPageSize;
    const full = new Map<string, SecretObject>();
    await this.#client.list<SecretObject>(RESOURCES.secrets, ns, undefined, {
      pageSize,
      page: (items) => {
        for (const s of items) full.set(s.metadata.name, this.#slimSecret(s));
        return [];
      },
    });
    const stale: SecretObject[] = [];
    const all = await this.#client.list<SecretObject>(RESOURCES.secrets, undefined, undefined, {
      pageSize,
      metadataOnly: true,
      page: (items) =>
        items.map((m) => {
          if (m.metadata.namespace !== ns) return slim(m);
          const f = full.get(m.metadata.name);
          if (f && f.metadata.resourceVersion === m.metadata.resourceVersion) return f;
          const s = slim(m);
          if (this.#isOwnedSecret(m) || this.#definitionsUsing(m).length > 0 || this.#locationsUsing(m).length > 0) stale.push(s);
          return s;
        }),
    });
    for (const s of stale) {
      const fresh = await this.#client.get<SecretObject>(RESOURCES.secrets, ns, s.metadata.name);
      const i = all.items.indexOf(s);
      if (fresh && i >= 0) all.items[i] = { ...fresh, apiVersion: "v1", kind: "Secret" };
    }
    return all;
  }

  /** A runner config Secret this controller generated. */
  #isOwnedSecret(s: SecretObject): boolean {
    return s.metadata.namespace === this.#s.namespace && isManaged(s);
  }

  /** The definitions that refer to the Secret, directly or through their StorageLocation. */
  #definitionsUsing(s: SecretObject): BackupDefinitionObject[] {
    const keys = this.#referenceIndex().get(defKey(s.metadata.namespace ?? "", s.metadata.name));
    if (!keys) return [];
    return [...keys].flatMap((k) => {
      const { namespace, name } = splitKey(k);
      const d = this.defs.get(namespace, name);
      return d ? [d] : [];
    });
  }

  /** "namespace/name" of a Secret → the definitions that refer to it; rebuilt after a definition or location changes. */
  #referenceIndex(): Map<string, Set<string>> {
    if (this.#refIndex) return this.#refIndex;
    const index = new Map<string, Set<string>>();
    for (const d of this.defs.list()) {
      const loc = this.locations.get(this.#s.namespace, d.spec?.storageLocation ?? "");
      for (const r of referencedSecrets(d, loc, this.#s.namespace)) {
        const k = defKey(r.namespace, r.name);
        let set = index.get(k);
        if (!set) index.set(k, (set = new Set()));
        set.add(defKey(d.metadata.namespace ?? "", d.metadata.name));
      }
    }
    this.#refIndex = index;
    return index;
  }

  /** Reads the data of referenced Secrets that are cached as metadata only. */
  async #fetchSlimSecrets(def: BackupDefinitionObject): Promise<void> {
    const loc = this.locations.get(this.#s.namespace, def.spec?.storageLocation ?? "");
    for (const ref of referencedSecrets(def, loc, this.#s.namespace)) {
      const cached = this.secrets.get(ref.namespace, ref.name);
      if (!cached || !(cached as unknown as Record<symbol, unknown>)[SLIM]) continue;
      const full = await this.#client.get<SecretObject>(RESOURCES.secrets, ref.namespace, ref.name);
      if (full) this.secrets.wrote(full);
    }
  }

  get ready(): boolean {
    return this.#started && this.#informers.every((i) => i.synced);
  }

  /** Whether the caches are in, and if not, for how long and what each one that is not waits for. */
  syncStatus(): { synced: boolean; waitingSeconds: number; waiting: { resource: string; error: string }[] } {
    const waiting = this.#informers
      .filter((i) => !i.synced)
      .map((i) => ({ resource: i.resource.resource, error: i.lastError ?? (i.started ? "waiting for the first list" : "not started yet: backupdefinitions and storagelocations come first") }));
    return { synced: this.ready, waitingSeconds: this.#startedAt ? (performance.now() - this.#startedAt) / 1000 : 0, waiting };
  }

  #wire(): void {
    this.defs.on((d) => {
      this.#refIndex = undefined;
      this.queue.add(defKey(d.metadata.namespace ?? "", d.metadata.name));
    });
    this.locations.on((l, kind) => {
      if (l.metadata.namespace !== this.#s.namespace) {
        if (kind !== "delete") this.locationQueue.add(`${l.metadata.namespace}/${l.metadata.name}`);
        return;
      }
      this.#refIndex = undefined;
      this.locationQueue.add(l.metadata.name);
      for (const d of this.defs.list()) if (d.spec?.storageLocation === l.metadata.name) this.#enqueue(d);
    });
    this.namespaces.on((n) => {
      // Its labels may decide whether its definitions may use a location.
      for (const d of this.defs.list(n.metadata.name)) this.#enqueue(d);
    });
    this.secrets.on((s) => {
      if (this.#isOwnedSecret(s)) this.#enqueueOwner(s);
      else for (const d of this.#definitionsUsing(s)) this.#enqueue(d);
      for (const l of this.#locationsUsing(s)) this.locationQueue.add(l.metadata.name);
    });
    this.statefulSets.on((o) => this.#enqueueOwner(o));
    this.services.on((o) => this.#enqueueOwner(o));
  }

  #enqueue(d: BackupDefinitionObject): void {
    this.queue.add(defKey(d.metadata.namespace ?? "", d.metadata.name));
  }

  #enqueueOwner(o: KubeObject): void {
    const src = o.metadata.annotations?.[ANNOTATIONS.source];
    if (src && src.includes("/")) this.queue.add(src);
  }

  /**
   * Starts the informers, waits for their caches, then reconciles everything once and on every
   * resync. While the caches are not synced, what they wait for is logged every syncReportSeconds.
   * stop() ends a start that is still waiting.
   */
  async start(): Promise<void> {
    this.#abort = new AbortController();
    const signal = this.#abort.signal;
    this.#startedAt = performance.now();
    this.#syncReportTimer = setInterval(() => {
      const st = this.syncStatus();
      if (st.synced) return clearInterval(this.#syncReportTimer);
      this.#log.warn("caches not synced", { waitingSeconds: Math.floor(st.waitingSeconds), waitingFor: st.waiting, healthzFailsAfterSeconds: this.#s.cacheSyncTimeoutSeconds });
    }, this.#s.syncReportSeconds * 1000);
    this.#syncReportTimer.unref();
    // Definitions and locations first: the Secret cache keeps data only for what they reference.
    await Promise.all([this.defs, this.locations].map((i) => i.start()));
    if (signal.aborted) return;
    await Promise.all([this.secrets, this.statefulSets, this.services, this.namespaces].map((i) => i.start()));
    clearInterval(this.#syncReportTimer);
    if (signal.aborted) return;
    this.#started = true;
    this.queue.start();
    this.locationQueue.start();
    this.resync();
    this.#resyncTimer = setInterval(() => this.resync(), this.#s.resyncSeconds * 1000);
    this.#resyncTimer.unref();
    if (this.#s.runnerStatusSeconds > 0 && this.#poller) {
      this.#statusTimer = setInterval(() => {
        this.pollRunners().catch((err: unknown) => this.#log.warn("reading the runners' status failed", { error: describeError(err) }));
      }, this.#s.runnerStatusSeconds * 1000);
      this.#statusTimer.unref();
    }
    this.#log.info("controller started", { namespace: this.#s.namespace, definitions: this.defs.list().length });
  }

  async stop(): Promise<void> {
    this.#abort.abort();
    clearInterval(this.#syncReportTimer);
    clearInterval(this.#resyncTimer);
    clearInterval(this.#statusTimer);
    await Promise.all([this.queue.stop(), this.locationQueue.stop()]);
    await Promise.all(this.#informers.map((i) => i.stop()));
    this.#started = false;
  }

  /** Enqueues every definition and the owner of every orphaned runner object. */
  resync(): void {
    for (const d of this.defs.list()) this.#enqueue(d);
    for (const l of this.locations.list(this.#s.namespace)) this.locationQueue.add(l.metadata.name);
    for (const { source } of this.#ownedObjects()) {
      if (!source) continue;
      const { namespace, name } = splitKey(source);
      if (!this.defs.get(namespace, name)) this.queue.add(source);
    }
  }

  /** Every generated object in the caches, with its kind and the definition it stands for. */
  #ownedObjects(): { rt: ResourceType; informer: Informer<KubeObject>; name: string; source: string | undefined }[] {
    const of = (rt: ResourceType, informer: Informer<KubeObject>, objs: KubeObject[]) =>
      objs.map((o) => ({ rt, informer, name: o.metadata.name, source: o.metadata.annotations?.[ANNOTATIONS.source] }));
    return [
      ...of(RESOURCES.statefulSets, this.statefulSets, this.statefulSets.list().filter(isManaged)),
      ...of(RESOURCES.services, this.services, this.services.list().filter(isManaged)),
      ...of(RESOURCES.secrets, this.secrets as Informer<KubeObject>, this.secrets.list(this.#s.namespace).filter(isManaged)),
    ];
  }

  async #timedReconcile(key: string): Promise<{ requeueAfterMs?: number }> {
    const t0 = performance.now();
    try {
      const r = await this.reconcile(key);
      this.#hooks.reconciled?.(key, r.result, (performance.now() - t0) / 1000);
      return r.requeueAfterMs === undefined ? {} : { requeueAfterMs: r.requeueAfterMs };
    } catch (err: unknown) {
      this.#hooks.reconciled?.(key, "error", (performance.now() - t0) / 1000);
      throw err;
    }
  }

  async reconcile(key: string): Promise<{ result: ReconcileResult; requeueAfterMs?: number }> {
    const { namespace, name } = splitKey(key);
    const log = this.#log.child({ definition: key });
    const def = this.defs.get(namespace, name);
    if (!def) {
      // Gone without our finalizer (forced removal, or deleted while we were away): sweep what is left.
      await this.#deleteRunnerObjects(key, log, "orphaned runner objects deleted");
      return { result: "success" };
    }
    if (def.metadata.deletionTimestamp) {
      if (!def.metadata.finalizers?.includes(FINALIZER)) return { result: "success" };
      await this.#deleteRunnerObjects(key, log, "runner objects deleted");
      await this.#setFinalizer(def, false);
      log.info("runner objects removed; finalizer released", {});
      return { result: "success" };
    }
    const current = def.metadata.finalizers?.includes(FINALIZER) ? def : await this.#setFinalizer(def, true);

    const objName = runnerName(namespace, name);
    await this.#fetchSlimSecrets(current);
    const plan = planRunnerConfig({
      definition: current,
      controllerNamespace: this.#s.namespace,
      location: (n) => this.locations.get(this.#s.namespace, n),
      secret: (ns, n) => this.secrets.get(ns, n),
      namespaceLabels: (n) => {
        const o = this.namespaces.get("", n);
        return o ? (o.metadata.labels ?? {}) : undefined;
      },
      token: this.#existingToken(objName, key) ?? randomBytes(24).toString("base64url"),
    });
    let ready: { status: "True" | "False"; reason: ReadyReason; message: string };
    let runner = current.status?.runner;
    let requeueAfterMs: number | undefined;
    if (plan.ok) {
      const objs = renderRunnerObjects(plan, this.#s);
      const conflicts = this.#conflicts(key, objs);
      if (conflicts.length) {
        // Never write an object that stands for another definition (or for no definition at all).
        ready = { status: "False", reason: "NameConflict", message: `${conflicts.join("; ")}: not touching it. Rename or delete the object (or this definition)` };
      } else {
        try {
          const states = [
            { kind: "Secret", state: await this.#ensure(this.secrets as Informer<KubeObject>, RESOURCES.secrets, objs.secret, log) },
            { kind: "StatefulSet", state: await this.#ensure(this.statefulSets, RESOURCES.statefulSets, objs.statefulSet, log) },
            { kind: "Service", state: await this.#ensure(this.services, RESOURCES.services, objs.service, log) },
          ];
          const written = states.filter((x) => x.state === "applied").map((x) => x.kind);
          if (written.length) log.info("runner objects applied", { objects: written, configHash: objs.configHash.slice(0, 12) });
          const replacing = states.filter((x) => x.state === "replacing").map((x) => x.kind);
          if (replacing.length) {
            ready = { status: "False", reason: "Replacing", message: replacingMessage(replacing, this.#s.namespace, objName) };
            // The watch reports the deletion; this is the fallback if that event is missed.
            requeueAfterMs = REPLACE_RECHECK_MS;
          } else {
            ready = { status: "True", reason: "Reconciled", message: `runner ${this.#s.namespace}/${objName} is up to date` };
            runner = { namespace: this.#s.namespace, secret: objName, statefulSet: objName, service: objName, configHash: objs.configHash };
            // Objects of this definition under another name (the name scheme of an earlier version).
            await this.#deleteRunnerObjects(key, log, "runner objects under an old name deleted", objName);
          }
        } catch (err: unknown) {
          if (!(err instanceof ApplyRefusedError)) {
            // Transient (retried with backoff); the condition only records what the apiserver refused for good.
            throw new Error(`apply runner objects of ${key}`, { cause: err });
          }
          ready = { status: "False", reason: "ApplyFailed", message: err.message };
        }
      }
    } else {
      ready = { status: "False", reason: plan.reason, message: plan.message };
    }
    await this.#updateStatus(current, ready, runner, log);
    return { result: RESULT_OF[ready.reason], ...(requeueAfterMs === undefined ? {} : { requeueAfterMs }) };
  }

  /** The desired objects whose name is taken by an object that does not stand for this definition. */
  #conflicts(key: string, objs: ReturnType<typeof renderRunnerObjects>): string[] {
    const out: string[] = [];
    const check = (informer: Informer<KubeObject>, kind: string, desired: { metadata: { name: string; namespace: string } }) => {
      const live = informer.get(desired.metadata.namespace, desired.metadata.name);
      if (!live) return;
      const src = live.metadata.annotations?.[ANNOTATIONS.source];
      if (src === key) return;
      const owner = src ? `BackupDefinition ${src}` : `no BackupDefinition (it has no ${ANNOTATIONS.source} annotation)`;
      out.push(`${kind} ${desired.metadata.namespace}/${desired.metadata.name} exists and belongs to ${owner}`);
    };
    check(this.secrets as Informer<KubeObject>, "Secret", objs.secret);
    check(this.statefulSets, "StatefulSet", objs.statefulSet);
    check(this.services, "Service", objs.service);
    return out;
  }

  /** Now, as Kubernetes writes times (RFC 3339, whole seconds). */
  #timestamp(): string {
    return this.#now().toISOString().replace(/\.\d{3}Z$/, "Z");
  }

  /** The API token in the runner Secret (only one that stands for the definition `key`, when given). */
  #existingToken(objName: string, key?: string): string | undefined {
    const s = this.secrets.get(this.#s.namespace, objName);
    if (key !== undefined && s?.metadata.annotations?.[ANNOTATIONS.source] !== key) return undefined;
    const b64 = s?.data?.[RUNNER_CONTAINER.tokenKey];
    if (b64) return Buffer.from(b64, "base64").toString("utf8");
    return undefined;
  }

  /**
   * Applies the whole desired object unless the live one carries the same desired hash and holds
   * every desired value (see diff.ts). An object that is being deleted is created anew once it is
   * gone; one whose change the apiserver refuses as immutable is deleted to be replaced (a
   * StatefulSet with orphan propagation: its pod and volume claims stay and the new one adopts them).
   */
  async #ensure(
    informer: Informer<KubeObject>,
    rt: ResourceType,
    desired: { metadata: { name: string; namespace: string } },
    log: Logger,
  ): Promise<"unchanged" | "applied" | "replacing"> {
    const { namespace, name } = desired.metadata;
    const live = informer.get(namespace, name);
    // Applying to an object that is being deleted would fail (or change the dying object): wait.
    if (live?.metadata.deletionTimestamp) return "replacing";
    if (live && holds(desired, live)) return "unchanged";
    if (live) log.debug("drift", { kind: rt.kind, name, paths: differingPaths(desired, live) });
    try {
      informer.wrote(await this.#client.apply<KubeObject>(rt, namespace, name, desired));
      return "applied";
    } catch (err: unknown) {
      if (!(err instanceof KubeApiError) || err.retryable) throw err;
      // Replace the object when the change cannot be made to the live one but the desired object is
      // fine by itself: an immutable field (a StatefulSet's volume claim templates, from
      // spec.runner.storageSize and storageClassName), or a list entry another manager added that
      // clashes with ours (say, a second port named "http"). A dry-run create tells the two apart
      // from an object the apiserver would refuse anyway: that one is reported, and nothing is deleted.
      if (live && err.status === 422 && (err.immutableField || (await this.#validByItself(rt, namespace, desired)))) {
        log.warn("the change cannot be made in place; replacing the object", { kind: rt.kind, name, fields: err.causes.map((c) => c.field) });
        await this.#client.delete(rt, namespace, name, { propagationPolicy: rt === RESOURCES.statefulSets ? "Orphan" : "Background", uid: live.metadata.uid });
        return "replacing";
      }
      throw new ApplyRefusedError(`${rt.kind} ${namespace}/${name} was refused by the apiserver (HTTP ${err.status} ${err.reason}): ${err.detail || "no reason given"}`, { cause: err });
    }
  }

  /** Would the apiserver create the desired object as it is? (Validation runs before the name is checked.) */
  async #validByItself(rt: ResourceType, namespace: string, desired: unknown): Promise<boolean> {
    try {
      await this.#client.create(rt, namespace, desired, { dryRun: true });
      return true;
    } catch (err: unknown) {
      if (err instanceof KubeApiError && err.status === 409) return true; // AlreadyExists: it passed validation
      if (err instanceof KubeApiError && !err.retryable) return false;
      throw err;
    }
  }

  /**
   * Deletes the objects whose source annotation names the definition `key` (all of them, or all but
   * those named `keep`). Each delete carries the cached object's uid as a precondition, so an object
   * made anew by someone else since is never deleted.
   */
  async #deleteRunnerObjects(key: string, log: Logger, what: string, keep?: string): Promise<void> {
    const ns = this.#s.namespace;
    const targets = this.#ownedObjects().filter((o) => o.source === key && o.name !== keep);
    if (keep === undefined) {
      // Just written and not yet seen by the watch: the informer knows it from the write.
      const { namespace: defNs, name: defName } = splitKey(key);
      const n = runnerName(defNs, defName);
      for (const [rt, informer] of [[RESOURCES.statefulSets, this.statefulSets], [RESOURCES.services, this.services], [RESOURCES.secrets, this.secrets]] as const) {
        const o = (informer as Informer<KubeObject>).get(ns, n);
        if (o && isManaged(o) && o.metadata.annotations?.[ANNOTATIONS.source] === key && !targets.some((t) => t.rt === rt && t.name === n)) {
          targets.push({ rt, informer: informer as Informer<KubeObject>, name: n, source: key });
        }
      }
    }
    const removed: string[] = [];
    for (const t of targets) {
      const live = t.informer.get(ns, t.name);
      if (!live) continue;
      if (await this.#client.delete(t.rt, ns, t.name, { uid: live.metadata.uid })) removed.push(`${t.rt.kind}/${t.name}`);
      t.informer.deleted(ns, t.name);
    }
    if (removed.length) log.info(what, { objects: removed });
  }

  async #setFinalizer(def: BackupDefinitionObject, present: boolean): Promise<BackupDefinitionObject> {
    const list = (def.metadata.finalizers ?? []).filter((f) => f !== FINALIZER);
    if (present) list.push(FINALIZER);
    // resourceVersion makes this a compare-and-swap: a concurrent change gives 409 and a retry.
    const updated = await this.#client.patch<BackupDefinitionObject>(
      RESOURCES.backupDefinitions,
      def.metadata.namespace ?? "",
      def.metadata.name,
      { metadata: { finalizers: list, resourceVersion: def.metadata.resourceVersion } },
    );
    this.defs.wrote(updated);
    return updated;
  }

  async #updateStatus(
    def: BackupDefinitionObject,
    ready: { status: "True" | "False"; reason: ReadyReason; message: string },
    runner: BackupDefinitionStatus["runner"],
    log: Logger,
  ): Promise<void> {
    const old = def.status ?? {};
    const prev = old.conditions?.find((c) => c.type === "Ready");
    const generation = def.metadata.generation;
    const cond = nextCondition(prev, "Ready", ready, generation, this.#timestamp());
    const next: BackupDefinitionStatus = {
      ...old,
      ...(generation !== undefined ? { observedGeneration: generation } : {}),
      conditions: setCondition(old.conditions, cond),
      ...(runner ? { runner } : {}),
    };
    if (JSON.stringify(comparable(old)) === JSON.stringify(comparable(next))) return;
    const updated = await this.#client.patch<BackupDefinitionObject>(
      RESOURCES.backupDefinitions,
      def.metadata.namespace ?? "",
      def.metadata.name,
      { status: next },
      "status",
    );
    this.defs.wrote(updated);
    if (!prev || prev.status !== cond.status || prev.reason !== cond.reason) {
      const level = cond.status === "True" ? "info" : "warn";
      log[level]("ready condition changed", { status: cond.status, reason: cond.reason, detail: cond.message });
      await this.#event(updated, cond.status === "True" || cond.reason === "Replacing" ? "Normal" : "Warning", cond.reason, cond.message, log);
    }
  }

  async #event(def: KubeObject, type: "Normal" | "Warning", reason: string, message: string, log: Logger, rt: ResourceType = RESOURCES.backupDefinitions): Promise<void> {
    const now = this.#timestamp();
    const ns = def.metadata.namespace ?? "";
    try {
      await this.#client.create(RESOURCES.events, ns, {
        apiVersion: "v1",
        kind: "Event",
        metadata: { name: `${def.metadata.name.slice(0, 200)}.${Date.now().toString(16)}${randomBytes(3).toString("hex")}`, namespace: ns },
        involvedObject: {
          apiVersion: apiVersionOf(rt),
          kind: rt.kind,
          name: def.metadata.name,
          namespace: ns,
          ...(def.metadata.uid ? { uid: def.metadata.uid } : {}),
          ...(def.metadata.resourceVersion ? { resourceVersion: def.metadata.resourceVersion } : {}),
        },
        type,
        reason,
        message: message.slice(0, 1024),
        source: { component: MANAGED_BY },
        reportingComponent: MANAGED_BY,
        reportingInstance: this.#s.leaderElection.identity,
        firstTimestamp: now,
        lastTimestamp: now,
        count: 1,
      });
    } catch (err: unknown) {
      // Events are best effort: never fail a reconcile for one.
      log.warn("event not recorded", { reason, error: describeError(err) });
    }
  }

  /**
   * A StorageLocation's status: Ready with reason Available, InvalidSpec, SecretNotFound or
   * SecretKeyNotFound (written only when it changes, with an Event). One outside the controller's
   * namespace is not used: it gets a Warning Event once, and no status. The key is the location's
   * name, or "namespace/name" for one outside.
   */
  async reconcileLocation(key: string): Promise<void> {
    const ns = this.#s.namespace;
    const log = this.#log.child({ storageLocation: key });
    if (key.includes("/")) {
      const { namespace, name } = splitKey(key);
      const loc = this.locations.get(namespace, name);
      if (!loc || this.#warnedLocations.has(loc.metadata.uid ?? key)) return;
      this.#warnedLocations.add(loc.metadata.uid ?? key);
      log.warn("storage location outside the controller's namespace is not used", { controllerNamespace: ns });
      await this.#event(loc, "Warning", "NotInControllerNamespace", `StorageLocations are read from the controller's namespace ${ns} only: this one is not used. Create it in ${ns}`, log, RESOURCES.storageLocations);
      return;
    }
    const loc = this.locations.get(ns, key);
    if (!loc) return;
    const ref = loc.spec?.s3?.credentialsSecretRef?.name;
    if (ref) {
      const cached = this.secrets.get(ns, ref);
      if (cached && (cached as unknown as Record<symbol, unknown>)[SLIM]) {
        const full = await this.#client.get<SecretObject>(RESOURCES.secrets, ns, ref);
        if (full) this.secrets.wrote(full);
      }
    }
    const check = checkStorageLocation(loc, ns, (n, name) => this.secrets.get(n, name));
    const old = (loc as { status?: { observedGeneration?: number; conditions?: Condition[] } }).status ?? {};
    const prev = old.conditions?.find((c) => c.type === "Ready");
    const generation = loc.metadata.generation;
    if (prev && prev.status === check.status && prev.reason === check.reason && prev.message === check.message && old.observedGeneration === generation) return;
    const cond = nextCondition(prev, "Ready", check, generation, this.#timestamp());
    const status = { ...(generation !== undefined ? { observedGeneration: generation } : {}), conditions: setCondition(old.conditions, cond) };
    const updated = await this.#client.patch<StorageLocationObject>(RESOURCES.storageLocations, ns, key, { status }, "status");
    this.locations.wrote(updated);
    if (!prev || prev.status !== cond.status || prev.reason !== cond.reason) {
      log[cond.status === "True" ? "info" : "warn"]("storage location ready condition changed", { status: cond.status, reason: cond.reason, detail: cond.message });
      await this.#event(updated, cond.status === "True" ? "Normal" : "Warning", cond.reason, cond.message, log, RESOURCES.storageLocations);
    }
  }

  /**
   * Mirrors every runner whose objects are in place into its definition's status (figures,
   * RunnerReady, BackupHealthy; see poller.ts). Writes only on change.
   */
  async pollRunners(): Promise<void> {
    await this.#poller?.pollAll(this.#abort.signal);
  }
}

/** The Replacing condition's message: which objects, why, and what happens to the pod and its claims. */
export function replacingMessage(kinds: string[], namespace: string, name: string): string {
  const what = kinds.map((k) => `${k} ${namespace}/${name}`).join(" and ");
  const sts = kinds.includes("StatefulSet")
    ? " For a StatefulSet: its volume claim (spec.runner.storageSize, storageClassName, or filesystem vs S3); its pod and volume claims are kept and the new StatefulSet adopts them."
    : "";
  return `${what} ${kinds.length > 1 ? "are" : "is"} being replaced: a field that cannot change in place changed, so the old object is deleted and the new one is created as soon as it is gone.${sts}`;
}

/** The status fields a reconcile decides, without timestamps that only change with them. */
function comparable(s: BackupDefinitionStatus): unknown {
  return {
    observedGeneration: s.observedGeneration,
    conditions: (s.conditions ?? []).map((c) => [c.type, c.status, c.reason, c.message, c.observedGeneration]),
    runner: s.runner ? [s.runner.namespace, s.runner.secret, s.runner.statefulSet, s.runner.service, s.runner.configHash] : undefined,
  };
}

/**
 * A Secret without its data (kept: name, namespace, labels, uid, resourceVersion and the source
 * annotation, which says whose object it is; see #conflicts), marked so that it is read in full
 * once something needs its data.
 */
function slim(s: SecretObject): SecretObject {
  const { data: _data, ...rest } = s;
  const src = s.metadata.annotations?.[ANNOTATIONS.source];
  return { ...rest, metadata: { ...s.metadata, annotations: src === undefined ? undefined : { [ANNOTATIONS.source]: src }, managedFields: undefined } as never, [SLIM]: true } as SecretObject;
}

/** Generated by this controller (the managed-by label); whose it is says the source annotation. */
function isManaged(o: KubeObject): boolean {
  return o.metadata.labels?.[LABELS.managedBy] === MANAGED_BY;
}
