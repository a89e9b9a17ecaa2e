// Wiring of one controller process: API client, metrics, the probe/metrics
// server, leader election, and the controller that runs while leading.
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import type { KubeConfig } from "@kubernetes/client-node";
import type { Logger } from "winston";
import { Controller, type ControllerHooks } from "./controller.ts";
import { KubeClient, type RequestRecord } from "./kube.ts";
import { LeaderElector } from "./leader.ts";
import { RestoreController, httpRunnerRestoreClient } from "./restores.ts";
import { ControllerMetrics } from "./metrics.ts";
import { runnerSnapshotFetcher, clusterRunnerUrl, templateRunnerUrl, type RunnerUrl } from "./runnerstatus.ts";
import { RUNNER_CONTAINER } from "./contract.ts";
import type { ControllerSettings } from "./settings.ts";
import { describeError } from "../common/errors.ts";

export interface ControllerAppDeps {
  kubeConfig: KubeConfig;
  settings: ControllerSettings;
  logger: Logger;
  /** Where runners answer (default: their Service's cluster DNS name). */
  runnerUrl?: RunnerUrl;
  /** Extra observer of API requests (tests). */
  observe?: (r: RequestRecord) => void;
  defaultMetrics?: boolean;
}

export interface ControllerApp {
  readonly metrics: ControllerMetrics;
  readonly client: KubeClient;
  /** The controller while leading, else undefined. */
  controller(): Controller | undefined;
  /** The Restore controller while leading, else undefined. */
  restores(): RestoreController | undefined;
  isLeader(): boolean;
  /** Port the probe server listens on (the one chosen by the kernel when settings.probePort is 0). */
  readonly probePort: number;
  /** Resolves when the app stopped. */
  readonly done: Promise<void>;
  stop(): Promise<void>;
}

export async function startControllerApp(deps: ControllerAppDeps): Promise<ControllerApp> {
  const { settings, logger } = deps;
  const metrics = new ControllerMetrics({ defaultMetrics: deps.defaultMetrics ?? true });
  const client = new KubeClient({
    kubeConfig: deps.kubeConfig,
    observe: (r) => {
      metrics.observeRequest(r);
      deps.observe?.(r);
    },
  });
  // Where runners answer: for the status polls and the Restores alike.
  const runnerUrl = deps.runnerUrl ?? (settings.runnerUrlTemplate ? templateRunnerUrl(settings.runnerUrlTemplate) : clusterRunnerUrl(RUNNER_CONTAINER.port));
  const hooks: ControllerHooks = {
    reconciled: metrics.observeReconcile,
    runnerSnapshot: runnerSnapshotFetcher(runnerUrl),
    polled: (ok) => metrics.runnerPolls.inc({ result: ok ? "ok" : "unreachable" }),
    health: (namespace, name, h) => {
      if (!h) {
        metrics.definitionLastSuccess.remove({ namespace, name });
        metrics.definitionHealthy.remove({ namespace, name });
        metrics.definitionSuspended.remove({ namespace, name });
        return;
      }
      metrics.definitionSuspended.set({ namespace, name }, h.suspended ? 1 : 0);
      if (h.lastSuccessSeconds !== undefined) metrics.definitionLastSuccess.set({ namespace, name }, h.lastSuccessSeconds);
      if (h.healthy !== undefined) metrics.definitionHealthy.set({ namespace, name }, h.healthy ? 1 : 0);
    },
  };
  let controller: Controller | undefined;
  let restores: RestoreController | undefined;
  let starting: Promise<void> | undefined;
  const abort = new AbortController();

  // Starting waits for the caches, which may take long or never happen (RBAC refuses a list, a CRD
  // is missing): nothing waits for it, and stopping ends it.
  const lead = async () => {
    metrics.leader.set(1);
    controller = new Controller({ client, settings, logger, hooks });
    const c = controller;
    // Restore objects, on the definition controller's caches (definitions, runner Secrets).
    const r = (restores = new RestoreController({ client, settings, logger, metrics, definitions: c.defs, secrets: c.secrets, cachesReady: () => c.ready, runner: httpRunnerRestoreClient(runnerUrl) }));
    starting = Promise.all([c.start(), r.start()]).then(() => undefined, (err: unknown) => {
      logger.error("controller start failed", { error: describeError(err) });
    });
    await starting;
  };
  const unlead = async () => {
    metrics.leader.set(0);
    const c = controller;
    controller = undefined;
    const r = restores;
    restores = undefined;
    await Promise.all([c?.stop(), r?.stop()]);
    await starting;
  };

  const server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    const send = (code: number, body: string, type = "application/json") => {
      res.writeHead(code, { "content-type": type });
      res.end(body);
    };
    if (req.method !== "GET") return send(405, JSON.stringify({ error: "method not allowed" }));
    if (path === "/healthz") {
      // A leader whose caches have not synced for cacheSyncTimeoutSeconds fails, so Kubernetes restarts it.
      const sync = controller?.syncStatus();
      if (sync && !sync.synced && sync.waitingSeconds >= settings.cacheSyncTimeoutSeconds) {
        const why = sync.waiting.map((w) => `${w.resource}: ${w.error}`).join("; ");
        return send(503, JSON.stringify({ status: "unhealthy", reason: `caches not synced after ${Math.floor(sync.waitingSeconds)} s (limit ${settings.cacheSyncTimeoutSeconds} s): ${why}` }));
      }
      return send(200, JSON.stringify({ status: "ok" }));
    }
    if (path === "/readyz") {
      // A standby replica is ready (it only waits for the lease); the leader once its caches are in.
      const c = controller;
      if (!c) return send(200, JSON.stringify({ status: "ok", leader: false }));
      const sync = c.syncStatus();
      if (c.ready) return send(200, JSON.stringify({ status: "ok", leader: true }));
      return send(503, JSON.stringify({ status: "syncing", leader: true, waitingSeconds: Math.floor(sync.waitingSeconds), waitingFor: sync.waiting }));
    }
    if (path === "/metrics") {
      metrics.registry.metrics().then(
        (text) => send(200, text, metrics.registry.contentType),
        (err: unknown) => {
          logger.warn("metrics could not be collected", { error: describeError(err) });
          send(500, JSON.stringify({ error: "metrics could not be collected" }));
        },
      );
      return;
    }
    send(404, JSON.stringify({ error: "not found" }));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(settings.probePort, settings.probeHost, () => resolve());
  });
  const probePort = (server.address() as AddressInfo).port;

  let done: Promise<void>;
  if (settings.leaderElection.enabled) {
    const le = settings.leaderElection;
    const elector = new LeaderElector({
      client,
      namespace: settings.namespace,
      leaseName: le.leaseName,
      identity: le.identity,
      leaseDurationMs: le.leaseDurationSeconds * 1000,
      renewDeadlineMs: le.renewDeadlineSeconds * 1000,
      retryPeriodMs: le.retryPeriodSeconds * 1000,
      logger,
      onStartedLeading: lead,
      // A replica that lost the lease (say, the apiserver was away longer than the lease) stops its
      // controller, drops its caches and campaigns again in the same process; the new term starts
      // from fresh caches, so nothing of the old term carries over.
      onStoppedLeading: unlead,
    });
    done = elector.run(abort.signal);
  } else {
    lead().catch((err: unknown) => logger.error("controller start failed", { error: describeError(err) }));
    done = new Promise<void>((resolve) =>
      abort.signal.addEventListener(
        "abort",
        () =>
          unlead()
            .catch((err: unknown) => logger.error("controller stop failed", { error: describeError(err) }))
            .finally(resolve),
        { once: true },
      ),
    );
  }

  const finished = done.finally(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeAllConnections();
    client.close();
  });
  finished.catch(() => undefined);

  return {
    metrics,
    client,
    controller: () => controller,
    restores: () => restores,
    isLeader: () => controller !== undefined,
    probePort,
    done: finished,
    stop: async () => {
      abort.abort();
      await finished.catch(() => undefined);
    },
  };
}
