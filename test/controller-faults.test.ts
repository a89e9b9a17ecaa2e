// The controller on a real kube-apiserver when things go wrong: reconciles counted by what they
// came to, an apiserver outage, and a controller whose RBAC refuses it what it needs. Any
// unhandled promise rejection in this process fails the file.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ControllerApp } from "../pkg/controller/index.ts";
import { startKubeApiServer, type KubeApiServer } from "./env/index.ts";
import { GV, createNamespace, installCrds, must, secretBody, startTestController, waitFor, waitReady } from "./helpers/kube.ts";

const CTRL_NS = "chbackup-system";
const APP_NS = "shop";

const definition = (name: string, over: Record<string, unknown> = {}) => ({
  apiVersion: GV,
  kind: "BackupDefinition",
  metadata: { name, namespace: APP_NS },
  spec: {
    storageLocation: "minio",
    clickhouse: { url: "http://clickhouse.shop.svc:8123", passwordSecretRef: { name: "ch-password", key: "password" } },
    schedule: { cron: "0 * * * *" },
    ...over,
  },
});
const defPath = (name = "") => `/apis/${GV}/namespaces/${APP_NS}/backupdefinitions${name ? `/${name}` : ""}`;

describe("backup-controller under faults", () => {
  let kube: KubeApiServer;
  let app: ControllerApp | undefined;
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => unhandled.push(reason);

  beforeAll(async () => {
    process.on("unhandledRejection", onUnhandled);
    kube = await startKubeApiServer();
    await installCrds(kube);
    for (const ns of [CTRL_NS, APP_NS]) await createNamespace(kube, ns);
    await must(kube, "POST", `/api/v1/namespaces/${APP_NS}/secrets`, secretBody(APP_NS, "ch-password", { password: "pw" }));
    await must(kube, "POST", `/api/v1/namespaces/${CTRL_NS}/secrets`, secretBody(CTRL_NS, "minio-creds", { accessKeyId: "a", secretAccessKey: "b" }));
    await must(kube, "POST", `/apis/${GV}/namespaces/${CTRL_NS}/storagelocations`, {
      apiVersion: GV,
      kind: "StorageLocation",
      metadata: { name: "minio", namespace: CTRL_NS },
      spec: { s3: { endpoint: "http://minio:9000", bucket: "backups", credentialsSecretRef: { name: "minio-creds" } } },
    });
  });
  afterAll(async () => {
    await app?.stop();
    await kube?.stop();
    process.off("unhandledRejection", onUnhandled);
    expect(unhandled).toEqual([]);
  });

  it("counts reconciles by what they came to: success, invalid_spec, missing_reference, apply_failed", async () => {
    app = await startTestController({ kube, namespace: CTRL_NS });
    await waitFor("leader", async () => app!.isLeader() && app!.controller()?.ready);
    await must(kube, "POST", defPath(), definition("fine"));
    await must(kube, "POST", defPath(), definition("bad-tz", { schedule: { cron: "0 * * * *", timeZone: "Mars/Olympus_Mons" } }));
    await must(kube, "POST", defPath(), definition("no-secret", { clickhouse: { url: "http://ch:8123", passwordSecretRef: { name: "nope", key: "pw" } } }));
    await must(kube, "POST", defPath(), definition("refused", { runner: { nodeSelector: { "bad key!": "x" } } }));
    await waitReady(kube, APP_NS, "fine");
    await waitReady(kube, APP_NS, "bad-tz", "InvalidSpec");
    await waitReady(kube, APP_NS, "no-secret", "SecretNotFound");
    await waitReady(kube, APP_NS, "refused", "ApplyFailed");
    const counts = Object.fromEntries((await app.metrics.reconciles.get()).values.map((v) => [v.labels["result"], v.value]));
    for (const r of ["success", "invalid_spec", "missing_reference", "apply_failed"]) expect(counts[r], r).toBeGreaterThanOrEqual(1);
    const text = await app.metrics.registry.metrics();
    expect(text).toMatch(/chbackup_controller_reconciles_total\{result="invalid_spec"\} \d+/);
  });

  it("runs through an apiserver outage longer than its lease and recovers, with no unhandled rejection", async () => {
    await kube.stopApiServer();
    await new Promise((r) => setTimeout(r, 6000)); // the lease (3 s in tests) runs out meanwhile
    await kube.startApiServer();
    await must(kube, "POST", defPath(), definition("after-outage"));
    await waitReady(kube, APP_NS, "after-outage", "Reconciled", 90_000);
    expect(app!.isLeader()).toBe(true);
    expect(unhandled).toEqual([]);
    await app!.stop();
    app = undefined;
  });
});
