// The controller against a real kube-apiserver (+ etcd) from the test
// environment: resources in, runner objects out, idempotence, secret
// rotation, missing references, deletion and orphan sweep, leader election.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runnerConfig } from "../pkg/apis/index.ts";
import { ANNOTATIONS, FINALIZER, LABELS, runnerName, type ControllerApp, type RequestRecord } from "../pkg/controller/index.ts";
import { startKubeApiServer, type KubeApiServer } from "./env/index.ts";
import { GV, createNamespace, installCrds, must, readyCondition, secretBody, startTestController, waitEvents, waitFor, waitReady } from "./helpers/kube.ts";

const CTRL_NS = "chbackup-system";
const APP_NS = "shop";

type Obj = { metadata: { name: string; uid?: string; resourceVersion: string; labels?: Record<string, string>; annotations?: Record<string, string>; finalizers?: string[] }; data?: Record<string, string>; spec?: Record<string, unknown>; status?: Record<string, unknown> };

const defPath = (ns: string, name = "") => `/apis/${GV}/namespaces/${ns}/backupdefinitions${name ? `/${name}` : ""}`;
const locPath = (name = "") => `/apis/${GV}/namespaces/${CTRL_NS}/storagelocations${name ? `/${name}` : ""}`;
const secretPath = (ns: string, name = "") => `/api/v1/namespaces/${ns}/secrets${name ? `/${name}` : ""}`;
const stsPath = (name = "") => `/apis/apps/v1/namespaces/${CTRL_NS}/statefulsets${name ? `/${name}` : ""}`;
const svcPath = (name = "") => `/api/v1/namespaces/${CTRL_NS}/services${name ? `/${name}` : ""}`;

function definition(name: string, over: Record<string, unknown> = {}) {
  return {
    apiVersion: GV,
    kind: "BackupDefinition",
    metadata: { name, namespace: APP_NS },
    spec: {
      storageLocation: "minio",
      clickhouse: { url: "http://clickhouse.shop.svc:8123", username: "backup", passwordSecretRef: { name: "ch-password", key: "password" } },
      schedule: { cron: "0 * * * *", timeZone: "Europe/Berlin" },
      retention: { hourly: 24, daily: 7 },
      runner: { databaseAffinity: { podLabels: { app: "clickhouse" } }, storageSize: "2Gi", nodeSelector: { pool: "backup" } },
      ...over,
    },
  };
}

const location = (name = "minio") => ({
  apiVersion: GV,
  kind: "StorageLocation",
  metadata: { name, namespace: CTRL_NS },
  spec: { s3: { endpoint: "http://minio.storage:9000", bucket: "backups", prefix: "prod", forcePathStyle: true, credentialsSecretRef: { name: "minio-creds" } } },
});

describe("backup-controller against kube-apiserver", () => {
  let kube: KubeApiServer;
  let app: ControllerApp;
  const requests: RequestRecord[] = [];
  // Writes of the reconcile loop (lease renewals are leader election's own).
  const isWrite = (r: RequestRecord) => !["get", "list", "watch"].includes(r.verb) && r.resource !== "leases";
  const writes = () => requests.filter(isWrite).length;
  const idle = async () => {
    // Let watch events arrive, then wait for the queue to drain.
    await new Promise((r) => setTimeout(r, 300));
    await Promise.all([app.controller()!.queue.idle(), app.controller()!.locationQueue.idle()]);
  };

  beforeAll(async () => {
    kube = await startKubeApiServer();
    await installCrds(kube);
    for (const ns of [CTRL_NS, APP_NS, "other"]) await createNamespace(kube, ns);
    await must(kube, "POST", secretPath(APP_NS), secretBody(APP_NS, "ch-password", { password: "first-password" }));
    await must(kube, "POST", secretPath(CTRL_NS), secretBody(CTRL_NS, "minio-creds", { accessKeyId: "test-access-key-id", secretAccessKey: "minio-secret-1" }));
    await must(kube, "POST", locPath(), location());
    app = await startTestController({ kube, namespace: CTRL_NS, observe: (r) => requests.push(r), settings: { imagePullSecrets: ["regcred"] } });
    await waitFor("leader", async () => app.isLeader() && app.controller()!.ready);
  });
  afterAll(async () => {
    await app?.stop();
    await kube?.stop();
  });

  it("renders the config Secret, StatefulSet and Service of a definition", async () => {
    await must(kube, "POST", defPath(APP_NS), definition("orders"));
    const ready = await waitReady(kube, APP_NS, "orders");
    const name = runnerName(APP_NS, "orders");
    expect(ready.status).toBe("True");

    const secret = await must<Obj>(kube, "GET", secretPath(CTRL_NS, name));
    const config = runnerConfig.parse(JSON.parse(Buffer.from(secret.data!["config.json"]!, "base64").toString("utf8")));
    expect(config.definition).toMatchObject({ namespace: APP_NS, name: "orders", mode: "scheduled", schedule: { cron: "0 * * * *", timeZone: "Europe/Berlin" }, retention: { hourly: 24, daily: 7 } });
    expect(config.definition.clickhouse).toMatchObject({ url: "http://clickhouse.shop.svc:8123", username: "backup", password: "first-password" });
    // The definition's uid: part of the runner's owner identity recorded in every backup.
    const created = await must<Obj>(kube, "GET", defPath(APP_NS, "orders"));
    expect(config.definition.uid).toBe(created.metadata.uid);
    expect(config.definition.uid).toMatch(/^[0-9a-f-]{36}$/);
    expect(config.storage.s3).toMatchObject({ endpoint: "http://minio.storage:9000", bucket: "backups", prefix: "prod", accessKeyId: "test-access-key-id", secretAccessKey: "minio-secret-1" });
    expect(config.api.token.length).toBeGreaterThanOrEqual(32);
    expect(Buffer.from(secret.data!["token"]!, "base64").toString()).toBe(config.api.token);
    expect(secret.metadata.labels).toMatchObject({ [LABELS.managedBy]: "chbackup-controller", [LABELS.sourceNamespace]: APP_NS, [LABELS.sourceName]: "orders" });
    expect(secret.metadata.annotations?.[ANNOTATIONS.source]).toBe("shop/orders");

    const sts = await must<{ spec: Record<string, any> } & Obj>(kube, "GET", stsPath(name));
    expect(sts.spec["replicas"]).toBe(1);
    const pod = sts.spec["template"].spec;
    expect(pod.automountServiceAccountToken).toBe(false);
    expect(pod.imagePullSecrets).toEqual([{ name: "regcred" }]);
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 10001 });
    expect(pod.nodeSelector).toEqual({ pool: "backup" });
    expect(pod.affinity.podAffinity.preferredDuringSchedulingIgnoredDuringExecution[0]).toMatchObject({
      weight: 100,
      podAffinityTerm: { labelSelector: { matchLabels: { app: "clickhouse" } }, namespaces: [APP_NS], topologyKey: "kubernetes.io/hostname" },
    });
    const c = pod.containers[0];
    expect(c.image).toBe("registry.example/chbackup/runner:test");
    expect(c.args).toEqual(["serve", "--config", "/etc/backup-runner/config.json"]);
    expect(c.securityContext).toMatchObject({ readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] } });
    expect(c.readinessProbe.httpGet).toMatchObject({ path: "/readyz", port: "http" });
    expect(c.livenessProbe.httpGet).toMatchObject({ path: "/healthz", port: "http" });
    expect(c.volumeMounts).toContainEqual({ name: "config", mountPath: "/etc/backup-runner", readOnly: true });
    expect(pod.volumes).toContainEqual(expect.objectContaining({ name: "config", secret: expect.objectContaining({ secretName: name }) }));
    // S3: no volume claim; the operation journal's scratch volume is an emptyDir of storageSize.
    expect(sts.spec["volumeClaimTemplates"]).toBeUndefined();
    expect(pod.volumes).toContainEqual({ name: "scratch", emptyDir: { sizeLimit: "2Gi" } });
    expect(sts.spec["template"].metadata.annotations[ANNOTATIONS.configHash]).toMatch(/^[0-9a-f]{64}$/);

    const svc = await must<{ spec: Record<string, any> } & Obj>(kube, "GET", svcPath(name));
    expect(svc.spec["selector"]).toEqual(sts.spec["selector"].matchLabels);
    expect(svc.spec["ports"][0]).toMatchObject({ name: "http", port: 8080, targetPort: "http" });
    // Headless, and the one the StatefulSet's serviceName names.
    expect(svc.spec["clusterIP"]).toBe("None");
    expect(sts.spec["serviceName"]).toBe(name);

    const def = await must<Obj>(kube, "GET", defPath(APP_NS, "orders"));
    expect(def.metadata.finalizers).toContain(FINALIZER);
    expect(def.status).toMatchObject({ observedGeneration: 1, runner: { namespace: CTRL_NS, secret: name, statefulSet: name, service: name } });
    // The transition was recorded as an Event on the definition.
    await waitEvents(kube, APP_NS, "BackupDefinition", "orders", ["Normal/Reconciled"]);
    // Every object went through server-side apply under the one field manager.
    const managers = ((await must<{ metadata: { managedFields: { manager: string; operation: string }[] } }>(kube, "GET", stsPath(name))).metadata.managedFields ?? []).map((m) => `${m.manager}:${m.operation}`);
    expect(managers).toContain("chbackup-controller:Apply");
  });

  it("makes no write when nothing changed, on events and on a full resync", async () => {
    await idle();
    const name = runnerName(APP_NS, "orders");
    const rv = async () => Promise.all([secretPath(CTRL_NS, name), stsPath(name), svcPath(name), defPath(APP_NS, "orders")].map(async (p) => (await must<Obj>(kube, "GET", p)).metadata.resourceVersion));
    const before = await rv();
    const w0 = writes();
    app.controller()!.resync();
    await idle();
    // An unrelated Secret in the app namespace changes: reconciles, no writes.
    await must(kube, "POST", secretPath(APP_NS), secretBody(APP_NS, "unrelated", { x: "1" }));
    await must(kube, "PATCH", locPath("minio"), { metadata: { labels: { touched: "yes" } } }, "application/merge-patch+json");
    await idle();
    expect(requests.filter(isWrite).slice(w0)).toEqual([]);
    expect(await rv()).toEqual(before);
  });

  it("rolls the runner when a referenced Secret value changes, and keeps the API token", async () => {
    const name = runnerName(APP_NS, "orders");
    const sts0 = await must<{ spec: Record<string, any> }>(kube, "GET", stsPath(name));
    const hash0 = sts0.spec["template"].metadata.annotations[ANNOTATIONS.configHash];
    const secret0 = await must<Obj>(kube, "GET", secretPath(CTRL_NS, name));
    await must(kube, "PUT", secretPath(APP_NS, "ch-password"), secretBody(APP_NS, "ch-password", { password: "rotated-password" }));
    const cfg = await waitFor("config with the new password", async () => {
      const s = await must<Obj>(kube, "GET", secretPath(CTRL_NS, name));
      const c = runnerConfig.parse(JSON.parse(Buffer.from(s.data!["config.json"]!, "base64").toString()));
      return c.definition.clickhouse.password === "rotated-password" ? c : undefined;
    });
    expect(Buffer.from(secret0.data!["token"]!, "base64").toString()).toBe(cfg.api.token);
    const hash1 = await waitFor("new config hash", async () => {
      const s = await must<{ spec: Record<string, any> }>(kube, "GET", stsPath(name));
      const h = s.spec["template"].metadata.annotations[ANNOTATIONS.configHash];
      return h !== hash0 ? h : undefined;
    });
    expect(hash1).toMatch(/^[0-9a-f]{64}$/);
    // The storage credentials live in the controller's namespace: they roll the runner too.
    await must(kube, "PUT", secretPath(CTRL_NS, "minio-creds"), secretBody(CTRL_NS, "minio-creds", { accessKeyId: "test-access-key-id", secretAccessKey: "minio-secret-2" }));
    await waitFor("new storage credentials", async () => {
      const s = await must<Obj>(kube, "GET", secretPath(CTRL_NS, name));
      return runnerConfig.parse(JSON.parse(Buffer.from(s.data!["config.json"]!, "base64").toString())).storage.s3?.secretAccessKey === "minio-secret-2";
    });
  });

  it("keeps only referenced Secrets' data in its cache, and reads a Secret that becomes referenced", async () => {
    // Created before anything refers to it: cached as metadata only.
    await must(kube, "POST", secretPath("other"), secretBody("other", "late-ref", { password: "late-password" }));
    await new Promise((r) => setTimeout(r, 300));
    const ctrl = app.controller()!;
    expect(ctrl.secrets.get("other", "late-ref")?.data).toBeUndefined();
    expect(ctrl.secrets.get("other", "unrelated-x")).toBeUndefined();
    // Referenced ones keep their data.
    expect(ctrl.secrets.get(APP_NS, "ch-password")?.data?.["password"]).toBeDefined();
    await must(kube, "POST", defPath("other"), { ...definition("late"), metadata: { name: "late", namespace: "other" }, spec: { ...definition("late").spec, clickhouse: { url: "http://ch:8123", passwordSecretRef: { name: "late-ref", key: "password" } } } });
    await waitReady(kube, "other", "late");
    const s = await must<Obj>(kube, "GET", secretPath(CTRL_NS, runnerName("other", "late")));
    expect(runnerConfig.parse(JSON.parse(Buffer.from(s.data!["config.json"]!, "base64").toString())).definition.clickhouse.password).toBe("late-password");
    // From now on its changes arrive with their data.
    await must(kube, "PUT", secretPath("other", "late-ref"), secretBody("other", "late-ref", { password: "later-password" }));
    await waitFor("rotated late password", async () => {
      const x = await must<Obj>(kube, "GET", secretPath(CTRL_NS, runnerName("other", "late")));
      return runnerConfig.parse(JSON.parse(Buffer.from(x.data!["config.json"]!, "base64").toString())).definition.clickhouse.password === "later-password";
    });
  });

  it("repairs drift made by someone else and recreates deleted runner objects", async () => {
    const name = runnerName(APP_NS, "orders");
    await must(kube, "PATCH", svcPath(name), { spec: { ports: [{ name: "http", port: 9999, targetPort: "http", protocol: "TCP" }] } }, "application/merge-patch+json");
    await waitFor("service port repaired", async () => ((await must<{ spec: { ports: { port: number }[] } }>(kube, "GET", svcPath(name))).spec.ports[0]!.port === 8080 ? true : undefined));
    await must(kube, "DELETE", stsPath(name));
    await waitFor("statefulset recreated", async () => (await kube.request("GET", stsPath(name))).status === 200);
  });

  it("removed fields reach the StatefulSet: nodeSelector, tolerations, databaseAffinity, a map key, a resource limit, imagePullSecrets", async () => {
    type Pod = { nodeSelector?: Record<string, string>; tolerations?: unknown[]; affinity?: unknown; imagePullSecrets?: unknown[]; containers: { resources?: { requests?: Record<string, string>; limits?: Record<string, string> } }[] };
    const podOf = async (name: string) => (await must<{ spec: { template: { spec: Pod } } }>(kube, "GET", stsPath(name))).spec.template.spec;
    const runner = {
      nodeSelector: { pool: "backup", disk: "ssd" },
      tolerations: [{ key: "backup", operator: "Exists", effect: "NoSchedule" }],
      databaseAffinity: { podLabels: { app: "clickhouse" } },
      resources: { requests: { cpu: "100m", memory: "128Mi" }, limits: { cpu: "1", memory: "256Mi" } },
    };
    await must(kube, "POST", defPath(APP_NS), definition("fields", { runner }));
    await waitReady(kube, APP_NS, "fields");
    const name = runnerName(APP_NS, "fields");
    const p0 = await podOf(name);
    expect(p0.nodeSelector).toEqual({ pool: "backup", disk: "ssd" });
    expect(p0.tolerations).toHaveLength(1);
    expect(p0.affinity).toBeDefined();
    expect(p0.containers[0]!.resources!.limits).toEqual({ cpu: "1", memory: "256Mi" });
    const patchDef = (body: unknown) => must(kube, "PATCH", defPath(APP_NS, "fields"), body, "application/merge-patch+json");
    // One map key.
    await patchDef({ spec: { runner: { nodeSelector: { disk: null } } } });
    await waitFor("nodeSelector key removed", async () => JSON.stringify((await podOf(name)).nodeSelector) === JSON.stringify({ pool: "backup" }));
    // Whole fields and one resource limit.
    await patchDef({ spec: { runner: { nodeSelector: null, tolerations: null, databaseAffinity: null, resources: { limits: { cpu: null } } } } });
    const p1 = await waitFor("fields removed", async () => {
      const p = await podOf(name);
      return p.nodeSelector === undefined && p.tolerations === undefined && p.affinity === undefined && p.containers[0]!.resources!.limits!["cpu"] === undefined ? p : undefined;
    });
    expect(p1.containers[0]!.resources).toEqual({ requests: { cpu: "100m", memory: "128Mi" }, limits: { memory: "256Mi" } });
    const def = await must<Obj>(kube, "GET", defPath(APP_NS, "fields"));
    expect((def.status as { observedGeneration: number }).observedGeneration).toBe(3);
    expect(await readyCondition(kube, APP_NS, "fields")).toMatchObject({ status: "True", reason: "Reconciled" });
    // The controller's imagePullSecrets emptied (a new setting, a restarted controller): gone from every runner.
    expect(p1.imagePullSecrets).toEqual([{ name: "regcred" }]);
    await app.stop();
    app = await startTestController({ kube, namespace: CTRL_NS, observe: (r) => requests.push(r), settings: { imagePullSecrets: [] } });
    await waitFor("imagePullSecrets removed", async () => (await podOf(name)).imagePullSecrets === undefined && (await podOf(runnerName(APP_NS, "orders"))).imagePullSecrets === undefined);
    await waitFor("leader", async () => app.isLeader() && app.controller()?.ready);
  });

  it("makes no write on a resync when another manager added a list entry, or the server rewrote a quantity", async () => {
    // 0.5 CPU and 1024Mi are stored as 500m and 1Gi.
    await must(kube, "POST", defPath(APP_NS), definition("shared", { runner: { tolerations: [{ key: "backup", operator: "Exists" }], resources: { requests: { cpu: "0.5", memory: "1024Mi" } } } }));
    await waitReady(kube, APP_NS, "shared");
    const name = runnerName(APP_NS, "shared");
    const live = await must<{ spec: { template: { spec: { tolerations: unknown[]; containers: { resources: { requests: Record<string, string> } }[] } } } }>(kube, "GET", stsPath(name));
    expect(live.spec.template.spec.containers[0]!.resources.requests).toEqual({ cpu: "500m", memory: "1Gi" });
    // Another field manager adds an env var to the runner container and a toleration (server-side apply).
    await kube.apply(stsPath(name), {
      apiVersion: "apps/v1",
      kind: "StatefulSet",
      metadata: { name, namespace: CTRL_NS },
      spec: { template: { spec: { containers: [{ name: "runner", env: [{ name: "EXTRA", value: "1" }] }], tolerations: [...live.spec.template.spec.tolerations, { key: "extra", operator: "Exists" }] } } },
    }, "other-tool");
    await idle();
    const w0 = writes();
    app.controller()!.resync();
    await idle();
    app.controller()!.resync();
    await idle();
    expect(requests.filter(isWrite).slice(w0)).toEqual([]);
    const after = await must<{ spec: { template: { spec: { tolerations: unknown[]; containers: { env: { name: string }[] }[] } } } }>(kube, "GET", stsPath(name));
    expect(after.spec.template.spec.containers[0]!.env.map((e) => e.name)).toContain("EXTRA");
    expect(after.spec.template.spec.tolerations).toHaveLength(2);
  });

  it("lists in pages and caches unrelated Secrets as metadata only; a restarted controller keeps every token and writes nothing", async () => {
    for (let i = 0; i < 12; i++) await must(kube, "POST", secretPath("other"), secretBody("other", `bulk-${i}`, { blob: "x".repeat(10_240) }));
    const name = runnerName(APP_NS, "orders");
    const token0 = (await must<Obj>(kube, "GET", secretPath(CTRL_NS, name))).data!["token"];
    await idle();
    await app.stop();
    const since: RequestRecord[] = [];
    app = await startTestController({ kube, namespace: CTRL_NS, observe: (r) => (requests.push(r), since.push(r)), settings: { imagePullSecrets: [], listPageSize: 5 } });
    await waitFor("leader", async () => app.isLeader() && app.controller()?.ready);
    await idle();
    const ctrl = app.controller()!;
    // 5 to a page: the controller namespace in full, then every namespace as metadata only.
    const count = async (p: string) => (await must<{ items: unknown[] }>(kube, "GET", p)).items.length;
    const [all, own] = [await count("/api/v1/secrets"), await count(secretPath(CTRL_NS))];
    expect(all).toBeGreaterThan(15);
    expect(since.filter((r) => r.verb === "list" && r.resource === "secrets").length).toBe(Math.ceil(all / 5) + Math.ceil(own / 5));
    expect(ctrl.secrets.get("other", "bulk-3")).toBeDefined();
    expect(ctrl.secrets.get("other", "bulk-3")!.data).toBeUndefined();
    expect(ctrl.secrets.get(CTRL_NS, name)!.data!["token"]).toBe(token0);
    // Every definition reconciled after the restart: tokens kept, nothing written.
    expect(since.filter(isWrite)).toEqual([]);
    expect((await must<Obj>(kube, "GET", secretPath(CTRL_NS, name))).data!["token"]).toBe(token0);
    // A referenced Secret of another namespace is read in full when needed, and its changes still roll the runner.
    await must(kube, "PUT", secretPath("other", "late-ref"), secretBody("other", "late-ref", { password: "after-restart" }));
    await waitFor("rotated after restart", async () => {
      const x = await must<Obj>(kube, "GET", secretPath(CTRL_NS, runnerName("other", "late")));
      return runnerConfig.parse(JSON.parse(Buffer.from(x.data!["config.json"]!, "base64").toString())).definition.clickhouse.password === "after-restart";
    });
  });

  it("replaces the StatefulSet when storageSize changes: deletes it (orphan), waits until it is gone, creates it anew; human messages", async () => {
    // Only a filesystem location gives the runner a volume claim.
    await must(kube, "POST", locPath(), { apiVersion: GV, kind: "StorageLocation", metadata: { name: "fs-resize", namespace: CTRL_NS }, spec: { filesystem: { path: "/backups" } } });
    await must(kube, "POST", defPath(APP_NS), definition("resize", { storageLocation: "fs-resize" }));
    await waitReady(kube, APP_NS, "resize");
    const name = runnerName(APP_NS, "resize");
    type Sts = Obj & { metadata: { deletionTimestamp?: string }; spec: { volumeClaimTemplates: { spec: { resources: { requests: { storage: string } }; storageClassName?: string } }[] } };
    const old = await must<Sts>(kube, "GET", stsPath(name));
    await must(kube, "PATCH", defPath(APP_NS, "resize"), { spec: { runner: { storageSize: "3Gi", storageClassName: "fast" } } }, "application/merge-patch+json");
    // The old StatefulSet is deleted with orphan propagation and the controller waits for it to go.
    const c = await waitReady(kube, APP_NS, "resize", "Replacing");
    expect(c.status).toBe("False");
    const terminating = await must<Sts>(kube, "GET", stsPath(name));
    expect(terminating.metadata.uid).toBe(old.metadata.uid);
    expect(terminating.metadata.deletionTimestamp).toBeDefined();
    expect(terminating.metadata.finalizers).toEqual(["orphan"]);
    await new Promise((r) => setTimeout(r, 1000));
    expect((await readyCondition(kube, APP_NS, "resize"))?.reason).toBe("Replacing");
    // No kube-controller-manager here: the test plays the garbage collector, which orphans the pods and
    // claims and then removes the finalizer.
    await must(kube, "PATCH", stsPath(name), { metadata: { finalizers: null } }, "application/merge-patch+json");
    await waitReady(kube, APP_NS, "resize", "Reconciled");
    const created = await must<Sts>(kube, "GET", stsPath(name));
    expect(created.metadata.uid).not.toBe(old.metadata.uid);
    expect(created.spec.volumeClaimTemplates[0]!.spec).toMatchObject({ resources: { requests: { storage: "3Gi" } }, storageClassName: "fast" });
    // Conditions and Events speak in sentences, never in API bodies or Go struct dumps.
    const events = await must<{ items: { reason: string; type: string; message: string; involvedObject: { name: string } }[] }>(kube, "GET", `/api/v1/namespaces/${APP_NS}/events`);
    const mine = events.items.filter((e) => e.involvedObject.name === "resize");
    expect(mine.map((e) => e.reason)).not.toContain("ApplyFailed");
    const replacing = mine.find((e) => e.reason === "Replacing")!;
    expect(replacing.message).toContain(`StatefulSet ${CTRL_NS}/${name}`);
    expect(replacing.message).toContain("storageSize");
    for (const m of [c.message, replacing.message]) {
      expect(m.length).toBeLessThan(400);
      expect(m).not.toMatch(/[{}\[\]]|Invalid value|"Spec"/);
    }
  });

  it("drops the volume claim template when a definition moves from a filesystem location to S3 (the StatefulSet is replaced)", async () => {
    await must(kube, "POST", locPath(), { apiVersion: GV, kind: "StorageLocation", metadata: { name: "fs-move", namespace: CTRL_NS }, spec: { filesystem: { path: "/backups" } } });
    await must(kube, "POST", defPath(APP_NS), definition("move", { storageLocation: "fs-move" }));
    await waitReady(kube, APP_NS, "move");
    const name = runnerName(APP_NS, "move");
    type Sts = Obj & { spec: { volumeClaimTemplates?: unknown[]; template: { spec: { volumes: { name: string; emptyDir?: unknown }[] } } } };
    const old = await must<Sts>(kube, "GET", stsPath(name));
    expect(old.spec.volumeClaimTemplates).toHaveLength(1);
    await must(kube, "PATCH", defPath(APP_NS, "move"), { spec: { storageLocation: "minio" } }, "application/merge-patch+json");
    await waitReady(kube, APP_NS, "move", "Replacing");
    await must(kube, "PATCH", stsPath(name), { metadata: { finalizers: null } }, "application/merge-patch+json");
    await waitReady(kube, APP_NS, "move", "Reconciled");
    const created = await must<Sts>(kube, "GET", stsPath(name));
    expect(created.metadata.uid).not.toBe(old.metadata.uid);
    expect(created.spec.volumeClaimTemplates).toBeUndefined();
    expect(created.spec.template.spec.volumes).toContainEqual({ name: "scratch", emptyDir: { sizeLimit: "2Gi" } });
  });

  it("reports an object the apiserver refuses as ApplyFailed in a sentence, and keeps the running StatefulSet", async () => {
    await must(kube, "POST", defPath(APP_NS), definition("refused"));
    await waitReady(kube, APP_NS, "refused");
    const name = runnerName(APP_NS, "refused");
    const before = await must<Obj>(kube, "GET", stsPath(name));
    // Valid for the CRD, refused by the StatefulSet's validation: not a reason to delete anything.
    await must(kube, "PATCH", defPath(APP_NS, "refused"), { spec: { runner: { nodeSelector: { "bad key!": "x" } } } }, "application/merge-patch+json");
    const c = await waitReady(kube, APP_NS, "refused", "ApplyFailed");
    expect(c.message).toContain(`StatefulSet ${CTRL_NS}/${name}`);
    expect(c.message).toContain("spec.template.spec.nodeSelector");
    expect(c.message).not.toMatch(/"kind"|"Status"|\{/);
    const after = await must<Obj & { metadata: { deletionTimestamp?: string } }>(kube, "GET", stsPath(name));
    expect(after.metadata.uid).toBe(before.metadata.uid);
    expect(after.metadata.deletionTimestamp).toBeUndefined();
    await must(kube, "PATCH", defPath(APP_NS, "refused"), { spec: { runner: { nodeSelector: null } } }, "application/merge-patch+json");
    await waitReady(kube, APP_NS, "refused", "Reconciled");
  });

  it("reports a missing StorageLocation or Secret as a condition and heals when it appears", async () => {
    await must(kube, "POST", defPath(APP_NS), definition("missing-loc", { storageLocation: "later" }));
    const c1 = await waitReady(kube, APP_NS, "missing-loc", "StorageLocationNotFound");
    expect(c1).toMatchObject({ status: "False", message: expect.stringContaining(`${CTRL_NS}/later`) });
    expect((await kube.request("GET", stsPath(runnerName(APP_NS, "missing-loc")))).status).toBe(404);
    await must(kube, "POST", locPath(), location("later"));
    await waitReady(kube, APP_NS, "missing-loc", "Reconciled");

    await must(kube, "POST", defPath(APP_NS), definition("missing-secret", { clickhouse: { url: "http://ch:8123", passwordSecretRef: { name: "not-yet", key: "pw" } } }));
    const c2 = await waitReady(kube, APP_NS, "missing-secret", "SecretNotFound");
    expect(c2.message).toContain("shop/not-yet");
    await must(kube, "POST", secretPath(APP_NS), secretBody(APP_NS, "not-yet", { other: "x" }));
    const c3 = await waitReady(kube, APP_NS, "missing-secret", "SecretKeyNotFound");
    expect(c3.message).toContain('"pw"');
    await must(kube, "PUT", secretPath(APP_NS, "not-yet"), secretBody(APP_NS, "not-yet", { pw: "finally" }));
    await waitReady(kube, APP_NS, "missing-secret", "Reconciled");
    await waitEvents(kube, APP_NS, "BackupDefinition", "missing-secret", ["Warning/SecretNotFound", "Warning/SecretKeyNotFound", "Normal/Reconciled"]);
  });

  it("rejects invalid specs: CEL and schema at the apiserver, the rest as InvalidSpec", async () => {
    const both = await kube.request("POST", locPath(), { ...location("both"), spec: { s3: { bucket: "abc" }, filesystem: { path: "/backups" } } });
    expect(both.status).toBe(422);
    expect(JSON.stringify(both.body)).toContain("exactly one of s3 or filesystem must be set");
    const single = await kube.request("POST", defPath(APP_NS), definition("bad-single", { mode: "single", schedule: undefined }));
    expect(single.status).toBe(422);
    expect(JSON.stringify(single.body)).toContain("singleBackup is required when mode is single");
    // An empty or all-zero retention would delete every backup but the newest: refused, naming spec.retention.
    for (const [name, retention] of [["empty-retention", {}], ["zero-retention", { hourly: 0, daily: 0 }]] as const) {
      const r = await kube.request("POST", `${defPath(APP_NS)}?dryRun=All`, definition(name, { retention }));
      expect(r.status, name).toBe(422);
      expect(JSON.stringify(r.body), name).toContain("spec.retention");
      expect(JSON.stringify(r.body), name).toContain("retention must keep at least one label");
    }
    // Single mode needs no retention.
    await must(kube, "POST", `${defPath(APP_NS)}?dryRun=All`, definition("single-no-retention", { mode: "single", schedule: undefined, singleBackup: { target: "exports/x" }, retention: {} }));
    // Valid for the schema, but not a real time zone: the controller says so.
    await must(kube, "POST", defPath(APP_NS), definition("bad-tz", { schedule: { cron: "0 * * * *", timeZone: "Mars/Olympus_Mons" } }));
    const c = await waitReady(kube, APP_NS, "bad-tz", "InvalidSpec");
    expect(c.message).toContain("schedule.timeZone");
    // Native backups need S3: a filesystem location is refused.
    await must(kube, "POST", locPath(), { apiVersion: GV, kind: "StorageLocation", metadata: { name: "disk", namespace: CTRL_NS }, spec: { filesystem: { path: "/backups" } } });
    await must(kube, "POST", defPath(APP_NS), definition("native-fs", { storageLocation: "disk", clickhouse: { url: "http://ch:8123", method: "native" } }));
    expect((await waitReady(kube, APP_NS, "native-fs", "InvalidSpec")).message).toContain("native");
  });

  it("refuses at admission what the runner would refuse later: a single-backup target outside the location, native with lz4, a cluster with native", async () => {
    const single = (target: string) => definition("single-target", { mode: "single", schedule: undefined, singleBackup: { target } });
    for (const target of ["../../etc", "exports/../../x", "a//b", "./x", "a\\b", "/"]) {
      const r = await kube.request("POST", `${defPath(APP_NS)}?dryRun=All`, single(target));
      expect(r.status, target).toBe(422);
      expect(JSON.stringify(r.body), target).toContain("spec.singleBackup.target");
      expect(JSON.stringify(r.body), target).toContain("must be a relative path inside the storage location");
    }
    for (const target of ["exports/2026-11-24", "/exports/x/", "a.b/c..d"]) await must(kube, "POST", `${defPath(APP_NS)}?dryRun=All`, single(target));
    const lz4 = await kube.request("POST", `${defPath(APP_NS)}?dryRun=All`, definition("native-lz4", { clickhouse: { url: "http://ch:8123", method: "native", compression: "lz4" } }));
    expect(lz4.status).toBe(422);
    expect(JSON.stringify(lz4.body)).toContain("spec.clickhouse.compression");
    expect(JSON.stringify(lz4.body)).toContain("applies to the dump method only");
    await must(kube, "POST", `${defPath(APP_NS)}?dryRun=All`, definition("native-zstd", { clickhouse: { url: "http://ch:8123", method: "native" } }));
    await must(kube, "POST", `${defPath(APP_NS)}?dryRun=All`, definition("dump-lz4", { clickhouse: { url: "http://ch:8123", compression: "lz4" } }));
    // a cluster is backed up with the dump method only (issue #16)
    const clusterNative = await kube.request("POST", `${defPath(APP_NS)}?dryRun=All`, definition("cluster-native", { clickhouse: { url: "http://ch:8123", method: "native", cluster: { name: "main" } } }));
    expect(clusterNative.status).toBe(422);
    expect(JSON.stringify(clusterNative.body)).toContain("spec.clickhouse.cluster");
    expect(JSON.stringify(clusterNative.body)).toContain("cluster backups use the dump method");
    await must(kube, "POST", `${defPath(APP_NS)}?dryRun=All`, definition("cluster-dump", { clickhouse: { url: "http://ch:8123", cluster: { name: "main", httpPort: 8123 } } }));
    // The StorageLocation's short name is not Velero's "bsl".
    const crd = await must<{ spec: { names: { shortNames: string[] } } }>(kube, "GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/storagelocations.chbackup.dev");
    expect(crd.spec.names.shortNames).not.toContain("bsl");
  });

  it("runner pod options: serviceAccountName mounts the token, pod labels and annotations, priorityClassName; reserved keys refused at admission; removal reaches the pod", async () => {
    for (const [field, key] of [["podLabels", "chbackup.dev/definition-name"], ["podLabels", "app.kubernetes.io/instance"], ["podAnnotations", "chbackup.dev/config-hash"]] as const) {
      const r = await kube.request("POST", `${defPath(APP_NS)}?dryRun=All`, definition("reserved", { runner: { [field]: { [key]: "x" } } }));
      expect(r.status, key).toBe(422);
      expect(JSON.stringify(r.body), key).toContain(`spec.runner.${field}`);
      expect(JSON.stringify(r.body), key).toContain("reserved for the controller");
    }
    type Tpl = { metadata: { labels: Record<string, string>; annotations: Record<string, string> }; spec: { serviceAccountName?: string; serviceAccount?: string; automountServiceAccountToken?: boolean; priorityClassName?: string } };
    const tplOf = async (name: string) => (await must<{ spec: { template: Tpl } }>(kube, "GET", stsPath(name))).spec.template;
    const runner = { serviceAccountName: "backup-irsa", podLabels: { team: "data" }, podAnnotations: { "example.com/note": "hi" }, priorityClassName: "backup-high" };
    await must(kube, "POST", defPath(APP_NS), definition("podopts", { runner }));
    await waitReady(kube, APP_NS, "podopts");
    const name = runnerName(APP_NS, "podopts");
    const t0 = await tplOf(name);
    expect(t0.spec).toMatchObject({ serviceAccountName: "backup-irsa", automountServiceAccountToken: true, priorityClassName: "backup-high" });
    expect(t0.metadata.labels).toMatchObject({ team: "data", "app.kubernetes.io/instance": name });
    expect(t0.metadata.annotations["example.com/note"]).toBe("hi");
    // Server-side mirroring (serviceAccount) and defaulting cost no write on a resync.
    await idle();
    const w0 = writes();
    app.controller()!.resync();
    await idle();
    expect(requests.filter(isWrite).slice(w0)).toEqual([]);
    await must(kube, "PATCH", defPath(APP_NS, "podopts"), { spec: { runner: { serviceAccountName: null, podLabels: null, podAnnotations: null, priorityClassName: null } } }, "application/merge-patch+json");
    const t1 = await waitFor("pod options removed", async () => {
      const t = await tplOf(name);
      return t.spec.serviceAccountName === undefined && t.spec.serviceAccount === undefined && t.spec.priorityClassName === undefined && t.metadata.labels["team"] === undefined && t.metadata.annotations["example.com/note"] === undefined ? t : undefined;
    });
    expect(t1.spec.automountServiceAccountToken).toBe(false);
  });

  it("replaces a ClusterIP Service an earlier version made with the headless one", async () => {
    const name = runnerName(APP_NS, "headless");
    // As an earlier version rendered it: same name, source annotation and field manager, but with a cluster IP.
    const labels = { "app.kubernetes.io/component": "backup-runner", "app.kubernetes.io/instance": name };
    await kube.apply(svcPath(name), { apiVersion: "v1", kind: "Service", metadata: { name, namespace: CTRL_NS, annotations: { [ANNOTATIONS.source]: `${APP_NS}/headless` } }, spec: { type: "ClusterIP", selector: labels, ports: [{ name: "http", port: 8080, targetPort: "http", protocol: "TCP" }] } }, "chbackup-controller");
    const old = await must<Obj & { spec: { clusterIP: string } }>(kube, "GET", svcPath(name));
    expect(old.spec.clusterIP).not.toBe("None");
    await must(kube, "POST", defPath(APP_NS), definition("headless"));
    const svc = await waitFor("headless Service", async () => {
      const r = await kube.request("GET", svcPath(name));
      const b = r.body as Obj & { spec: { clusterIP: string } };
      return r.status === 200 && b.spec.clusterIP === "None" ? b : undefined;
    });
    expect(svc.metadata.uid).not.toBe(old.metadata.uid);
    await waitReady(kube, APP_NS, "headless", "Reconciled");
  });

  it("shortens long names with a stable hash", async () => {
    const long = "a-very-long-definition-name-that-does-not-fit-in-a-statefulset";
    await must(kube, "POST", defPath(APP_NS), definition(long));
    await waitReady(kube, APP_NS, long);
    const name = runnerName(APP_NS, long);
    expect(name.length).toBeLessThanOrEqual(52);
    expect((await kube.request("GET", stsPath(name))).status).toBe(200);
  });

  it("gives team-a/x and team/a-x their own runner objects: neither overwrites nor deletes the other's", async () => {
    for (const ns of ["team-a", "team"]) {
      await createNamespace(kube, ns);
      await must(kube, "POST", secretPath(ns), secretBody(ns, "ch-password", { password: `password-of-${ns}` }));
    }
    const tenant = (ns: string, name: string) => ({ ...definition(name, { clickhouse: { url: `http://clickhouse.${ns}.svc:8123`, passwordSecretRef: { name: "ch-password", key: "password" } } }), metadata: { name, namespace: ns } });
    const configOf = async (secretName: string) => runnerConfig.parse(JSON.parse(Buffer.from((await must<Obj>(kube, "GET", secretPath(CTRL_NS, secretName))).data!["config.json"]!, "base64").toString()));
    const runnerOf = async (ns: string, name: string) => ((await must<Obj>(kube, "GET", defPath(ns, name))).status as { runner: { secret: string; statefulSet: string; service: string } }).runner;
    await must(kube, "POST", defPath("team-a"), tenant("team-a", "x"));
    await waitReady(kube, "team-a", "x");
    await must(kube, "POST", defPath("team"), tenant("team", "a-x"));
    await waitReady(kube, "team", "a-x");
    await idle();
    const [rx, rax] = [await runnerOf("team-a", "x"), await runnerOf("team", "a-x")];
    // Each definition's Secret holds its own ClickHouse and password, and names it as its source.
    const [cx, cax] = [await configOf(rx.secret), await configOf(rax.secret)];
    expect([cx.definition.namespace, cx.definition.clickhouse.url, cx.definition.clickhouse.password]).toEqual(["team-a", "http://clickhouse.team-a.svc:8123", "password-of-team-a"]);
    expect([cax.definition.namespace, cax.definition.clickhouse.url, cax.definition.clickhouse.password]).toEqual(["team", "http://clickhouse.team.svc:8123", "password-of-team"]);
    for (const [r, src] of [[rx, "team-a/x"], [rax, "team/a-x"]] as const) {
      for (const p of [secretPath(CTRL_NS, r.secret), stsPath(r.statefulSet), svcPath(r.service)]) expect((await must<Obj>(kube, "GET", p)).metadata.annotations?.[ANNOTATIONS.source], p).toBe(src);
    }
    expect(new Set([rx.secret, rx.statefulSet, rx.service, rax.secret, rax.statefulSet, rax.service]).size).toBe(2);
    // Deleting one leaves the other's objects in place.
    await must(kube, "DELETE", defPath("team", "a-x"));
    await waitFor("team/a-x gone", async () => (await kube.request("GET", defPath("team", "a-x"))).status === 404);
    await idle();
    for (const p of [secretPath(CTRL_NS, rx.secret), stsPath(rx.statefulSet), svcPath(rx.service)]) expect((await kube.request("GET", p)).status, p).toBe(200);
    expect((await configOf(rx.secret)).definition.clickhouse.url).toBe("http://clickhouse.team-a.svc:8123");
    expect((await readyCondition(kube, "team-a", "x"))?.status).toBe("True");
  });

  it("never writes or deletes an object whose source annotation names another definition: Ready=False NameConflict", async () => {
    const name = runnerName(APP_NS, "taken");
    // A Secret that holds the runner's name and says it stands for shop/orders (a copy made by hand,
    // say), and a Service of the same name that stands for nothing of ours.
    const foreign = { ...(secretBody(CTRL_NS, name, { "config.json": "{}" }) as Obj), metadata: { name, namespace: CTRL_NS, annotations: { [ANNOTATIONS.source]: "shop/orders" } } };
    const before = await must<Obj>(kube, "POST", secretPath(CTRL_NS), foreign);
    const svcBefore = await must<Obj>(kube, "POST", svcPath(), { apiVersion: "v1", kind: "Service", metadata: { name, namespace: CTRL_NS }, spec: { ports: [{ port: 80 }] } });
    await must(kube, "POST", defPath(APP_NS), definition("taken"));
    const c = await waitReady(kube, APP_NS, "taken", "NameConflict");
    expect(c.status).toBe("False");
    expect(c.message).toContain(`Secret ${CTRL_NS}/${name} exists and belongs to BackupDefinition shop/orders`);
    expect(c.message).toContain(`Service ${CTRL_NS}/${name} exists and belongs to no BackupDefinition`);
    await idle();
    expect((await must<Obj>(kube, "GET", secretPath(CTRL_NS, name))).metadata.resourceVersion).toBe(before.metadata.resourceVersion);
    expect((await kube.request("GET", stsPath(name))).status).toBe(404);
    const events = await must<{ items: { reason: string; type: string; involvedObject: { name: string } }[] }>(kube, "GET", `/api/v1/namespaces/${APP_NS}/events`);
    expect(events.items.filter((e) => e.involvedObject.name === "taken").map((e) => `${e.type}/${e.reason}`)).toContain("Warning/NameConflict");
    // Deleting the definition leaves the other definition's Secret alone.
    await must(kube, "DELETE", defPath(APP_NS, "taken"));
    await waitFor("definition gone", async () => (await kube.request("GET", defPath(APP_NS, "taken"))).status === 404);
    await idle();
    expect((await must<Obj>(kube, "GET", secretPath(CTRL_NS, name))).metadata.resourceVersion).toBe(before.metadata.resourceVersion);
    expect((await must<Obj>(kube, "GET", svcPath(name))).metadata.resourceVersion).toBe(svcBefore.metadata.resourceVersion);
    // shop/orders itself is not bothered by a foreign copy under another name.
    expect((await readyCondition(kube, APP_NS, "orders"))?.reason).toBe("Reconciled");
    await must(kube, "DELETE", secretPath(CTRL_NS, name));
    await must(kube, "DELETE", svcPath(name));
  });

  it("after an upgrade, removes the definition's objects under the old runner-<ns>-<name> name", async () => {
    // What the previous version left: objects named runner-shop-legacy, labelled and annotated for shop/legacy.
    const old = "runner-shop-legacy";
    const labels = { [LABELS.managedBy]: "chbackup-controller", [LABELS.sourceNamespace]: APP_NS, [LABELS.sourceName]: "legacy", [LABELS.instance]: old };
    const metadata = { name: old, namespace: CTRL_NS, labels, annotations: { [ANNOTATIONS.source]: "shop/legacy" } };
    const sel = { "app.kubernetes.io/component": "backup-runner", [LABELS.instance]: old };
    await kube.apply(secretPath(CTRL_NS, old), { apiVersion: "v1", kind: "Secret", metadata, data: { token: Buffer.from("old-token").toString("base64") } }, "chbackup-controller");
    await kube.apply(svcPath(old), { apiVersion: "v1", kind: "Service", metadata, spec: { selector: sel, ports: [{ name: "http", port: 8080 }] } }, "chbackup-controller");
    await kube.apply(stsPath(old), { apiVersion: "apps/v1", kind: "StatefulSet", metadata, spec: { replicas: 1, serviceName: old, selector: { matchLabels: sel }, template: { metadata: { labels: sel }, spec: { containers: [{ name: "runner", image: "old" }] } } } }, "chbackup-controller");
    await must(kube, "POST", defPath(APP_NS), definition("legacy"));
    await waitReady(kube, APP_NS, "legacy");
    const runner = ((await must<Obj>(kube, "GET", defPath(APP_NS, "legacy"))).status as { runner: { statefulSet: string } }).runner;
    expect(runner.statefulSet).toBe(runnerName(APP_NS, "legacy"));
    expect(runner.statefulSet).not.toBe(old);
    await waitFor("old objects removed", async () => {
      const st = await Promise.all([stsPath(old), svcPath(old), secretPath(CTRL_NS, old)].map(async (p) => (await kube.request("GET", p)).status));
      return st.every((s) => s === 404);
    });
    expect((await kube.request("GET", stsPath(runner.statefulSet))).status).toBe(200);
  });

  it("reports each StorageLocation's readiness in its status, with Events", async () => {
    type Loc = Obj & { metadata: { generation: number }; status?: { observedGeneration?: number; conditions?: { type: string; status: string; reason: string; message: string }[] } };
    const readyOf = async (name: string, ns = CTRL_NS) => (await must<Loc>(kube, "GET", `/apis/${GV}/namespaces/${ns}/storagelocations/${name}`)).status?.conditions?.find((c) => c.type === "Ready");
    const minio = await waitFor("minio Available", async () => ((await readyOf("minio"))?.reason === "Available" ? readyOf("minio") : undefined));
    expect(minio).toMatchObject({ status: "True", message: expect.stringContaining("S3 bucket backups") });
    expect((await must<Loc>(kube, "GET", locPath("minio"))).status?.observedGeneration).toBe((await must<Loc>(kube, "GET", locPath("minio"))).metadata.generation);
    // Its credentials Secret is missing, then has no such key, then is complete.
    await must(kube, "POST", locPath(), { ...location("no-creds"), spec: { s3: { bucket: "backups", credentialsSecretRef: { name: "absent-creds" } } } });
    const c1 = await waitFor("SecretNotFound", async () => ((await readyOf("no-creds"))?.reason === "SecretNotFound" ? readyOf("no-creds") : undefined));
    expect(c1).toMatchObject({ status: "False", message: expect.stringContaining(`Secret ${CTRL_NS}/absent-creds`) });
    await must(kube, "POST", secretPath(CTRL_NS), secretBody(CTRL_NS, "absent-creds", { accessKeyId: "a" }));
    await waitFor("SecretKeyNotFound", async () => (await readyOf("no-creds"))?.reason === "SecretKeyNotFound");
    await must(kube, "PUT", secretPath(CTRL_NS, "absent-creds"), secretBody(CTRL_NS, "absent-creds", { accessKeyId: "a", secretAccessKey: "b" }));
    await waitFor("Available", async () => (await readyOf("no-creds"))?.reason === "Available");
    await waitEvents(kube, CTRL_NS, "StorageLocation", "no-creds", ["Warning/SecretNotFound", "Warning/SecretKeyNotFound", "Normal/Available"]);
    // No further writes once it is as it should be.
    await idle();
    const w0 = writes();
    app.controller()!.resync();
    await idle();
    expect(requests.filter(isWrite).slice(w0)).toEqual([]);
  });

  it("allowedNamespaces: a definition elsewhere gets StorageLocationNotAllowed until its namespace is named or labelled", async () => {
    await createNamespace(kube, "team-b");
    await must(kube, "POST", secretPath("team-b"), secretBody("team-b", "ch-password", { password: "b" }));
    await must(kube, "POST", locPath(), { ...location("restricted"), spec: { ...location().spec, allowedNamespaces: { names: [APP_NS], selector: { matchLabels: { "backup.example/allowed": "yes" } } } } });
    // Named: allowed.
    await must(kube, "POST", defPath(APP_NS), definition("restricted-ok", { storageLocation: "restricted" }));
    await waitReady(kube, APP_NS, "restricted-ok");
    // Neither named nor labelled: refused, nothing created.
    await must(kube, "POST", defPath("team-b"), { ...definition("x", { storageLocation: "restricted" }), metadata: { name: "x", namespace: "team-b" } });
    const c = await waitReady(kube, "team-b", "x", "StorageLocationNotAllowed");
    expect(c.status).toBe("False");
    expect(c.message).toContain(`StorageLocation ${CTRL_NS}/restricted does not allow namespace team-b`);
    expect(c.message).toContain("backup.example/allowed=yes");
    expect((await kube.request("GET", stsPath(runnerName("team-b", "x")))).status).toBe(404);
    // The namespace gets the label: allowed from then on.
    await must(kube, "PATCH", "/api/v1/namespaces/team-b", { metadata: { labels: { "backup.example/allowed": "yes" } } }, "application/merge-patch+json");
    await waitReady(kube, "team-b", "x");
    // {} is refused at admission: it would allow nothing, which is surely not meant.
    const empty = await kube.request("POST", `${locPath()}?dryRun=All`, { ...location("empty-allowed"), spec: { ...location().spec, allowedNamespaces: {} } });
    expect(empty.status).toBe(422);
    expect(JSON.stringify(empty.body)).toContain("allowedNamespaces needs names or a selector");
  });

  it("warns about a StorageLocation outside the controller's namespace, and shows a deleted one on the definitions that use it", async () => {
    await createNamespace(kube, "stray");
    await must(kube, "POST", `/apis/${GV}/namespaces/stray/storagelocations`, { ...location("elsewhere"), metadata: { name: "elsewhere", namespace: "stray" } });
    const warned = await waitFor("warning event", async () => {
      const ev = await must<{ items: { reason: string; type: string; message: string; involvedObject: { kind: string; name: string } }[] }>(kube, "GET", "/api/v1/namespaces/stray/events");
      return ev.items.find((e) => e.involvedObject.kind === "StorageLocation" && e.involvedObject.name === "elsewhere");
    });
    expect(warned).toMatchObject({ type: "Warning", reason: "NotInControllerNamespace", message: expect.stringContaining(`controller's namespace ${CTRL_NS} only`) });
    // Deleting a location in use: each definition that uses it turns Ready=False (with an Event); its runner keeps running.
    await must(kube, "POST", locPath(), location("temporary"));
    await must(kube, "POST", defPath(APP_NS), definition("on-temporary", { storageLocation: "temporary" }));
    await waitReady(kube, APP_NS, "on-temporary");
    await must(kube, "DELETE", locPath("temporary"));
    const gone = await waitReady(kube, APP_NS, "on-temporary", "StorageLocationNotFound");
    expect(gone.message).toContain(`StorageLocation ${CTRL_NS}/temporary not found`);
    expect((await kube.request("GET", stsPath(runnerName(APP_NS, "on-temporary")))).status).toBe(200);
    await must(kube, "POST", locPath(), location("temporary"));
    await waitReady(kube, APP_NS, "on-temporary");
  });

  it("removes the runner objects when the definition is deleted, and sweeps orphans", async () => {
    await must(kube, "DELETE", defPath(APP_NS, "missing-loc"));
    await waitFor("definition gone", async () => (await kube.request("GET", defPath(APP_NS, "missing-loc"))).status === 404);
    for (const p of [stsPath(runnerName(APP_NS, "missing-loc")), svcPath(runnerName(APP_NS, "missing-loc")), secretPath(CTRL_NS, runnerName(APP_NS, "missing-loc"))]) {
      expect((await kube.request("GET", p)).status).toBe(404);
    }
    // Orphans: the controller is away, the finalizer is removed by force and the definition deleted.
    await app.stop();
    await must(kube, "PATCH", defPath(APP_NS, "missing-secret"), { metadata: { finalizers: null } }, "application/merge-patch+json");
    await must(kube, "DELETE", defPath(APP_NS, "missing-secret"));
    expect((await kube.request("GET", stsPath(runnerName(APP_NS, "missing-secret")))).status).toBe(200);
    app = await startTestController({ kube, namespace: CTRL_NS, observe: (r) => requests.push(r) });
    await waitFor("orphans swept", async () => {
      const st = await Promise.all([stsPath(runnerName(APP_NS, "missing-secret")), svcPath(runnerName(APP_NS, "missing-secret")), secretPath(CTRL_NS, runnerName(APP_NS, "missing-secret"))].map(async (p) => (await kube.request("GET", p)).status));
      return st.every((s) => s === 404);
    });
    // Objects of live definitions are untouched.
    expect((await kube.request("GET", stsPath(runnerName(APP_NS, "orders")))).status).toBe(200);
    expect((await readyCondition(kube, APP_NS, "orders"))?.status).toBe("True");
  });

  it("lets only the leader reconcile; a second instance takes over when the first stops", async () => {
    await waitFor("first instance leads", async () => app.isLeader());
    const secondRequests: RequestRecord[] = [];
    const second = await startTestController({ kube, namespace: CTRL_NS, identity: "second", observe: (r) => secondRequests.push(r) });
    try {
      await new Promise((r) => setTimeout(r, 1500));
      expect(second.isLeader()).toBe(false);
      await must(kube, "POST", defPath(APP_NS), definition("while-first-leads"));
      await waitReady(kube, APP_NS, "while-first-leads");
      // The standby only looked at the Lease.
      expect(new Set(secondRequests.map((r) => `${r.verb} ${r.resource}`))).toEqual(new Set(["get leases"]));
      await app.stop();
      await waitFor("second instance leads", async () => second.isLeader() && second.controller()?.ready, 15_000);
      await must(kube, "POST", defPath(APP_NS), definition("after-failover"));
      await waitReady(kube, APP_NS, "after-failover");
      const lease = await must<{ spec: { holderIdentity: string; leaseTransitions: number } }>(kube, "GET", `/apis/coordination.k8s.io/v1/namespaces/${CTRL_NS}/leases/chbackup-controller`);
      expect(lease.spec.holderIdentity).toBe("second");
    } finally {
      await second.stop();
    }
  });
});
