// The controller on a real kube-apiserver when things go wrong: reconciles counted by what they
// came to, an apiserver outage, and a controller whose RBAC refuses it what it needs. Any
// unhandled promise rejection in this process fails the file. The refused controller keeps its
// Lease while its caches cannot sync, says why on /readyz and in the log, and fails /healthz.
import { Writable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KubeConfig } from "@kubernetes/client-node";
import { createLogger } from "../pkg/common/logging.ts";
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
    // Counted when the reconcile returns, just after its status (and Event) is written.
    const counts = async () => Object.fromEntries((await app!.metrics.reconciles.get()).values.map((v) => [v.labels["result"], v.value]));
    const results = ["success", "invalid_spec", "missing_reference", "apply_failed"];
    await waitFor("every result counted", async () => {
      const c = await counts();
      return results.every((r) => (c[r] ?? 0) >= 1);
    }, 10_000).catch(async () => expect(await counts()).toEqual(Object.fromEntries(results.map((r) => [r, expect.any(Number)]))));
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

  it("runs refused by RBAC (no cluster-wide Secret list), with no unhandled rejection, and stops when asked", async () => {
    // A ServiceAccount that may do everything the controller needs except list and watch Secrets cluster-wide.
    const sa = "half-granted";
    await must(kube, "POST", `/api/v1/namespaces/${CTRL_NS}/serviceaccounts`, { apiVersion: "v1", kind: "ServiceAccount", metadata: { name: sa } });
    await must(kube, "POST", "/apis/rbac.authorization.k8s.io/v1/clusterroles", {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "ClusterRole",
      metadata: { name: sa },
      rules: [
        { apiGroups: ["chbackup.dev"], resources: ["backupdefinitions", "backupdefinitions/status", "storagelocations"], verbs: ["get", "list", "watch", "patch"] },
        { apiGroups: [""], resources: ["services", "events"], verbs: ["get", "list", "watch", "create", "patch", "delete"] },
        { apiGroups: ["apps"], resources: ["statefulsets"], verbs: ["get", "list", "watch", "create", "patch", "delete"] },
        { apiGroups: ["coordination.k8s.io"], resources: ["leases"], verbs: ["get", "create", "update"] },
      ],
    });
    await must(kube, "POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "ClusterRoleBinding",
      metadata: { name: sa },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: sa },
      subjects: [{ kind: "ServiceAccount", name: sa, namespace: CTRL_NS }],
    });
    const tr = await must<{ status: { token: string } }>(kube, "POST", `/api/v1/namespaces/${CTRL_NS}/serviceaccounts/${sa}/token`, { apiVersion: "authentication.k8s.io/v1", kind: "TokenRequest", spec: { expirationSeconds: 3600 } });
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: "test", server: kube.server, caData: Buffer.from(kube.caPem).toString("base64"), skipTLSVerify: false }],
      users: [{ name: sa, token: tr.status.token }],
      contexts: [{ name: "test", cluster: "test", user: sa }],
      currentContext: "test",
    });
    const lines: { level: string; message: string; waitingFor?: { resource: string; error: string }[] }[] = [];
    const logger = createLogger({ level: "info", stream: new Writable({ write: (chunk: Buffer, _enc, cb) => (lines.push(JSON.parse(chunk.toString())), cb()) }) });
    const t0 = Date.now();
    const refused = await startTestController({
      kube: { ...kube, kubeConfig: () => kc } as KubeApiServer,
      namespace: CTRL_NS,
      identity: "refused",
      logger,
      settings: { cacheSyncTimeoutSeconds: 4, syncReportSeconds: 1 },
    });
    const probe = async (path: string) => {
      const r = await fetch(`http://127.0.0.1:${refused.probePort}${path}`);
      return { status: r.status, body: (await r.json()) as { status: string; leader?: boolean; waitingFor?: { resource: string; error: string }[]; reason?: string } };
    };
    const lease = async () => (await must<{ spec: { holderIdentity: string; renewTime: string } }>(kube, "GET", `/apis/coordination.k8s.io/v1/namespaces/${CTRL_NS}/leases/chbackup-controller`)).spec;
    let standby: ControllerApp | undefined;
    try {
      await waitFor("leading", async () => refused.isLeader(), 15_000);
      // Its Secret cache never syncs. It keeps renewing the Lease all the same, so a standby with
      // every grant does not take over (the lease is 3 s here).
      standby = await startTestController({ kube, namespace: CTRL_NS, identity: "standby" });
      const first = await lease();
      expect(first.holderIdentity).toBe("refused");
      await new Promise((r) => setTimeout(r, 5000));
      const later = await lease();
      expect(later.holderIdentity).toBe("refused");
      expect(later.renewTime > first.renewTime).toBe(true);
      expect(standby.isLeader()).toBe(false);
      expect(refused.controller()?.ready).toBe(false);
      // /readyz says why, /healthz fails once the caches are not synced after cacheSyncTimeoutSeconds.
      const ready = await probe("/readyz");
      expect(ready.status).toBe(503);
      expect(ready.body.leader).toBe(true);
      const secrets = ready.body.waitingFor?.find((w) => w.resource === "secrets");
      expect(secrets?.error).toMatch(/403|forbidden/i);
      expect(ready.body.waitingFor?.map((w) => w.resource)).not.toContain("backupdefinitions");
      expect(Date.now() - t0).toBeGreaterThan(4000);
      const health = await probe("/healthz");
      expect(health.status).toBe(503);
      expect(health.body.reason).toMatch(/not synced after \d+ s.*secrets/);
      // Logged at every report interval (one minute by default; 1 s here), naming what it waits for.
      const reports = lines.filter((l) => l.message === "caches not synced");
      expect(reports.length).toBeGreaterThanOrEqual(2);
      expect(reports[0]!.level).toBe("warn");
      expect(reports[0]!.waitingFor?.map((w) => w.resource)).toContain("secrets");
    } finally {
      const t1 = Date.now();
      await refused.stop();
      expect(Date.now() - t1).toBeLessThan(10_000);
    }
    // The standby takes over and works.
    await waitFor("standby leads and is synced", async () => standby!.isLeader() && standby!.controller()?.ready, 20_000);
    await must(kube, "POST", defPath(), definition("after-refusal"));
    await waitReady(kube, APP_NS, "after-refusal");
    await standby!.stop();
    expect(unhandled).toEqual([]);
  });
});
