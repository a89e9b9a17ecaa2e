// Every generated deploy file: the kustomize base and the Helm chart, both
// from renderControllerFiles (manifests.ts). Listed by gen.ts.
import { stringify } from "yaml";
import { helmChartFiles, YAML_HEADER } from "./helm.ts";
import { concreteSource, CONTROLLER_LABELS, prune, renderControllerFiles, valueAt } from "./manifests.ts";
import { DASHBOARD_FILE, grafanaDashboard, monitoringFiles } from "./monitoring.ts";
import { BASE_NAMESPACE, BASE_VALUES, CHART_NAME, chartValues } from "./values.ts";

const kustomization = (resources: string[]) =>
  YAML_HEADER + stringify({ apiVersion: "kustomize.config.k8s.io/v1beta1", kind: "Kustomization", resources }, { lineWidth: 0 });

/** deploy/base/*: the manifests rendered with the chart's defaults in namespace chbackup-system. */
export function baseFiles(): Map<string, string> {
  const files = new Map<string, string>();
  const rendered = renderControllerFiles(concreteSource(BASE_VALUES, BASE_VALUES.namespace)).filter((f) => !f.when || valueAt(BASE_VALUES, f.when) === true);
  files.set("kustomization.yaml", kustomization(["../crds", ...rendered.map((f) => f.name)]));
  for (const f of rendered) files.set(f.name, YAML_HEADER + f.objects.map((o) => stringify(prune(o), { lineWidth: 0 })).join("---\n"));
  return files;
}

/**
 * deploy/monitoring/*: the chart's PodMonitors, PrometheusRule and Grafana dashboard ConfigMap with
 * their defaults in the base's namespace (`kubectl apply -k deploy/monitoring`), and the dashboard's
 * JSON on its own, for Grafana's import.
 */
export function monitoringBaseFiles(): Map<string, string> {
  const values = chartValues.parse({ namespace: BASE_NAMESPACE, podMonitor: { enabled: true }, prometheusRule: { enabled: true }, grafanaDashboard: { enabled: true } });
  const files = new Map<string, string>();
  const rendered = monitoringFiles(concreteSource(values, BASE_NAMESPACE), { ...CONTROLLER_LABELS });
  files.set("kustomization.yaml", kustomization(rendered.map((f) => f.name)));
  for (const f of rendered) files.set(f.name, YAML_HEADER + f.objects.map((o) => stringify(prune(o), { lineWidth: 0 })).join("---\n"));
  files.set(`dashboards/${DASHBOARD_FILE}`, `${JSON.stringify(grafanaDashboard(), null, 2)}\n`);
  return files;
}

/**
 * Path (relative to the repo root) → content of every deploy file.
 * `crdFiles` are the generated CRD files of deploy/crds (file name → content): the chart gets the same bytes.
 */
export function deployFiles(crdFiles: Map<string, string>): Map<string, string> {
  const files = new Map<string, string>();
  files.set("deploy/crds/kustomization.yaml", kustomization([...crdFiles.keys()]));
  for (const [name, text] of baseFiles()) files.set(`deploy/base/${name}`, text);
  for (const [name, text] of monitoringBaseFiles()) files.set(`deploy/monitoring/${name}`, text);
  for (const [name, text] of helmChartFiles(crdFiles)) files.set(`deploy/helm/${CHART_NAME}/${name}`, text);
  return files;
}
