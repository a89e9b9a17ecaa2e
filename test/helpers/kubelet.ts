// The kubelet's part, played by a test: there is no kubelet next to the test
// kube-apiserver, so this starts `backup-runner serve` as a process from the
// config Secret the controller wrote (as the StatefulSet's pod would mount
// it), reports the pod ready on the StatefulSet's status (as the StatefulSet
// controller would), and stops it again.
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { runnerName } from "../../pkg/controller/index.ts";
import { freePort, repoRoot, type KubeApiServer } from "../env/index.ts";
import { startProcess, waitUntil, type ManagedProcess } from "../env/proc.ts";
import { apiClient } from "./api-http.ts";
import { must } from "./kube.ts";

export interface RunnerProcess {
  name: string;
  url: string;
  token: string;
  proc: ManagedProcess;
  api: ReturnType<typeof apiClient>;
}

export class FakeKubelet {
  readonly #kube: KubeApiServer;
  readonly #ctrlNs: string;
  readonly #dir: string;
  readonly runners = new Map<string, RunnerProcess>();

  constructor(kube: KubeApiServer, controllerNamespace: string, dir: string) {
    this.#kube = kube;
    this.#ctrlNs = controllerNamespace;
    this.#dir = dir;
  }

  /** Where the controller finds a runner's API: the process, or a closed port when it is not running. */
  runnerUrl = (svc: { name: string }): string => this.runners.get(svc.name)?.url ?? "http://127.0.0.1:9";

  /** Starts (or restarts) the runner of `namespace/definition` from its current Secret; marks its pod ready. */
  async start(namespace: string, definition: string, env: Record<string, string> = {}): Promise<RunnerProcess> {
    const name = runnerName(namespace, definition);
    await this.stop(namespace, definition);
    const secret = await must<{ data: Record<string, string> }>(this.#kube, "GET", `/api/v1/namespaces/${this.#ctrlNs}/secrets/${name}`);
    const config = JSON.parse(Buffer.from(secret.data["config.json"]!, "base64").toString("utf8")) as { definition: { stateDir?: string } };
    // The pod's scratch volume: a directory of its own per runner, kept across restarts.
    config.definition.stateDir = join(this.#dir, `${name}-volume`, "state");
    const token = Buffer.from(secret.data["token"]!, "base64").toString("utf8");
    const path = join(this.#dir, `${name}.json`);
    await writeFile(path, JSON.stringify(config), { mode: 0o600 });
    const port = await freePort();
    const proc = startProcess("backup-runner", join(repoRoot, "bin", "backup-runner"), ["serve", "--config", path], {
      env: { RUNNER_LISTEN: `127.0.0.1:${port}`, LOG_LEVEL: "info", RUNNER_SHUTDOWN_GRACE_MS: "10000", ...env },
      logFile: join(this.#dir, `${name}.log`),
    });
    const url = `http://127.0.0.1:${port}`;
    // Like a readiness probe that only waits for the process to answer (it may still be unready).
    await waitUntil(`runner ${name} answers`, async () => (await fetch(`${url}/healthz`).catch(() => undefined))?.ok === true, { proc, timeoutMs: 60_000 });
    const r = { name, url, token, proc, api: apiClient(url, token) };
    this.runners.set(name, r);
    await this.setReady(name, 1);
    return r;
  }

  async stop(namespace: string, definition: string, opts: { podReady?: boolean } = {}): Promise<void> {
    const name = runnerName(namespace, definition);
    const r = this.runners.get(name);
    this.runners.delete(name);
    await r?.proc.stop(15_000);
    if (r && !opts.podReady) await this.setReady(name, 0);
  }

  /** The StatefulSet's status as the StatefulSet controller reports it. */
  async setReady(name: string, readyReplicas: number): Promise<void> {
    await must(
      this.#kube,
      "PATCH",
      `/apis/apps/v1/namespaces/${this.#ctrlNs}/statefulsets/${name}/status`,
      { status: { replicas: 1, readyReplicas, availableReplicas: readyReplicas, currentReplicas: 1, updatedReplicas: 1 } },
      "application/merge-patch+json",
    );
  }

  async stopAll(): Promise<void> {
    for (const r of this.runners.values()) await r.proc.stop(15_000);
    this.runners.clear();
  }
}
