// npm run bench:controller: the controller at scale against the test
// environment's kube-apiserver (+ etcd), as its own process.
//
// Prints, for N definitions (default 500) created at once:
//   baseline        the same runner objects (Secret, StatefulSet, Service) and status
//                   written straight to the apiserver by a plain loop, no controller
//   controller      time from the first create until every definition is Ready
//   writes          API writes per definition (from the controller's own metrics)
//   resync          writes made by a full resync afterwards (must be 0)
//   status polls    every runner's API read into its definition's status every 5 s (a stub
//                   runner answers for all): writes of the first round (the conditions and
//                   figures appear), then writes of later rounds that learn nothing (must be 0)
//   memory          the controller's V8 heap (used, total) and external memory, sampled each second
//   peak RSS        of the controller process (VmHWM), which must stay within --max-rss-mib
// The controller runs with the V8 flags of its image (deploy/docker/controller.Dockerfile);
// --controller-dir runs the controller of another checkout (a git worktree of an earlier commit)
// in the same way, to compare.
// The ratio compares the controller's time with the baseline measured in the same run.
// Before the controller starts, --unrelated-secrets Secrets of --secret-kib KiB each (random
// bytes) are spread over --secret-namespaces namespaces: a shared cluster's Helm releases and
// TLS certificates, which the controller must watch (for changes of referenced ones) but not hold.
//
// Usage: npm run bench:controller [-- --definitions 500] [--workers 4]
//          [--unrelated-secrets 5000 --secret-kib 100 --secret-namespaces 50 --max-rss-mib 300]
//          [--poll-seconds 5] [--controller-dir DIR]
import { writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { readFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { execa } from "execa";
import { stringify } from "yaml";
import { startKubeApiServer, makeTempDir, removeDir, repoRoot, freePort } from "../test/env/index.ts";
import { parsePrometheusText } from "../test/helpers/api-http.ts";
import { GV, createNamespace, installCrds, must, secretBody, waitFor } from "../test/helpers/kube.ts";
import { runPool } from "../pkg/concurrency/pool.ts";
import { KubeClient, RESOURCES, parseControllerSettings, planRunnerConfig, renderRunnerObjects, type BackupDefinitionObject } from "../pkg/controller/index.ts";

const { values } = parseArgs({
  options: {
    definitions: { type: "string", default: "500" },
    workers: { type: "string", default: "4" },
    "unrelated-secrets": { type: "string", default: "5000" },
    "secret-kib": { type: "string", default: "100" },
    "secret-namespaces": { type: "string", default: "50" },
    "max-rss-mib": { type: "string", default: "300" },
    "poll-seconds": { type: "string", default: "5" },
    "controller-dir": { type: "string" },
  },
});
const N = Number(values.definitions);
const WORKERS = Number(values.workers);
const BULK = Number(values["unrelated-secrets"]);
const BULK_KIB = Number(values["secret-kib"]);
const BULK_NAMESPACES = Array.from({ length: Math.min(Number(values["secret-namespaces"]), Math.max(BULK, 1)) }, (_, i) => `bulk-${i}`);
const MAX_RSS_MIB = Number(values["max-rss-mib"]);
const CTRL_NS = "chbackup-system";
const APP_NAMESPACES = Array.from({ length: 10 }, (_, i) => `team-${i}`);
const out = (s: string) => process.stdout.write(`${s}\n`);

const pool = <T>(items: readonly T[], concurrency: number, fn: (t: T) => Promise<void>) => runPool(items, concurrency, new AbortController().signal, fn);

function definition(ns: string, name: string) {
  return {
    apiVersion: GV,
    kind: "BackupDefinition",
    metadata: { name, namespace: ns },
    spec: {
      storageLocation: "minio",
      clickhouse: { url: `http://clickhouse.${ns}.svc:8123`, passwordSecretRef: { name: "ch-password", key: "password" } },
      schedule: { cron: "0 * * * *", timeZone: "UTC" },
      retention: { hourly: 24, daily: 7, weekly: 4, monthly: 12 },
    },
  };
}

async function readyCount(kube: Awaited<ReturnType<typeof startKubeApiServer>>, prefix: string): Promise<number> {
  const list = await must<{ items: { metadata: { name: string }; status?: { conditions?: { type: string; status: string }[] } }[] }>(kube, "GET", `/apis/${GV}/backupdefinitions`);
  return list.items.filter((d) => d.metadata.name.startsWith(prefix) && d.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True")).length;
}

/** The samples of one metric as [labels, value], optionally filtered by their labels. */
function series(text: string, name: string, filter: (labels: string) => boolean = () => true): [string, number][] {
  const out: [string, number][] = [];
  for (const [key, value] of parsePrometheusText(text)) {
    const labels = key.startsWith(`${name}{`) ? key.slice(name.length) : key === name ? "" : undefined;
    if (labels !== undefined && filter(labels)) out.push([labels, value]);
  }
  return out;
}
const sum = (s: [string, number][]) => s.reduce((a, [, v]) => a + v, 0);

async function main(): Promise<void> {
  out(`controller benchmark: ${N} definitions in ${APP_NAMESPACES.length} namespaces, ${WORKERS} workers`);
  const kube = await startKubeApiServer();
  const dir = await makeTempDir("bench-controller");
  let ctrl: ReturnType<typeof execa> | undefined;
  let stubServer: ReturnType<typeof createServer> | undefined;
  try {
    out(`kube-apiserver ${kube.version}, etcd ${kube.etcdVersion}`);
    await installCrds(kube);
    for (const ns of [CTRL_NS, ...APP_NAMESPACES, "baseline"]) await createNamespace(kube, ns);
    for (const ns of [...APP_NAMESPACES, "baseline"]) await must(kube, "POST", `/api/v1/namespaces/${ns}/secrets`, secretBody(ns, "ch-password", { password: `pw-${ns}` }));
    await must(kube, "POST", `/api/v1/namespaces/${CTRL_NS}/secrets`, secretBody(CTRL_NS, "minio-creds", { accessKeyId: "AK", secretAccessKey: "SK" }));
    await must(kube, "POST", `/apis/${GV}/namespaces/${CTRL_NS}/storagelocations`, {
      apiVersion: GV, kind: "StorageLocation", metadata: { name: "minio", namespace: CTRL_NS },
      spec: { s3: { endpoint: "http://minio:9000", bucket: "backups", forcePathStyle: true, credentialsSecretRef: { name: "minio-creds" } } },
    });

    // Baseline: the same objects written by a plain loop (no informers, no diffing), into a namespace the controller ignores.
    const settings = parseControllerSettings({ namespace: "baseline", runnerImage: "runner:bench", leaderElection: { identity: "bench" } });
    const client = new KubeClient({ kubeConfig: kube.kubeConfig() });
    const loc = await must<{ spec: never }>(kube, "GET", `/apis/${GV}/namespaces/${CTRL_NS}/storagelocations/minio`);
    const sec = await must<{ data: Record<string, string> }>(kube, "GET", `/api/v1/namespaces/${CTRL_NS}/secrets/minio-creds`);
    const tb = performance.now();
    await pool(Array.from({ length: N }, (_, i) => i), WORKERS, async (i) => {
      const name = `base-${i}`;
      const def = await client.create<BackupDefinitionObject>(RESOURCES.backupDefinitions, "baseline", definition("baseline", name));
      const plan = planRunnerConfig({
        definition: def, controllerNamespace: "baseline", token: "benchmark-token-0123456789",
        location: () => ({ metadata: { name: "minio" }, spec: loc.spec }),
        secret: (ns, n) => (n === "minio-creds" ? { metadata: { name: n }, data: sec.data } : { metadata: { name: n }, data: { password: Buffer.from(`pw-${ns}`).toString("base64") } }),
      });
      if (!plan.ok) throw new Error(plan.message);
      const o = renderRunnerObjects(plan, settings);
      await client.apply(RESOURCES.secrets, "baseline", o.name, o.secret);
      await client.apply(RESOURCES.statefulSets, "baseline", o.name, o.statefulSet);
      await client.apply(RESOURCES.services, "baseline", o.name, o.service);
      await client.patch(RESOURCES.backupDefinitions, "baseline", name, { status: { conditions: [{ type: "Ready", status: "True", reason: "Reconciled", message: "", lastTransitionTime: new Date().toISOString().replace(/\.\d+Z$/, "Z") }] } }, "status");
    });
    const baselineMs = performance.now() - tb;
    // The controller watches every namespace: take the baseline's definitions away before it starts.
    await must(kube, "DELETE", `/apis/${GV}/namespaces/baseline/backupdefinitions`);
    client.close();
    out(`baseline        ${N} × (create definition + apply Secret, StatefulSet, Service + status), ${WORKERS} at a time: ${(baselineMs / 1000).toFixed(2)} s`);

    // Unrelated Secrets: no definition refers to them.
    if (BULK > 0) {
      const tbulk = performance.now();
      for (const ns of BULK_NAMESPACES) await createNamespace(kube, ns);
      await pool(Array.from({ length: BULK }, (_, i) => i), 16, async (i) => {
        const ns = BULK_NAMESPACES[i % BULK_NAMESPACES.length]!;
        await must(kube, "POST", `/api/v1/namespaces/${ns}/secrets`, {
          apiVersion: "v1", kind: "Secret", metadata: { name: `unrelated-${i}`, namespace: ns },
          data: { blob: randomBytes(BULK_KIB * 1024).toString("base64") },
        });
      });
      out(`secrets         ${BULK} unrelated Secrets of ${BULK_KIB} KiB in ${BULK_NAMESPACES.length} namespaces created in ${((performance.now() - tbulk) / 1000).toFixed(1)} s (${((BULK * BULK_KIB) / 1024).toFixed(0)} MiB of data)`);
    }

    // The controller, as its own process, with a kubeconfig file like any user's.
    const kubeconfig = join(dir, "kubeconfig");
    await writeFile(kubeconfig, stringify({
      apiVersion: "v1", kind: "Config", "current-context": "bench",
      clusters: [{ name: "bench", cluster: { server: kube.server, "certificate-authority-data": Buffer.from(kube.caPem).toString("base64") } }],
      users: [{ name: "admin", user: { token: kube.token } }],
      contexts: [{ name: "bench", context: { cluster: "bench", user: "admin" } }],
    }), { mode: 0o600 });
    const probePort = await freePort();
    const resyncSeconds = 20;
    // 0: no status polls (to tell their cost from the reconcile's).
    const pollSeconds = Number(values["poll-seconds"]);
    // One stub answers as every runner: ready, a backup 10 minutes old, the next run in 50 minutes.
    const backupEnd = new Date(Date.now() - 10 * 60_000).toISOString();
    const stub = createServer((req, res) => {
      const path = (req.url ?? "").replace(/^\/r\/[^/]+/, "");
      const body =
        path === "/readyz"
          ? { ready: true, checks: { runner: "ok", storage: "ok", engine: "ok" } }
          : path === "/api/v1/status"
            ? { ready: true, nextRun: new Date(Date.parse(backupEnd) + 60 * 60_000).toISOString(), consecutiveFailures: 0, backups: 1, unreadableBackups: 0, lastSuccess: {}, lastFailure: {}, current: null, lastVerified: null }
            : { backups: [{ id: "20261201T000000Z-abcdef", state: "complete", foreign: false, endedAt: backupEnd, durationMs: 4200, bytes: 123_456, rows: 1000 }] };
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify(body));
    });
    await new Promise<void>((r) => stub.listen(0, "127.0.0.1", r));
    stubServer = stub;
    const stubUrl = `http://127.0.0.1:${(stub.address() as AddressInfo).port}/r/{service}`;
    // --controller-dir: the controller of another checkout (a git worktree of an earlier commit), measured the same way.
    const controllerRoot = values["controller-dir"] ?? repoRoot;
    if (values["controller-dir"]) out(`controller code from ${controllerRoot}`);
    // The V8 flags of the controller image (deploy/docker/controller.Dockerfile), but a smaller old space.
    const imageFlags = (/^ENTRYPOINT \["node", ((?:"--[^"]+", )+)/m.exec(readFileSync(join(repoRoot, "deploy", "docker", "controller.Dockerfile"), "utf8"))?.[1] ?? "")
      .split(", ")
      .map((f) => f.replace(/"/g, ""))
      .filter((f) => f.startsWith("--") && !f.startsWith("--max-old-space-size"));
    out(`node flags      ${[...imageFlags, "--max-old-space-size=256"].join(" ")} (the image's, with a smaller old space)`);
    ctrl = execa(process.execPath, [...imageFlags, "--max-old-space-size=256", join(controllerRoot, "cmd", "backup-controller", "main.ts"), "--kubeconfig", kubeconfig], {
      env: { CONTROLLER_NAMESPACE: CTRL_NS, RUNNER_IMAGE: "runner:bench", PROBE_PORT: String(probePort), RESYNC_SECONDS: String(resyncSeconds), RUNNER_STATUS_SECONDS: String(pollSeconds), RUNNER_URL_TEMPLATE: stubUrl, WORKERS: String(WORKERS), POD_NAME: "bench-controller", LOG_LEVEL: "warn" },
      stdout: "ignore", stderr: { file: join(dir, "controller.log") }, reject: false, cleanup: true,
    });
    const pid = ctrl.pid!;
    const tstart = performance.now();
    const alive = () => {
      try {
        return !/State:\s+Z/.test(readFileSync(`/proc/${pid}/status`, "utf8"));
      } catch {
        return false;
      }
    };
    const metricsText = async () => (await fetch(`http://127.0.0.1:${probePort}/metrics`)).text();
    // Writes of the reconcile loop: lease renewals are leader election's own.
    const writeSeries = async () => series(await metricsText(), "chbackup_controller_api_requests_total", (l) => /verb="(patch|create|update|delete)"/.test(l) && !/resource="leases"/.test(l));
    const writes = async () => sum(await writeSeries());
    const reconciles = async () => sum(series(await metricsText(), "chbackup_controller_reconciles_total"));
    const polls = async () => sum(series(await metricsText(), "chbackup_controller_runner_polls_total"));
    const rssMiB = () => Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0) / 1024;
    // Where the memory is: the V8 heap and memory outside it (buffers), sampled every second.
    const memPeak = { heapUsed: 0, heapTotal: 0, external: 0 };
    const memSampler = setInterval(() => {
      metricsText().then(
        (t) => {
          const m = parsePrometheusText(t);
          memPeak.heapUsed = Math.max(memPeak.heapUsed, m.get("nodejs_heap_size_used_bytes") ?? 0);
          memPeak.heapTotal = Math.max(memPeak.heapTotal, m.get("nodejs_heap_size_total_bytes") ?? 0);
          memPeak.external = Math.max(memPeak.external, m.get("nodejs_external_memory_bytes") ?? 0);
        },
        () => undefined,
      );
    }, 1000);
    await waitFor("controller leading and synced", async () => {
      if (!alive()) throw new Error("the controller exited (see its log above)");
      const r = await fetch(`http://127.0.0.1:${probePort}/readyz`).catch(() => undefined);
      return r?.ok && ((await r.json()) as { leader: boolean }).leader;
    }, 180_000);
    out(`start           leading with every cache synced ${((performance.now() - tstart) / 1000).toFixed(2)} s after the process started; peak RSS so far ${rssMiB().toFixed(0)} MiB`);

    const t0 = performance.now();
    const names = Array.from({ length: N }, (_, i) => ({ ns: APP_NAMESPACES[i % APP_NAMESPACES.length]!, name: `def-${i}` }));
    await pool(names, 16, async ({ ns, name }) => void (await must(kube, "POST", `/apis/${GV}/namespaces/${ns}/backupdefinitions`, definition(ns, name))));
    const createdMs = performance.now() - t0;
    await waitFor(`${N} definitions Ready`, async () => (await readyCount(kube, "def-")) === N, 300_000, 250);
    const readyMs = performance.now() - t0;
    await new Promise((r) => setTimeout(r, 1000));
    const w1 = await writes();
    out(`controller      ${N} definitions created in ${(createdMs / 1000).toFixed(2)} s, all Ready after ${(readyMs / 1000).toFixed(2)} s (ratio ${(readyMs / baselineMs).toFixed(2)}× the baseline)`);
    const heapAtReady = memPeak.heapTotal;
    const breakdown = (await writeSeries()).map(([labels, v]) => `${labels} ${v}`);
    out(`writes          ${w1} API writes = ${(w1 / N).toFixed(2)} per definition (finalizer, Secret, StatefulSet, Service, status, Event); ${await reconciles()} reconciles`);
    for (const b of breakdown) out(`                  ${b}`);

    // Status polls: the first round after Ready writes the conditions and figures; then nothing changes.
    const p0 = await polls();
    if (pollSeconds > 0) await waitFor("two rounds of status polls", async () => (await polls()) >= p0 + 2 * N, (2 * pollSeconds + 120) * 1000, 250);
    await new Promise((r) => setTimeout(r, 1000));
    const wPolled = await writes();
    const heapAfterPolls = memPeak.heapTotal;
    // A full resync: every definition reconciled again; nothing may be written (nor by the polls meanwhile).
    const r0 = await reconciles();
    const p1 = await polls();
    await waitFor("a full resync", async () => (await reconciles()) >= r0 + N, (resyncSeconds + 60) * 1000, 250);
    if (pollSeconds > 0) await waitFor("two more rounds of status polls", async () => (await polls()) >= p1 + 2 * N, (2 * pollSeconds + 120) * 1000, 250);
    await new Promise((r) => setTimeout(r, 2000));
    const w2 = await writes();
    const pollsQuiet = (await polls()) - p1;
    out(`status polls    first rounds after Ready: ${wPolled - w1} writes (${((wPolled - w1) / N).toFixed(2)} per definition: status with RunnerReady, BackupHealthy and the figures, and their Events)`);
    out(`                then ${pollsQuiet} polls that learned nothing new: ${w2 - wPolled} writes (${((w2 - wPolled) / Math.max(pollsQuiet, 1)).toFixed(2)} per definition per poll)`);
    out(`resync          ${(await reconciles()) - r0} reconciles, ${w2 - wPolled} writes`);
    const w1Resync = wPolled;
    const hwm = rssMiB();
    clearInterval(memSampler);
    const mib = (b: number) => (b / 1048576).toFixed(0);
    out(`memory          sampled each second: V8 heap used ≤ ${mib(memPeak.heapUsed)} MiB, heap total ≤ ${mib(memPeak.heapTotal)} MiB (${mib(heapAtReady)} until all Ready, ${mib(heapAfterPolls)} after the first poll rounds), external ≤ ${mib(memPeak.external)} MiB`);
    out(`peak RSS        ${hwm.toFixed(0)} MiB (controller process, ${N} definitions, ${N * 3} runner objects, ${N + APP_NAMESPACES.length + 2 + N} Secrets the controller uses and ${BULK} unrelated ones; limit ${MAX_RSS_MIB} MiB)`);
    if (w2 - w1Resync !== 0) throw new Error(`a full resync and quiet status polls made ${w2 - w1Resync} writes`);
    if (hwm > MAX_RSS_MIB) throw new Error(`peak RSS ${hwm.toFixed(0)} MiB is above ${MAX_RSS_MIB} MiB`);
  } catch (err: unknown) {
    const log = readFileSync(join(dir, "controller.log"), { encoding: "utf8", flag: "a+" });
    const lines = log.split("\n");
    process.stderr.write(`controller log (first warnings, last lines):\n${[...lines.filter((l) => l.includes("\"warn\"")).slice(0, 5), "...", ...lines.slice(-5)].join("\n")}\n`);
    throw err;
  } finally {
    if (ctrl) {
      ctrl.kill("SIGTERM");
      await ctrl;
    }
    stubServer?.close();
    await kube.stop();
    await removeDir(dir);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:controller FAILED: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(1);
});
