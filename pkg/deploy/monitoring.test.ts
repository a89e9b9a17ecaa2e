// The PrometheusRule and the Grafana dashboard query only series that the
// runner or the controller really export (names read from their prom-client
// registries), with label names those series carry; the monitoring objects are
// rendered only when their values are on.
import { describe, expect, it } from "vitest";
import { LABELS, RUNNER_CONTAINER } from "../controller/contract.ts";
import { escapeTemplateText, helmYaml } from "./helm.ts";
import { renderControllerObjects, type Obj } from "./manifests.ts";
import { alertRules, dashboardQueries, DASHBOARD_FILE, grafanaDashboard } from "./monitoring.ts";
import { exportedMetrics, metricRefs } from "../../test/exported-metrics.ts";
import { mergeValues } from "./values.ts";

/** Labels every scraped series has besides its own: the definition's namespace and name (PodMonitor relabelling) and the pod. */
const TARGET_LABELS = ["namespace", "name", "pod"];

const ON = { prometheusRule: { enabled: true }, grafanaDashboard: { enabled: true }, podMonitor: { enabled: true } };
const find = (objs: Obj[], kind: string) => objs.filter((o) => o["kind"] === kind) as any[];

async function checkNames(exprs: string[]): Promise<Set<string>> {
  const exported = await exportedMetrics();
  const used = new Set<string>();
  for (const expr of exprs) {
    const refs = metricRefs(expr);
    expect(refs.length, `no metric in ${expr}`).toBeGreaterThan(0);
    for (const r of refs) {
      expect(exported.has(r.name), `${r.name} (in ${expr}) is not exported by the runner or the controller`).toBe(true);
      for (const l of r.matchers) expect([...exported.get(r.name)!.labels, ...TARGET_LABELS], `${r.name}{${l}} in ${expr}`).toContain(l);
      used.add(r.name);
    }
  }
  return used;
}

describe("metricRefs", () => {
  it("finds the selected series with Prometheus' grammar, not functions, keywords or grouping labels, and refuses what does not parse", () => {
    expect(metricRefs('sum by (namespace, name, result) (increase(a_total{kind="backup", name=~"$name"}[$__rate_interval])) / on(name) group_left(x) b')).toEqual([
      { name: "a_total", matchers: ["kind", "name"] },
      { name: "b", matchers: [] },
    ]);
    expect(metricRefs("time() - m_seconds > 48 * 3600 and m_seconds > 0")).toEqual([
      { name: "m_seconds", matchers: [] },
      { name: "m_seconds", matchers: [] },
    ]);
    expect(metricRefs("absent(leader == 1)").map((r) => r.name)).toEqual(["leader"]);
    expect(() => metricRefs('{__name__="x"}')).toThrow(/without a metric name/);
    expect(() => metricRefs("sum(rate(x[5m]) by")).toThrow(/does not parse/);
  });
});

describe("exported metrics", () => {
  it("come from the real registries, with the controller's per-definition gauges", async () => {
    const m = await exportedMetrics();
    expect(m.get("chbackup_controller_definition_last_success_timestamp_seconds")).toEqual({ labels: ["namespace", "name"], source: "controller" });
    expect(m.get("chbackup_controller_definition_healthy")).toEqual({ labels: ["namespace", "name"], source: "controller" });
    expect(m.get("chbackup_runner_operations_total")).toEqual({ labels: ["kind", "result"], source: "runner" });
    expect(m.has("chbackup_runner_operation_duration_seconds_sum")).toBe(true);
    expect(m.has("chbackup_runner_operation_duration_seconds")).toBe(false);
  });
});

describe("PrometheusRule", () => {
  it("names only exported metrics, among them both per-definition gauges and the runner's failures", async () => {
    const used = await checkNames(alertRules("48", {}).map((r) => r.expr));
    expect(used).toContain("chbackup_controller_definition_healthy");
    expect(used).toContain("chbackup_controller_definition_last_success_timestamp_seconds");
    expect(used).toContain("chbackup_runner_consecutive_failures");
    expect(used).toContain("chbackup_runner_operations_total");
  });

  it("puts the values into the rendered rule: the age threshold and the extra labels", () => {
    const objs = renderControllerObjects(mergeValues({ prometheusRule: { enabled: true, maxBackupAgeHours: 30, labels: { release: "kps" }, alertLabels: { team: "platform" } } }), "mon");
    const [rule] = find(objs, "PrometheusRule");
    expect(rule.metadata).toMatchObject({ name: "chbackup", namespace: "mon", labels: { release: "kps", "app.kubernetes.io/part-of": "chbackup" } });
    const rules = rule.spec.groups[0].rules;
    expect(rules.map((r: any) => r.alert)).toEqual(["ChbackupBackupUnhealthy", "ChbackupBackupTooOld", "ChbackupControllerAbsent", "ChbackupRunnerFailing", "ChbackupVerifyFailed", "ChbackupRestoreFailed"]);
    for (const r of rules) {
      expect(r.labels.team).toBe("platform");
      expect(["warning", "critical"]).toContain(r.labels.severity);
      expect(r.annotations.summary).toBeTruthy();
    }
    expect(rules[1].expr).toContain("> 30 * 3600");
    expect(rules[0].annotations.summary).toBe("Backups of {{ $labels.namespace }}/{{ $labels.name }} are not healthy");
  });
});

describe("Grafana dashboard", () => {
  it("names only exported metrics, and shows backup age, results, duration, bytes and restores", async () => {
    const queries = dashboardQueries();
    const used = await checkNames(queries);
    for (const m of [
      "chbackup_controller_definition_last_success_timestamp_seconds",
      "chbackup_controller_definition_healthy",
      "chbackup_runner_operations_total",
      "chbackup_runner_operation_duration_seconds_sum",
      "chbackup_runner_bytes_total",
      "chbackup_runner_current_operation",
      "chbackup_controller_restores",
    ]) {
      expect(used, m).toContain(m);
    }
    expect(queries.some((q) => q.includes('kind="restore"') && q.includes("chbackup_runner_operations_total"))).toBe(true);
    const titles = (grafanaDashboard()["panels"] as { title: string }[]).map((p) => p.title);
    expect(titles).toEqual(expect.arrayContaining(["Age of the newest successful backup", "Backups: succeeded and failed", "Backup duration", "Bytes written by backups", "Restores: succeeded and failed"]));
  });

  it("has unique panel ids, panels that do not overlap, and only its own variables", () => {
    const d = grafanaDashboard() as any;
    const ids = d.panels.map((p: any) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const p of d.panels) expect(p.gridPos.x + p.gridPos.w).toBeLessThanOrEqual(24);
    const vars = new Set(d.templating.list.map((v: any) => v.name));
    const text = JSON.stringify(d.panels);
    for (const m of text.matchAll(/\$(\w+)/g)) if (!m[1]!.startsWith("__")) expect(vars, m[0]).toContain(m[1]);
  });

  it("is shipped as a ConfigMap with the sidecar's label, holding the same JSON", () => {
    const objs = renderControllerObjects(mergeValues({ grafanaDashboard: { enabled: true, annotations: { grafana_folder: "Backups" } } }), "mon");
    const [cm] = find(objs, "ConfigMap");
    expect(cm.metadata.labels.grafana_dashboard).toBe("1");
    expect(cm.metadata.annotations).toEqual({ grafana_folder: "Backups" });
    expect(JSON.parse(cm.data[DASHBOARD_FILE])).toEqual(grafanaDashboard());
    expect(cm.metadata.namespace).toBe("mon");
    const [elsewhere] = find(renderControllerObjects(mergeValues({ grafanaDashboard: { enabled: true, namespace: "grafana" } }), "mon"), "ConfigMap");
    expect(elsewhere.metadata.namespace).toBe("grafana");
  });
});

describe("PodMonitors", () => {
  it("scrape the ports the controller Deployment and the runner pods name, and relabel runners to their definition", () => {
    const objs = renderControllerObjects(mergeValues(ON), "mon");
    const [controller, runners] = find(objs, "PodMonitor");
    const dep = find(objs, "Deployment")[0];
    expect(dep.spec.template.spec.containers[0].ports.map((p: any) => p.name)).toContain(controller.spec.podMetricsEndpoints[0].port);
    expect(controller.spec.selector.matchLabels).toEqual(dep.spec.selector.matchLabels);
    expect(controller.spec.podMetricsEndpoints[0].honorLabels).toBe(true);
    expect(runners.spec.podMetricsEndpoints[0].port).toBe(RUNNER_CONTAINER.portName);
    expect(runners.spec.podMetricsEndpoints[0].relabelings).toEqual([
      { action: "replace", sourceLabels: [`__meta_kubernetes_pod_label_${LABELS.sourceNamespace.replace(/[./-]/g, "_")}`], targetLabel: "namespace" },
      { action: "replace", sourceLabels: [`__meta_kubernetes_pod_label_${LABELS.sourceName.replace(/[./-]/g, "_")}`], targetLabel: "name" },
    ]);
  });
});

describe("values", () => {
  it("render no monitoring object by default, and each one only when its value is on", () => {
    const kinds = (v: object) => renderControllerObjects(mergeValues(v), "mon").map((o) => o["kind"]);
    for (const k of ["PrometheusRule", "PodMonitor", "ConfigMap"]) expect(kinds({})).not.toContain(k);
    expect(kinds({ prometheusRule: { enabled: true } }).filter((k) => ["PrometheusRule", "PodMonitor", "ConfigMap"].includes(String(k)))).toEqual(["PrometheusRule"]);
    expect(kinds({ grafanaDashboard: { enabled: true } }).filter((k) => ["PrometheusRule", "PodMonitor", "ConfigMap"].includes(String(k)))).toEqual(["ConfigMap"]);
    expect(kinds(ON).filter((k) => k === "PodMonitor").length).toBe(2);
  });

  it("keep PromQL's and Grafana's own {{ }} out of Helm's hands", () => {
    expect(escapeTemplateText("{{ $labels.name }} {{x}}}")).toBe('{{ "{{" }} $labels.name {{ "}}" }} {{ "{{" }}x{{ "}}" }}}');
    expect(helmYaml({ a: "legend {{name}}" })).toBe('a: legend {{ "{{" }}name{{ "}}" }}\n');
  });
});
