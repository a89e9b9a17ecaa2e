// Helpers for tests and benchmarks against the test environment's kube-apiserver.
import type winston from "winston";
import { CRDS, crdManifest, API_GROUP, API_VERSION } from "../../pkg/apis/index.ts";
import { parseControllerSettings, startControllerApp, type ControllerApp, type ControllerSettingsInput, type RequestRecord, type RunnerUrl } from "../../pkg/controller/index.ts";
import { createLogger } from "../../pkg/common/logging.ts";
import type { KubeApiServer } from "../env/index.ts";
import { waitUntil } from "../env/proc.ts";

export const GV = `${API_GROUP}/${API_VERSION}`;

/** Applies our generated CRDs (raw: the typed client would drop x-kubernetes-validations) and waits until served. */
export async function installCrds(kube: KubeApiServer): Promise<void> {
  for (const def of CRDS) {
    const name = `${def.plural}.${API_GROUP}`;
    await kube.apply(`/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${name}`, crdManifest(def), "test-setup");
  }
  for (const def of CRDS) {
    await waitFor(`CRD ${def.plural} established`, async () => {
      const r = await kube.request("GET", `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${def.plural}.${API_GROUP}`);
      const conds = (r.body as { status?: { conditions?: { type: string; status: string }[] } }).status?.conditions ?? [];
      return conds.some((c) => c.type === "Established" && c.status === "True");
    });
  }
  // The new group is served shortly after Established.
  await waitFor("custom resources served", async () => (await kube.request("GET", `/apis/${GV}/backupdefinitions`)).status === 200);
}

export async function createNamespace(kube: KubeApiServer, name: string): Promise<void> {
  const r = await kube.request("POST", "/api/v1/namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name } });
  if (r.status !== 201 && r.status !== 409) throw new Error(`create namespace ${name}: HTTP ${r.status}`);
}

/** waitUntil (test/env) that hands back the first value that is not undefined, false or null. */
export async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false | null>, timeoutMs = 30_000, intervalMs = 100): Promise<T> {
  let value: T | undefined;
  await waitUntil(
    what,
    async () => {
      const v = await fn();
      if (v === undefined || v === false || v === null) return false;
      value = v;
      return true;
    },
    { timeoutMs, intervalMs },
  );
  return value as T;
}

/** Raw request that must succeed; returns the body. */
export async function must<T = Record<string, unknown>>(kube: KubeApiServer, method: string, path: string, body?: unknown, contentType?: string): Promise<T> {
  const r = await kube.request(method, path, body, contentType);
  if (r.status >= 300) throw new Error(`${method} ${path}: HTTP ${r.status}: ${JSON.stringify(r.body)}`);
  return r.body as T;
}

export function secretBody(namespace: string, name: string, data: Record<string, string>): unknown {
  return {
    apiVersion: "v1",
    kind: "Secret",
    metadata: { name, namespace },
    data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v).toString("base64")])),
  };
}

export interface KubeEvent {
  type: string;
  reason: string;
  message: string;
  involvedObject: { kind: string; name: string };
}

/**
 * The Events of one object once every `type/reason` in `expected` is among them. The controller writes an
 * object's status before the Event of that transition, so a test that has seen the status must still wait for it.
 */
export async function waitEvents(kube: KubeApiServer, namespace: string, kind: string, name: string, expected: string[], timeoutMs = 30_000): Promise<KubeEvent[]> {
  const selector = encodeURIComponent(`involvedObject.kind=${kind},involvedObject.name=${name}`);
  let seen: string[] = [];
  try {
    return await waitFor(`Events ${expected.join(", ")} of ${kind} ${namespace}/${name}`, async () => {
      const items = (await must<{ items: KubeEvent[] }>(kube, "GET", `/api/v1/namespaces/${namespace}/events?fieldSelector=${selector}`)).items;
      seen = items.map((e) => `${e.type}/${e.reason}`);
      return expected.every((x) => seen.includes(x)) ? items : undefined;
    }, timeoutMs);
  } catch (err: unknown) {
    throw new Error(`Events of ${kind} ${namespace}/${name}: saw [${seen.join(", ")}], expected [${expected.join(", ")}]`, { cause: err });
  }
}

export interface ReadyCondition {
  status: string;
  reason: string;
  message: string;
}

export async function readyCondition(kube: KubeApiServer, namespace: string, name: string): Promise<ReadyCondition | undefined> {
  const r = await kube.request("GET", `/apis/${GV}/namespaces/${namespace}/backupdefinitions/${name}`);
  if (r.status !== 200) return undefined;
  const st = (r.body as { status?: { conditions?: ({ type: string } & ReadyCondition)[] } }).status;
  return st?.conditions?.find((c) => c.type === "Ready");
}

export async function waitReady(kube: KubeApiServer, namespace: string, name: string, reason = "Reconciled", timeoutMs = 30_000): Promise<ReadyCondition> {
  return waitFor(`${namespace}/${name} Ready reason ${reason}`, async () => {
    const c = await readyCondition(kube, namespace, name);
    return c && c.reason === reason ? c : undefined;
  }, timeoutMs);
}

/** Silent, unless CONTROLLER_TEST_LOG=debug|info is set to see the controller's log lines. */
export const quietLogger = () => {
  const level = process.env["CONTROLLER_TEST_LOG"];
  return createLogger(level ? { level } : { silent: true });
};

export interface TestControllerOptions {
  namespace: string;
  identity?: string;
  settings?: Partial<ControllerSettingsInput>;
  observe?: (r: RequestRecord) => void;
  runnerUrl?: RunnerUrl;
  logger?: winston.Logger;
  kube: KubeApiServer;
}

/** A controller as cmd/backup-controller wires it, in this process, with test-friendly timings. */
export async function startTestController(o: TestControllerOptions): Promise<ControllerApp> {
  const settings = parseControllerSettings({
    namespace: o.namespace,
    runnerImage: "registry.example/chbackup/runner:test",
    resyncSeconds: 300,
    probePort: 0,
    probeHost: "127.0.0.1",
    runnerStatusSeconds: 0,
    ...o.settings,
    leaderElection: {
      identity: o.identity ?? "test-controller",
      leaseDurationSeconds: 3,
      renewDeadlineSeconds: 2,
      retryPeriodSeconds: 0.25,
      ...(o.settings?.leaderElection ?? {}),
    },
  });
  return startControllerApp({
    kubeConfig: o.kube.kubeConfig(),
    settings,
    logger: o.logger ?? quietLogger(),
    defaultMetrics: false,
    ...(o.observe ? { observe: o.observe } : {}),
    ...(o.runnerUrl ? { runnerUrl: o.runnerUrl } : {}),
  });
}

/** The apiserver's Table form of a list (what kubectl get asks for). */
export interface KubeTable {
  columnDefinitions: { name: string; type: string; priority: number }[];
  rows: { cells: unknown[] }[];
}

export async function getTable(kube: KubeApiServer, path: string): Promise<KubeTable> {
  const r = await kube.request("GET", path, undefined, undefined, "application/json;as=Table;v=v1;g=meta.k8s.io");
  if (r.status !== 200) throw new Error(`GET ${path} as Table: HTTP ${r.status}: ${JSON.stringify(r.body)}`);
  return r.body as KubeTable;
}

/** kubectl's age format: 45s, 3m12s, 5h, 2d. */
function age(iso: string, now: Date): string {
  const s = Math.max(0, Math.floor((now.getTime() - Date.parse(iso)) / 1000));
  if (s < 120) return `${s}s`;
  if (s < 600) return `${Math.floor(s / 60)}m${s % 60 ? `${s % 60}s` : ""}`;
  if (s < 3 * 3600) return `${Math.floor(s / 60)}m`;
  if (s < 48 * 3600) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86_400)}d`;
}

/** The table as `kubectl get` prints it (`wide`: also the priority > 0 columns). */
export function printTable(t: KubeTable, opts: { wide?: boolean; now?: Date } = {}): string {
  const now = opts.now ?? new Date();
  const cols = t.columnDefinitions.map((c, i) => ({ ...c, i })).filter((c) => opts.wide || c.priority === 0);
  // Date cells come as RFC 3339 times (kubectl prints their age), or already as an age.
  const cell = (v: unknown, type: string) =>
    v === null || v === undefined || v === "" ? "<none>" : type === "date" && typeof v === "string" && !Number.isNaN(Date.parse(v)) ? age(v, now) : String(v);
  const grid = [cols.map((c) => c.name.toUpperCase()), ...t.rows.map((r) => cols.map((c) => cell(r.cells[c.i], c.type)))];
  const widths = cols.map((_, i) => Math.max(...grid.map((row) => row[i]!.length)));
  return grid.map((row) => row.map((v, i) => (i === row.length - 1 ? v : v.padEnd(widths[i]! + 3))).join("")).join("\n");
}
