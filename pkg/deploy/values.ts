// The install settings of the controller: one zod schema. It gives the Helm
// chart its values.yaml (defaults and comments), values.schema.json and
// values table, and the kustomize base is rendered from the same defaults.
import { z } from "zod";
import { k8sName } from "../apis/common.ts";
import { runnerSpec } from "../apis/backupdefinition.ts";

/** Chart version and the default image tag; equal to package.json's version (a test checks). */
export const CHART_VERSION = "0.1.0";
export const CHART_NAME = "chbackup";
/** Namespace of the kustomize base (Helm uses the release namespace unless `namespace` is set). */
export const BASE_NAMESPACE = "chbackup-system";
/** Name of the controller's Deployment, ServiceAccount, ClusterRole(Binding) and Role(Binding). */
export const CONTROLLER_NAME = "chbackup-controller";

// The controller container's resources go straight into the pod spec.
const resourceList = z.record(z.string(), z.union([z.string().min(1), z.number()]));
const controllerResources = z
  .strictObject({
    requests: resourceList.optional().describe("Resource requests"),
    limits: resourceList.optional().describe("Resource limits"),
  })
  .default({ requests: { cpu: "100m", memory: "256Mi" }, limits: { memory: "512Mi" } });
// The runner's resources go through the controller (RUNNER_DEFAULTS), which checks them with the
// BackupDefinition's own schema: quantities as strings.
const runnerResources = runnerSpec.shape.resources.unwrap().default({ requests: { cpu: "250m", memory: "256Mi" }, limits: { memory: "512Mi" } });

/** Labels or annotations added to an object: string keys and values. */
const labelMap = z.record(z.string().min(1), z.string());

const image = (repository: string, what: string) =>
  z
    .strictObject({
      repository: z.string().min(1).default(repository).describe(`Repository of the ${what} image (build it from deploy/docker/)`),
      tag: z.string().min(1).default(CHART_VERSION).describe(`Tag of the ${what} image`),
      pullPolicy: z.enum(["Always", "IfNotPresent", "Never"]).default("IfNotPresent").describe(`Pull policy of the ${what} image`),
    })
    .prefault({});

export const chartValues = z
  .object({
    namespace: z
      .string()
      .regex(/^([a-z0-9]([-a-z0-9]*[a-z0-9])?)?$/, "must be empty or a lowercase RFC 1123 label")
      .max(63)
      .default("")
      .describe(
        "Namespace of the controller, its StorageLocations and every runner StatefulSet, Secret and Service. Empty: the release namespace (`helm install -n`)",
      ),
    createNamespace: z.boolean().default(false).describe("Render the Namespace object too (with Helm, `--create-namespace` is the usual way)"),
    image: image("chbackup/backup-controller", "controller").describe("The controller image"),
    imagePullSecrets: z
      .array(k8sName)
      .default([])
      .describe("Names of Secrets in the controller namespace used to pull the controller image; the controller passes them to every runner pod too"),
    replicas: z.int().min(1).max(10).default(1).describe("Controller replicas (only the leader works; more than 1 needs leaderElection.enabled)"),
    leaderElection: z
      .strictObject({
        enabled: z.boolean().default(true).describe("Elect a leader through a Lease, so only one replica reconciles"),
        leaseName: k8sName.default(CONTROLLER_NAME).describe("Name of the Lease in the controller namespace"),
      })
      .prefault({})
      .describe("Leader election (LEADER_ELECTION, LEASE_NAME)"),
    resyncSeconds: z.int().min(5).max(86400).default(300).describe("Seconds between full resyncs of every definition (and sweeps for orphaned runner objects)"),
    workers: z.int().min(1).max(64).default(4).describe("Definitions reconciled at once"),
    cacheSyncTimeoutSeconds: z
      .int()
      .min(1)
      .max(86400)
      .default(300)
      .describe("A leader whose caches are still not synced after this many seconds (say, RBAC refuses a list) fails its liveness probe, so Kubernetes restarts it"),
    runnerStatusSeconds: z
      .int()
      .min(0)
      .max(86400)
      .default(60)
      .describe("How often each runner's API is read into its BackupDefinition's status (figures, RunnerReady, BackupHealthy); 0: never"),
    backupHealthTolerance: z
      .number()
      .min(1)
      .default(2)
      .describe("BackupHealthy turns False when the newest backup is older than this many times the schedule's longest gap between runs (a definition's spec.staleAfter wins)"),
    runnerUrlTemplate: z
      .string()
      .default("")
      .describe("Where runners answer, with {service} and {namespace}; empty: http://{service}.{namespace}.svc:8080"),
    logLevel: z.enum(["error", "warn", "info", "debug"]).default("info").describe("Controller log level"),
    resources: controllerResources.describe("Resources of the controller container"),
    runner: z
      .strictObject({
        image: image("chbackup/backup-runner", "runner").describe("The runner image (RUNNER_IMAGE, RUNNER_IMAGE_PULL_POLICY)"),
        resources: runnerResources.describe("Resources of each runner container, unless its BackupDefinition sets spec.runner.resources"),
        storageSize: z.string().min(1).default("1Gi").describe("Size of each runner's volume claim (scratch and state), unless its BackupDefinition sets spec.runner.storageSize"),
        storageClassName: z.string().default("").describe("Storage class of the runner volume claims; empty: the cluster default"),
      })
      .prefault({})
      .describe("What the controller puts into each runner StatefulSet"),
    podMonitor: z
      .strictObject({
        enabled: z
          .boolean()
          .default(false)
          .describe(
            "Render two PodMonitors (Prometheus Operator, monitoring.coreos.com/v1): the controller's /metrics with honorLabels (its per-definition series keep namespace and name of the BackupDefinition), and every runner's /metrics with namespace and name relabelled to its BackupDefinition's",
          ),
        labels: labelMap.default({}).describe("Labels on the PodMonitors, e.g. the one your Prometheus' podMonitorSelector matches (kube-prometheus-stack: release: <its release>)"),
        interval: z.string().regex(/^[0-9]+(ms|s|m|h)$/, "a Prometheus duration such as 30s").default("30s").describe("Scrape interval"),
      })
      .prefault({})
      .describe("Scraping of the controller and the runners"),
    prometheusRule: z
      .strictObject({
        enabled: z
          .boolean()
          .default(false)
          .describe("Render a PrometheusRule (Prometheus Operator, monitoring.coreos.com/v1) with the chbackup alerts; needs the metrics scraped (podMonitor.enabled or your own scrape config)"),
        labels: labelMap.default({}).describe("Labels on the PrometheusRule, e.g. the one your Prometheus' ruleSelector matches (kube-prometheus-stack: release: <its release>)"),
        alertLabels: labelMap.default({}).describe("Labels added to every alert, e.g. for routing (team: platform); severity is set per alert"),
        maxBackupAgeHours: z
          .int()
          .min(1)
          .default(192)
          .describe("ChbackupBackupTooOld fires when a definition's newest successful backup is older than this, whatever its schedule and BackupHealthy say; keep it above your longest schedule interval"),
      })
      .prefault({})
      .describe("Alerts on the controller and runner metrics"),
    grafanaDashboard: z
      .strictObject({
        enabled: z.boolean().default(false).describe("Render the Grafana dashboard as a ConfigMap for the Grafana dashboard sidecar"),
        namespace: z
          .string()
          .regex(/^([a-z0-9]([-a-z0-9]*[a-z0-9])?)?$/, "must be empty or a lowercase RFC 1123 label")
          .max(63)
          .default("")
          .describe("Namespace of the ConfigMap, e.g. Grafana's own when its sidecar watches only that one; empty: the controller namespace"),
        labels: labelMap.default({ grafana_dashboard: "1" }).describe("Labels on the ConfigMap; the sidecar loads ConfigMaps with its label (kube-prometheus-stack: grafana_dashboard: \"1\")"),
        annotations: labelMap.default({}).describe("Annotations on the ConfigMap, e.g. grafana_folder for sidecars that sort dashboards into folders"),
      })
      .prefault({})
      .describe("The Grafana dashboard"),
    podAnnotations: z.record(z.string(), z.string()).default({}).describe("Annotations on the controller pod"),
    nodeSelector: z.record(z.string(), z.string()).default({}).describe("Node selector of the controller pod"),
    tolerations: z.array(z.record(z.string(), z.unknown())).default([]).describe("Tolerations of the controller pod"),
    affinity: z.record(z.string(), z.unknown()).default({}).describe("Affinity of the controller pod"),
  })
  .describe("Values of the chbackup chart");

export type ChartValues = z.infer<typeof chartValues>;
export type ChartValuesInput = z.input<typeof chartValues>;

/** The chart's values.yaml. */
export const DEFAULT_VALUES: ChartValues = chartValues.parse({});
/** The values the kustomize base is rendered with: the defaults in a fixed namespace, Namespace object included. */
export const BASE_VALUES: ChartValues = chartValues.parse({ namespace: BASE_NAMESPACE, createNamespace: true });

/** The runner defaults handed to the controller (RUNNER_DEFAULTS), as an object; empty storageClassName is left out. */
export function runnerDefaults(v: ChartValues): Record<string, unknown> {
  return {
    resources: v.runner.resources,
    storageSize: v.runner.storageSize,
    ...(v.runner.storageClassName ? { storageClassName: v.runner.storageClassName } : {}),
  };
}

/** JSON with object keys sorted at every level (what Helm's toJson writes for a map). */
export function canonicalJson(value: unknown): string {
  const sort = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(sort);
    if (v && typeof v === "object") {
      return Object.fromEntries(
        Object.keys(v)
          .sort()
          .map((k) => [k, sort((v as Record<string, unknown>)[k])]),
      );
    }
    return v;
  };
  return JSON.stringify(sort(value));
}

const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/**
 * The values Helm renders with when a user gives `overrides` (-f / --set): maps
 * are merged key by key into the defaults, lists and scalars replace them, and
 * null removes a map (Helm deletes the key; the templates treat a missing map
 * as an empty one). `{}` does not clear a map: it merges nothing.
 */
export function mergeValues(overrides: ChartValuesInput | Record<string, unknown>): ChartValues {
  const merge = (base: unknown, over: unknown, path: string): unknown => {
    if (over === null) {
      if (isPlainObject(base)) return {};
      throw new Error(`${path}: only a map can be set to null`);
    }
    if (isPlainObject(base) && isPlainObject(over)) {
      const out: Record<string, unknown> = { ...base };
      for (const [k, v] of Object.entries(over)) out[k] = merge(base[k], v, path ? `${path}.${k}` : k);
      return out;
    }
    return over === undefined ? base : over;
  };
  return chartValues.parse(merge(DEFAULT_VALUES, overrides, ""));
}
