// A cache of one resource kept current by list+watch (client-node's ListWatch),
// restarted with backoff whenever the watch fails (e.g. the apiserver is away),
// plus what this controller itself just wrote, so a reconcile that follows its
// own write does not see the older cached object and write again.
import { ListWatch, Watch, type KubernetesObject } from "@kubernetes/client-node";
import type { Logger } from "winston";
import { resourcePath, type KubeClient, type ResourceType } from "./kube.ts";
import type { KubeObject } from "./types.ts";
import { describeError } from "../runner/errors.ts";

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
}

function rvNumber(rv: string | undefined): number | undefined {
  if (!rv || !/^\d+$/.test(rv)) return undefined;
  return Number(rv);
}

export class Informer<T extends KubeObject> {
  readonly resource: ResourceType;
  readonly #opts: InformerOptions<T>;
  readonly #handlers: EventHandler<T>[] = [];
  readonly #written = new Map<string, T>();
  #lw: ListWatch<KubernetesObject> | undefined;
  #stopped = false;
  #synced = false;
  #failures = 0;
  #restartTimer: NodeJS.Timeout | undefined;
  #syncedWaiters: (() => void)[] = [];

  constructor(opts: InformerOptions<T>) {
    this.#opts = opts;
    this.resource = opts.resource;
  }

  get synced(): boolean {
    return this.#synced;
  }

  on(handler: EventHandler<T>): void {
    this.#handlers.push(handler);
  }

  /** Starts list+watch; resolves once the first list is in the cache. */
  async start(): Promise<void> {
    const { client, resource, namespace, labelSelector } = this.#opts;
    const transform = this.#opts.transform ?? ((o: T) => o);
    const listFn = async () => {
      const r = await client.list<T>(resource, namespace, labelSelector);
      return { apiVersion: "v1", kind: "List", items: r.items.map(transform) as unknown as KubernetesObject[], metadata: r.metadata };
    };
    const real = new Watch(client.kubeConfig);
    // The same Watch, with each event's object transformed before ListWatch caches it.
    const watch = {
      watch: (path: string, params: Record<string, string | number | boolean | undefined>, cb: (phase: string, obj: unknown, w?: unknown) => void, done: (err: unknown) => void) =>
        real.watch(path, params, (phase, obj, w) => cb(phase, phase === "ERROR" || phase === "BOOKMARK" ? obj : transform(obj as T), w), done),
    } as unknown as Watch;
    const lw = new ListWatch<KubernetesObject>(resourcePath(resource, namespace), watch, listFn, false, labelSelector);
    this.#lw = lw;
    const emit = (kind: "add" | "update" | "delete") => (o: KubernetesObject) => {
      const obj = o as unknown as T;
      this.#failures = 0;
      // The echo of this controller's own write: the reconcile that wrote it already saw this state.
      if (this.#forgetWrittenIfSeen(obj, kind) === "echo") return;
      for (const h of this.#handlers) h(obj, kind);
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
      this.#restartTimer = setTimeout(() => {
        if (!this.#stopped) void lw.start().then(() => this.#markSynced());
      }, delay);
    });
    await lw.start();
    this.#markSynced();
    if (!this.#synced) await new Promise<void>((resolve) => this.#syncedWaiters.push(resolve));
  }

  #markSynced(): void {
    // ListWatch.start resolves after its first list, or after reporting an error (then the error handler restarts it).
    if (this.#synced || this.#stopped || !this.#lw || this.#lw.latestResourceVersion() === "") return;
    this.#synced = true;
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
    const cached = this.#lw?.get(name, namespace) as T | undefined;
    const mine = this.#written.get(`${namespace}/${name}`);
    if (!mine) return cached;
    if (mine === DELETED) return undefined;
    const a = rvNumber(cached?.metadata.resourceVersion);
    const b = rvNumber(mine.metadata.resourceVersion);
    // At the same resourceVersion ours is the fuller copy (the cache may hold a transformed one).
    return a !== undefined && b !== undefined && a > b ? cached : mine;
  }

  list(namespace?: string): T[] {
    return (this.#lw?.list(namespace) ?? []) as unknown as T[];
  }

  /** Remember an object this controller just wrote (the API's answer). */
  wrote(obj: T): void {
    const ns = obj.metadata.namespace ?? "";
    this.#written.set(`${ns}/${obj.metadata.name}`, obj);
  }

  /** Remember that this controller just deleted an object. */
  deleted(namespace: string, name: string): void {
    this.#written.set(`${namespace}/${name}`, DELETED);
  }

  #forgetWrittenIfSeen(obj: T, kind: string): "echo" | undefined {
    const key = `${obj.metadata.namespace ?? ""}/${obj.metadata.name}`;
    const mine = this.#written.get(key);
    if (!mine) return undefined;
    if (mine === DELETED) {
      // Gone as seen by the watch, or made anew since: the cache is right again.
      if (kind !== "update") this.#written.delete(key);
      return kind === "delete" ? "echo" : undefined;
    }
    const a = rvNumber(obj.metadata.resourceVersion);
    const b = rvNumber(mine.metadata.resourceVersion);
    if (a === undefined || b === undefined || a >= b) this.#written.delete(key);
    return a !== undefined && a === b && kind !== "delete" ? "echo" : undefined;
  }
}

const DELETED = { metadata: { name: "" } } as never;
