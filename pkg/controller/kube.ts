// A small JSON client for the Kubernetes API over @kubernetes/client-node's
// KubeConfig (which supplies the server, TLS and credentials). Every request
// is reported to an observer (metrics, write counting in benchmarks, the RBAC
// test), and failures are typed: status, reason, retryable or not.
import { Agent, request } from "node:https";
import { request as httpRequest, Agent as HttpAgent, STATUS_CODES } from "node:http";
import type { KubeConfig } from "@kubernetes/client-node";
import { FIELD_MANAGER } from "./contract.ts";

export interface ResourceType {
  group: string;
  version: string;
  /** Plural resource name, e.g. "statefulsets". */
  resource: string;
  kind: string;
  namespaced: boolean;
}

export const RESOURCES = {
  backupDefinitions: { group: "chbackup.dev", version: "v1alpha1", resource: "backupdefinitions", kind: "BackupDefinition", namespaced: true },
  storageLocations: { group: "chbackup.dev", version: "v1alpha1", resource: "storagelocations", kind: "StorageLocation", namespaced: true },
  secrets: { group: "", version: "v1", resource: "secrets", kind: "Secret", namespaced: true },
  services: { group: "", version: "v1", resource: "services", kind: "Service", namespaced: true },
  events: { group: "", version: "v1", resource: "events", kind: "Event", namespaced: true },
  statefulSets: { group: "apps", version: "v1", resource: "statefulsets", kind: "StatefulSet", namespaced: true },
  leases: { group: "coordination.k8s.io", version: "v1", resource: "leases", kind: "Lease", namespaced: true },
  namespaces: { group: "", version: "v1", resource: "namespaces", kind: "Namespace", namespaced: false },
} as const satisfies Record<string, ResourceType>;

export function apiVersionOf(rt: ResourceType): string {
  return rt.group ? `${rt.group}/${rt.version}` : rt.version;
}

/** Collection or object path; namespace undefined = all namespaces. */
export function resourcePath(rt: ResourceType, namespace?: string, name?: string, subresource?: string): string {
  const base = rt.group ? `/apis/${rt.group}/${rt.version}` : `/api/${rt.version}`;
  const ns = namespace !== undefined && rt.namespaced ? `/namespaces/${encodeURIComponent(namespace)}` : "";
  const obj = name !== undefined ? `/${encodeURIComponent(name)}` : "";
  return `${base}${ns}/${rt.resource}${obj}${subresource ? `/${subresource}` : ""}`;
}

export interface RequestRecord {
  verb: string;
  group: string;
  resource: string;
  namespace?: string;
  status: number;
}

/** One field the apiserver refused (a Status object's details.causes entry). */
export interface StatusCause {
  reason?: string;
  message?: string;
  field?: string;
}

/** HTTP status → Kubernetes API failure; retryable for conflicts, throttling, server and network errors. */
export class KubeApiError extends Error {
  readonly status: number;
  readonly reason: string;
  /** What the apiserver said, as a sentence (see statusSentence): never a raw body. */
  readonly detail: string;
  readonly causes: StatusCause[];
  readonly retryable: boolean;
  constructor(what: string, status: number, reason: string, detail: string, options?: { cause?: unknown; causes?: StatusCause[] }) {
    super(`${what}: ${status ? `HTTP ${status} ` : ""}${reason}${detail ? `: ${detail}` : ""}`, options);
    this.name = "KubeApiError";
    this.status = status;
    this.reason = reason;
    this.detail = detail;
    this.causes = options?.causes ?? [];
    this.retryable = status === 0 || status === 409 || status === 429 || status >= 500;
  }

  /** A field that cannot change once set (a StatefulSet's volume claim templates, selector, ...). */
  get immutableField(): boolean {
    return this.status === 422 && this.causes.length > 0 && this.causes.every((c) => c.reason === "FieldValueForbidden" || /field is immutable/.test(c.message ?? ""));
  }
}

const MAX_SENTENCE = 300;

/**
 * Drops a long value from a Go validation message: `Invalid value: [{"name":…}]: field is immutable`
 * becomes `field is immutable`; a short value stays (`Invalid value: "bad key!": …` → `"bad key!": …`).
 */
export function causeSentence(message: string): string {
  const m = /^Invalid value: /.exec(message);
  if (!m) return message;
  const rest = message.slice(m[0].length);
  // The value is JSON (a string, number, list or object) and ends where ": " follows it at depth 0.
  let depth = 0;
  let inString = false;
  for (let i = 0; i < rest.length; i++) {
    const ch = rest[i];
    if (inString) {
      if (ch === "\\") i++;
      else if (ch === '"') inString = false;
    } else if (ch === '"') inString = true;
    else if (ch === "[" || ch === "{") depth++;
    else if (ch === "]" || ch === "}") depth--;
    else if (depth === 0 && ch === ":" && rest[i + 1] === " ") {
      const value = rest.slice(0, i);
      const tail = rest.slice(i + 2);
      return value.length <= 60 ? `${value}: ${tail}` : tail;
    }
  }
  return rest.length <= 60 ? rest : "invalid value";
}

/** A Kubernetes Status object (an error answer) as one sentence of at most 300 characters. */
export function statusSentence(st: { message?: string; details?: { causes?: StatusCause[] } } | undefined): string {
  const causes = st?.details?.causes ?? [];
  const text = causes.length
    ? causes.map((c) => `${c.field ? `${c.field}: ` : ""}${causeSentence(c.message ?? c.reason ?? "")}`).join("; ")
    : causeSentence((st?.message ?? "").split("\n")[0]!.trim());
  return text.length > MAX_SENTENCE ? `${text.slice(0, MAX_SENTENCE - 1)}…` : text;
}

export function isNotFound(err: unknown): boolean {
  return err instanceof KubeApiError && err.status === 404;
}

export interface KubeClientOptions {
  kubeConfig: KubeConfig;
  fieldManager?: string;
  timeoutMs?: number;
  /** Called after every request with what it was (never with a body). */
  observe?: (r: RequestRecord) => void;
}

export interface ListResult<T> {
  items: T[];
  metadata: { resourceVersion?: string };
}

type PatchType = "merge" | "json" | "apply";
const PATCH_CONTENT: Record<PatchType, string> = {
  merge: "application/merge-patch+json",
  json: "application/json-patch+json",
  apply: "application/apply-patch+yaml",
};

export class KubeClient {
  readonly kubeConfig: KubeConfig;
  readonly fieldManager: string;
  readonly #timeoutMs: number;
  readonly #observe: ((r: RequestRecord) => void) | undefined;
  readonly #agents = new Map<string, Agent | HttpAgent>();

  constructor(opts: KubeClientOptions) {
    this.kubeConfig = opts.kubeConfig;
    this.fieldManager = opts.fieldManager ?? FIELD_MANAGER;
    this.#timeoutMs = opts.timeoutMs ?? 30_000;
    this.#observe = opts.observe;
  }

  /** One JSON request. Throws KubeApiError on a non-2xx answer or a network failure. */
  async request<T = unknown>(
    verb: string,
    method: string,
    rt: ResourceType,
    path: string,
    opts: { body?: unknown; contentType?: string; accept?: string; namespace?: string; name?: string; subresource?: string; signal?: AbortSignal } = {},
  ): Promise<T> {
    const cluster = this.kubeConfig.getCurrentCluster();
    if (!cluster) throw new KubeApiError(`${method} ${path}`, 0, "NoCluster", "the kubeconfig has no current cluster");
    const url = new URL(cluster.server + path);
    const httpsOpts: import("node:https").RequestOptions = { method, headers: { accept: opts.accept ?? "application/json" }, timeout: this.#timeoutMs };
    await this.kubeConfig.applyToHTTPSOptions(httpsOpts);
    const isHttps = url.protocol === "https:";
    const key = `${url.protocol}//${url.host}`;
    let agent = this.#agents.get(key);
    if (!agent) {
      const agentOpts = { keepAlive: true, maxSockets: 16, ...(isHttps ? { ca: httpsOpts.ca, cert: httpsOpts.cert, key: httpsOpts.key, rejectUnauthorized: httpsOpts.rejectUnauthorized } : {}) };
      agent = isHttps ? new Agent(agentOpts) : new HttpAgent(agentOpts);
      this.#agents.set(key, agent);
    }
    httpsOpts.agent = agent;
    const data = opts.body === undefined ? undefined : Buffer.from(JSON.stringify(opts.body));
    if (data) {
      // Node sends a DELETE body neither chunked nor with a length unless told the length.
      (httpsOpts.headers as Record<string, string>)["content-type"] = opts.contentType ?? "application/json";
      (httpsOpts.headers as Record<string, string>)["content-length"] = String(data.length);
    }
    const what = opts.name ? `${verb} ${rt.kind} ${opts.namespace ? `${opts.namespace}/` : ""}${opts.name}` : `${verb} ${rt.resource}${opts.namespace ? ` in ${opts.namespace}` : ""}`;
    let status = 0;
    try {
      const res = await new Promise<{ status: number; text: string }>((resolve, reject) => {
        const req = (isHttps ? request : httpRequest)(url, { ...httpsOpts, ...(opts.signal ? { signal: opts.signal } : {}) }, (r) => {
          const chunks: Buffer[] = [];
          r.on("data", (c: Buffer) => chunks.push(c));
          r.on("end", () => {
            try {
              resolve({ status: r.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8") });
            } catch (err: unknown) {
              reject(err); // an answer too large for one string
            }
          });
          r.on("error", reject);
        });
        req.on("timeout", () => req.destroy(new Error(`no answer in ${this.#timeoutMs} ms`)));
        req.on("error", reject);
        req.end(data);
      });
      status = res.status;
      let body: unknown;
      try {
        body = res.text ? JSON.parse(res.text) : undefined;
      } catch {
        body = undefined;
      }
      if (status < 200 || status >= 300) {
        // A Status object gives its sentence; any other body (a proxy's HTML page) is not repeated.
        const st = (body !== null && typeof body === "object" && (body as { kind?: string }).kind === "Status" ? body : undefined) as
          | { reason?: string; message?: string; details?: { causes?: StatusCause[] } }
          | undefined;
        throw new KubeApiError(what, status, st?.reason ?? STATUS_CODES[status] ?? "Unknown", statusSentence(st), { causes: st?.details?.causes ?? [] });
      }
      return body as T;
    } catch (err: unknown) {
      if (err instanceof KubeApiError) throw err;
      throw new KubeApiError(what, 0, "NetworkError", err instanceof Error ? err.message : String(err), { cause: err });
    } finally {
      this.#observe?.({ verb, group: rt.group, resource: opts.subresource ? `${rt.resource}/${opts.subresource}` : rt.resource, ...(opts.namespace ? { namespace: opts.namespace } : {}), status });
    }
  }

  /**
   * Lists in pages of `pageSize` (limit/continue), so no answer holds more than one page; `page`
   * sees each page's items before the next is read (to drop what is not needed). With
   * `metadataOnly` the apiserver sends each object's metadata only (PartialObjectMetadataList).
   * A continue token that expired (410) starts the list over.
   */
  async list<T>(
    rt: ResourceType,
    namespace?: string,
    labelSelector?: string,
    opts: { pageSize?: number; metadataOnly?: boolean; page?: (items: T[]) => T[] } = {},
  ): Promise<ListResult<T>> {
    const pageSize = opts.pageSize ?? 500;
    const accept = opts.metadataOnly ? "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1" : undefined;
    for (let attempt = 0; ; attempt++) {
      const items: T[] = [];
      let cont: string | undefined;
      let metadata: ListResult<T>["metadata"] = {};
      try {
        do {
          const q = new URLSearchParams({ limit: String(pageSize) });
          if (labelSelector) q.set("labelSelector", labelSelector);
          if (cont) q.set("continue", cont);
          const r = await this.request<ListResult<T> & { metadata?: { continue?: string } }>("list", "GET", rt, `${resourcePath(rt, namespace)}?${q}`, {
            ...(namespace ? { namespace } : {}),
            ...(accept ? { accept } : {}),
          });
          // List items carry no kind/apiVersion; watch events do. Make them alike.
          const page = r.items ?? [];
          for (const item of page) Object.assign(item as object, { apiVersion: apiVersionOf(rt), kind: rt.kind });
          items.push(...(opts.page ? opts.page(page) : page));
          cont = r.metadata?.continue || undefined;
          metadata = { ...(r.metadata?.resourceVersion ? { resourceVersion: r.metadata.resourceVersion } : {}) };
        } while (cont);
        return { items, metadata };
      } catch (err: unknown) {
        if (cont && attempt < 3 && err instanceof KubeApiError && err.status === 410) continue;
        throw err;
      }
    }
  }

  async get<T>(rt: ResourceType, namespace: string, name: string, opts: { signal?: AbortSignal } = {}): Promise<T | undefined> {
    try {
      return await this.request<T>("get", "GET", rt, resourcePath(rt, namespace, name), { namespace, name, ...opts });
    } catch (err: unknown) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  /** Creates; with dryRun the apiserver validates and admits the object but stores nothing. */
  async create<T>(rt: ResourceType, namespace: string, obj: unknown, opts: { dryRun?: boolean; signal?: AbortSignal } = {}): Promise<T> {
    return this.request<T>("create", "POST", rt, resourcePath(rt, namespace) + (opts.dryRun ? "?dryRun=All" : ""), { body: obj, namespace, ...(opts.signal ? { signal: opts.signal } : {}) });
  }

  async update<T>(rt: ResourceType, namespace: string, name: string, obj: unknown, opts: { signal?: AbortSignal } = {}): Promise<T> {
    return this.request<T>("update", "PUT", rt, resourcePath(rt, namespace, name), { body: obj, namespace, name, ...opts });
  }

  /** Server-side apply under the controller's field manager, taking over conflicting fields. */
  async apply<T>(rt: ResourceType, namespace: string, name: string, obj: unknown, subresource?: string): Promise<T> {
    const q = `?fieldManager=${encodeURIComponent(this.fieldManager)}&force=true`;
    return this.request<T>("patch", "PATCH", rt, resourcePath(rt, namespace, name, subresource) + q, { body: obj, contentType: PATCH_CONTENT.apply, namespace, name, ...(subresource ? { subresource } : {}) });
  }

  async patch<T>(rt: ResourceType, namespace: string, name: string, body: unknown, type: "merge" | "json", subresource?: string): Promise<T> {
    const q = `?fieldManager=${encodeURIComponent(this.fieldManager)}`;
    return this.request<T>("patch", "PATCH", rt, resourcePath(rt, namespace, name, subresource) + q, { body, contentType: PATCH_CONTENT[type], namespace, name, ...(subresource ? { subresource } : {}) });
  }

  /**
   * Deletes; a missing object is not an error (returns false). With `uid`, only that very object
   * (precondition): one replaced by someone else since it was read is left alone (returns false).
   */
  async delete(
    rt: ResourceType,
    namespace: string,
    name: string,
    opts: { propagationPolicy?: "Background" | "Foreground" | "Orphan"; uid?: string | undefined } = {},
  ): Promise<boolean> {
    const propagationPolicy = opts.propagationPolicy ?? "Background";
    try {
      await this.request("delete", "DELETE", rt, resourcePath(rt, namespace, name), {
        namespace,
        name,
        body: { apiVersion: "meta.k8s.io/v1", kind: "DeleteOptions", propagationPolicy, ...(opts.uid ? { preconditions: { uid: opts.uid } } : {}) },
      });
      return true;
    } catch (err: unknown) {
      if (isNotFound(err)) return false;
      if (opts.uid && err instanceof KubeApiError && err.status === 409) return false;
      throw err;
    }
  }

  close(): void {
    for (const a of this.#agents.values()) a.destroy();
    this.#agents.clear();
  }
}
