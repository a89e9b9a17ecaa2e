import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { CONTROLLER_CONTAINER, CONTROLLER_ENV, CONTROLLER_PERMISSIONS } from "../controller/contract.ts";
import { parseControllerCommand } from "../controller/cli.ts";
import { CRDS } from "../apis/resources.ts";
import { HelmBlock, HelmExpr, helmYaml, valueRows } from "./helm.ts";
import { loadKustomization } from "./kustomize.ts";
import { renderControllerObjects, type Obj } from "./manifests.ts";
import { BASE_NAMESPACE, BASE_VALUES, CHART_VERSION, chartValues, CONTROLLER_NAME, DEFAULT_VALUES, mergeValues, runnerDefaults, type ChartValuesInput } from "./values.ts";

const root = join(import.meta.dirname, "..", "..");
const find = (objs: Obj[], kind: string) => {
  const o = objs.find((x) => x["kind"] === kind);
  if (!o) throw new Error(`no ${kind}`);
  return o as any;
};
const container = (objs: Obj[]) => find(objs, "Deployment").spec.template.spec.containers[0];
/** The container's env as the kubelet would give it (downward API resolved for a pod "controller-0"). */
const podEnv = (objs: Obj[]): Record<string, string> => {
  const d = find(objs, "Deployment");
  const out: Record<string, string> = {};
  for (const e of container(objs).env as { name: string; value?: string; valueFrom?: { fieldRef: { fieldPath: string } } }[]) {
    if (e.valueFrom) out[e.name] = e.valueFrom.fieldRef.fieldPath === "metadata.namespace" ? d.metadata.namespace : "controller-0";
    else out[e.name] = e.value!;
  }
  return out;
};
const render = (input: ChartValuesInput) => renderControllerObjects(mergeValues(input), "release-ns");

describe("controller install manifests", () => {
  const base = renderControllerObjects(BASE_VALUES, "unused");

  it("grant exactly CONTROLLER_PERMISSIONS, cluster-wide and in the controller namespace, to the controller's ServiceAccount", () => {
    expect(find(base, "ClusterRole").rules).toEqual(CONTROLLER_PERMISSIONS.cluster);
    expect(find(base, "Role").rules).toEqual(CONTROLLER_PERMISSIONS.namespaced);
    expect(find(base, "Role").metadata.namespace).toBe(BASE_NAMESPACE);
    const sa = { kind: "ServiceAccount", name: CONTROLLER_NAME, namespace: BASE_NAMESPACE };
    expect(find(base, "ClusterRoleBinding")).toMatchObject({ roleRef: { kind: "ClusterRole", name: CONTROLLER_NAME }, subjects: [sa] });
    expect(find(base, "RoleBinding")).toMatchObject({ metadata: { namespace: BASE_NAMESPACE }, roleRef: { kind: "Role", name: CONTROLLER_NAME }, subjects: [sa] });
    expect(find(base, "ServiceAccount").metadata).toMatchObject({ name: CONTROLLER_NAME, namespace: BASE_NAMESPACE });
    expect(find(base, "Deployment").spec.template.spec.serviceAccountName).toBe(CONTROLLER_NAME);
  });

  it("run the controller non-root, read-only, without capabilities, probed on /healthz and /readyz", () => {
    const pod = find(base, "Deployment").spec.template.spec;
    const c = container(base);
    expect(c.name).toBe(CONTROLLER_CONTAINER.name);
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: CONTROLLER_CONTAINER.uid, runAsGroup: CONTROLLER_CONTAINER.uid });
    expect(c.securityContext).toEqual({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, runAsNonRoot: true, capabilities: { drop: ["ALL"] } });
    expect(c.livenessProbe.httpGet).toEqual({ path: "/healthz", port: CONTROLLER_CONTAINER.probePort });
    expect(c.readinessProbe.httpGet).toEqual({ path: "/readyz", port: CONTROLLER_CONTAINER.probePort });
    expect(c.ports).toEqual([{ name: "http-metrics", containerPort: CONTROLLER_CONTAINER.probePort, protocol: "TCP" }]);
    expect(c.resources).toEqual(DEFAULT_VALUES.resources);
    expect(c.volumeMounts).toEqual([{ name: "tmp", mountPath: "/tmp" }]);
  });

  it("set every environment variable the controller reads, POD_NAME and CONTROLLER_NAMESPACE from the downward API", () => {
    const env = container(base).env as { name: string; valueFrom?: unknown }[];
    expect(env.map((e) => e.name).sort()).toEqual(Object.values(CONTROLLER_ENV).sort());
    expect(env.find((e) => e.name === CONTROLLER_ENV.podName)?.valueFrom).toEqual({ fieldRef: { fieldPath: "metadata.name" } });
    expect(env.find((e) => e.name === CONTROLLER_ENV.namespace)?.valueFrom).toEqual({ fieldRef: { fieldPath: "metadata.namespace" } });
  });

  it("give an environment the controller's own parser accepts, with the chart's values", () => {
    const cmd = parseControllerCommand([], podEnv(base), "hostname");
    expect(cmd.settings).toMatchObject({
      namespace: BASE_NAMESPACE,
      runnerImage: "chbackup/backup-runner:0.1.0",
      runnerImagePullPolicy: "IfNotPresent",
      imagePullSecrets: [],
      resyncSeconds: DEFAULT_VALUES.resyncSeconds,
      workers: DEFAULT_VALUES.workers,
      cacheSyncTimeoutSeconds: 300,
      leaderElection: { enabled: true, leaseName: CONTROLLER_NAME, identity: "controller-0" },
      probePort: CONTROLLER_CONTAINER.probePort,
      runnerDefaults: { resources: DEFAULT_VALUES.runner.resources, storageSize: "1Gi" },
    });
    expect(cmd.settings?.runnerDefaults.storageClassName).toBeUndefined();

    const custom = render({
      runner: { image: { repository: "reg.example/runner", tag: "1.2.3", pullPolicy: "Always" }, storageClassName: "fast", storageSize: "5Gi", resources: { requests: { cpu: "1" } } },
      imagePullSecrets: ["pull-a", "pull-b"],
      leaderElection: { enabled: false, leaseName: "other" },
      workers: 7,
      resyncSeconds: 60,
      cacheSyncTimeoutSeconds: 120,
    });
    expect(parseControllerCommand([], podEnv(custom), "h").settings).toMatchObject({
      namespace: "release-ns",
      runnerImage: "reg.example/runner:1.2.3",
      runnerImagePullPolicy: "Always",
      imagePullSecrets: ["pull-a", "pull-b"],
      resyncSeconds: 60,
      workers: 7,
      cacheSyncTimeoutSeconds: 120,
      leaderElection: { enabled: false, leaseName: "other" },
      // Helm merges maps into the defaults: the default memory request and limit stay.
      runnerDefaults: { resources: { requests: { cpu: "1", memory: "256Mi" }, limits: { memory: "512Mi" } }, storageSize: "5Gi", storageClassName: "fast" },
    });
  });

  it("leave optional pod settings out when empty and put them in when set", () => {
    const pod = find(base, "Deployment").spec.template;
    for (const k of ["imagePullSecrets", "nodeSelector", "tolerations", "affinity"]) expect(pod.spec).not.toHaveProperty(k);
    expect(pod.metadata).not.toHaveProperty("annotations");
    expect(base.map((o) => o["kind"])).toEqual(["Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Deployment"]);

    const set = render({ imagePullSecrets: ["pull"], nodeSelector: { pool: "system" }, tolerations: [{ key: "k", operator: "Exists" }], podAnnotations: { a: "b" }, replicas: 2, resources: null } as never);
    const t = find(set, "Deployment").spec.template;
    expect(t.spec).toMatchObject({ imagePullSecrets: [{ name: "pull" }], nodeSelector: { pool: "system" }, tolerations: [{ key: "k", operator: "Exists" }] });
    expect(t.metadata.annotations).toEqual({ a: "b" });
    expect(find(set, "Deployment").spec.replicas).toBe(2);
    expect(container(set)).not.toHaveProperty("resources");
    expect(set.some((o) => o["kind"] === "Namespace")).toBe(false);
    expect(find(set, "Deployment").metadata.namespace).toBe("release-ns");
  });

  it("is what deploy/base holds, CRDs first (read as kustomize would)", () => {
    const objs = loadKustomization(join(root, "deploy", "base"));
    expect(objs.slice(0, CRDS.length).map((o) => (o as any).spec.names.kind).sort()).toEqual(CRDS.map((c) => c.kind).sort());
    expect(objs.slice(CRDS.length)).toEqual(base);
  });
});

describe("chart values", () => {
  it("merge like Helm: maps key by key into the defaults, lists and scalars replaced", () => {
    const v = mergeValues({ resources: { limits: { memory: "1Gi" } }, tolerations: [{ key: "a" }], runner: { storageSize: "2Gi" } });
    expect(v.resources).toEqual({ requests: DEFAULT_VALUES.resources.requests, limits: { memory: "1Gi" } });
    expect(v.tolerations).toEqual([{ key: "a" }]);
    expect(v.runner).toEqual({ ...DEFAULT_VALUES.runner, storageSize: "2Gi" });
    expect(mergeValues({ imagePullSecrets: ["x"] }).imagePullSecrets).toEqual(["x"]);
    expect(mergeValues({ resources: {} }).resources).toEqual(DEFAULT_VALUES.resources);
    expect(mergeValues({ resources: null, runner: { resources: null } } as never)).toMatchObject({ resources: {}, runner: { resources: {} } });
    expect(() => mergeValues({ workers: null } as never)).toThrow(/workers: only a map/);
  });

  it("values.yaml holds the defaults, and every value has a description", () => {
    const file = parse(readFileSync(join(root, "deploy/helm/chbackup/values.yaml"), "utf8")) as unknown;
    expect(file).toEqual(DEFAULT_VALUES);
    expect(chartValues.parse(file)).toEqual(DEFAULT_VALUES);
    for (const r of valueRows()) expect(r.description, r.path).not.toBe("");
  });

  it("the chart version is the package version", () => {
    expect(CHART_VERSION).toBe((JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { version: string }).version);
  });

  it("rejects what the controller would reject", () => {
    expect(chartValues.safeParse({ runner: { resources: { requests: { cpu: 1 } } } }).success).toBe(false);
    expect(chartValues.safeParse({ imagePullSecrets: ["Not_A_Name"] }).success).toBe(false);
    expect(chartValues.safeParse({ namespace: "UPPER" }).success).toBe(false);
    expect(chartValues.safeParse({ image: { tagg: "x" } }).success).toBe(false);
  });
});

describe("helmYaml", () => {
  it("puts expressions inline and blocks in place of their key line", () => {
    const text = helmYaml({
      a: new HelmExpr("{{ .Values.a }}"),
      m: { b: new HelmBlock(false, (ind, key) => [`${ind}{{- with .Values.b }}`, `${ind}${key}: x`, `${ind}{{- end }}`]), l: [new HelmExpr("{{ 1 }}")] },
      skipped: undefined,
    });
    expect(text).toBe("a: {{ .Values.a }}\nm:\n  {{- with .Values.b }}\n  b: x\n  {{- end }}\n  l:\n    - {{ 1 }}\n");
  });
  it("refuses a block where it cannot stand on its own line", () => {
    expect(() => helmYaml({ l: [{ b: new HelmBlock(false, () => []) }] })).toThrow(/block value/);
  });
});

describe("loadKustomization", () => {
  it("refuses kustomization fields it does not implement", () => {
    const dir = mkdtempSync(join(tmpdir(), "kust-"));
    try {
      writeFileSync(join(dir, "kustomization.yaml"), "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: x\nresources: []\n");
      expect(() => loadKustomization(dir)).toThrow(/namespace is not supported/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
