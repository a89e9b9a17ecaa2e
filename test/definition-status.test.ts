// BackupDefinition.status tells the whole story (issue #15, section 1), on real
// servers: kube-apiserver + etcd, ClickHouse 18.16, MinIO and real runner
// processes started from the Secrets the controller wrote (FakeKubelet).
// Figures mirrored from the runner, RunnerReady and BackupHealthy with their
// reasons and Events, the controller's health metrics, no writes when nothing
// changed, and the table `kubectl get` prints.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ControllerApp } from "../pkg/controller/index.ts";
import { startClickHouse, startKubeApiServer, startMinio, makeTempDir, removeDir, type ClickHouseServer, type KubeApiServer, type MinioServer } from "./env/index.ts";
import { parsePrometheusText } from "./helpers/api-http.ts";
import { GV, createNamespace, getTable, installCrds, must, printTable, secretBody, startTestController, waitEvents, waitFor, waitReady } from "./helpers/kube.ts";
import { FakeKubelet } from "./helpers/kubelet.ts";

const CTRL_NS = "chbackup-system";
const APP_NS = "shop";

interface Cond {
  type: string;
  status: string;
  reason: string;
  message: string;
  lastTransitionTime: string;
}
interface Def {
  metadata: { resourceVersion: string };
  status?: {
    conditions?: Cond[];
    lastBackup?: { id: string; time: string; durationSeconds: number; bytes: number; rows: number };
    lastFailure?: { time: string; message: string; retryable: boolean };
    consecutiveFailures?: number;
    nextRun?: string;
    backups?: { count: number; oldest?: string; newest?: string; totalBytes: number; size: string };
    currentOperation?: unknown;
  };
}

describe("BackupDefinition status mirrors the runner", () => {
  let kube: KubeApiServer;
  let minio: MinioServer;
  let ch: ClickHouseServer;
  let dir: string;
  let app: ControllerApp;
  let kubelet: FakeKubelet;
  const writes: { verb: string; resource: string; namespace?: string; name?: string }[] = [];

  const defPath = (name = "") => `/apis/${GV}/namespaces/${APP_NS}/backupdefinitions${name ? `/${name}` : ""}`;
  const getDef = (name: string) => must<Def>(kube, "GET", defPath(name));
  const cond = (d: Def, type: string) => d.status?.conditions?.find((c) => c.type === type);
  const waitCond = (name: string, type: string, status: string, reason: string, timeoutMs = 60_000) =>
    waitFor(
      `${name}: ${type}=${status} ${reason}`,
      async () => {
        const d = await getDef(name);
        const c = cond(d, type);
        return c?.status === status && c.reason === reason ? d : undefined;
      },
      timeoutMs,
      200,
    );
  const definition = (name: string, spec: Record<string, unknown>, passwordSecret = "clickhouse") => ({
    apiVersion: GV,
    kind: "BackupDefinition",
    metadata: { name, namespace: APP_NS },
    spec: {
      storageLocation: "minio",
      clickhouse: { url: ch.url, username: ch.username, passwordSecretRef: { name: passwordSecret, key: "password" }, databases: { include: ["shop"] } },
      retention: { hourly: 2 },
      ...spec,
    },
  });
  const metric = async (name: string) => {
    const text = await (await fetch(`http://127.0.0.1:${app.probePort}/metrics`)).text();
    return parsePrometheusText(text).get(name);
  };

  beforeAll(async () => {
    [kube, minio, ch, dir] = await Promise.all([startKubeApiServer(), startMinio(), startClickHouse(), makeTempDir("defstatus")]);
    const bucket = await minio.createBucket();
    await installCrds(kube);
    for (const ns of [CTRL_NS, APP_NS]) await createNamespace(kube, ns);
    await must(kube, "POST", `/api/v1/namespaces/${APP_NS}/secrets`, secretBody(APP_NS, "clickhouse", { password: ch.password }));
    await must(kube, "POST", `/api/v1/namespaces/${APP_NS}/secrets`, secretBody(APP_NS, "wrong", { password: "not-the-password" }));
    await must(kube, "POST", `/api/v1/namespaces/${CTRL_NS}/secrets`, secretBody(CTRL_NS, "minio", { accessKeyId: minio.accessKeyId, secretAccessKey: minio.secretAccessKey }));
    await must(kube, "POST", `/apis/${GV}/namespaces/${CTRL_NS}/storagelocations`, {
      apiVersion: GV,
      kind: "StorageLocation",
      metadata: { name: "minio", namespace: CTRL_NS },
      spec: { s3: { endpoint: minio.endpoint, bucket, prefix: "status", forcePathStyle: true, credentialsSecretRef: { name: "minio" } } },
    });
    await ch.exec("CREATE DATABASE shop");
    await ch.exec("CREATE TABLE shop.orders (id UInt64, note String) ENGINE = MergeTree ORDER BY id");
    await ch.exec("INSERT INTO shop.orders SELECT number, concat('order ', toString(number)) FROM system.numbers LIMIT 5000");
    kubelet = new FakeKubelet(kube, CTRL_NS, dir);
    app = await startTestController({
      kube,
      namespace: CTRL_NS,
      settings: { runnerStatusSeconds: 1 },
      runnerUrl: kubelet.runnerUrl,
      observe: (r) => {
        if (r.verb !== "get" && r.verb !== "list" && r.verb !== "watch") writes.push({ verb: r.verb, resource: r.resource, ...(r.namespace ? { namespace: r.namespace } : {}), ...(r.name ? { name: r.name } : {}) });
      },
    });
    await waitFor("controller leading", async () => app.isLeader() && app.controller()?.ready);
  }, 180_000);
  afterAll(async () => {
    await kubelet?.stopAll();
    await app?.stop();
    await Promise.all([kube?.stop(), minio?.stop(), ch?.stop()]);
    await removeDir(dir);
  });

  it("a healthy definition: figures from the runner, RunnerReady and BackupHealthy True, health metrics, Events", async () => {
    await must(kube, "POST", defPath(), definition("orders", { schedule: { cron: "*/3 * * * * *", timeZone: "UTC" }, staleAfter: "1m" }));
    await waitReady(kube, APP_NS, "orders");
    // Before the pod runs: the runner is not ready.
    const pending = await waitCond("orders", "RunnerReady", "False", "PodNotReady");
    expect(cond(pending, "RunnerReady")!.message).toMatch(/not ready/);
    const r = await kubelet.start(APP_NS, "orders");
    const d = await waitCond("orders", "BackupHealthy", "True", "RecentBackup");
    await waitCond("orders", "RunnerReady", "True", "RunnerReady");
    const st = d.status!;
    // The figures the runner counted: 5000 rows of shop.orders in the newest backup.
    expect(st.lastBackup).toMatchObject({ rows: 5000 });
    expect(st.lastBackup!.bytes).toBeGreaterThan(0);
    expect(st.lastBackup!.id).toMatch(/^\d{8}T\d{6}Z/);
    expect(st.backups!.count).toBeGreaterThanOrEqual(1);
    expect(st.backups!.newest).toBe(st.lastBackup!.time);
    expect(st.nextRun).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/);
    expect(st.consecutiveFailures).toBe(0);
    // The same newest backup as the runner's own catalog. Backups come every 3 s and retention deletes an
    // unlabelled newest one once a newer one commits: compare the two at one moment, not across seconds.
    const complete = async () => ((await r.api.get("/api/v1/backups")).json as { backups: { id: string; state: string }[] }).backups.filter((b) => b.state === "complete").map((b) => b.id);
    await waitFor("the mirrored newest backup in the runner's catalog", async () => {
      const mirrored = (await getDef("orders")).status?.lastBackup?.id;
      const catalog = await complete();
      return mirrored !== undefined && catalog[0] === mirrored;
    });
    // Transitions are Events (a condition's first value is only logged): PodNotReady → RunnerReady, AwaitingFirstBackup → RecentBackup.
    await waitEvents(kube, APP_NS, "BackupDefinition", "orders", ["Normal/RunnerReady", "Normal/RecentBackup"]);
    expect(await metric(`chbackup_controller_definition_healthy{namespace="${APP_NS}",name="orders"}`)).toBe(1);
    const last = await metric(`chbackup_controller_definition_last_success_timestamp_seconds{namespace="${APP_NS}",name="orders"}`);
    expect(last).toBeGreaterThan(Date.now() / 1000 - 120);
    await kubelet.stop(APP_NS, "orders");
  });

  it("failing backups (wrong ClickHouse password): BackupsFailing with the runner's message; heals once the Secret is fixed", async () => {
    await must(kube, "POST", defPath(), definition("failing", { schedule: { cron: "*/2 * * * * *", timeZone: "UTC" }, staleAfter: "1h" }, "wrong"));
    await waitReady(kube, APP_NS, "failing");
    await kubelet.start(APP_NS, "failing");
    const d = await waitCond("failing", "BackupHealthy", "False", "BackupsFailing");
    expect(cond(d, "BackupHealthy")!.message).toMatch(/password|Authentication|authentic/i);
    // The runner reaches its storage but not ClickHouse.
    await waitCond("failing", "RunnerReady", "False", "ClickHouseUnavailable");
    expect(await metric(`chbackup_controller_definition_healthy{namespace="${APP_NS}",name="failing"}`)).toBe(0);
    await waitEvents(kube, APP_NS, "BackupDefinition", "failing", ["Warning/BackupsFailing"]);
    // Fix the password: the controller rewrites the runner config; the pod restarts with it.
    const hashBefore = (await getDef("failing")) as unknown as { status: { runner: { configHash: string } } };
    await must(kube, "PUT", `/api/v1/namespaces/${APP_NS}/secrets/wrong`, secretBody(APP_NS, "wrong", { password: ch.password }));
    await waitFor("runner config rewritten", async () => ((await getDef("failing")) as unknown as { status: { runner: { configHash: string } } }).status.runner.configHash !== hashBefore.status.runner.configHash);
    await kubelet.start(APP_NS, "failing");
    const healed = await waitCond("failing", "BackupHealthy", "True", "RecentBackup");
    expect(healed.status!.consecutiveFailures).toBe(0);
    expect(healed.status!.lastBackup!.rows).toBe(5000);
    await waitCond("failing", "RunnerReady", "True", "RunnerReady");
    await kubelet.stop(APP_NS, "failing");
  });

  it("a suspended definition reports Suspended; polls that learn nothing new write nothing", async () => {
    await must(kube, "POST", defPath(), definition("paused", { schedule: { cron: "0 3 * * *", timeZone: "UTC" }, suspend: true }));
    await waitReady(kube, APP_NS, "paused");
    await kubelet.start(APP_NS, "paused");
    const d = await waitCond("paused", "BackupHealthy", "False", "Suspended");
    expect(cond(d, "BackupHealthy")!.message).toMatch(/suspend/);
    // The alert rule leaves suspended definitions out through this gauge.
    expect(await metric(`chbackup_controller_definition_suspended{namespace="${APP_NS}",name="paused"}`)).toBe(1);
    expect(await metric(`chbackup_controller_definition_suspended{namespace="${APP_NS}",name="orders"}`)).toBe(0);
    await waitCond("paused", "RunnerReady", "True", "RunnerReady");
    // Several polls (one a second) of a runner whose state does not change: no write about it.
    await new Promise((r) => setTimeout(r, 500));
    const before = writes.length;
    const rv = (await getDef("paused")).metadata.resourceVersion;
    await new Promise((r) => setTimeout(r, 4000));
    // (other definitions' figures may change meanwhile: orders' backups age past its staleAfter)
    expect(writes.slice(before).filter((w) => w.namespace === APP_NS && w.resource.startsWith("backupdefinitions") && w.name === "paused")).toEqual([]);
    expect((await getDef("paused")).metadata.resourceVersion).toBe(rv);
    await kubelet.stop(APP_NS, "paused");
  });

  it("a runner stopped for longer than staleAfter: NoRecentBackup, the last known figures kept and said to be so", async () => {
    await must(kube, "POST", defPath(), definition("stopped", { schedule: { cron: "*/2 * * * * *", timeZone: "UTC" }, staleAfter: "8s" }));
    await waitReady(kube, APP_NS, "stopped");
    await kubelet.start(APP_NS, "stopped");
    const ok = await waitCond("stopped", "BackupHealthy", "True", "RecentBackup");
    await kubelet.stop(APP_NS, "stopped");
    const down = await waitCond("stopped", "RunnerReady", "False", "PodNotReady");
    expect(cond(down, "RunnerReady")!.message).toMatch(/does not answer/);
    const stale = await waitCond("stopped", "BackupHealthy", "False", "NoRecentBackup", 30_000);
    expect(cond(stale, "BackupHealthy")!.message).toMatch(/last known state/);
    // Kept, not dropped: the newest backup the runner had before it stopped (or a later one it finished).
    expect(stale.status!.lastBackup!.id >= ok.status!.lastBackup!.id).toBe(true);
    expect(stale.status!.backups!.count).toBeGreaterThanOrEqual(1);
    expect(await metric(`chbackup_controller_definition_healthy{namespace="${APP_NS}",name="stopped"}`)).toBe(0);
  });

  it("kubectl get shows the story: the apiserver's Table output", async () => {
    const table = await getTable(kube, defPath());
    const names = table.columnDefinitions.map((c) => c.name);
    expect(names).toEqual(expect.arrayContaining(["Name", "Ready", "Runner", "Healthy", "Last Backup", "Backups", "Next Run", "Failures", "Size", "Mode", "Reason", "Age"]));
    const text = printTable(table);
    const wide = printTable(table, { wide: true });
    process.stdout.write(`\n$ kubectl get backupdefinitions -n ${APP_NS}\n${text}\n\n$ kubectl get backupdefinitions -n ${APP_NS} -o wide\n${wide}\n`);
    expect(text).toMatch(/^NAME\s+READY\s+RUNNER\s+HEALTHY\s+LAST BACKUP\s+BACKUPS\s+NEXT RUN\s+FAILURES\s+AGE/);
    expect(text.split("\n").find((l) => l.startsWith("paused"))).toMatch(/paused\s+True\s+\S+\s+False/);
    expect(wide.split("\n").find((l) => l.startsWith("stopped"))).toMatch(/NoRecentBackup/);
  });
});
