// The install manifests against real tools: `helm lint` and `helm template`
// (Helm built from the Go module proxy) render the chart, which must equal the
// kustomize base and the TypeScript renderer; then a real kube-apiserver
// accepts every object of the base, of the chart and of examples/ in a
// server-side dry run (CRDs and namespaces really applied first).
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CONTROLLER_PERMISSIONS } from "../pkg/controller/contract.ts";
import { loadKustomization, parseYamlDocs } from "../pkg/deploy/kustomize.ts";
import { renderControllerObjects, type Obj } from "../pkg/deploy/manifests.ts";
import { dashboardQueries, DASHBOARD_FILE, grafanaDashboard } from "../pkg/deploy/monitoring.ts";
import { exportedMetrics, metricRefs } from "./exported-metrics.ts";
import { BASE_NAMESPACE, mergeValues, type ChartValuesInput } from "../pkg/deploy/values.ts";
import { makeTempDir, removeDir, startKubeApiServer, type KubeApiServer } from "./env/index.ts";
import { helmBinary, repoRoot } from "./env/tools.ts";

const chart = join(repoRoot, "deploy", "helm", "chbackup");
const HELM_LABELS = ["helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/instance"];

let tmp: string;
async function helm(args: string[]): Promise<string> {
  const r = await execa(helmBinary(), args, { cwd: repoRoot, reject: false, env: { HELM_CACHE_HOME: join(tmp, "cache"), HELM_CONFIG_HOME: join(tmp, "config"), HELM_DATA_HOME: join(tmp, "data") } });
  if (r.exitCode !== 0) throw new Error(`helm ${args.join(" ")}: exit ${r.exitCode}\n${r.stderr}`);
  return r.stdout;
}
let valuesFiles = 0;
/** `helm template --include-crds` of the chart as objects; `values` go in as a values file. */
async function helmTemplate(namespace: string, values?: ChartValuesInput): Promise<Obj[]> {
  const args = ["template", "chbackup", chart, "--namespace", namespace, "--include-crds"];
  if (values) {
    const file = join(tmp, `values-${valuesFiles++}.json`);
    writeFileSync(file, JSON.stringify(values));
    args.push("-f", file);
  }
  return parseYamlDocs(await helm(args));
}
/** The object without Helm's own labels (after checking they are there). */
function withoutHelmLabels(o: Obj): Obj {
  const copy = structuredClone(o) as any;
  if (copy.kind === "CustomResourceDefinition") return copy;
  expect(copy.metadata.labels, `${copy.kind} ${copy.metadata.name}`).toMatchObject({ "app.kubernetes.io/managed-by": "Helm", "app.kubernetes.io/instance": "chbackup" });
  for (const l of HELM_LABELS) delete copy.metadata.labels[l];
  return copy;
}
const key = (o: any) => `${o.kind} ${o.metadata.namespace ?? ""}/${o.metadata.name}`;
const byKey = (objs: Obj[]) => new Map(objs.map((o) => [key(o), o]));
const crdsOf = (objs: Obj[]) => objs.filter((o) => o["kind"] === "CustomResourceDefinition");
const rulesOf = (objs: Obj[], kind: string) => (objs.find((o) => o["kind"] === kind) as any).rules;

/** Values that touch every template branch. */
const CUSTOM: ChartValuesInput = {
  image: { repository: "registry.example/chbackup/controller", tag: "1.2.3", pullPolicy: "Always" },
  imagePullSecrets: ["pull-a", "pull-b"],
  replicas: 2,
  leaderElection: { enabled: false, leaseName: "other-lease" },
  resyncSeconds: 60,
  workers: 9,
  logLevel: "debug",
  resources: { requests: { cpu: 1, memory: "64Mi" } },
  runner: { image: { repository: "registry.example/chbackup/runner", tag: "1.2.3" }, resources: { limits: { memory: "1Gi" } }, storageSize: "10Gi", storageClassName: "fast-ssd" },
  podAnnotations: { "prometheus.io/scrape": "true", "prometheus.io/port": "8081" },
  nodeSelector: { "node-role.kubernetes.io/system": "" },
  tolerations: [{ key: "dedicated", operator: "Equal", value: "system", effect: "NoSchedule" }],
  affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: [{ key: "kubernetes.io/os", operator: "In", values: ["linux"] }] }] } } },
};

/** Every monitoring object on, with every monitoring value set. */
const MONITORING: ChartValuesInput = {
  podMonitor: { enabled: true, labels: { release: "kube-prometheus-stack" }, interval: "1m" },
  prometheusRule: { enabled: true, labels: { release: "kube-prometheus-stack" }, alertLabels: { team: "platform" }, maxBackupAgeHours: 30 },
  grafanaDashboard: { enabled: true, namespace: "monitoring", labels: { grafana_dashboard: "1", team: "platform" }, annotations: { grafana_folder: "Backups" } },
};
const MONITORING_KINDS = ["PodMonitor", "PrometheusRule", "ConfigMap"];

const base = () => loadKustomization(join(repoRoot, "deploy", "base"));
const examples = () =>
  readdirSync(join(repoRoot, "examples"))
    .filter((f) => f.endsWith(".yaml"))
    .sort()
    .flatMap((f) => parseYamlDocs(readFileSync(join(repoRoot, "examples", f), "utf8")));

beforeAll(async () => {
  tmp = await makeTempDir("helm");
});
afterAll(async () => {
  await removeDir(tmp);
});

describe("helm chart", () => {
  it("passes helm lint --strict, with the defaults and with every value set", async () => {
    expect(await helm(["lint", chart, "--strict"])).toMatch(/1 chart\(s\) linted, 0 chart\(s\) failed/);
    const file = join(tmp, "lint-values.json");
    writeFileSync(file, JSON.stringify({ ...CUSTOM, ...MONITORING, namespace: "apps", createNamespace: true }));
    expect(await helm(["lint", chart, "--strict", "-f", file])).toMatch(/0 chart\(s\) failed/);
  });

  it("renders exactly the kustomize base (plus Helm's labels) with the default values in the base's namespace", async () => {
    const rendered = (await helmTemplate(BASE_NAMESPACE, { createNamespace: true })).map(withoutHelmLabels);
    const kustomized = base();
    expect([...byKey(rendered).keys()].sort()).toEqual([...byKey(kustomized).keys()].sort());
    for (const [k, o] of byKey(kustomized)) expect(byKey(rendered).get(k), k).toEqual(o);
    // Default values and no createNamespace: the same minus the Namespace (helm install --create-namespace makes it).
    const plain = (await helmTemplate(BASE_NAMESPACE)).map(withoutHelmLabels);
    expect(byKey(plain)).toEqual(new Map([...byKey(kustomized)].filter(([, o]) => o["kind"] !== "Namespace")));
  });

  it("renders what the TypeScript renderer renders for non-default values", async () => {
    const rendered = (await helmTemplate("apps", CUSTOM)).map(withoutHelmLabels);
    const expected = [...crdsOf(base()), ...renderControllerObjects(mergeValues(CUSTOM), "apps")];
    expect(byKey(rendered)).toEqual(byKey(expected));
    const other = (await helmTemplate("release-ns", { ...CUSTOM, namespace: "apps", createNamespace: true })).map(withoutHelmLabels);
    const expectedOther = [...crdsOf(base()), ...renderControllerObjects(mergeValues({ ...CUSTOM, namespace: "apps", createNamespace: true }), "release-ns")];
    expect(byKey(other)).toEqual(byKey(expectedOther));
    expect(other.filter((o: any) => o.metadata.namespace).map((o: any) => o.metadata.namespace)).toEqual(Array(4).fill("apps"));
    // null removes a map in Helm; the renderer treats it as empty.
    const cleared = { resources: null, runner: { resources: null } } as unknown as ChartValuesInput;
    const nulls = (await helmTemplate("apps", cleared)).map(withoutHelmLabels);
    expect(byKey(nulls)).toEqual(byKey([...crdsOf(base()), ...renderControllerObjects(mergeValues(cleared), "apps")]));
  });

  it("renders the PodMonitors, the PrometheusRule and the Grafana dashboard only when their values are on, as the TypeScript renderer does", async () => {
    const off = await helmTemplate("apps", CUSTOM);
    expect(off.filter((o) => MONITORING_KINDS.includes(String(o["kind"])))).toEqual([]);
    const values = { ...CUSTOM, ...MONITORING };
    const rendered = (await helmTemplate("apps", values)).map(withoutHelmLabels);
    expect(byKey(rendered)).toEqual(byKey([...crdsOf(base()), ...renderControllerObjects(mergeValues(values), "apps")]));
    expect(rendered.filter((o) => MONITORING_KINDS.includes(String(o["kind"]))).map(key).sort()).toEqual([
      "ConfigMap monitoring/chbackup-grafana-dashboard",
      "PodMonitor apps/chbackup-controller",
      "PodMonitor apps/chbackup-runners",
      "PrometheusRule apps/chbackup",
    ]);
    // Each value alone renders its own objects only.
    for (const [value, kinds] of [
      ["podMonitor", ["PodMonitor", "PodMonitor"]],
      ["prometheusRule", ["PrometheusRule"]],
      ["grafanaDashboard", ["ConfigMap"]],
    ] as const) {
      const one = await helmTemplate("apps", { [value]: { enabled: true } });
      expect(one.filter((o) => MONITORING_KINDS.includes(String(o["kind"]))).map((o) => o["kind"]), value).toEqual(kinds);
    }

    // What Prometheus and Grafana get: their own {{ }} as written, Helm's values filled in.
    const rule = rendered.find((o) => o["kind"] === "PrometheusRule") as any;
    const rules = rule.spec.groups[0].rules as { alert: string; expr: string; labels: Record<string, string>; annotations: Record<string, string> }[];
    expect(rule.metadata.labels.release).toBe("kube-prometheus-stack");
    expect(rules[0]!.annotations["summary"]).toBe("Backups of {{ $labels.namespace }}/{{ $labels.name }} are not healthy");
    expect(rules.find((r) => r.alert === "ChbackupBackupTooOld")!.expr).toContain("> 30 * 3600");
    for (const r of rules) expect(r.labels["team"], r.alert).toBe("platform");
    const cm = rendered.find((o) => o["kind"] === "ConfigMap") as any;
    expect(cm.metadata.labels).toMatchObject({ grafana_dashboard: "1", team: "platform" });
    expect(cm.metadata.annotations).toEqual({ grafana_folder: "Backups" });
    const dashboard = JSON.parse(cm.data[DASHBOARD_FILE]);
    expect(dashboard).toEqual(grafanaDashboard());
    expect(JSON.stringify(dashboard)).toContain('"legendFormat":"{{namespace}}/{{name}}"');

    // Every metric the rendered rule and dashboard query is one the runner or the controller exports.
    const exported = await exportedMetrics();
    const exprs = [...rules.map((r) => r.expr), ...dashboardQueries(dashboard)];
    const names = new Set(exprs.flatMap((e) => metricRefs(e).map((r) => r.name)));
    for (const n of names) expect(exported.has(n), `${n} is not exported by the runner or the controller`).toBe(true);
    expect(names).toContain("chbackup_controller_definition_healthy");
    expect(names).toContain("chbackup_controller_definition_last_success_timestamp_seconds");
  });

  it("grants exactly CONTROLLER_PERMISSIONS, as the base does", async () => {
    const rendered = await helmTemplate(BASE_NAMESPACE);
    expect(rulesOf(rendered, "ClusterRole")).toEqual(CONTROLLER_PERMISSIONS.cluster);
    expect(rulesOf(rendered, "Role")).toEqual(CONTROLLER_PERMISSIONS.namespaced);
    expect(rulesOf(base(), "ClusterRole")).toEqual(CONTROLLER_PERMISSIONS.cluster);
    expect(rulesOf(base(), "Role")).toEqual(CONTROLLER_PERMISSIONS.namespaced);
    expect(rendered.filter((o) => /Role$/.test(String(o["kind"]))).length).toBe(2);
  });

  it("refuses values outside values.schema.json", async () => {
    await expect(helmTemplate(BASE_NAMESPACE, { workers: 0 })).rejects.toThrow(/workers/);
    await expect(helmTemplate(BASE_NAMESPACE, { runner: { storageClass: "x" } } as ChartValuesInput)).rejects.toThrow(/storageClass/);
    await expect(helmTemplate(BASE_NAMESPACE, { runner: { resources: { requests: { cpu: 1 } } } } as unknown as ChartValuesInput)).rejects.toThrow(/cpu/);
  });
});

describe("install manifests on a real kube-apiserver", () => {
  let kube: KubeApiServer;
  const discovery = new Map<string, { name: string; kind: string; namespaced: boolean }[]>();

  /** REST path of an object, from the server's discovery documents. */
  async function pathOf(o: any): Promise<string> {
    const apiVersion = String(o.apiVersion);
    const prefix = apiVersion.includes("/") ? `/apis/${apiVersion}` : `/api/${apiVersion}`;
    if (!discovery.has(prefix)) {
      const r = await kube.request("GET", prefix);
      if (r.status !== 200) throw new Error(`discovery ${prefix}: HTTP ${r.status}`);
      discovery.set(prefix, (r.body as { resources: { name: string; kind: string; namespaced: boolean }[] }).resources);
    }
    const res = discovery.get(prefix)!.find((x) => x.kind === o.kind && !x.name.includes("/"));
    if (!res) throw new Error(`${apiVersion} ${o.kind}: not served`);
    if (res.namespaced && !o.metadata.namespace) throw new Error(`${key(o)}: namespaced, but no namespace`);
    return `${prefix}${res.namespaced ? `/namespaces/${o.metadata.namespace}` : ""}/${res.name}/${o.metadata.name}`;
  }
  const apply = async (o: Obj) => kube.apply(await pathOf(o), o, "deploy-test");
  /** Server-side apply in a dry run, with strict field validation: answers what the server would have stored. */
  const dryRun = async (o: Obj) => kube.apply(`${await pathOf(o)}?dryRun=All&fieldValidation=Strict`, o, "deploy-test");

  beforeAll(async () => {
    kube = await startKubeApiServer();
    // The CRDs and the namespaces really exist first: custom resources and namespaced objects need them.
    for (const crd of crdsOf(base())) await apply(crd);
    for (const crd of crdsOf(base()) as any[]) {
      for (let i = 0; ; i++) {
        const r = await kube.request("GET", `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${crd.metadata.name}`);
        if ((r.body as any).status?.conditions?.some((c: any) => c.type === "Established" && c.status === "True")) break;
        if (i > 300) throw new Error(`${crd.metadata.name} not established`);
        await new Promise((res) => setTimeout(res, 100));
      }
    }
    for (let i = 0; (await kube.request("GET", `/apis/chbackup.dev/v1alpha1`)).status !== 200; i++) {
      if (i > 300) throw new Error("chbackup.dev/v1alpha1 not served");
      await new Promise((res) => setTimeout(res, 100));
    }
    for (const ns of [BASE_NAMESPACE, "apps", "shop", "analytics"]) await apply({ apiVersion: "v1", kind: "Namespace", metadata: { name: ns } });
  });
  afterAll(async () => {
    await kube?.stop();
  });

  it("accepts every object of the kustomize base, and stores none of them in a dry run", async () => {
    const objs = base();
    expect(objs.length).toBe(10); // 3 CRDs (StorageLocation, BackupDefinition, Restore), Namespace, ServiceAccount, 4 RBAC objects, Deployment
    for (const o of objs) {
      const stored = (await dryRun(o)) as any;
      expect(stored.kind, key(o)).toBe(o["kind"]);
    }
    const dep = (await dryRun(objs.find((o) => o["kind"] === "Deployment")!)) as any;
    expect(dep.spec.template.spec.containers[0].securityContext.readOnlyRootFilesystem).toBe(true);
    expect((await kube.request("GET", `/apis/apps/v1/namespaces/${BASE_NAMESPACE}/deployments/chbackup-controller`)).status).toBe(404);
    expect((await kube.request("GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles/chbackup-controller")).status).toBe(404);
  });

  it("accepts every object of `helm template --include-crds`, with the defaults and with every value set", async () => {
    for (const [ns, values] of [[BASE_NAMESPACE, undefined], ["apps", CUSTOM]] as const) {
      const objs = await helmTemplate(ns, values);
      expect(objs.filter((o) => o["kind"] === "CustomResourceDefinition").length).toBe(3);
      for (const o of objs) expect(((await dryRun(o)) as any).metadata.name, key(o)).toBe((o as any).metadata.name);
    }
  });

  it("accepts the Grafana dashboard ConfigMap (the PodMonitor and PrometheusRule CRDs of the Prometheus Operator are not on this server)", async () => {
    const [cm] = (await helmTemplate("apps", { grafanaDashboard: { enabled: true } })).filter((o) => o["kind"] === "ConfigMap");
    const stored = (await dryRun(cm!)) as any;
    expect(JSON.parse(stored.data[DASHBOARD_FILE])).toEqual(grafanaDashboard());
  });

  it("accepts every example, and the dry run is not vacuous", async () => {
    const objs = examples();
    expect(objs.map((o) => o["kind"]).sort()).toEqual(["BackupDefinition", "BackupDefinition", "BackupDefinition", "BackupDefinition", "Restore", "Role", "RoleBinding", "Secret", "Secret", "Secret", "Secret", "Secret", "StorageLocation", "StorageLocation"]);
    for (const o of objs) expect(((await dryRun(o)) as any).metadata.name, key(o)).toBe((o as any).metadata.name);
    // The same dry run refuses an unknown field and a definition that breaks a CEL rule.
    const dep = structuredClone(base().find((o) => o["kind"] === "Deployment")!) as any;
    dep.spec.replica = 1;
    await expect(dryRun(dep)).rejects.toThrow(/replica/);
    const single = structuredClone(objs.find((o: any) => o.metadata.name === "shop-export")!) as any;
    delete single.spec.singleBackup;
    await expect(dryRun(single)).rejects.toThrow(/singleBackup is required/);
  });
});
