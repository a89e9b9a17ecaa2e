// A cache of one resource kept current by list+watch (client-node's ListWatch),
// restarted with backoff whenever the watch fails (e.g. the apiserver is away),
// plus what this controller itself just wrote, so a reconcile that follows its
// own write does not see the older cached object and write again.
import { ListWatch, Watch, type KubeConfig, type KubernetesObject } from "@kubernetes/client-node";
import type { Logger } from "winston";
import { resourcePath, type KubeClient, type ListResult, type ResourceType } from "./kube.ts";
import type { KubeObject } from "./types.ts";
import { describeError } from "../common/errors.ts";

export type EventHandler<T> = (obj: T, kind: "add" | "update" | "delete") => void;

export interface InformerOptions<T = KubeObject> {
  client: KubeClient;
  resource: ResourceType;
  /** undefined: all namespaces. */
  namespace?: string;
  labelSelector?: string;
  logger: Logger;
  maxBackoffMs?: number;
  /** Applied to every object before it enters the cache (e.g. to drop what is not needed). */
  transform?: (obj: T) => T;
  /** Objects per list page (default 500). */
  pageSize?: number;
  /** Lists in its own way instead (returning transformed items), e.g. partly as metadata only. */
  list?: () => Promise<ListResult<T>>;
}

/** Marks an object this controller deleted. */
const DELETED = { metadata: { name: "" } } as never;

/**
 * What this controller itself wrote or deleted, until the watch catches up. resourceVersions are
 * opaque: they are only compared for equality. An entry waiting for its echo (the watch delivering
 * the object at the written resourceVersion, which no handler needs to see) is served instead of
 * the cache; it goes with the echo, when the object is deleted or made anew, when the cache is
 * listed anew, or after `maxAgeMs` (an echo that was missed). A write the cache already holds at the
 * same resourceVersion (a Secret read in full whose cached copy carries no data) is served as long
 * as the cache stays at that version.
 */
export class WriteOverlay<T extends KubeObject> {
  /** `earlier`: resourceVersions of our previous writes of the object whose echoes are still on their way. */
  readonly #entries = new Map<string, { obj: T; seen: boolean; at: number; earlier: string[] }>();
  readonly #now: () => number;
  readonly #maxAgeMs: number;

  constructor(opts: { now?: () => number; maxAgeMs?: number } = {}) {
    this.#now = opts.now ?? Date.now;
    this.#maxAgeMs = opts.maxAgeMs ?? 30_000;
  }

  get size(): number {
    return this.#entries.size;
  }

  /** The API's answer to our write; `cached` is what the cache holds now. */
  wrote(obj: T, cached: T | undefined): void {
    const rv = obj.metadata.resourceVersion;
    const seen = rv !== undefined && cached?.metadata.resourceVersion === rv;
    const key = keyOf(obj.metadata.namespace ?? "", obj.metadata.name);
    // Two writes in a row (a reconcile's status, then a poll's): the first one's echo is ours too.
    const prev = this.#entries.get(key);
    const prevRv = prev && prev.obj !== DELETED && !prev.seen ? prev.obj.metadata.resourceVersion : undefined;
    const earlier = prevRv !== undefined && prevRv !== rv ? [...prev!.earlier, prevRv].slice(-8) : [];
    this.#entries.set(key, { obj, seen, at: this.#now(), earlier });
  }

  deleted(namespace: string, name: string): void {
    this.#entries.set(keyOf(namespace, name), { obj: DELETED, seen: false, at: this.#now(), earlier: [] });
  }

  /** The newest known state: our own write until the cache has caught up with it. */
  get(namespace: string, name: string, cached: T | undefined): T | undefined {
    const key = keyOf(namespace, name);
    const e = this.#entries.get(key);
    if (!e) return cached;
    const stale = e.seen ? cached?.metadata.resourceVersion !== e.obj.metadata.resourceVersion : this.#now() - e.at > this.#maxAgeMs;
    if (stale) {
      this.#entries.delete(key);
      return cached;
    }
    return e.obj === DELETED ? undefined : e.obj;
  }

  /** A watch event: "echo" when it is our own write coming back. */
  observe(obj: T, kind: "add" | "update" | "delete"): "echo" | undefined {
    const key = keyOf(obj.metadata.namespace ?? "", obj.metadata.name);
    const e = this.#entries.get(key);
    if (!e) return undefined;
    if (e.obj === DELETED) {
      // Gone as seen by the watch, or made anew since: the cache is right again.
      if (kind !== "update") this.#entries.delete(key);
      return kind === "delete" ? "echo" : undefined;
    }
    const rv = obj.metadata.resourceVersion;
    const i = rv !== undefined && kind !== "delete" ? e.earlier.indexOf(rv) : -1;
    if (i >= 0) {
      // The echo of an earlier write of ours: that reconcile saw it, and our newer write stays.
      e.earlier.splice(i, 1);
      return "echo";
    }
    const same = rv !== undefined && rv === e.obj.metadata.resourceVersion;
    // The echo leaves the cache as new as our write; after a seen entry any other version is newer.
    // A different version before the echo is an older event still on its way: keep ours.
    if (kind === "delete" || (same && !e.seen) || (!same && e.seen)) this.#entries.delete(key);
    return same && kind !== "delete" ? "echo" : undefined;
  }

  /** The cache was listed anew: it is at least as new as every write it can be compared with. */
  clear(): void {
    this.#entries.clear();
  }
}

/** managedFields are not read by the controller and are often the larger part of an object: never cached. */
function withoutManagedFields<T extends KubeObject>(o: T): T {
  if (!(o.metadata as { managedFields?: unknown }).managedFields) return o;
  const { managedFields: _mf, ...metadata } = o.metadata as KubeObject["metadata"] & { managedFields?: unknown };
  return { ...o, metadata };
}

/**
 * client-node's Watch, with each event's object transformed before ListWatch caches it (to drop
 * what the cache need not hold). A watch that cannot even be started reports through `done` like
 * one that failed: ListWatch restarts its watch from inside that callback and never handles a
 * rejection there.
 */
export class TransformingWatch extends Watch {
  readonly #transform: (phase: string, obj: unknown) => unknown;

  constructor(config: KubeConfig, transform: (phase: string, obj: unknown) => unknown) {
    super(config);
    this.#transform = transform;
  }

  override async watch(
    path: string,
    queryParams: Record<string, string | number | boolean | undefined>,
    callback: (phase: string, apiObj: unknown, watchObj?: unknown) => void,
    done: (err: unknown) => void,
  ): Promise<AbortController> {
    try {
      return await super.watch(path, queryParams, (phase, obj, w) => callback(phase, this.#transform(phase, obj), w), done);
    } catch (err: unknown) {
      setImmediate(() => done(err));
      return new AbortController();
    }
  }
}

function keyOf(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

export class Informer<T extends KubeObject> {
  readonly resource: ResourceType;
  readonly #opts: InformerOptions<T>;
  readonly #handlers: EventHandler<T>[] = [];
  readonly #written = new WriteOverlay<T>();
  #lw: ListWatch<KubernetesObject> | undefined;
  #stopped = false;
  #synced = false;
  #failures = 0;
  #restartTimer: NodeJS.Timeout | undefined;
  #syncedWaiters: (() => void)[] = [];
  #lastError: string | undefined;

  constructor(opts: InformerOptions<T>) {
    this.#opts = opts;
    this.resource = opts.resource;
  }

  get synced(): boolean {
    return this.#synced;
  }

  /** Whether start() was called. */
  get started(): boolean {
    return this.#lw !== undefined;
  }

  /** Why the cache is not synced yet (the last list or watch failure), if it is not. */
  get lastError(): string | undefined {
    return this.#synced ? undefined : this.#lastError;
  }

  on(handler: EventHandler<T>): void {
    this.#handlers.push(handler);
  }

  /** Starts list+watch; resolves once the first list is in the cache. */
  async start(): Promise<void> {
    const { client, resource, namespace, labelSelector } = this.#opts;
    const own = this.#opts.transform;
    const transform = (o: T) => withoutManagedFields(own ? own(o) : o);
    const listFn = async () => {
      try {
        // Page by page, each page transformed before the next is read.
        const r = this.#opts.list
          ? await this.#opts.list().then((l) => ({ ...l, items: l.items.map(withoutManagedFields) }))
          : await client.list<T>(resource, namespace, labelSelector, { ...(this.#opts.pageSize ? { pageSize: this.#opts.pageSize } : {}), page: (items) => items.map(transform) });
        this.#written.clear();
        return { apiVersion: "v1", kind: "List", items: r.items as unknown as KubernetesObject[], metadata: r.metadata };
      } catch (err: unknown) {
        this.#lastError = describeError(err);
        throw err;
      }
    };
    const watch = new TransformingWatch(client.kubeConfig, (phase, obj) => (phase === "ERROR" || phase === "BOOKMARK" ? obj : transform(obj as T)));
    const lw = new ListWatch<KubernetesObject>(resourcePath(resource, namespace), watch, listFn, false, labelSelector);
    this.#lw = lw;
    const emit = (kind: "add" | "update" | "delete") => (o: KubernetesObject) => {
      const obj = o as unknown as T;
      this.#failures = 0;
      // The echo of this controller's own write: the reconcile that wrote it already saw this state.
      if (this.#written.observe(obj, kind) === "echo") return;
      for (const h of this.#handlers) {
        try {
          h(obj, kind);
        } catch (err: unknown) {
          // A handler must not break the watch (ListWatch calls it where no one handles a throw).
          this.#opts.logger.error("event handler failed", { resource: resource.resource, error: describeError(err) });
        }
      }
    };
    lw.on("add", emit("add"));
    lw.on("update", emit("update"));
    lw.on("delete", emit("delete"));
    lw.on("connect", () => {
      if (this.#failures > 0) this.#opts.logger.info("watch reconnecting", { resource: resource.resource });
    });
    lw.on("error", (err: unknown) => {
      if (this.#stopped) return;
      this.#failures++;
      const delay = Math.min(200 * 2 ** Math.min(this.#failures, 10), this.#opts.maxBackoffMs ?? 30_000);
      this.#opts.logger.warn("watch failed; restarting", { resource: resource.resource, error: describeError(err), retryInMs: delay });
      clearTimeout(this.#restartTimer);
      this.#lastError = describeError(err);
      this.#restartTimer = setTimeout(() => this.#restart(lw), delay);
    });
    this.#restart(lw);
    if (!this.#synced) await new Promise<void>((resolve) => this.#syncedWaiters.push(resolve));
  }

  /** Starts the list+watch again after a failure; a failure to even start is reported like any other. */
  #restart(lw: ListWatch<KubernetesObject>): void {
    if (this.#stopped) return;
    lw.start().then(
      () => this.#markSynced(),
      (err: unknown) => {
        if (this.#stopped) return;
        this.#failures++;
        this.#lastError = describeError(err);
        this.#opts.logger.warn("watch could not be started; retrying", { resource: this.resource.resource, error: this.#lastError });
        clearTimeout(this.#restartTimer);
        this.#restartTimer = setTimeout(() => this.#restart(lw), Math.min(200 * 2 ** Math.min(this.#failures, 10), this.#opts.maxBackoffMs ?? 30_000));
      },
    );
  }

  #markSynced(): void {
    // ListWatch.start resolves after its first list, or after reporting an error (then the error handler restarts it).
    if (this.#synced || this.#stopped || !this.#lw || this.#lw.latestResourceVersion() === "") return;
    this.#synced = true;
    this.#lastError = undefined;
    for (const w of this.#syncedWaiters.splice(0)) w();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#restartTimer);
    for (const w of this.#syncedWaiters.splice(0)) w();
    await this.#lw?.stop();
  }

  /** The newest known state: the cache, or this controller's own later write. */
  get(namespace: string, name: string): T | undefined {
    return this.#written.get(namespace, name, this.#lw?.get(name, namespace) as T | undefined);
  }

  list(namespace?: string): T[] {
    return (this.#lw?.list(namespace) ?? []) as unknown as T[];
  }

  /** Remember an object this controller just wrote (the API's answer). */
  wrote(obj: T): void {
    this.#written.wrote(withoutManagedFields(obj), this.#lw?.get(obj.metadata.name, obj.metadata.namespace) as T | undefined);
  }

  /** Remember that this controller just deleted an object. */
  deleted(namespace: string, name: string): void {
    this.#written.deleted(namespace, name);
  }
}

