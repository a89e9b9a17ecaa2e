// What the PrometheusRule and the Grafana dashboard of pkg/deploy/monitoring.ts
// may query: every series the runner and the controller export, read from their
// real prom-client registries (not from a list kept by hand), and the series a
// PromQL expression names, read with Prometheus' own PromQL grammar
// (@prometheus-io/lezer-promql), which also refuses an expression that does not
// parse. Test support only: pkg/deploy, on the controller side, must not import
// the runner.
import { parser } from "@prometheus-io/lezer-promql";
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

/** A series an expression selects, with the label names its matchers use. */
export interface MetricRef {
  name: string;
  matchers: string[];
}

/** Grafana's interval variables, which are not PromQL, as a duration the grammar takes. */
const GRAFANA_INTERVALS = /\$__(rate_interval|interval|range)\b/g;

/** The series a PromQL expression selects. Throws when it does not parse, or selects a series by matchers only. */
export function metricRefs(expr: string): MetricRef[] {
  const text = expr.replace(GRAFANA_INTERVALS, "5m");
  const tree = parser.parse(text);
  const refs: (MetricRef & { from: number; to: number })[] = [];
  tree.iterate({
    enter: (n) => {
      if (n.type.isError) throw new Error(`PromQL does not parse at ${n.from}: ${text.slice(0, n.from)} ⚠ ${text.slice(n.from)}`);
      if (n.name === "VectorSelector") {
        const id = n.node.getChild("Identifier");
        if (!id) throw new Error(`a selector without a metric name: ${text.slice(n.from, n.to)} in ${expr}`);
        refs.push({ name: text.slice(id.from, id.to), matchers: [], from: n.from, to: n.to });
      } else if (n.name === "LabelName" && n.node.parent?.name.endsWith("LabelMatcher")) {
        const sel = refs.findLast((r) => r.from <= n.from && n.to <= r.to);
        if (!sel) throw new Error(`a label matcher outside a selector in ${expr}`);
        sel.matchers.push(text.slice(n.from, n.to));
      }
    },
  });
  return refs.map(({ name, matchers }) => ({ name, matchers }));
}
