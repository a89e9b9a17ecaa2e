// The whole pipeline, end to end, on real servers: kube-apiserver + etcd,
// ClickHouse 18.16 and MinIO. There is no kubelet here, so the test plays its
// part: it reads the config Secret the controller wrote, starts
// `backup-runner serve` as a process with exactly that config (as the
// StatefulSet's pod would; RUNNER_LISTEN keeps it on loopback), and talks to
// it over HTTP as a client of the runner Service would.
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { ListMultipartUploadsCommand, ListObjectsV2Command, type S3Client } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runnerConfig } from "../pkg/apis/index.ts";
import { ANNOTATIONS, LABELS, runnerName, type ControllerApp } from "../pkg/controller/index.ts";
import { startClickHouse, startKubeApiServer, startMinio, makeTempDir, removeDir, repoRoot, freePort, type ClickHouseServer, type KubeApiServer, type MinioServer } from "./env/index.ts";
import { startProcess, waitUntil, type ManagedProcess } from "./env/proc.ts";
import { apiClient, parsePrometheusText, pollJson } from "./helpers/api-http.ts";
import { GV, createNamespace, installCrds, must, secretBody, startTestController, waitFor, waitReady } from "./helpers/kube.ts";
import { tableChecksum } from "./helpers/runner.ts";

const CTRL_NS = "chbackup-system";
const APP_NS = "shop";
const PREFIX = "e2e";

interface RunnerProc {
  url: string;
  token: string;
  proc: ManagedProcess;
  api: ReturnType<typeof apiClient>;
}

describe("end to end: definition in, restored data out", () => {
  let kube: KubeApiServer;
  let minio: MinioServer;
  let ch: ClickHouseServer;
  let bucket: string;
  let s3: S3Client;
  let dir: string;
  let app: ControllerApp;
  const runners = new Map<string, RunnerProc>();

  const defPath = (name = "") => `/apis/${GV}/namespaces/${APP_NS}/backupdefinitions${name ? `/${name}` : ""}`;
  const definition = (name: string, spec: Record<string, unknown>) => ({
    apiVersion: GV,
    kind: "BackupDefinition",
    metadata: { name, namespace: APP_NS },
    spec: {
      storageLocation: "minio",
      clickhouse: { url: ch.url, username: ch.username, passwordSecretRef: { name: "clickhouse", key: "password" }, databases: { include: ["shop"] } },
      ...spec,
    },
  });

  /** What the kubelet would do: mount the runner Secret and start the container. */
  async function startRunner(defName: string): Promise<RunnerProc> {
    const name = runnerName(APP_NS, defName);
    await stopRunner(defName);
    const secret = await must<{ data: Record<string, string> }>(kube, "GET", `/api/v1/namespaces/${CTRL_NS}/secrets/${name}`);
    // The pod's scratch volume (definition.stateDir lies on it) is a directory of its own per runner, kept across restarts.
    const config = JSON.parse(Buffer.from(secret.data["config.json"]!, "base64").toString("utf8")) as { definition: { stateDir?: string } };
    expect(config.definition.stateDir).toBe("/var/lib/backup-runner/state");
    config.definition.stateDir = join(dir, `${name}-volume`, "state");
    const configJson = JSON.stringify(config);
    const token = Buffer.from(secret.data["token"]!, "base64").toString("utf8");
    const path = join(dir, `${name}.json`);
    await writeFile(path, configJson, { mode: 0o600 });
    const port = await freePort();
    const proc = startProcess("backup-runner", join(repoRoot, "bin", "backup-runner"), ["serve", "--config", path], {
      env: { RUNNER_LISTEN: `127.0.0.1:${port}`, LOG_LEVEL: "info", RUNNER_SHUTDOWN_GRACE_MS: "10000" },
      logFile: join(dir, `${name}.log`),
    });
    const url = `http://127.0.0.1:${port}`;
    await waitUntil(`runner ${name} ready`, async () => (await fetch(`${url}/readyz`)).ok, { proc, timeoutMs: 60_000 });
    const r = { url, token, proc, api: apiClient(url, token) };
    runners.set(name, r);
    return r;
  }
  async function stopRunner(defName: string): Promise<void> {
    const name = runnerName(APP_NS, defName);
    await runners.get(name)?.proc.stop(15_000);
    runners.delete(name);
  }
  /**
   * The bucket's keys under a prefix, without the readiness probe's own object: /readyz (which the
   * controller's status poll calls too) writes and deletes one in the runner's prefix, and it may
   * exist for a moment. It is nobody's backup.
   */
  async function keys(prefix: string): Promise<string[]> {
    const out: string[] = [];
    let token: string | undefined;
    do {
      const r = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ...(token ? { ContinuationToken: token } : {}) }));
      out.push(...(r.Contents ?? []).map((c) => c.Key!));
      token = r.NextContinuationToken;
    } while (token);
    return out.filter((k) => !/\/readyz-probe-[0-9a-f]+$/.test(k)).sort();
  }
  const backupIds = (ks: string[], prefix: string) => [...new Set(ks.filter((k) => k.endsWith("/manifest.json")).map((k) => k.slice(prefix.length).split("/")[0]!))].sort();
  // MinIO's ListMultipartUploads takes no real prefix (only an exact key): list all, filter here.
  const uploads = async (prefix: string) => ((await s3.send(new ListMultipartUploadsCommand({ Bucket: bucket }))).Uploads ?? []).filter((u) => u.Key?.startsWith(prefix));
  const counter = async (r: RunnerProc, name: string) => parsePrometheusText((await r.api.get("/metrics")).text).get(name) ?? 0;

  beforeAll(async () => {
    [kube, minio, ch, dir] = await Promise.all([startKubeApiServer(), startMinio(), startClickHouse(), makeTempDir("e2e")]);
    bucket = await minio.createBucket();
    s3 = minio.s3();
    await installCrds(kube);
    for (const ns of [CTRL_NS, APP_NS, "many"]) await createNamespace(kube, ns);
    await must(kube, "POST", `/api/v1/namespaces/${APP_NS}/secrets`, secretBody(APP_NS, "clickhouse", { password: ch.password }));
    await must(kube, "POST", `/api/v1/namespaces/${CTRL_NS}/secrets`, secretBody(CTRL_NS, "minio", { accessKeyId: minio.accessKeyId, secretAccessKey: minio.secretAccessKey }));
    await must(kube, "POST", `/apis/${GV}/namespaces/${CTRL_NS}/storagelocations`, {
      apiVersion: GV,
      kind: "StorageLocation",
      metadata: { name: "minio", namespace: CTRL_NS },
      spec: { s3: { endpoint: minio.endpoint, bucket, prefix: PREFIX, forcePathStyle: true, partSizeMiB: 5, credentialsSecretRef: { name: "minio" } } },
    });
    await ch.exec("CREATE DATABASE shop");
    await ch.exec("CREATE TABLE shop.orders (id UInt64, customer UInt32, amount Decimal(18, 2), note String) ENGINE = MergeTree ORDER BY id");
    await ch.exec("INSERT INTO shop.orders SELECT number, number % 1000, toDecimal64(number % 10000, 2) / 100, concat('order ', toString(number)) FROM system.numbers LIMIT 200000");
    await ch.exec("CREATE VIEW shop.big_orders AS SELECT * FROM shop.orders WHERE amount > 90");
    // The controller reads each runner's newest backup through its "Service": here, the runner process.
    app = await startTestController({
      kube,
      namespace: CTRL_NS,
      settings: { runnerStatusSeconds: 1 },
      runnerUrl: (svc) => runners.get(svc.name)?.url ?? "http://127.0.0.1:9",
    });
    await waitFor("controller leading", async () => app.isLeader() && app.controller()?.ready);
  });
  afterAll(async () => {
    for (const r of runners.values()) await r.proc.stop(15_000);
    await app?.stop();
    await Promise.all([kube?.stop(), minio?.stop(), ch?.stop()]);
    await removeDir(dir);
  });

  let pinned = "";

  it("scheduled flow: backups appear in MinIO with manifests, retention removes the expected ones", async () => {
    await must(kube, "POST", defPath(), definition("orders", { schedule: { cron: "*/2 * * * * *", timeZone: "UTC" }, retention: { hourly: 1 } }));
    await waitReady(kube, APP_NS, "orders");
    const r = await startRunner("orders");
    // At least four scheduled backups.
    await waitFor("4 backups", async () => (await counter(r, 'chbackup_runner_operations_total{kind="backup",result="succeeded"}')) >= 4, 90_000, 250);
    const prefix = `${PREFIX}/${APP_NS}/orders/`;
    // Backups keep coming every 2 s: compare the API and the bucket at a moment when the API's
    // list did not change around the bucket listing.
    const { listed, inBucket } = await waitFor("a stable view of the catalog", async () => {
      const a = await pollJson(() => r.api.get("/api/v1/backups"), (j) => j.backups.length > 0);
      const bucketIds = backupIds(await keys(prefix), prefix);
      const b = (await r.api.get("/api/v1/backups")).json as { backups: { id: string }[] };
      const same = JSON.stringify(a.backups.map((x: { id: string }) => x.id)) === JSON.stringify(b.backups.map((x) => x.id));
      // (A retention deletion can be half done at the instant of the bucket listing: look again then.)
      const listedInBucket = a.backups.every((x: { id: string }) => bucketIds.includes(x.id));
      return same && listedInBucket ? { listed: a, inBucket: bucketIds } : undefined;
    }, 30_000, 50);
    const ids = (listed.backups as { id: string }[]).map((b) => b.id).sort();
    // hourly: 1 keeps the first backup of the current hour plus the newest; everything in between was deleted.
    expect(ids.length).toBeLessThanOrEqual(2);
    for (const id of ids) expect(inBucket).toContain(id);
    const newest = listed.backups[0] as { id: string; labels: string[] };
    const older = listed.backups.slice(1) as { labels: string[] }[];
    for (const b of older) expect(b.labels).toEqual(["hourly"]);
    expect(inBucket.filter((id) => !ids.includes(id)).length).toBeLessThanOrEqual(1); // at most one backup finishing right now
    // The controller shows the newest backup on the definition (the Last Backup column).
    const last = await waitFor("status.lastBackup", async () => {
      const d = await must<{ status?: { lastBackup?: { id: string; time: string } } }>(kube, "GET", defPath("orders"));
      return d.status?.lastBackup;
    }, 30_000, 250);
    expect(last.id).toMatch(/^\d{8}T\d{6}Z-[0-9a-f]{6}$/);
    // Keep the newest for the restore below. Retention deletes an unlabelled newest backup as soon as a
    // newer one commits (every 2 s here), so pin whichever is newest at the moment of pinning.
    pinned = await waitFor("a pinned backup", async () => {
      const id = ((await r.api.get("/api/v1/backups")).json as { backups: { id: string }[] }).backups[0]?.id;
      return id !== undefined && (await r.api.post(`/api/v1/backups/${id}/pin`)).status === 200 ? id : undefined;
    }, 30_000, 100);
    expect(pinned >= newest.id).toBe(true);
    // Its manifest lists the table with its rows.
    const man = await pollJson(() => r.api.get(`/api/v1/backups/${pinned}`), () => true);
    expect(JSON.stringify(man)).toContain("orders");
  });

  it("restore flow: data dropped in ClickHouse, restored through the runner API, equals the source", async () => {
    const r = runners.get(runnerName(APP_NS, "orders"))!;
    const before = await tableChecksum(ch, "shop.orders");
    expect(before.rows).toBe(200000);
    await ch.exec("DROP DATABASE shop");
    const res = await r.api.post("/api/v1/restores", { backup: pinned, databases: ["shop"], existingTables: "fail" });
    expect(res.status).toBe(202);
    const id = (res.json as { operation: { id: string } }).operation.id;
    const done = await pollJson(() => r.api.get(`/api/v1/restores/${id}`), (j) => j.operation.state !== "running", 120_000, 200);
    expect(done.operation.state).toBe("succeeded");
    expect(await tableChecksum(ch, "shop.orders")).toEqual(before);
    const views = await ch.query<{ name: string }>("SELECT name FROM system.tables WHERE database = 'shop' ORDER BY name");
    expect(views.map((v) => v.name)).toEqual(["big_orders", "orders"]);
  });

  it("update flow: a rotated password reaches the runner through a new config Secret", async () => {
    const name = runnerName(APP_NS, "orders");
    const hash0 = (await must<{ spec: { template: { metadata: { annotations: Record<string, string> } } } }>(kube, "GET", `/apis/apps/v1/namespaces/${CTRL_NS}/statefulsets/${name}`)).spec.template.metadata.annotations[ANNOTATIONS.configHash];
    const oldToken = runners.get(name)!.token;
    const newPassword = "rotated-e2e-password";
    await ch.setPassword(newPassword);
    await must(kube, "PUT", `/api/v1/namespaces/${APP_NS}/secrets/clickhouse`, secretBody(APP_NS, "clickhouse", { password: newPassword }));
    await waitFor("config Secret with the new password", async () => {
      const s = await must<{ data: Record<string, string> }>(kube, "GET", `/api/v1/namespaces/${CTRL_NS}/secrets/${name}`);
      return runnerConfig.parse(JSON.parse(Buffer.from(s.data["config.json"]!, "base64").toString())).definition.clickhouse.password === newPassword;
    });
    // The StatefulSet's pod template changes, so it rolls its pod: here, the test restarts the runner.
    await waitFor("new config hash on the pod template", async () => {
      const sts = await must<{ spec: { template: { metadata: { annotations: Record<string, string> } } } }>(kube, "GET", `/apis/apps/v1/namespaces/${CTRL_NS}/statefulsets/${name}`);
      return sts.spec.template.metadata.annotations[ANNOTATIONS.configHash] !== hash0;
    });
    const r = await startRunner("orders");
    expect(r.token).toBe(oldToken); // clients keep their token
    const ready = await pollJson(() => r.api.get("/readyz"), (j) => j.checks?.engine === "ok");
    expect(ready.checks.engine).toBe("ok");
    const n0 = await counter(r, 'chbackup_runner_operations_total{kind="backup",result="succeeded"}');
    await waitFor("a backup with the new password", async () => (await counter(r, 'chbackup_runner_operations_total{kind="backup",result="succeeded"}')) > n0, 30_000, 250);
    await stopRunner("orders");
  });

  it("single-backup flow: exactly one backup at the target, nothing else written", async () => {
    const before = await keys(`${PREFIX}/`);
    await must(kube, "POST", defPath(), definition("export", { mode: "single", singleBackup: { target: "exports/shop-2026" } }));
    await waitReady(kube, APP_NS, "export");
    const r = await startRunner("export");
    await pollJson(() => r.api.get("/api/v1/status"), (j) => j.lastSuccess?.backup?.state === "succeeded", 60_000, 200);
    await stopRunner("export");
    const after = await keys(`${PREFIX}/`);
    const added = after.filter((k) => !before.includes(k));
    expect(added.length).toBeGreaterThan(0);
    for (const k of added) expect(k.startsWith(`${PREFIX}/exports/shop-2026/`)).toBe(true);
    expect(added.filter((k) => k.endsWith("manifest.json"))).toEqual([`${PREFIX}/exports/shop-2026/manifest.json`]);
    expect(after.filter((k) => !added.includes(k))).toEqual(before);
    // A restarted single-mode runner does not take it again.
    const again = await startRunner("export");
    await new Promise((res) => setTimeout(res, 1500));
    expect((await again.api.get("/api/v1/status")).json).toMatchObject({ current: null });
    await stopRunner("export");
    expect(await keys(`${PREFIX}/`)).toEqual(after);
  });

  it("deletion: runner objects go, backups in the bucket stay", async () => {
    const prefix = `${PREFIX}/${APP_NS}/orders/`;
    const before = await keys(prefix);
    expect(before.length).toBeGreaterThan(0);
    await must(kube, "DELETE", defPath("orders"));
    await waitFor("definition gone", async () => (await kube.request("GET", defPath("orders"))).status === 404);
    const name = runnerName(APP_NS, "orders");
    for (const p of [`/apis/apps/v1/namespaces/${CTRL_NS}/statefulsets/${name}`, `/api/v1/namespaces/${CTRL_NS}/services/${name}`, `/api/v1/namespaces/${CTRL_NS}/secrets/${name}`]) {
      expect((await kube.request("GET", p)).status).toBe(404);
    }
    expect(await keys(prefix)).toEqual(before);
  });

  it("fault: runner killed with SIGKILL mid-backup; on restart nothing incomplete is listed, leftovers are cleaned, the next backup succeeds", async () => {
    await ch.exec("CREATE TABLE shop.big (id UInt64, s String, f Float64) ENGINE = MergeTree ORDER BY id");
    await ch.exec("INSERT INTO shop.big SELECT number, concat('row-', toString(rand64())), rand() / 7 FROM system.numbers LIMIT 4000000");
    await must(kube, "POST", defPath(), definition("big", { schedule: { cron: "0 0 1 1 *", timeZone: "UTC" }, clickhouse: { url: ch.url, username: ch.username, passwordSecretRef: { name: "clickhouse", key: "password" }, databases: { include: ["shop"] }, compressionLevel: 9 } }));
    await waitReady(kube, APP_NS, "big");
    const prefix = `${PREFIX}/${APP_NS}/big/`;
    let r = await startRunner("big");
    // The start-up ran the missed backup: wait for it, then take one more and kill the runner mid-upload.
    await pollJson(() => r.api.get("/api/v1/status"), (j) => j.current === null && j.backups >= 1, 120_000, 200);
    const complete = backupIds(await keys(prefix), prefix);
    expect(complete).toHaveLength(1);
    expect((await r.api.post("/api/v1/backups")).status).toBe(202);
    await waitFor("multipart upload under way", async () => (await uploads(prefix)).length > 0, 60_000, 50);
    await r.proc.kill();
    runners.delete(runnerName(APP_NS, "big"));
    const leftovers = (await keys(prefix)).filter((k) => !complete.some((id) => k.startsWith(`${prefix}${id}/`)));
    const pending = await uploads(prefix);
    expect(leftovers.length + pending.length).toBeGreaterThan(0); // the kill left something behind
    r = await startRunner("big");
    const listed = await pollJson(() => r.api.get("/api/v1/backups"), () => true);
    expect((listed.backups as { id: string }[]).map((b) => b.id)).toEqual(complete);
    // Start-up cleaned the incomplete backup's objects and its multipart upload.
    expect((await keys(prefix)).filter((k) => !complete.some((id) => k.startsWith(`${prefix}${id}/`)))).toEqual([]);
    expect(await uploads(prefix)).toEqual([]);
    const res = await r.api.post("/api/v1/backups");
    expect(res.status).toBe(202);
    const opId = (res.json as { operation: { id: string } }).operation.id;
    const op = await pollJson(() => r.api.get(`/api/v1/operations/${opId}`), (j) => j.operation.state !== "running", 180_000, 250);
    expect(op.operation.state).toBe("succeeded");
    expect(backupIds(await keys(prefix), prefix)).toHaveLength(2);
    await stopRunner("big");
  });

  it("fault: controller restarted mid-reconcile converges with no duplicate objects", async () => {
    const n = 30;
    await Promise.all(Array.from({ length: n }, (_, i) => must(kube, "POST", `/apis/${GV}/namespaces/many/backupdefinitions`, { ...definition(`d${i}`, { schedule: { cron: "0 * * * *" }, clickhouse: { url: ch.url } }), metadata: { name: `d${i}`, namespace: "many" } })));
    await new Promise((res) => setTimeout(res, 300));
    await app.stop(); // mid-reconcile: some definitions done, some not
    app = await startTestController({ kube, namespace: CTRL_NS });
    for (let i = 0; i < n; i++) await waitReady(kube, "many", `d${i}`, "Reconciled", 60_000);
    const sel = encodeURIComponent(`${LABELS.sourceNamespace}=many`);
    for (const p of [`/apis/apps/v1/namespaces/${CTRL_NS}/statefulsets`, `/api/v1/namespaces/${CTRL_NS}/services`, `/api/v1/namespaces/${CTRL_NS}/secrets`]) {
      const list = await must<{ items: { metadata: { name: string } }[] }>(kube, "GET", `${p}?labelSelector=${sel}`);
      expect(list.items.map((o) => o.metadata.name).sort()).toEqual(Array.from({ length: n }, (_, i) => runnerName("many", `d${i}`)).sort());
    }
  });

  it("fault: apiserver unavailable for a while; the controller recovers without a restart", async () => {
    await kube.stopApiServer();
    await new Promise((res) => setTimeout(res, 6000)); // longer than the lease: leadership is lost meanwhile
    await kube.startApiServer();
    await must(kube, "POST", defPath(), definition("after-outage", { schedule: { cron: "0 * * * *" } }));
    await waitReady(kube, APP_NS, "after-outage", "Reconciled", 90_000);
    // The same controller process, leading again with fresh caches.
    expect(app.isLeader()).toBe(true);
  });
});
