// A real Kubernetes API server without nodes, like controller-runtime's envtest:
// etcd (Debian etcd-server) + kube-apiserver (built from the Go module proxy,
// scripts/build-kube-apiserver.sh). Certificates, a service-account signing
// key and a static admin token are generated at start.
import { randomBytes, generateKeyPairSync } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { request } from "node:https";
import { execa } from "execa";
import { KubeConfig } from "@kubernetes/client-node";
import { etcdBinary, kubeApiserverBinary, readVersions } from "./tools.ts";
import { freePort, makeTempDir, removeDir, startProcess, waitUntil, type ManagedProcess } from "./proc.ts";

export interface KubeApiServer {
  readonly server: string;
  readonly token: string;
  readonly caPem: string;
  readonly version: string;
  readonly etcdVersion: string;
  readonly ports: readonly number[];
  pids(): number[];
  /**
   * A raw JSON request as admin. Useful for objects whose fields the typed
   * client's serializer would drop (it silently drops `x-kubernetes-*` keys of CRD schemas).
   */
  /** `accept` other than JSON, e.g. the Table form kubectl asks for. */
  request(method: string, path: string, body?: unknown, contentType?: string, accept?: string): Promise<{ status: number; body: unknown }>;
  /** Server-side applies a raw object (JSON) with the given field manager. */
  apply(path: string, obj: unknown, fieldManager: string): Promise<unknown>;
  /** A KubeConfig (admin, system:masters) for @kubernetes/client-node. */
  kubeConfig(): KubeConfig;
  /** Fault injection: stops kube-apiserver (etcd keeps the data); startApiServer() brings it back on the same port. */
  stopApiServer(): Promise<void>;
  startApiServer(): Promise<void>;
  stop(): Promise<void>;
}

export async function startKubeApiServer(): Promise<KubeApiServer> {
  const apiserverBin = kubeApiserverBinary();
  const etcdBin = etcdBinary();
  const dir = await makeTempDir("kube");
  const [etcdClient, etcdPeer, securePort] = [await freePort(), await freePort(), await freePort()];
  const procs: ManagedProcess[] = [];
  const stopAll = async () => {
    for (const p of procs.reverse()) await p.stop(10_000);
    await removeDir(dir);
  };
  try {
    const etcdUrl = `http://127.0.0.1:${etcdClient}`;
    const etcd = startProcess(
      "etcd",
      etcdBin,
      [
        "--name=test",
        `--data-dir=${join(dir, "etcd")}`,
        `--listen-client-urls=${etcdUrl}`,
        `--advertise-client-urls=${etcdUrl}`,
        `--listen-peer-urls=http://127.0.0.1:${etcdPeer}`,
        `--initial-advertise-peer-urls=http://127.0.0.1:${etcdPeer}`,
        `--initial-cluster=test=http://127.0.0.1:${etcdPeer}`,
        "--unsafe-no-fsync",
        "--log-level=warn",
      ],
      { logFile: join(dir, "etcd.log") },
    );
    procs.push(etcd);
    await waitUntil("etcd", async () => (await fetch(`${etcdUrl}/health`, { signal: AbortSignal.timeout(1000) })).ok, {
      proc: etcd,
    });
    const etcdVersion = ((await (await fetch(`${etcdUrl}/version`)).json()) as { etcdserver?: string }).etcdserver ?? "unknown";

    // Serving certificate (self-signed, valid for the loopback address) and service-account keys.
    const certs = join(dir, "certs");
    await mkdir(certs, { recursive: true });
    await execa("openssl", [
      "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
      "-keyout", join(certs, "apiserver.key"), "-out", join(certs, "apiserver.crt"),
      "-subj", "/CN=kube-apiserver", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
    ]);
    const sa = generateKeyPairSync("rsa", { modulusLength: 2048 });
    await writeFile(join(certs, "sa.key"), sa.privateKey.export({ type: "pkcs8", format: "pem" }));
    await writeFile(join(certs, "sa.pub"), sa.publicKey.export({ type: "spki", format: "pem" }));
    const token = randomBytes(24).toString("hex");
    await writeFile(join(dir, "tokens.csv"), `${token},admin,admin,"system:masters"\n`, { mode: 0o600 });

    const apiserverArgs = [
      `--etcd-servers=${etcdUrl}`,
      `--secure-port=${securePort}`,
      "--bind-address=127.0.0.1",
      "--advertise-address=127.0.0.1",
      `--tls-cert-file=${join(certs, "apiserver.crt")}`,
      `--tls-private-key-file=${join(certs, "apiserver.key")}`,
      `--token-auth-file=${join(dir, "tokens.csv")}`,
      "--authorization-mode=RBAC",
      "--service-account-issuer=https://kubernetes.default.svc",
      `--service-account-key-file=${join(certs, "sa.pub")}`,
      `--service-account-signing-key-file=${join(certs, "sa.key")}`,
      "--disable-admission-plugins=ServiceAccount",
      "--service-cluster-ip-range=10.96.0.0/16",
      "--allow-privileged=true",
      // No nodes and no kube-proxy here: do not reconcile the kubernetes Service endpoints (as envtest does).
      "--endpoint-reconciler-type=none",
      // A fresh server bootstraps its priority-and-fairness objects after /readyz; until then requests
      // can be refused with 429. Tests want a deterministic server: plain max-in-flight limits instead.
      "--enable-priority-and-fairness=false",
      `--cert-dir=${certs}`,
      "--v=0",
    ];
    let apiserver = startProcess("kube-apiserver", apiserverBin, apiserverArgs, { logFile: join(dir, "kube-apiserver.log") });
    procs.push(apiserver);
    const caPem = await readFile(join(certs, "apiserver.crt"), "utf8");
    const server = `https://127.0.0.1:${securePort}`;
    const kubeConfig = () => {
      const kc = new KubeConfig();
      kc.loadFromOptions({
        clusters: [{ name: "test", server, caData: Buffer.from(caPem).toString("base64"), skipTLSVerify: false }],
        users: [{ name: "admin", token }],
        contexts: [{ name: "test", cluster: "test", user: "admin", namespace: "default" }],
        currentContext: "test",
      });
      return kc;
    };
    // Node's fetch takes no custom CA: https.request with the generated certificate.
    const rawRequest = (method: string, path: string, body?: unknown, contentType = "application/json", accept = "application/json") =>
      new Promise<{ status: number; body: unknown }>((resolve, reject) => {
        const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
        const req = request(
          `${server}${path}`,
          {
            method,
            ca: caPem,
            timeout: 10_000,
            headers: { authorization: `Bearer ${token}`, accept, ...(data ? { "content-type": contentType } : {}) },
          },
          (res) => {
            const chunks: Buffer[] = [];
            res.on("data", (c: Buffer) => chunks.push(c));
            res.on("end", () => {
              const text = Buffer.concat(chunks).toString("utf8");
              let parsed: unknown = text;
              try {
                parsed = JSON.parse(text);
              } catch {
                // not JSON
              }
              resolve({ status: res.statusCode ?? 0, body: parsed });
            });
          },
        );
        req.on("error", reject);
        req.on("timeout", () => req.destroy(new Error(`${method} ${path}: no answer in 10 s`)));
        req.end(data);
      });
    const waitReady = () =>
      waitUntil("kube-apiserver /readyz", async () => (await rawRequest("GET", "/readyz")).status === 200, {
        proc: apiserver,
        timeoutMs: 90_000,
        intervalMs: 500,
      });
    await waitReady();
    return {
      request: rawRequest,
      apply: async (path, obj, fieldManager) => {
        const sep = path.includes("?") ? "&" : "?";
        const r = await rawRequest("PATCH", `${path}${sep}fieldManager=${encodeURIComponent(fieldManager)}&force=true`, obj, "application/apply-patch+yaml");
        if (r.status >= 300) throw new Error(`apply ${path}: HTTP ${r.status}: ${JSON.stringify(r.body)}`);
        return r.body;
      },
      server,
      token,
      caPem,
      version: readVersions().KUBERNETES_VERSION,
      etcdVersion,
      ports: [etcdClient, etcdPeer, securePort],
      pids: () => procs.map((p) => p.pid),
      kubeConfig,
      stopApiServer: async () => {
        await apiserver.stop(10_000);
      },
      startApiServer: async () => {
        if (!apiserver.exited()) return;
        const i = procs.indexOf(apiserver);
        apiserver = startProcess("kube-apiserver", apiserverBin, apiserverArgs, { logFile: join(dir, "kube-apiserver.log") });
        procs[i] = apiserver;
        await waitReady();
      },
      stop: stopAll,
    };
  } catch (err: unknown) {
    await stopAll();
    throw err;
  }
}
