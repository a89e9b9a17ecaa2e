// Restore objects end to end on real servers: kube-apiserver + etcd, ClickHouse 18.16, and a real
// backup-runner process started from the config Secret the controller wrote (the test plays the
// kubelet, as test/e2e.test.ts does), with its backups in a directory (a filesystem
// StorageLocation). A Restore is sent to the runner once, its status mirrors the runner's
// operation, a busy runner makes it wait, a controller that goes away while it runs (or between
// sending it and writing its status) never makes the runner restore twice, deleting a running
// Restore leaves its operation running (and says so), the spec is immutable, and a Restore of a
// missing definition waits without writing.
import { request } from "node:https";
import { readFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runnerName, type ControllerApp, type RequestRecord } from "../pkg/controller/index.ts";
import { parseYamlDocs } from "../pkg/deploy/kustomize.ts";
import { startClickHouse, startKubeApiServer, makeTempDir, removeDir, repoRoot, freePort, type ClickHouseServer, type KubeApiServer } from "./env/index.ts";
import { startProcess, waitUntil, type ManagedProcess } from "./env/proc.ts";
import { apiClient, pollJson } from "./helpers/api-http.ts";
import { GV, createNamespace, installCrds, must, secretBody, startTestController, waitEvents, waitFor, waitReady } from "./helpers/kube.ts";
import { tableChecksum } from "./helpers/runner.ts";

const CTRL_NS = "chbackup-system";
const APP_NS = "shop";
const ROWS = 1_000_000;

interface RestoreObj {
  metadata: { name: string; uid: string; resourceVersion: string };
  spec: Record<string, unknown>;
  status?: {
    phase?: string;
    reason?: string;
    message?: string;
    operationId?: string;
    backupId?: string;
    rowsRestored?: number;
    bytesRestored?: number;
    startedAt?: string;
    completedAt?: string;
    error?: string;
    progress?: { tablesDone?: number; tablesTotal?: number; rows?: number };
  };
}
interface OperationView {
  id: string;
  kind: string;
  state: string;
  startedAt: string;
  endedAt: string | null;
  idempotencyKey: string | null;
}

/** The Table as kubectl prints it (upper-case headers, columns two spaces apart; wide: with the priority columns). */
function kubectlTable(t: { columnDefinitions: { name: string; priority?: number }[]; rows: { cells: unknown[] }[] }, wide: boolean): string {
  const cols = t.columnDefinitions.map((c, i) => ({ i, c })).filter(({ c }) => wide || !c.priority);
  const lines = [cols.map(({ c }) => c.name.toUpperCase()), ...t.rows.map((r) => cols.map(({ i }) => (r.cells[i] === undefined || r.cells[i] === null ? "<none>" : String(r.cells[i]))))];
  const widths = cols.map((_, j) => Math.max(...lines.map((l) => l[j]!.length)));
  return lines.map((l) => l.map((v, j) => v.padEnd(widths[j]!)).join("   ").trimEnd()).join("\n");
}

describe("Restore objects", () => {
  let kube: KubeApiServer;
  let ch: ClickHouseServer;
  let dir: string;
  let app: ControllerApp;
  let runner: { url: string; proc: ManagedProcess; api: ReturnType<typeof apiClient> } | undefined;
  const requests: RequestRecord[] = [];

  const restorePath = (name = "") => `/apis/${GV}/namespaces/${APP_NS}/restores${name ? `/${name}` : ""}`;
  const restore = (name: string, spec: Record<string, unknown>) => ({ apiVersion: GV, kind: "Restore", metadata: { name, namespace: APP_NS }, spec: { backupDefinition: "orders", ...spec } });
  const getRestore = (name: string) => must<RestoreObj>(kube, "GET", restorePath(name));
  const waitPhase = (name: string, phase: string, timeoutMs = 90_000) =>
    waitFor(`restore ${name} ${phase}`, async () => {
      const r = await getRestore(name);
      if (r.status?.phase === "Failed" && phase !== "Failed") throw new Error(`restore ${name} failed: ${r.status.reason}: ${r.status.message}`);
      return r.status?.phase === phase ? r : undefined;
    }, timeoutMs, 100);
  const operations = async () => ((await runner!.api.get("/api/v1/operations")).json as { operations: OperationView[] }).operations;
  const restoresOf = async (uid: string) => (await operations()).filter((o) => o.kind === "restore" && o.idempotencyKey === `restore-${uid}`);
  const controller = () =>
    startTestController({ kube, namespace: CTRL_NS, observe: (r) => requests.push(r), runnerUrl: (svc) => (svc.name === runnerName(APP_NS, "orders") && runner ? runner.url : "http://127.0.0.1:9") });

  /** What the kubelet would do: mount the runner Secret and start the container. */
  async function startRunner(): Promise<void> {
    const name = runnerName(APP_NS, "orders");
    const secret = await must<{ data: Record<string, string> }>(kube, "GET", `/api/v1/namespaces/${CTRL_NS}/secrets/${name}`);
    const config = JSON.parse(Buffer.from(secret.data["config.json"]!, "base64").toString("utf8")) as { definition: { stateDir?: string } };
    config.definition.stateDir = join(dir, "runner-volume", "state");
    const token = Buffer.from(secret.data["token"]!, "base64").toString("utf8");
    const path = join(dir, "runner.json");
    await writeFile(path, JSON.stringify(config), { mode: 0o600 });
    const port = await freePort();
    const proc = startProcess("backup-runner", join(repoRoot, "bin", "backup-runner"), ["serve", "--config", path], {
      env: { RUNNER_LISTEN: `127.0.0.1:${port}`, LOG_LEVEL: "info", RUNNER_SHUTDOWN_GRACE_MS: "10000" },
      logFile: join(dir, "runner.log"),
    });
    const url = `http://127.0.0.1:${port}`;
    await waitUntil("runner ready", async () => (await fetch(`${url}/readyz`).catch(() => undefined))?.ok === true, { proc, timeoutMs: 60_000 });
    runner = { url, proc, api: apiClient(url, token) };
  }

  /** A request as `token` (an admin's when not given), with its own Accept. */
  function asUser(method: string, path: string, opts: { token?: string; accept?: string; body?: unknown } = {}): Promise<{ status: number; body: any }> {
    const token = opts.token ?? kube.kubeConfig().getCurrentUser()?.token ?? "";
    const u = new URL(path, kube.server);
    const data = opts.body === undefined ? undefined : Buffer.from(JSON.stringify(opts.body));
    return new Promise((resolve, reject) => {
      const req = request(u, { method, ca: kube.caPem, headers: { authorization: `Bearer ${token}`, accept: opts.accept ?? "application/json", ...(data ? { "content-type": "application/json" } : {}) } }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString("utf8") || "null") }));
      });
      req.on("error", reject);
      req.end(data);
    });
  }

  /** The Table kubectl get prints (Accept: as=Table). */
  async function table(path: string): Promise<{ columnDefinitions: { name: string; priority?: number }[]; rows: { cells: unknown[] }[] }> {
    const r = await asUser("GET", path, { accept: "application/json;as=Table;v=v1;g=meta.k8s.io" });
    if (r.status !== 200) throw new Error(`GET ${path} as Table: HTTP ${r.status}`);
    return r.body;
  }

  beforeAll(async () => {
    [kube, ch, dir] = await Promise.all([startKubeApiServer(), startClickHouse(), makeTempDir("restore-object")]);
    await installCrds(kube);
    for (const ns of [CTRL_NS, APP_NS]) await createNamespace(kube, ns);
    await must(kube, "POST", `/api/v1/namespaces/${APP_NS}/secrets`, secretBody(APP_NS, "clickhouse", { password: ch.password }));
    await must(kube, "POST", `/apis/${GV}/namespaces/${CTRL_NS}/storagelocations`, { apiVersion: GV, kind: "StorageLocation", metadata: { name: "local", namespace: CTRL_NS }, spec: { filesystem: { path: join(dir, "backups") } } });
    await ch.exec("CREATE DATABASE shop");
    await ch.exec("CREATE TABLE shop.orders (id UInt64, customer UInt32, note String) ENGINE = MergeTree ORDER BY id");
    await ch.exec(`INSERT INTO shop.orders SELECT number, number % 1000, concat('order ', toString(number)) FROM system.numbers LIMIT ${ROWS}`);
    app = await controller();
    await waitFor("controller leading", async () => app.isLeader() && app.controller()?.ready && app.restores()?.ready);
    await must(kube, "POST", `/apis/${GV}/namespaces/${APP_NS}/backupdefinitions`, {
      apiVersion: GV,
      kind: "BackupDefinition",
      metadata: { name: "orders", namespace: APP_NS },
      spec: {
        storageLocation: "local",
        clickhouse: { url: ch.url, username: ch.username, passwordSecretRef: { name: "clickhouse", key: "password" }, databases: { include: ["shop"] } },
        schedule: { cron: "0 0 1 1 *", timeZone: "UTC" },
      },
    });
    await waitReady(kube, APP_NS, "orders");
    await startRunner();
    // An empty catalog counts as a missed run: the runner's first backup starts at once.
    await pollJson(() => runner!.api.get("/api/v1/status"), (j) => j.current === null && j.backups >= 1, 120_000, 200);
  }, 240_000);
  afterAll(async () => {
    await runner?.proc.stop(15_000);
    await app?.stop();
    await Promise.all([kube?.stop(), ch?.stop()]);
    await removeDir(dir);
  });

  it("a Restore of latest into a renamed database succeeds; its status shows the backup and the rows, which ClickHouse holds", async () => {
    const newest = ((await runner!.api.get("/api/v1/backups")).json as { backups: { id: string }[] }).backups[0]!.id;
    const created = await must<RestoreObj>(kube, "POST", restorePath(), restore("latest", { backup: "latest", databases: ["shop"], renameDatabases: { shop: "shop_restored" } }));
    // Defaults spelled out by the apiserver.
    expect(created.spec).toMatchObject({ existingTables: "fail", allowUnstagedDrop: false });
    const done = await waitPhase("latest", "Succeeded");
    expect(done.status).toMatchObject({ reason: "Succeeded", backupId: newest, rowsRestored: ROWS });
    expect(done.status!.bytesRestored).toBeGreaterThan(0);
    expect(done.status!.operationId).toMatch(/^[0-9a-f-]{36}$/);
    expect(Date.parse(done.status!.completedAt!)).toBeGreaterThanOrEqual(Date.parse(done.status!.startedAt!));
    expect(await tableChecksum(ch, "shop_restored.orders")).toEqual(await tableChecksum(ch, "shop.orders"));
    expect((await ch.query<{ c: string }>("SELECT count() AS c FROM shop_restored.orders"))[0]!.c).toBe(String(ROWS));
    // One operation on the runner, under the Restore's key.
    expect((await restoresOf(created.metadata.uid)).map((o) => o.id)).toEqual([done.status!.operationId]);
    await waitEvents(kube, APP_NS, "Restore", "latest", ["Normal/Succeeded"]);
    // The token is nowhere in the object.
    expect(JSON.stringify(done)).not.toContain(await token());
    // kubectl get restores
    const t = await table(restorePath());
    expect(t.columnDefinitions.filter((c) => !c.priority).map((c) => c.name)).toEqual(["Name", "Definition", "Backup", "Phase", "Rows", "Age"]);
    const row = t.rows.find((r) => r.cells[0] === "latest")!;
    expect(row.cells.slice(0, 5)).toEqual(["latest", "orders", newest, "Succeeded", ROWS]);
    const m = (await app.metrics.registry.getSingleMetric("chbackup_controller_restores")!.get()).values;
    expect(m.find((v) => v.labels["phase"] === "Succeeded")?.value).toBe(1);
  });

  it("a Restore while a backup runs waits (Pending, RunnerBusy), then runs", async () => {
    const backup = await runner!.api.post("/api/v1/backups");
    expect(backup.status).toBe(202);
    const backupId = (backup.json as { operation: { id: string } }).operation.id;
    const created = await must<RestoreObj>(kube, "POST", restorePath(), restore("busy", { databases: ["shop"], renameDatabases: { shop: "shop_busy" } }));
    const waiting = await waitFor("RunnerBusy", async () => {
      const r = await getRestore("busy");
      return r.status?.reason === "RunnerBusy" ? r : undefined;
    }, 30_000, 50);
    expect(waiting.status).toMatchObject({ phase: "Pending", reason: "RunnerBusy" });
    expect(waiting.status!.message).toContain("busy");
    const done = await waitPhase("busy", "Succeeded");
    expect(done.status!.rowsRestored).toBe(ROWS);
    const ops = await operations();
    const b = ops.find((o) => o.id === backupId)!;
    const [r] = await restoresOf(created.metadata.uid);
    expect(b.state).toBe("succeeded");
    // Sent once, after the backup ended.
    expect((await restoresOf(created.metadata.uid)).length).toBe(1);
    expect(Date.parse(r!.startedAt)).toBeGreaterThanOrEqual(Date.parse(b.endedAt!));
    await waitEvents(kube, APP_NS, "Restore", "busy", ["Normal/RunnerBusy", "Normal/Running", "Normal/Succeeded"]);
  });

  it("a controller stopped while a Restore runs, and a fresh one started: the restore runs once", async () => {
    const before = (await operations()).filter((o) => o.kind === "restore").length;
    const created = await must<RestoreObj>(kube, "POST", restorePath(), restore("killed", { databases: ["shop"], renameDatabases: { shop: "shop_killed" } }));
    const running = await waitPhase("killed", "Running", 30_000);
    await app.stop();
    app = await controller();
    const done = await waitPhase("killed", "Succeeded");
    expect(done.status!.operationId).toBe(running.status!.operationId);
    expect(done.status!.rowsRestored).toBe(ROWS);
    expect((await restoresOf(created.metadata.uid)).length).toBe(1);
    expect((await operations()).filter((o) => o.kind === "restore").length).toBe(before + 1);
  });

  it("a controller that sent a Restore and went away before writing its status: the next one adopts the runner's operation, nothing runs twice", async () => {
    await app.stop();
    const before = (await operations()).filter((o) => o.kind === "restore").length;
    const created = await must<RestoreObj>(kube, "POST", restorePath(), restore("crashed", { databases: ["shop"], renameDatabases: { shop: "shop_crashed" } }));
    // What the crashed controller sent, with the Restore's uid as key; its status write never happened.
    const sent = await runner!.api.raw({ method: "POST", path: "/api/v1/restores", body: { backup: "latest", existingTables: "fail", databases: ["shop"], renameDatabases: { shop: "shop_crashed" } }, headers: { "Content-Type": "application/json", "Idempotency-Key": `restore-${created.metadata.uid}` }, token: await token() });
    expect(sent.status).toBe(202);
    const opId = (sent.json as { operation: { id: string } }).operation.id;
    expect((await getRestore("crashed")).status).toBeUndefined();
    app = await controller();
    const done = await waitPhase("crashed", "Succeeded");
    expect(done.status!.operationId).toBe(opId);
    expect((await restoresOf(created.metadata.uid)).map((o) => o.id)).toEqual([opId]);
    expect((await operations()).filter((o) => o.kind === "restore").length).toBe(before + 1);
    expect((await ch.query<{ c: string }>("SELECT count() AS c FROM shop_crashed.orders"))[0]!.c).toBe(String(ROWS));
  });

  it("deleting a running Restore does not stop its operation: it runs to its end, and a Warning Event says so", async () => {
    const created = await must<RestoreObj>(kube, "POST", restorePath(), restore("deleted", { databases: ["shop"], renameDatabases: { shop: "shop_deleted" } }));
    const running = await waitPhase("deleted", "Running", 30_000);
    await must(kube, "DELETE", restorePath("deleted"));
    const ev = (await waitEvents(kube, APP_NS, "Restore", "deleted", ["Warning/DeletedWhileRunning"])).find((e) => e.reason === "DeletedWhileRunning")!;
    expect(ev.message).toContain(`DELETE /api/v1/operations/${running.status!.operationId}`);
    const [op] = await waitFor("the operation ended", async () => {
      const ops = await restoresOf(created.metadata.uid);
      return ops.length === 1 && ops[0]!.state !== "running" ? ops : undefined;
    }, 60_000, 200);
    expect(op!.state).toBe("succeeded");
    expect((await ch.query<{ c: string }>("SELECT count() AS c FROM shop_deleted.orders"))[0]!.c).toBe(String(ROWS));
  });

  it("a failed restore: phase Failed with the runner's error", async () => {
    // shop_restored.orders exists and holds rows, and existingTables is fail.
    await must(kube, "POST", restorePath(), restore("exists", { databases: ["shop"], renameDatabases: { shop: "shop_restored" } }));
    const failed = await waitPhase("exists", "Failed");
    expect(failed.status!.reason).toBe("Failed");
    expect(failed.status!.error).toMatch(/shop_restored\.orders/);
    await waitEvents(kube, APP_NS, "Restore", "exists", ["Warning/Failed"]);
  });

  it("an app team with the Role of examples/restore.yaml creates Restores in its namespace, and nothing elsewhere", async () => {
    const docs = parseYamlDocs(readFileSync(join(repoRoot, "examples", "restore.yaml"), "utf8")) as any[];
    const role = docs.find((d) => d.kind === "Role");
    const binding = { ...docs.find((d) => d.kind === "RoleBinding"), subjects: [{ kind: "ServiceAccount", name: "team", namespace: APP_NS }] };
    await must(kube, "POST", `/api/v1/namespaces/${APP_NS}/serviceaccounts`, { apiVersion: "v1", kind: "ServiceAccount", metadata: { name: "team" } });
    await must(kube, "POST", `/apis/rbac.authorization.k8s.io/v1/namespaces/${APP_NS}/roles`, role);
    await must(kube, "POST", `/apis/rbac.authorization.k8s.io/v1/namespaces/${APP_NS}/rolebindings`, binding);
    const tr = await must<{ status: { token: string } }>(kube, "POST", `/api/v1/namespaces/${APP_NS}/serviceaccounts/team/token`, { apiVersion: "authentication.k8s.io/v1", kind: "TokenRequest", spec: { expirationSeconds: 600 } });
    const token = tr.status.token;
    const mine = await waitFor("the binding in effect", async () => {
      const r = await asUser("POST", `${restorePath()}?dryRun=All`, { token, body: restore("team", {}) });
      return r.status === 201 ? r : undefined;
    }, 10_000);
    expect(mine.body.spec.backupDefinition).toBe("orders");
    expect((await asUser("GET", restorePath("latest"), { token })).status).toBe(200);
    // Not in another namespace, not the definition itself, not the runner's Secret or its token.
    expect((await asUser("POST", `/apis/${GV}/namespaces/${CTRL_NS}/restores?dryRun=All`, { token, body: { ...restore("team", {}), metadata: { name: "team", namespace: CTRL_NS } } })).status).toBe(403);
    expect((await asUser("PATCH", `/apis/${GV}/namespaces/${APP_NS}/backupdefinitions/orders`, { token, body: {} })).status).toBe(403);
    expect((await asUser("PATCH", `${restorePath("latest")}/status`, { token, body: {} })).status).toBe(403);
    expect((await asUser("GET", `/api/v1/namespaces/${CTRL_NS}/secrets/${runnerName(APP_NS, "orders")}`, { token })).status).toBe(403);
  });

  it("the spec is immutable, and the apiserver refuses what the runner would refuse", async () => {
    const r = await kube.request("PATCH", restorePath("latest"), { spec: { backup: "20261124T031000Z-a1b2c3" } }, "application/merge-patch+json");
    expect(r.status).toBe(422);
    expect(JSON.stringify(r.body)).toContain("spec is immutable");
    const bad: [Record<string, unknown>, string][] = [
      [{ backup: "../etc" }, "spec.backup"],
      [{ renameDatabases: { shop: "system" } }, "system database"],
      [{ renameDatabases: { "": "x" } }, "renameDatabases"],
      [{ tables: ["orders"] }, "spec.tables"],
      [{ databases: [] }, "spec.databases"],
      [{ existingTables: "replace" }, "spec.existingTables"],
      [{ identityFile: "AGE-SECRET-KEY-1ABCDEF" }, "identityFile"],
      [{ identityFile: "../key.txt" }, "spec.identityFile"],
      [{ backupDefinition: "Not_A_Name" }, "spec.backupDefinition"],
    ];
    for (const [spec, says] of bad) {
      const res = await kube.request("POST", restorePath(), restore("bad", spec));
      expect(res.status, JSON.stringify(spec)).toBe(422);
      expect(JSON.stringify(res.body), JSON.stringify(spec)).toContain(says);
    }
  });

  it("a Restore naming a missing definition stays Pending with a reason, writes nothing while it waits, and goes on once the definition exists", async () => {
    await must(kube, "POST", restorePath(), restore("missing", { backupDefinition: "nope" }));
    const pending = await waitFor("DefinitionNotFound", async () => {
      const r = await getRestore("missing");
      return r.status?.reason === "DefinitionNotFound" ? r : undefined;
    });
    expect(pending.status).toMatchObject({ phase: "Pending", message: expect.stringContaining(`${APP_NS}/nope`) });
    // Retries (1 s, 2 s, …) find nothing new: no status write, no Event.
    const writes = () => requests.filter((q) => q.resource === "restores" && q.verb === "patch").length;
    const w0 = writes();
    await new Promise((res) => setTimeout(res, 3500));
    expect(writes()).toBe(w0);
    expect((await getRestore("missing")).metadata.resourceVersion).toBe(pending.metadata.resourceVersion);
    // The definition appears: the Restore wakes up at once and goes on (its runner is not running here).
    await must(kube, "POST", `/apis/${GV}/namespaces/${APP_NS}/backupdefinitions`, {
      apiVersion: GV,
      kind: "BackupDefinition",
      metadata: { name: "nope", namespace: APP_NS },
      spec: { storageLocation: "local", clickhouse: { url: ch.url, passwordSecretRef: { name: "clickhouse", key: "password" } }, schedule: { cron: "0 0 1 1 *" } },
    });
    const next = await waitFor("past DefinitionNotFound", async () => {
      const r = await getRestore("missing");
      return r.status?.reason && r.status.reason !== "DefinitionNotFound" ? r : undefined;
    }, 30_000);
    expect(next.status!.phase).toBe("Pending");
    expect(["DefinitionNotReady", "RunnerNotReady", "RunnerUnreachable"]).toContain(next.status!.reason);
    // PRINT_TABLES=1: `kubectl get restores` and `-o wide` as of now (the README shows them).
    if (process.env["PRINT_TABLES"]) {
      const t = await table(restorePath());
      console.log(`${kubectlTable(t, false)}\n\n${kubectlTable(t, true)}`);
    }
  });

  async function token(): Promise<string> {
    const s = await must<{ data: Record<string, string> }>(kube, "GET", `/api/v1/namespaces/${CTRL_NS}/secrets/${runnerName(APP_NS, "orders")}`);
    return Buffer.from(s.data["token"]!, "base64").toString("utf8");
  }
});
