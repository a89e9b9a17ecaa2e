// Monitoring objects of the chart, each off by default: PodMonitors that scrape
// the controller and every runner, a PrometheusRule with the chbackup alerts,
// and a Grafana dashboard as a ConfigMap for the Grafana sidecar. Every metric
// the rule and the dashboard name must be one the runner (pkg/runner/api/metrics.ts)
// or the controller (pkg/controller/metrics.ts) exports: monitoring.test.ts
// checks that against their registries.
//
// Labels: the controller's per-definition series carry the BackupDefinition's
// `namespace` and `name` (its PodMonitor honours them). A runner's series get
// the same two labels from its pod's labels (chbackup.dev/definition-namespace
// and chbackup.dev/definition-name; a name longer than a label value allows is
// shortened with a hash suffix), and `pod`. So one `namespace`/`name` pair
// selects a definition in every query.
import { LABELS, MANAGED_BY, RUNNER_COMPONENT, RUNNER_CONTAINER } from "../controller/contract.ts";
import type { Obj, RenderedFile, ValueSource } from "./manifests.ts";
import { CONTROLLER_NAME } from "./values.ts";

/** Name of the PrometheusRule, the runner PodMonitor's prefix and the dashboard ConfigMap. */
export const MONITORING_NAME = "chbackup";
export const DASHBOARD_UID = "chbackup-backups";
export const DASHBOARD_FILE = "chbackup-backups.json";

/** Meta label Prometheus gives a pod label (every character outside [a-zA-Z0-9_] becomes `_`). */
const podLabelMeta = (label: string) => `__meta_kubernetes_pod_label_${label.replace(/[^A-Za-z0-9_]/g, "_")}`;

export interface AlertRule {
  alert: string;
  expr: string;
  for?: string;
  labels: Obj;
  annotations: { summary: string; description: string; runbook?: string };
}

const def = "{{ $labels.namespace }}/{{ $labels.name }}";
const describeCmd = "kubectl -n {{ $labels.namespace }} describe backupdefinition {{ $labels.name }}";

/**
 * The alerts. `maxBackupAgeHours` is the text of that threshold (a number, or a
 * Helm expression in the chart); `alertLabels` are spread into every alert's labels.
 */
export function alertRules(maxBackupAgeHours: string, alertLabels: Obj): AlertRule[] {
  const labels = (severity: string) => ({ severity, ...alertLabels });
  return [
    {
      alert: "ChbackupBackupUnhealthy",
      // A definition suspended on purpose is not an incident: its BackupHealthy says Suspended.
      expr: "chbackup_controller_definition_healthy == 0 unless on (namespace, name) chbackup_controller_definition_suspended == 1",
      for: "15m",
      labels: labels("warning"),
      annotations: {
        summary: `Backups of ${def} are not healthy`,
        description: `BackupDefinition ${def} has had BackupHealthy=False for 15 minutes: its newest successful backup is older than its schedule allows (NoRecentBackup), its backups fail (BackupsFailing), or its runner cannot be reached (RunnerUnreachable); suspended definitions are left out. \`${describeCmd}\` shows the reason and since when.`,
      },
    },
    {
      alert: "ChbackupBackupTooOld",
      expr: `time() - chbackup_controller_definition_last_success_timestamp_seconds > ${maxBackupAgeHours} * 3600 and chbackup_controller_definition_last_success_timestamp_seconds > 0`,
      for: "5m",
      labels: labels("critical"),
      annotations: {
        summary: `The newest backup of ${def} is older than ${maxBackupAgeHours} hours`,
        description: `The newest successful backup of BackupDefinition ${def} ended {{ $value | humanizeDuration }} ago. This alert does not depend on the schedule or on BackupHealthy. \`${describeCmd}\` shows why.`,
      },
    },
    {
      alert: "ChbackupControllerAbsent",
      expr: "absent(chbackup_controller_leader == 1)",
      for: "10m",
      labels: labels("critical"),
      annotations: {
        summary: "No chbackup controller is leading (or its metrics are not scraped)",
        description:
          "No instance reports chbackup_controller_leader 1: no controller mirrors backup status or exports BackupHealthy, so ChbackupBackupUnhealthy cannot fire. Check the controller Deployment and that Prometheus scrapes it (podMonitor.enabled).",
      },
    },
    {
      alert: "ChbackupRunnerFailing",
      expr: "chbackup_runner_consecutive_failures >= 3",
      for: "5m",
      labels: labels("warning"),
      annotations: {
        summary: `The runner of ${def} failed {{ $value }} operations in a row`,
        description: `The last {{ $value }} operations (backups, restores or verifies) of the runner of ${def} (pod {{ $labels.pod }}) failed. \`${describeCmd}\` and the runner's /api/v1/status show the last error.`,
      },
    },
    {
      alert: "ChbackupVerifyFailed",
      expr: 'increase(chbackup_runner_operations_total{kind="verify", result="failed"}[1h]) > 0',
      labels: labels("critical"),
      annotations: {
        summary: `A verify of a backup of ${def} failed`,
        description: `A verify of a backup of ${def} failed in the last hour: a backup is not whole, or could not be read. GET /api/v1/operations on its runner names the damaged tables.`,
      },
    },
    {
      alert: "ChbackupRestoreFailed",
      expr: 'increase(chbackup_runner_operations_total{kind="restore", result="failed"}[1h]) > 0',
      labels: labels("warning"),
      annotations: {
        summary: `A restore of ${def} failed`,
        description: `A restore by the runner of ${def} failed in the last hour; every pre-existing table was left as it was. GET /api/v1/operations on its runner shows the error.`,
      },
    },
  ];
}

// ---- the Grafana dashboard ----

const SEL = 'namespace=~"$namespace", name=~"$name"';
const sel = (extra?: string) => `{${extra ? `${extra}, ` : ""}${SEL}}`;
const LEGEND = "{{namespace}}/{{name}}";
const DS = { type: "prometheus", uid: "${datasource}" };

interface PanelSpec {
  title: string;
  description: string;
  type?: "timeseries" | "stat";
  unit?: string;
  /** Minimum step: per-hour increases are drawn one bar per hour. */
  interval?: string;
  bars?: boolean;
  targets: { expr: string; legend: string }[];
  w: number;
  h?: number;
  extra?: Obj;
}

function panel(id: number, x: number, y: number, p: PanelSpec): Obj {
  const type = p.type ?? "timeseries";
  const custom = type === "timeseries" ? { drawStyle: p.bars ? "bars" : "line", fillOpacity: p.bars ? 80 : 10, lineWidth: 1, showPoints: "never", stacking: { mode: p.bars ? "normal" : "none" } } : undefined;
  return {
    id,
    type,
    title: p.title,
    description: p.description,
    datasource: DS,
    gridPos: { x, y, w: p.w, h: p.h ?? 8 },
    ...(p.interval ? { interval: p.interval } : {}),
    targets: p.targets.map((t, i) => ({ refId: String.fromCharCode(65 + i), datasource: DS, expr: t.expr, legendFormat: t.legend, range: true })),
    fieldConfig: { defaults: { unit: p.unit ?? "short", ...(custom ? { custom } : {}) }, overrides: [] },
    options: type === "timeseries" ? { legend: { displayMode: "list", placement: "bottom", showLegend: true }, tooltip: { mode: "multi", sort: "desc" } } : { reduceOptions: { calcs: ["lastNotNull"], fields: "", values: false }, colorMode: "background", textMode: "value_and_name" },
    ...p.extra,
  };
}

/** The dashboard's rows of panels, top to bottom. */
function panelRows(): PanelSpec[][] {
  const perHour = (metric: string, kind: string, by = "namespace, name") => `sum by (${by}) (increase(${metric}${sel(`kind="${kind}"`)}[$__rate_interval]))`;
  return [
    [
      {
        title: "Backup health",
        description: "chbackup_controller_definition_healthy: 1 while the definition's BackupHealthy condition is True (its newest successful backup is younger than its schedule allows), else 0. `kubectl describe backupdefinition` says why.",
        type: "stat",
        targets: [{ expr: `chbackup_controller_definition_healthy${sel()}`, legend: LEGEND }],
        w: 8,
        extra: {
          fieldConfig: {
            defaults: {
              unit: "short",
              mappings: [{ type: "value", options: { "0": { text: "unhealthy", color: "red", index: 0 }, "1": { text: "healthy", color: "green", index: 1 } } }],
              thresholds: { mode: "absolute", steps: [{ color: "red", value: null }, { color: "green", value: 1 }] },
            },
            overrides: [],
          },
        },
      },
      {
        title: "Age of the newest successful backup",
        description: "Seconds since the newest successful backup of each definition ended (chbackup_controller_definition_last_success_timestamp_seconds).",
        unit: "s",
        targets: [{ expr: `time() - chbackup_controller_definition_last_success_timestamp_seconds${sel()}`, legend: LEGEND }],
        w: 16,
      },
    ],
    [
      {
        title: "Backups: succeeded and failed",
        description: "Finished backups per interval by result (succeeded, failed, aborted, cancelled).",
        interval: "1h",
        bars: true,
        targets: [{ expr: perHour("chbackup_runner_operations_total", "backup", "namespace, name, result"), legend: `${LEGEND} {{result}}` }],
        w: 12,
      },
      {
        title: "Consecutive failed operations",
        description: "Operations (backups, restores, verifies) of each runner that failed in a row since its last success.",
        targets: [{ expr: `chbackup_runner_consecutive_failures${sel()}`, legend: LEGEND }],
        w: 12,
      },
    ],
    [
      {
        title: "Backup duration",
        description: "Mean duration of the backups that ended in each interval.",
        unit: "s",
        interval: "1h",
        targets: [
          {
            expr: `${perHour("chbackup_runner_operation_duration_seconds_sum", "backup")} / ${perHour("chbackup_runner_operation_duration_seconds_count", "backup")}`,
            legend: LEGEND,
          },
        ],
        w: 12,
      },
      {
        title: "Bytes written by backups",
        description: "Bytes each runner's backups wrote to storage per interval (compressed, as stored).",
        unit: "bytes",
        interval: "1h",
        bars: true,
        targets: [{ expr: perHour("chbackup_runner_bytes_total", "backup"), legend: LEGEND }],
        w: 12,
      },
    ],
    [
      {
        title: "Backups kept",
        description: "Complete backups in each runner's catalog after its last retention pass.",
        targets: [{ expr: `chbackup_runner_backups${sel()}`, legend: LEGEND }],
        w: 12,
      },
      {
        title: "Rows backed up",
        description: "Rows the backups of each runner streamed per interval (counted from the data).",
        interval: "1h",
        bars: true,
        targets: [{ expr: perHour("chbackup_runner_rows_total", "backup"), legend: LEGEND }],
        w: 12,
      },
    ],
    [
      {
        title: "Restores: succeeded and failed",
        description: "Finished restores per interval by result.",
        interval: "1h",
        bars: true,
        targets: [{ expr: perHour("chbackup_runner_operations_total", "restore", "namespace, name, result"), legend: `${LEGEND} {{result}}` }],
        w: 6,
      },
      {
        title: "Restore running",
        description: "1 while a restore runs on the runner.",
        targets: [{ expr: `chbackup_runner_current_operation${sel('kind="restore"')}`, legend: LEGEND }],
        w: 6,
      },
      {
        title: "Rows restored",
        description: "Rows restores sent to ClickHouse per interval.",
        interval: "1h",
        bars: true,
        targets: [{ expr: perHour("chbackup_runner_rows_total", "restore"), legend: LEGEND }],
        w: 6,
      },
      {
        title: "Bytes restored",
        description: "Bytes restores read from storage per interval.",
        unit: "bytes",
        interval: "1h",
        bars: true,
        targets: [{ expr: perHour("chbackup_runner_bytes_total", "restore"), legend: LEGEND }],
        w: 6,
      },
    ],
    [
      {
        title: "Verifies: succeeded and failed",
        description: "Finished verify operations per interval by result; a failed verify means a backup is not whole.",
        interval: "1h",
        bars: true,
        targets: [{ expr: perHour("chbackup_runner_operations_total", "verify", "namespace, name, result"), legend: `${LEGEND} {{result}}` }],
        w: 8,
      },
      {
        title: "Restore objects by phase",
        description: "Restore custom resources in the cluster by status.phase (Pending, Running, Succeeded, Failed), as the leading controller sees them.",
        targets: [{ expr: "sum by (phase) (chbackup_controller_restores)", legend: "{{phase}}" }],
        w: 8,
      },
      {
        title: "Controller leader",
        description: "Controller instances that lead (should be 1).",
        targets: [{ expr: "sum(chbackup_controller_leader)", legend: "leaders" }],
        w: 8,
      },
    ],
  ];
}

const variable = (name: string, label: string, query: string) => ({
  name,
  label,
  type: "query",
  datasource: DS,
  definition: query,
  query: { query, refId: `${name}-variable` },
  refresh: 2,
  includeAll: true,
  multi: true,
  allValue: ".*",
  current: { selected: true, text: ["All"], value: ["$__all"] },
  sort: 1,
});

/** The Grafana dashboard (JSON model). */
export function grafanaDashboard(): Obj {
  const panels: Obj[] = [];
  let y = 0;
  for (const row of panelRows()) {
    let x = 0;
    for (const p of row) {
      panels.push(panel(panels.length + 1, x, y, p));
      x += p.w;
    }
    y += Math.max(...row.map((p) => p.h ?? 8));
  }
  return {
    uid: DASHBOARD_UID,
    title: "chbackup: ClickHouse backups",
    description: "Backups of every BackupDefinition: health, age, results, duration, bytes, restores (chbackup controller and runner metrics)",
    tags: ["chbackup", "clickhouse", "backup"],
    editable: true,
    graphTooltip: 1,
    refresh: "1m",
    schemaVersion: 39,
    version: 1,
    time: { from: "now-7d", to: "now" },
    timezone: "",
    annotations: { list: [] },
    links: [],
    templating: {
      list: [
        { name: "datasource", label: "Data source", type: "datasource", query: "prometheus", current: {}, hide: 0, refresh: 1 },
        variable("namespace", "Namespace", "label_values(chbackup_controller_definition_healthy, namespace)"),
        variable("name", "Definition", 'label_values(chbackup_controller_definition_healthy{namespace=~"$namespace"}, name)'),
      ],
    },
    panels,
  };
}

/** Every PromQL expression of the dashboard: panel targets and the variables' label_values() series. */
export function dashboardQueries(dashboard: Obj = grafanaDashboard()): string[] {
  const out: string[] = [];
  for (const p of dashboard["panels"] as { targets: { expr: string }[] }[]) for (const t of p.targets) out.push(t.expr);
  for (const v of (dashboard["templating"] as { list: { type: string; definition?: string }[] }).list) {
    if (v.type !== "query" || !v.definition) continue;
    const m = /^label_values\((.*),\s*[a-zA-Z_]+\)$/.exec(v.definition);
    if (!m) throw new Error(`variable query ${v.definition}: not label_values(<series>, <label>)`);
    out.push(m[1]!);
  }
  return out;
}

// ---- the objects ----

export function monitoringFiles(s: ValueSource, labels: Obj): RenderedFile[] {
  const ns = s.namespace();
  const meta = (name: string, extra: Obj, more: Obj = {}) => ({ name, namespace: ns, ...more, labels: { ...labels, "app.kubernetes.io/component": "monitoring", ...extra } });
  const dashboardMeta = { ...meta(`${MONITORING_NAME}-grafana-dashboard`, s.entries("grafanaDashboard.labels"), { annotations: s.optional("grafanaDashboard.annotations") }), namespace: s.namespaceOr("grafanaDashboard.namespace") };
  return [
    {
      name: "podmonitor.yaml",
      when: "podMonitor.enabled",
      objects: [
        {
          apiVersion: "monitoring.coreos.com/v1",
          kind: "PodMonitor",
          metadata: meta(CONTROLLER_NAME, s.entries("podMonitor.labels")),
          spec: {
            selector: { matchLabels: { "app.kubernetes.io/name": CONTROLLER_NAME } },
            podMetricsEndpoints: [
              // honorLabels: the per-definition series keep the definition's namespace and name.
              { port: "http-metrics", path: "/metrics", interval: s.value("podMonitor.interval"), honorLabels: true },
            ],
          },
        },
        {
          apiVersion: "monitoring.coreos.com/v1",
          kind: "PodMonitor",
          metadata: meta(`${MONITORING_NAME}-runners`, s.entries("podMonitor.labels")),
          spec: {
            selector: { matchLabels: { [LABELS.managedBy]: MANAGED_BY, [LABELS.component]: RUNNER_COMPONENT } },
            podMetricsEndpoints: [
              {
                port: RUNNER_CONTAINER.portName,
                path: "/metrics",
                interval: s.value("podMonitor.interval"),
                relabelings: [
                  { action: "replace", sourceLabels: [podLabelMeta(LABELS.sourceNamespace)], targetLabel: "namespace" },
                  { action: "replace", sourceLabels: [podLabelMeta(LABELS.sourceName)], targetLabel: "name" },
                ],
              },
            ],
          },
        },
      ],
    },
    {
      name: "prometheusrule.yaml",
      when: "prometheusRule.enabled",
      objects: [
        {
          apiVersion: "monitoring.coreos.com/v1",
          kind: "PrometheusRule",
          metadata: meta(MONITORING_NAME, s.entries("prometheusRule.labels")),
          spec: { groups: [{ name: "chbackup", rules: alertRules(s.inline("prometheusRule.maxBackupAgeHours"), s.entries("prometheusRule.alertLabels")) }] },
        },
      ],
    },
    {
      name: "grafana-dashboard.yaml",
      when: "grafanaDashboard.enabled",
      objects: [
        {
          apiVersion: "v1",
          kind: "ConfigMap",
          metadata: dashboardMeta,
          data: { [DASHBOARD_FILE]: `${JSON.stringify(grafanaDashboard(), null, 2)}\n` },
        },
      ],
    },
  ];
}
