// Cluster backups through the controller (issue #16): spec.clickhouse.cluster reaches the runner
// config as written, the runner pod prefers the cluster's pods, and cluster + native is InvalidSpec.
import { describe, expect, it } from "vitest";
import { parseRunnerConfigText } from "../apis/index.ts";
import { planRunnerConfig, type PlanInput, type PlanSuccess } from "./plan.ts";
import { renderRunnerObjects } from "./render.ts";
import { parseControllerSettings } from "./settings.ts";
import type { BackupDefinitionObject } from "./types.ts";

const settings = parseControllerSettings({ namespace: "chbackup-system", runnerImage: "reg/runner:1", leaderElection: { identity: "c" } });
const def = (clickhouse: Record<string, unknown>, runner?: unknown): BackupDefinitionObject =>
  ({
    metadata: { name: "events-cluster", namespace: "analytics", generation: 1 },
    spec: { storageLocation: "disk", clickhouse: { url: "http://clickhouse-events.analytics.svc:8123", ...clickhouse }, schedule: { cron: "0 * * * *" }, ...(runner ? { runner } : {}) },
  }) as BackupDefinitionObject;
const input = (d: BackupDefinitionObject): PlanInput => ({
  definition: d,
  controllerNamespace: "chbackup-system",
  location: () => ({ metadata: { name: "disk" }, spec: { filesystem: { path: "/backups" } } }),
  secret: () => undefined,
  token: "token-0123456789abcdef",
});
const ok = (p: ReturnType<typeof planRunnerConfig>): PlanSuccess => {
  if (!p.ok) throw new Error(`${p.reason}: ${p.message}`);
  return p;
};

describe("spec.clickhouse.cluster", () => {
  it("is rendered into the runner config, with the defaults the runner would apply", () => {
    const p = ok(planRunnerConfig(input(def({ cluster: { name: "main", httpPort: 8123 } }))));
    const cfg = parseRunnerConfigText(p.configJson, "test");
    expect(cfg.definition.clickhouse.cluster).toEqual({ name: "main", httpPort: 8123, concurrency: 2, replicationTimeoutSeconds: 600 });
    const noCluster = parseRunnerConfigText(ok(planRunnerConfig(input(def({})))).configJson, "test");
    expect(noCluster.definition.clickhouse.cluster).toBeUndefined();
  });

  it("places the runner next to the cluster's pods through databaseAffinity", () => {
    const labels = { "clickhouse.altinity.com/chi": "events", "clickhouse.altinity.com/cluster": "main" };
    const p = ok(planRunnerConfig(input(def({ cluster: { name: "main" } }, { databaseAffinity: { podLabels: labels, weight: 50 } }))));
    const sts = renderRunnerObjects(p, settings).statefulSet;
    const term = sts.spec?.template.spec?.affinity?.podAffinity?.preferredDuringSchedulingIgnoredDuringExecution?.[0];
    expect(term).toMatchObject({ weight: 50, podAffinityTerm: { labelSelector: { matchLabels: labels }, namespaces: ["analytics"], topologyKey: "kubernetes.io/hostname" } });
  });

  it("is InvalidSpec with the native method, naming the field", () => {
    const bad = planRunnerConfig(input(def({ method: "native", cluster: { name: "main" } })));
    expect(bad).toMatchObject({ ok: false, reason: "InvalidSpec", message: expect.stringContaining("spec.clickhouse.cluster: cluster backups use the dump method") });
  });
});
