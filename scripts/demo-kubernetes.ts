// npm run demo:kubernetes: the story of `npm run demo`, told through the whole
// product on the project's own test Kubernetes API server.
//
// kube-apiserver + etcd, ClickHouse 18.16 and MinIO run as local processes
// (test/env; `bash scripts/setup.sh --test` installs and builds them). The
// shipped manifests (deploy/crds, deploy/base: CRDs, namespace, ServiceAccount,
// ClusterRole, Role and bindings) are applied as they are, and the controller
// runs in this process with the settings of the shipped Deployment, under its
// ServiceAccount's token: every request it makes goes through the shipped RBAC.
// There is no kubelet, so the demo plays its part (test/helpers/kubelet.ts):
// it starts `bin/backup-runner serve` from the config Secret the controller
// wrote, as the runner pod would mount it, and reports the StatefulSet's pod
// ready. Everything else is what a user sees: `kubectl get` tables from the
// apiserver's Table output, a Restore object, and the data in ClickHouse.
import { DemoError, check, createDemo, runDemo } from "./demo-kit.ts";
import { processAlive } from "../pkg/common/process.ts";
import { createWriteStream, existsSync, readFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { ListObjectsV2Command } from "@aws-sdk/client-s3";
import { KubeConfig } from "@kubernetes/client-node";
import { stringify } from "yaml";
import { API_GROUP } from "../pkg/apis/index.ts";
import { createLogger } from "../pkg/common/logging.ts";
import { parseControllerCommand, startControllerApp, type ControllerApp, type RequestRecord } from "../pkg/controller/index.ts";
import { loadKustomization } from "../pkg/deploy/kustomize.ts";
import { startClickHouse, startKubeApiServer, startMinio, type ClickHouseServer, type KubeApiServer, type MinioServer } from "../test/env/index.ts";
import { isPortOpen, makeTempDir, removeDir } from "../test/env/proc.ts";
import { clickhouseServerBinary, etcdBinary, kubeApiserverBinary, minioBinary, repoRoot } from "../test/env/tools.ts";
import { GV, getTable, must, printTable, secretBody } from "../test/helpers/kube.ts";
import { FakeKubelet } from "../test/helpers/kubelet.ts";
import { tableChecksum } from "../test/helpers/runner.ts";

const CTRL_NS = "chbackup-system";
const APP_NS = "shop";
const DEFINITION = "orders";
const RESTORE = "orders-to-shop-restored";
const BUCKET = "clickhouse-backups";
/** Every 3 seconds (node-cron: the first of six fields is seconds). */
const CRON = "*/3 * * * * *";
const ORDERS = 1_000_000;
const CUSTOMERS = 5_000;
/** How often the controller reads each runner's API into its definition's status (the Deployment says 60). */
const RUNNER_STATUS_SECONDS = 2;
const WANT_BACKUPS = 2;
const TABLE_EVERY_MS = 3_000;
const CONTROLLER_TIMEOUT_MS = 30_000;
const READY_TIMEOUT_MS = 30_000;
const HEALTHY_TIMEOUT_MS = 90_000;
const RESTORE_TIMEOUT_MS = 90_000;

const { interrupted, say, block, step, int, secs, until, onSignals } = createDemo();

function missingServers(): string[] {
  const missing: string[] = [];
  for (const find of [kubeApiserverBinary, etcdBinary, clickhouseServerBinary, minioBinary]) {
    try {
      find();
    } catch (err: unknown) {
      missing.push((err as Error).message);
    }
  }
  return missing;
}

type Obj = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string } };
/** Where each kind of the shipped manifests is applied (server-side apply, as `kubectl apply --server-side`). */
const PATHS: Record<string, (o: Obj) => string> = {
  CustomResourceDefinition: (o) => `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${o.metadata.name}`,
  Namespace: (o) => `/api/v1/namespaces/${o.metadata.name}`,
  ServiceAccount: (o) => `/api/v1/namespaces/${o.metadata.namespace}/serviceaccounts/${o.metadata.name}`,
  ClusterRole: (o) => `/apis/rbac.authorization.k8s.io/v1/clusterroles/${o.metadata.name}`,
  ClusterRoleBinding: (o) => `/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/${o.metadata.name}`,
  Role: (o) => `/apis/rbac.authorization.k8s.io/v1/namespaces/${o.metadata.namespace}/roles/${o.metadata.name}`,
  RoleBinding: (o) => `/apis/rbac.authorization.k8s.io/v1/namespaces/${o.metadata.namespace}/rolebindings/${o.metadata.name}`,
};

interface Condition {
  type: string;
  status: string;
  reason: string;
  message: string;
}
interface Definition {
  status?: {
    conditions?: Condition[];
    runner?: { namespace: string; secret: string; statefulSet: string; service: string; configHash?: string };
    lastBackup?: { id: string; time: string; durationSeconds: number; bytes: number; rows: number };
    backups?: { count: number; size?: string };
    consecutiveFailures?: number;
  };
}
interface Restore {
  metadata: { uid: string };
  status?: { phase?: string; reason?: string; message?: string; backupId?: string; operationId?: string; rowsRestored?: number; bytesRestored?: number; startedAt?: string; completedAt?: string; error?: string };
}

async function main(): Promise<number> {
  const started = Date.now();
  const offSignals = onSignals();

  const missing = missingServers();
  if (missing.length) {
    process.stderr.write(
      `[demo] FAILED: this demo runs on the test servers, and ${missing.length} of them ${missing.length === 1 ? "is" : "are"} not installed:\n` +
        missing.map((m) => `[demo]   ${m}\n`).join("") +
        "[demo] Run `bash scripts/setup.sh --test` once (Debian's clickhouse-server and etcd-server; kube-apiserver and MinIO built with Go), then `npm run demo:kubernetes` again.\n",
    );
    return 1;
  }

  const tmp = await makeTempDir("demo-kubernetes");
  const controllerLog = join(tmp, "controller.log");
  const logStream = createWriteStream(controllerLog, { flags: "a" });
  let kube: KubeApiServer | undefined;
  let ch: ClickHouseServer | undefined;
  let minio: MinioServer | undefined;
  let app: ControllerApp | undefined;
  let kubelet: FakeKubelet | undefined;
  const stopAll = async () => {
    await kubelet?.stopAll();
    kubelet = undefined;
    await app?.stop();
    app = undefined;
    await Promise.all([kube?.stop(), ch?.stop(), minio?.stop()]);
    kube = ch = minio = undefined;
  };
  try {
    // ── The servers ──────────────────────────────────────────────────────────
    step("Start the test servers: kube-apiserver + etcd, ClickHouse 18.16, MinIO (local processes on 127.0.0.1)");
    let t = Date.now();
    const startedServers = await Promise.allSettled([startKubeApiServer(), startClickHouse(), startMinio()]);
    const [k, c, m] = startedServers;
    if (k.status === "fulfilled") kube = k.value;
    if (c.status === "fulfilled") ch = c.value;
    if (m.status === "fulfilled") minio = m.value;
    const failed = startedServers.flatMap((r) => (r.status === "rejected" ? [r.reason instanceof Error ? r.reason.message : String(r.reason)] : []));
    if (failed.length || !kube || !ch || !minio) throw new DemoError(`a test server did not start: ${failed.join("; ")}`);
    say(`   kube-apiserver ${kube.version} at ${kube.server}, etcd ${kube.etcdVersion} (pids ${kube.pids().join(", ")})`);
    say(`   ClickHouse ${ch.version} at ${ch.url} (pid ${ch.pid()})`);
    say(`   MinIO ${minio.version} at ${minio.endpoint} (pid ${minio.pid()})`);
    say(`   Node.js ${process.version}; servers up in ${secs(Date.now() - t)}`);

    // ── The product, as shipped ──────────────────────────────────────────────
    step("Install the shipped manifests: deploy/crds and deploy/base (CRDs, namespace, ServiceAccount, RBAC)");
    const objs = loadKustomization(join(repoRoot, "deploy", "base")) as Obj[];
    const deployment = objs.find((o) => o.kind === "Deployment") as (Obj & { spec: { template: { spec: { containers: { env?: { name: string; value?: string }[] }[] } } } }) | undefined;
    check(deployment !== undefined, "deploy/base has no Deployment");
    for (const o of objs) {
      if (o.kind === "Deployment") continue;
      const path = PATHS[o.kind];
      check(path !== undefined, `deploy/base: no path for kind ${o.kind}`);
      await kube.apply(path(o), o, "kubectl");
      say(`   ${o.kind.toLowerCase()}/${o.metadata.name}${o.metadata.namespace ? ` (${o.metadata.namespace})` : ""} serverside-applied`);
    }
    const crds = objs.filter((o) => o.kind === "CustomResourceDefinition");
    await until("the CRDs to be established", READY_TIMEOUT_MS, async () => {
      for (const o of crds) {
        const r = await must<{ status?: { conditions?: Condition[] } }>(kube!, "GET", PATHS["CustomResourceDefinition"]!(o));
        if (!r.status?.conditions?.some((x) => x.type === "Established" && x.status === "True")) return false;
      }
      return (await kube!.request("GET", `/apis/${GV}/restores`)).status === 200;
    });
    say(`   ${crds.length} CRDs established and served (${crds.map((o) => o.metadata.name.replace(`.${API_GROUP}`, "")).join(", ")})`);
    say(`   deployment/${deployment.metadata.name} is not applied: there is no kubelet here, so the controller runs in this process (next step)`);

    step(`Start the controller in this process, as ServiceAccount ${CTRL_NS}/chbackup-controller, with the shipped Deployment's settings`);
    const sa = objs.find((o) => o.kind === "ServiceAccount");
    check(sa?.metadata.namespace === CTRL_NS, `the shipped ServiceAccount is not in ${CTRL_NS}`);
    // The token the pod would have mounted, from a TokenRequest: the controller gets no more than the shipped RBAC grants.
    const tr = await must<{ status: { token: string } }>(kube, "POST", `/api/v1/namespaces/${CTRL_NS}/serviceaccounts/${sa.metadata.name}/token`, {
      apiVersion: "authentication.k8s.io/v1",
      kind: "TokenRequest",
      spec: { expirationSeconds: 3600 },
    });
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: "demo", server: kube.server, caData: Buffer.from(kube.caPem).toString("base64"), skipTLSVerify: false }],
      users: [{ name: "chbackup-controller", token: tr.status.token }],
      contexts: [{ name: "demo", cluster: "demo", user: "chbackup-controller" }],
      currentContext: "demo",
    });
    // The Deployment's environment (its fieldRefs filled in as the kubelet would), read by the controller's own parser.
    const env: Record<string, string> = {};
    for (const e of deployment.spec.template.spec.containers[0]?.env ?? []) if (e.value !== undefined) env[e.name] = e.value;
    env["CONTROLLER_NAMESPACE"] = CTRL_NS;
    env["POD_NAME"] = "chbackup-controller-demo";
    const fromDeployment = Number(env["RUNNER_STATUS_SECONDS"]);
    env["RUNNER_STATUS_SECONDS"] = String(RUNNER_STATUS_SECONDS);
    env["PROBE_PORT"] = "0";
    const parsed = parseControllerCommand([], env, hostname()).settings;
    check(parsed !== undefined, "the shipped Deployment's settings did not parse");
    const settings = { ...parsed, probeHost: "127.0.0.1" };
    kubelet = new FakeKubelet(kube, CTRL_NS, tmp);
    const requests: RequestRecord[] = [];
    t = Date.now();
    app = await startControllerApp({
      kubeConfig: kc,
      settings,
      logger: createLogger({ level: "info", stream: logStream, defaultMeta: { component: "backup-controller" } }),
      defaultMetrics: false,
      observe: (r) => requests.push(r),
      // No cluster DNS here: the controller finds each runner where the demo's kubelet started it.
      runnerUrl: kubelet.runnerUrl,
    });
    const a = app;
    await until("the controller to lead with its caches synced", CONTROLLER_TIMEOUT_MS, async () => a.isLeader() && a.controller()?.ready && a.restores()?.ready);
    say(`   leading (Lease ${CTRL_NS}/${settings.leaderElection.leaseName}) with every cache synced in ${secs(Date.now() - t)}; probes and metrics on 127.0.0.1:${a.probePort}`);
    say(`   runner status polls every ${RUNNER_STATUS_SECONDS} s (the Deployment's RUNNER_STATUS_SECONDS is ${fromDeployment}); log: ${controllerLog}`);

    // ── The application's data ───────────────────────────────────────────────
    step(`Load sample data into ClickHouse: database ${APP_NS}, tables orders (${int(ORDERS)} rows) and customers (${int(CUSTOMERS)} rows)`);
    t = Date.now();
    await ch.exec(`CREATE DATABASE ${APP_NS}`);
    await ch.exec(`CREATE TABLE ${APP_NS}.orders (id UInt64, customer UInt32, amount Decimal(18, 2), status String, created DateTime, note String) ENGINE = MergeTree ORDER BY id`);
    await ch.exec(
      `INSERT INTO ${APP_NS}.orders SELECT number, number % ${CUSTOMERS}, toDecimal64(number % 100000, 2) / 100, ['new', 'paid', 'shipped', 'returned'][number % 4 + 1], toDateTime('2026-01-01 00:00:00') + number * 7, concat('order ', toString(number)) FROM system.numbers LIMIT ${ORDERS}`,
    );
    await ch.exec(`CREATE TABLE ${APP_NS}.customers (id UInt32, name String, country FixedString(2)) ENGINE = MergeTree ORDER BY id`);
    await ch.exec(`INSERT INTO ${APP_NS}.customers SELECT number, concat('customer ', toString(number)), ['DE', 'FR', 'NL', 'US'][number % 4 + 1] FROM system.numbers LIMIT ${CUSTOMERS}`);
    const tables = ["orders", "customers"];
    const source = new Map<string, { rows: number; sum: string }>();
    for (const name of tables) {
      const f = await tableChecksum(ch, `${APP_NS}.${name}`);
      source.set(name, f);
      say(`source: ${APP_NS}.${name} has ${f.rows} rows, checksum ${f.sum}`);
    }
    const sourceRows = [...source.values()].reduce((n, f) => n + f.rows, 0);
    check(source.get("orders")?.rows === ORDERS && source.get("customers")?.rows === CUSTOMERS, `source rows ${JSON.stringify([...source])}`);
    say(`   loaded in ${secs(Date.now() - t)}`);

    // ── What a platform engineer and an app team apply ───────────────────────
    step("Apply a StorageLocation (MinIO) and a BackupDefinition");
    await minio.createBucket(BUCKET);
    // Secrets first; their values are generated, so only their names are shown.
    await must(kube, "POST", `/api/v1/namespaces/${CTRL_NS}/secrets`, secretBody(CTRL_NS, "minio-credentials", { accessKeyId: minio.accessKeyId, secretAccessKey: minio.secretAccessKey }));
    await kube.apply(`/api/v1/namespaces/${APP_NS}`, { apiVersion: "v1", kind: "Namespace", metadata: { name: APP_NS } }, "kubectl");
    await must(kube, "POST", `/api/v1/namespaces/${APP_NS}/secrets`, secretBody(APP_NS, "clickhouse-backup-password", { password: ch.password }));
    say(`   secret/minio-credentials (${CTRL_NS}) and secret/clickhouse-backup-password (${APP_NS}) created with the servers' generated credentials`);
    const storageLocation = {
      apiVersion: GV,
      kind: "StorageLocation",
      metadata: { name: "minio", namespace: CTRL_NS },
      spec: { s3: { endpoint: minio.endpoint, region: minio.region, bucket: BUCKET, prefix: "demo", forcePathStyle: true, credentialsSecretRef: { name: "minio-credentials" } } },
    };
    const definition = {
      apiVersion: GV,
      kind: "BackupDefinition",
      metadata: { name: DEFINITION, namespace: APP_NS },
      spec: {
        storageLocation: "minio",
        clickhouse: { url: ch.url, username: ch.username, passwordSecretRef: { name: "clickhouse-backup-password", key: "password" }, databases: { include: [APP_NS] } },
        schedule: { cron: CRON, timeZone: "UTC" },
        retention: { hourly: 24, daily: 7 },
        staleAfter: "1m",
      },
    };
    block(`$ kubectl apply --server-side -f - <<EOF\n${stringify(storageLocation).trimEnd()}\n---\n${stringify(definition).trimEnd()}\nEOF`);
    await kube.apply(`/apis/${GV}/namespaces/${CTRL_NS}/storagelocations/minio`, storageLocation, "kubectl");
    await kube.apply(`/apis/${GV}/namespaces/${APP_NS}/backupdefinitions/${DEFINITION}`, definition, "kubectl");
    say(`   storagelocation.${API_GROUP}/minio serverside-applied`);
    say(`   backupdefinition.${API_GROUP}/${DEFINITION} serverside-applied`);
    say(`   (schedule "${CRON}": every 3 seconds; staleAfter 1m: BackupHealthy turns False when the newest backup is older than that)`);
    const defPath = `/apis/${GV}/namespaces/${APP_NS}/backupdefinitions/${DEFINITION}`;
    let lastDef: Definition | undefined;
    const cond = (d: Definition | undefined, type: string) => d?.status?.conditions?.find((x) => x.type === type);
    const condText = (d: Definition | undefined) => JSON.stringify(d?.status?.conditions?.map((x) => `${x.type}=${x.status} ${x.reason}: ${x.message}`) ?? []);
    const getDef = async () => (lastDef = await must<Definition>(kube!, "GET", defPath));
    const ready = await until("the definition to be Ready (runner objects written)", READY_TIMEOUT_MS, async () => {
      const d = await getDef();
      const r = cond(d, "Ready");
      if (r?.status === "False" && r.reason !== "Replacing") throw new DemoError(`definition not Ready: ${r.reason}: ${r.message}`);
      return r?.status === "True" ? d : undefined;
    }, 250, () => condText(lastDef));
    const runner = ready.status?.runner;
    check(runner !== undefined, "status.runner is missing");
    say(`   Ready=True: the controller wrote secret/${runner.secret}, statefulset/${runner.statefulSet} and service/${runner.service} in ${runner.namespace}`);
    // Before any pod runs, the controller's poll says so.
    const pending = await until("RunnerReady to be reported", READY_TIMEOUT_MS, async () => {
      const d = await getDef();
      return cond(d, "RunnerReady") ? d : undefined;
    }, 250, () => condText(lastDef));
    const tablePath = `/apis/${GV}/namespaces/${APP_NS}/backupdefinitions`;
    const printDefinitions = async (wide = false) => {
      block(`$ kubectl get backupdefinitions -n ${APP_NS}${wide ? " -o wide" : ""}\n${printTable(await getTable(kube!, tablePath), { wide })}`);
    };
    await printDefinitions();
    const rr = cond(pending, "RunnerReady");
    say(`   RunnerReady=${rr?.status} ${rr?.reason}: no pod runs the runner yet (there is no kubelet)`);

    // ── The kubelet's part ───────────────────────────────────────────────────
    step("Play the kubelet: start `bin/backup-runner serve` from the Secret the controller wrote, report the pod ready");
    const proc = await kubelet.start(APP_NS, DEFINITION);
    say(`   backup-runner pid ${proc.proc.pid} on ${proc.url}, config.json from secret/${runner.secret} (${CTRL_NS}); log: ${proc.proc.logFile}`);
    say(`   statefulset/${runner.statefulSet}: readyReplicas 1`);
    say("   The catalog is empty, so the schedule counts as missed and the first backup starts right away; then one every 3 s.");

    step(`Watch the definition while scheduled backups happen, until HEALTHY is True with at least ${WANT_BACKUPS} backups`);
    t = Date.now();
    // The table as it was is printed above; the next one after TABLE_EVERY_MS, and the one that ends the wait.
    let lastPrint = Date.now();
    const healthy = await until(
      `BackupHealthy=True with ${WANT_BACKUPS} backups`,
      HEALTHY_TIMEOUT_MS,
      async () => {
        const d = await getDef();
        const h = cond(d, "BackupHealthy");
        const done = cond(d, "Ready")?.status === "True" && cond(d, "RunnerReady")?.status === "True" && h?.status === "True" && (d.status?.backups?.count ?? 0) >= WANT_BACKUPS;
        if (h?.reason === "BackupsFailing") throw new DemoError(`backups are failing: ${h.message}`);
        if (done || Date.now() - lastPrint >= TABLE_EVERY_MS) {
          lastPrint = Date.now();
          say(`   (after ${secs(Date.now() - t)})`);
          await printDefinitions();
        }
        return done ? d : undefined;
      },
      500,
      () => condText(lastDef),
    );
    const st = healthy.status!;
    const hc = cond(healthy, "BackupHealthy")!;
    say(`   BackupHealthy=True ${hc.reason}: ${hc.message}`);
    say(
      `   status.lastBackup: ${st.lastBackup?.id}, ${int(st.lastBackup?.rows ?? 0)} rows counted in the stream, ${int(st.lastBackup?.bytes ?? 0)} bytes stored in ${st.lastBackup?.durationSeconds} s; ` +
        `status.backups: ${st.backups?.count} (${st.backups?.size}); consecutiveFailures ${st.consecutiveFailures}`,
    );
    check(st.lastBackup?.rows === sourceRows, `status.lastBackup.rows is ${st.lastBackup?.rows}, the source has ${sourceRows} rows`);
    await printDefinitions(true);
    const listed = await minio.s3().send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: `demo/${APP_NS}/${DEFINITION}/` }));
    const manifests = (listed.Contents ?? []).map((o) => o.Key ?? "").filter((key) => key.endsWith("/manifest.json"));
    say(`   MinIO s3://${BUCKET}/demo/${APP_NS}/${DEFINITION}/ holds ${manifests.length} complete backups, a manifest.json each`);
    say("   (backups 3 s apart share their hour: only the first holds labels, so retention keeps it and the newest, and deletes each one in between)");

    // ── The restore, as an object ────────────────────────────────────────────
    step(`Create a Restore of latest into a renamed database (${APP_NS} -> ${APP_NS}_restored)`);
    const restore = {
      apiVersion: GV,
      kind: "Restore",
      metadata: { name: RESTORE, namespace: APP_NS },
      spec: { backupDefinition: DEFINITION, backup: "latest", databases: [APP_NS], renameDatabases: { [APP_NS]: `${APP_NS}_restored` }, existingTables: "fail" },
    };
    block(`$ kubectl create -f - <<EOF\n${stringify(restore).trimEnd()}\nEOF`);
    await must(kube, "POST", `/apis/${GV}/namespaces/${APP_NS}/restores`, restore);
    say(`   restore.${API_GROUP}/${RESTORE} created`);
    say("   (the controller sends it to the runner once, with the token from the runner Secret; a busy runner makes it wait as Pending/RunnerBusy)");
    t = Date.now();
    const restorePath = `/apis/${GV}/namespaces/${APP_NS}/restores`;
    let lastRestore: Restore | undefined;
    let shown = "";
    const done = await until(
      "the Restore to reach Succeeded",
      RESTORE_TIMEOUT_MS,
      async () => {
        const r = (lastRestore = await must<Restore>(kube!, "GET", `${restorePath}/${RESTORE}`));
        const state = `${r.status?.phase}/${r.status?.reason}`;
        // A table each time the phase or reason changes.
        if (state !== shown) {
          shown = state;
          say(`   (after ${secs(Date.now() - t)}) phase ${r.status?.phase ?? "<none>"}, reason ${r.status?.reason ?? "<none>"}${r.status?.message ? `: ${r.status.message}` : ""}`);
          block(`$ kubectl get restores -n ${APP_NS}\n${printTable(await getTable(kube!, restorePath))}`);
        }
        if (r.status?.phase === "Failed") throw new DemoError(`the Restore failed: ${r.status.reason}: ${r.status.error ?? r.status.message}`);
        return r.status?.phase === "Succeeded" ? r : undefined;
      },
      250,
      () => JSON.stringify(lastRestore?.status ?? {}),
    );
    const rs = done.status!;
    say(
      `   Succeeded after ${secs(Date.now() - t)}: runner operation ${rs.operationId}, backup ${rs.backupId}, ` +
        `status.rowsRestored ${rs.rowsRestored}, status.bytesRestored ${rs.bytesRestored}`,
    );
    check(rs.backupId === st.lastBackup?.id || (rs.backupId ?? "") > (st.lastBackup?.id ?? ""), `the Restore restored ${rs.backupId}, older than the newest backup ${st.lastBackup?.id}`);
    say(`restore: status.rowsRestored ${rs.rowsRestored}, the source has ${sourceRows} rows`);
    check(rs.rowsRestored === sourceRows, `status.rowsRestored is ${rs.rowsRestored}, the source has ${sourceRows} rows`);

    step(`Check the restored data in ClickHouse: ${APP_NS}_restored against ${APP_NS}`);
    for (const name of tables) {
      const f = await tableChecksum(ch, `${APP_NS}_restored.${name}`);
      say(`restored: ${APP_NS}_restored.${name} has ${f.rows} rows, checksum ${f.sum}`);
      const s = source.get(name)!;
      check(f.rows === s.rows, `${APP_NS}_restored.${name} has ${f.rows} rows, ${APP_NS}.${name} has ${s.rows}`);
      check(f.sum === s.sum, `${APP_NS}_restored.${name} checksum ${f.sum} differs from ${APP_NS}.${name}'s ${s.sum}`);
    }
    say("OK: the renamed database's row counts and checksums equal the source's");
    const refused = requests.filter((r) => r.status === 403);
    say(`   the controller made ${requests.length} API requests as its ServiceAccount; refused (403): ${refused.length}`);
    check(refused.length === 0, `the shipped RBAC refused: ${refused.map((r) => `${r.verb} ${r.group}/${r.resource}`).join(", ")}`);

    // ── The end ──────────────────────────────────────────────────────────────
    step("Shut down: the runner, the controller, kube-apiserver + etcd, ClickHouse, MinIO");
    const procs: [string, number][] = [
      ["backup-runner", proc.proc.pid],
      ["etcd", kube.pids()[0]!],
      ["kube-apiserver", kube.pids()[1]!],
      ["clickhouse-server", ch.pid()],
      ["minio", minio.pid()],
    ];
    const ports = [Number(new URL(proc.url).port), a.probePort, ...kube.ports, ...ch.ports, ...minio.ports];
    await stopAll();
    const left = procs.filter(([, pid]) => processAlive(pid));
    check(left.length === 0, `still running: ${left.map(([n, pid]) => `${n} (pid ${pid})`).join(", ")}`);
    const open: number[] = [];
    for (const p of ports) if (await isPortOpen(p)) open.push(p);
    check(open.length === 0, `ports still open: ${open.join(", ")}`);
    say("   runner stopped (SIGTERM), controller stopped (it gave up its Lease), servers stopped");
    say(`   no process left: ${procs.map(([n, pid]) => `${n} ${pid}`).join(", ")} are gone`);
    say(`   ports ${ports.join(", ")} refuse connections`);
    await new Promise<void>((r) => logStream.end(r));
    await removeDir(tmp);
    check(!existsSync(tmp), `${tmp} still exists`);
    say(`   ${tmp} removed`);
    say(`done in ${secs(Date.now() - started)}`);
  } catch (err: unknown) {
    const msg = err instanceof DemoError ? err.message : err instanceof Error ? (err.stack ?? err.message) : String(err);
    process.stderr.write(`[demo] FAILED: ${msg}\n`);
    const runnerLogs = [...(kubelet?.runners.values() ?? [])].map((r) => r.proc.logFile);
    await stopAll().catch((e: unknown) => process.stderr.write(`[demo] stopping: ${e instanceof Error ? e.message : String(e)}\n`));
    await new Promise<void>((r) => logStream.end(r));
    for (const [what, file] of [["the controller's", controllerLog], ...runnerLogs.map((f) => ["the runner's", f] as const)] as const) {
      try {
        const tail = readFileSync(file, "utf8").trim().split("\n").slice(-12).join("\n");
        if (tail) process.stderr.write(`[demo] ${what} log ended with:\n${tail}\n`);
      } catch {
        // no log
      }
    }
    await removeDir(tmp).catch(() => {});
    process.stderr.write(`[demo] stopped every server; ${tmp} removed\n`);
    return interrupted.signal.aborted ? 130 : 1;
  } finally {
    offSignals();
  }
  return 0;
}

runDemo(main);
