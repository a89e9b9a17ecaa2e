// Every series the runner and the controller export, read from their real
// prom-client registries (not from a list kept by hand): what the PrometheusRule
// and the Grafana dashboard of pkg/deploy/monitoring.ts may query. Test support
// only: pkg/deploy, on the controller side, must not import the runner.
import { ControllerMetrics } from "../pkg/controller/metrics.ts";
import { RunnerMetrics } from "../pkg/runner/api/metrics.ts";

export interface ExportedMetric {
  /** Label names the series carries (histogram buckets add `le`). */
  labels: string[];
  source: "runner" | "controller";
}

/** Series name (histograms as `_bucket`, `_sum` and `_count`) → its labels and who exports it. */
export async function exportedMetrics(): Promise<Map<string, ExportedMetric>> {
  const out = new Map<string, ExportedMetric>();
  const registries = [
    ["runner", new RunnerMetrics({ defaultMetrics: false }).registry],
    ["controller", new ControllerMetrics({ defaultMetrics: false }).registry],
  ] as const;
  for (const [source, registry] of registries) {
    for (const m of await registry.getMetricsAsJSON()) {
      const labels = [...((registry.getSingleMetric(m.name) as unknown as { labelNames?: string[] }).labelNames ?? [])];
      const type = String(m.type);
      const names = type === "histogram" ? [`${m.name}_bucket`, `${m.name}_sum`, `${m.name}_count`] : type === "summary" ? [m.name, `${m.name}_sum`, `${m.name}_count`] : [m.name];
      for (const n of names) out.set(n, { labels: n.endsWith("_bucket") ? [...labels, "le"] : labels, source });
    }
  }
  return out;
}
