// The runner's HTTP API end to end: a real RunnerService (real ClickHouse
// engine against ClickHouse 18.16, real S3 storage on MinIO) behind the real
// server. Backups and restores through the API, the restored data compared
// with the source, conflicts, pins, auth, validation, traversal attempts,
// metrics and readiness while storage goes away and comes back.
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { Writable } from "node:stream";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseRunnerConfig } from "../pkg/apis/index.ts";
import { RunnerMetrics } from "../pkg/runner/api/metrics.ts";
import { startApiServer, type ApiServer } from "../pkg/runner/api/server.ts";
import { createRunner } from "../pkg/runner/app.ts";
import { createLogger } from "../pkg/runner/logging.ts";
import { RunnerService } from "../pkg/runner/service.ts";
import { startClickHouse, startMinio, type ClickHouseServer, type MinioServer } from "./env/index.ts";
import { apiClient, parsePrometheusText, pollJson, rawRequest } from "./helpers/api-http.ts";

const TOKEN = "integration-token-9f8e7d6c5b4a3210";
const hasCurl = existsSync("/usr/bin/curl") || existsSync("/usr/local/bin/curl");

/** The README's curl lines, run as written with RUNNER and TOKEN (and ID) in the environment. */
const README_CURL = {
  status: `curl -fsS -H "Authorization: Bearer $TOKEN" "$RUNNER/api/v1/status"`,
  list: `curl -fsS -H "Authorization: Bearer $TOKEN" "$RUNNER/api/v1/backups"`,
  trigger: `curl -fsS -X POST -H "Authorization: Bearer $TOKEN" "$RUNNER/api/v1/backups"`,
  poll: `curl -fsS -H "Authorization: Bearer $TOKEN" "$RUNNER/api/v1/operations/$ID"`,
  restore: `curl -fsS -X POST -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" -d '{"backup":"latest","databases":["apilogs"],"renameDatabases":{"apilogs":"apilogs_restored"},"existingTables":"fail"}' "$RUNNER/api/v1/restores"`,
  pollRestore: `curl -fsS -H "Authorization: Bearer $TOKEN" "$RUNNER/api/v1/restores/$ID"`,
  verify: `curl -fsS -X POST -H "Authorization: Bearer $TOKEN" "$RUNNER/api/v1/backups/latest/verify"`,
  operations: `curl -fsS -H "Authorization: Bearer $TOKEN" "$RUNNER/api/v1/operations"`,
};

/** Tables and the columns hashed to compare contents (18.16 cannot hash `*` reliably). */
const TABLES: Record<string, string[]> = {
  "apishop.orders": ["id", "customer", "amount", "status", "created"],
  "apishop.customers": ["id", "name", "version"],
  "apilogs.events": ["ts", "level", "msg"],
  "apilogs.metrics": ["day", "name", "value"],
};

describe("runner HTTP API against ClickHouse 18.16 and MinIO", () => {
  let ch: ClickHouseServer;
  let minio: MinioServer;
  let service: RunnerService;
  let server: ApiServer;
  let api: ReturnType<typeof apiClient>;
  const logLines: string[] = [];
  let source: Record<string, { c: string; h: string }>;
  let backupId: string;

  const digest = async (table: string, as = table) => {
    const cols = TABLES[table]!.join(", ");
    const [row] = await ch.query<{ c: string; h: string }>(`SELECT toString(count()) AS c, toString(sum(cityHash64(${cols}))) AS h FROM ${as}`);
    return row!;
  };
  const databases = async () => (await ch.query<{ name: string }>("SELECT name FROM system.databases")).map((r) => r.name);
  const waitOperation = (path: string) => pollJson(() => api.get(path), (j) => j.operation.state !== "running", 60_000, 100);
  const scrape = async () => parsePrometheusText((await rawRequest(server.url, { path: "/metrics" })).text);

  beforeAll(async () => {
    [ch, minio] = await Promise.all([startClickHouse(), startMinio()]);
    const bucket = await minio.createBucket();
    await ch.exec("CREATE DATABASE apishop");
    await ch.exec("CREATE DATABASE apilogs");
    await ch.exec("CREATE TABLE apishop.orders (id UInt64, customer String, amount Float64, status String, created DateTime) ENGINE = MergeTree ORDER BY id");
    await ch.exec("CREATE TABLE apishop.customers (id UInt64, name String, version UInt32) ENGINE = ReplacingMergeTree(version) ORDER BY id");
    await ch.exec("CREATE TABLE apilogs.events (ts DateTime, level String, msg String) ENGINE = MergeTree ORDER BY ts");
    await ch.exec("CREATE TABLE apilogs.metrics (day Date, name String, value Float64) ENGINE = MergeTree PARTITION BY toYYYYMM(day) ORDER BY (day, name)");
    await ch.exec(
      "INSERT INTO apishop.orders SELECT number, concat('c', toString(number % 997)), (number % 10000) / 7, if(number % 3 = 0, 'paid', 'open'), toDateTime('2024-01-01 00:00:00') + number * 13 FROM system.numbers LIMIT 70000",
    );
    await ch.exec("INSERT INTO apishop.customers SELECT number, concat('name ', toString(number)), number % 5 FROM system.numbers LIMIT 2000");
    await ch.exec("INSERT INTO apilogs.events SELECT toDateTime('2024-03-01 00:00:00') + number, if(number % 10 = 0, 'error', 'info'), concat('message\\t', toString(number)) FROM system.numbers LIMIT 25000");
    await ch.exec("INSERT INTO apilogs.metrics SELECT toDate('2024-01-01') + (number % 90), concat('m', toString(number % 17)), number * 0.5 FROM system.numbers LIMIT 3000");
    source = {};
    for (const t of Object.keys(TABLES)) source[t] = await digest(t);

    const config = parseRunnerConfig({
      definition: {
        namespace: "shop",
        name: "orders",
        clickhouse: { url: ch.url, username: ch.username, password: ch.password, databases: { include: ["apishop", "apilogs"] } },
        schedule: { cron: "0 0 1 1 *", timeZone: "UTC" },
      },
      storage: {
        s3: { endpoint: minio.endpoint, region: minio.region, bucket, prefix: "runners", forcePathStyle: true, accessKeyId: minio.accessKeyId, secretAccessKey: minio.secretAccessKey },
      },
      api: { token: TOKEN, host: "127.0.0.1", port: 8080 },
    });
    const logger = createLogger({
      stream: new Writable({
        write(chunk: Buffer, _enc, cb) {
          logLines.push(...chunk.toString("utf8").split("\n").filter((l) => l.trim()));
          cb();
        },
      }),
    });
    const metrics = new RunnerMetrics();
    const runner = createRunner({ config, logger, observer: metrics.observer() });
    service = new RunnerService({ runner, logger });
    server = await startApiServer({ service, metrics, logger, token: TOKEN, host: "127.0.0.1", port: 0 });
    api = apiClient(server.url, TOKEN);
    // the catalog is empty, so start() takes the "missed" scheduled backup right away
    await service.start();
  });

  afterAll(async () => {
    await server?.close(1000);
    await service?.stop(5000);
    await Promise.all([ch?.stop(), minio?.stop()]);
  });

  it("takes the missed scheduled backup at start and shows it in the status", async () => {
    const st = await pollJson(() => api.get("/api/v1/status"), (j) => j.current === null && j.lastSuccess.backup !== null, 60_000, 100);
    expect(st).toMatchObject({
      namespace: "shop",
      definition: "orders",
      mode: "scheduled",
      ready: true,
      engine: "clickhouse",
      method: "dump",
      schedule: { cron: "0 0 1 1 *", timeZone: "UTC", suspended: false },
      consecutiveFailures: 0,
      backups: 1,
    });
    expect(st.lastSuccess.backup).toMatchObject({ kind: "backup", trigger: "missed", state: "succeeded" });
    expect(Date.parse(st.nextRun)).toBeGreaterThan(Date.now());
    expect(st.nextRun).toMatch(/-01-01T00:00:00\.000Z$/);
    expect(st.storage).toContain(minio.endpoint.replace("http://", ""));
    expect(JSON.stringify(st)).not.toContain(minio.secretAccessKey);
    expect(JSON.stringify(st)).not.toContain(ch.password);
  });

  it("serves probes", async () => {
    expect((await rawRequest(server.url, { path: "/healthz" })).status).toBe(200);
    const r = await rawRequest(server.url, { path: "/readyz" });
    expect(r.status).toBe(200);
    expect(r.json.engineVersion).toMatch(/^18\.16\./);
  });

  it("refuses requests without the right token", async () => {
    const headerSets: Record<string, string>[] = [{}, { Authorization: "Bearer nope" }, { Authorization: `Bearer ${TOKEN}0` }, { Authorization: `Token ${TOKEN}` }];
    for (const headers of headerSets) {
      const r = await rawRequest(server.url, { path: "/api/v1/backups", headers });
      expect(r.status).toBe(401);
      expect(r.json).toEqual({ error: { code: "unauthorized", message: "unauthorized" } });
      expect(r.headers["www-authenticate"]).toBe("Bearer");
    }
    expect((await rawRequest(server.url, { method: "POST", path: "/api/v1/backups" })).status).toBe(401);
    expect((await rawRequest(server.url, { method: "POST", path: "/api/v1/restores", body: { backup: "latest" } })).status).toBe(401);
  });

  it("starts a backup (202), refuses a second one while it runs (409), and counts it in the metrics", async () => {
    const before = await scrape();
    const r = await api.post("/api/v1/backups");
    expect(r.status).toBe(202);
    const id = r.json.operation.id;
    expect(r.headers["location"]).toBe(`/api/v1/operations/${id}`);
    const again = await api.post("/api/v1/backups");
    expect(again.status).toBe(409);
    expect(again.json.error).toMatchObject({ code: "busy" });
    expect(again.json.error.message).toContain(id);
    const restore = await api.post("/api/v1/restores", { backup: "latest" });
    expect(restore.status).toBe(409);
    expect((await api.get("/api/v1/status")).status).toBe(200); // still answering
    const done = await waitOperation(`/api/v1/operations/${id}`);
    expect(done.operation).toMatchObject({ state: "succeeded", kind: "backup", trigger: "api", error: null });
    expect(done.operation.progress.tablesDone).toBe(done.operation.progress.tablesTotal);
    expect(done.operation.result.rows).toBe(100_000);
    backupId = done.operation.backupId;

    const after = await scrape();
    const key = 'chbackup_runner_operations_total{kind="backup",result="succeeded"}';
    expect(after.get(key)).toBe((before.get(key) ?? 0) + 1);
    const bytes = 'chbackup_runner_bytes_total{kind="backup"}';
    expect(after.get(bytes)!).toBeGreaterThan(before.get(bytes)!);
    expect(after.get('chbackup_runner_rows_total{kind="backup"}')!).toBeGreaterThanOrEqual(200_000);
    expect(after.get("chbackup_runner_backups")).toBe(2);
    expect(after.get('chbackup_runner_current_operation{kind="backup"}')).toBe(0);
  });

  it("lists backups newest first with their current labels", async () => {
    const r = await api.get("/api/v1/backups");
    expect(r.status).toBe(200);
    const list = r.json.backups as { id: string; labels: string[]; rows: number; tables: number; bytes: number; pinned: boolean; method: string }[];
    expect(list.map((b) => b.id)[0]).toBe(backupId);
    expect(list).toHaveLength(2);
    // the first backup of the hour/day/... holds the labels; the newest is kept as the newest
    expect(list[1]!.labels).toEqual(expect.arrayContaining(["hourly", "daily", "weekly", "monthly"]));
    expect(Array.isArray(list[0]!.labels)).toBe(true);
    expect(list[0]).toMatchObject({ rows: 100_000, tables: 4, pinned: false, method: "dump" });
    expect(list[0]!.bytes).toBeGreaterThan(0);
  });

  it("returns one backup with its manifest; 404 for an unknown id, 400 for a malformed one", async () => {
    const r = await api.get(`/api/v1/backups/${backupId}`);
    expect(r.status).toBe(200);
    expect(r.json.backup.id).toBe(backupId);
    expect(r.json.manifest).toMatchObject({ id: backupId, databases: ["apilogs", "apishop"], totalRows: 100_000, engine: "clickhouse", method: "dump" });
    expect(r.json.manifest.engineVersion).toMatch(/^18\.16\./);
    expect(r.json.manifest.tables.map((t: { database: string; name: string }) => `${t.database}.${t.name}`).sort()).toEqual(Object.keys(TABLES).sort());
    const missing = await api.get("/api/v1/backups/20200101T000000Z-000000");
    expect(missing.status).toBe(404);
    expect(missing.json.error.code).toBe("backup_not_found");
    expect((await api.get("/api/v1/backups/latest")).status).toBe(400);
  });

  it.each(["/api/v1/backups/..%2f..%2fetc", "/api/v1/backups/%2e%2e", "/api/v1/backups/../manifest.json", "/api/v1/backups/%2e%2e%2f%2e%2e%2fpinned.json/pin", "/api/v1/backups/..%5C..%5Cx"])(
    "refuses the traversal attempt %s with 400",
    async (path) => {
      const r = await api.get(path);
      expect(r.status).toBe(400);
      expect(r.json.error.code).toBe("bad_path");
      expect((await api.post(path)).status).toBe(400);
    },
  );

  it("restores a dropped database and the data equals the source", async () => {
    await ch.exec("DROP DATABASE apilogs");
    const r = await api.post("/api/v1/restores", { backup: backupId, databases: ["apilogs"] });
    expect(r.status).toBe(202);
    const id = r.json.operation.id;
    expect(r.headers["location"]).toBe(`/api/v1/restores/${id}`);
    const done = await waitOperation(`/api/v1/restores/${id}`);
    expect(done.operation).toMatchObject({ state: "succeeded", kind: "restore", backupId, error: null });
    expect(done.operation.result).toMatchObject({ backupId, tables: 2, rows: 28_000 });
    for (const t of ["apilogs.events", "apilogs.metrics"]) expect(await digest(t), t).toEqual(source[t]);
    expect((await api.get(`/api/v1/operations/${id}`)).json.operation.kind).toBe("restore");
  });

  it("restores into a renamed database", async () => {
    const r = await api.post("/api/v1/restores", { backup: "latest", databases: ["apishop"], renameDatabases: { apishop: "apishop_copy" } });
    expect(r.status).toBe(202);
    const done = await waitOperation(`/api/v1/restores/${r.json.operation.id}`);
    expect(done.operation.state).toBe("succeeded");
    for (const t of ["apishop.orders", "apishop.customers"]) {
      expect(await digest(t, t.replace("apishop.", "apishop_copy.")), t).toEqual(source[t]);
      expect(await digest(t), t).toEqual(source[t]);
    }
  });

  it('with existingTables "fail", a restore onto tables holding data fails naming them and changes nothing', async () => {
    const countsBefore = { ...source };
    const r = await api.post("/api/v1/restores", { backup: backupId, renameDatabases: { apishop: "apishop_copy2" } });
    expect(r.status).toBe(202);
    const done = await waitOperation(`/api/v1/restores/${r.json.operation.id}`);
    expect(done.operation.state).toBe("failed");
    expect(done.operation.error).toMatch(/apilogs\.(events|metrics)/);
    expect(done.operation.error).toContain('"fail"');
    expect(done.operation.error).not.toContain(ch.password);
    expect(await databases()).not.toContain("apishop_copy2");
    for (const t of Object.keys(TABLES)) expect(await digest(t), t).toEqual(countsBefore[t]);
    const st = (await api.get("/api/v1/status")).json;
    expect(st.lastFailure.restore).toMatchObject({ state: "failed", id: r.json.operation.id });
    expect(st.consecutiveFailures).toBe(1);
    expect((await scrape()).get('chbackup_runner_operations_total{kind="restore",result="failed"}')).toBe(1);
  });

  it("validates restore requests", async () => {
    const cases: [unknown, number, string | undefined][] = [
      [{ backup: backupId, unknownField: true }, 400, "unknownField"],
      [{ backup: "../../etc" }, 400, "backup"],
      [{ backup: backupId, existingTables: "overwrite" }, 400, "existingTables"],
      [{ backup: backupId, tables: ["orders"] }, 400, "tables.0"],
      [{ backup: backupId, renameDatabases: { apishop: "system" } }, 400, "renameDatabases.apishop"],
      [{ backup: "20200101T000000Z-000000" }, 404, undefined],
    ];
    for (const [body, status, field] of cases) {
      const r = await api.post("/api/v1/restores", body);
      expect(r.status, JSON.stringify(body)).toBe(status);
      if (field) expect(r.json.error.field).toBe(field);
    }
    const notJson = await api.raw({ method: "POST", path: "/api/v1/restores", token: TOKEN, body: "{backup:", headers: { "Content-Type": "application/json" } });
    expect(notJson.status).toBe(400);
    const wrongType = await api.raw({ method: "POST", path: "/api/v1/restores", token: TOKEN, body: "backup=latest", headers: { "Content-Type": "application/x-www-form-urlencoded" } });
    expect(wrongType.status).toBe(415);
    const big = await api.raw({ method: "POST", path: "/api/v1/restores", token: TOKEN, body: { backup: backupId, tables: Array(20_000).fill("a.b") } });
    expect(big.status).toBe(413);
    expect((await api.get("/api/v1/nothing")).status).toBe(404);
    expect((await api.del("/api/v1/backups")).status).toBe(405);
    expect((await api.get("/api/v1/restores/00000000-0000-0000-0000-000000000000")).status).toBe(404);
  });

  it("pins and unpins a backup (stored in S3)", async () => {
    const p = await api.post(`/api/v1/backups/${backupId}/pin`);
    expect(p.status).toBe(200);
    expect(p.json.backup).toMatchObject({ id: backupId, pinned: true });
    expect((await api.get("/api/v1/backups")).json.backups.find((b: { id: string }) => b.id === backupId).pinned).toBe(true);
    const u = await api.del(`/api/v1/backups/${backupId}/pin`);
    expect(u.status).toBe(200);
    expect(u.json.backup.pinned).toBe(false);
    expect((await api.post("/api/v1/backups/20200101T000000Z-000000/pin")).status).toBe(404);
  });

  it("serves Prometheus text that parses line by line", async () => {
    const r = await rawRequest(server.url, { path: "/metrics" });
    expect(r.status).toBe(200);
    expect(r.headers["content-type"]).toMatch(/^text\/plain/);
    const m = parsePrometheusText(r.text);
    expect(m.get('chbackup_runner_operations_total{kind="restore",result="succeeded"}')).toBe(2);
    expect(m.get('chbackup_runner_bytes_total{kind="restore"}')!).toBeGreaterThan(0);
    expect(m.get('chbackup_runner_rows_total{kind="restore"}')).toBe(100_000);
    expect(m.get('chbackup_runner_last_success_timestamp_seconds{kind="restore"}')!).toBeGreaterThan(Date.now() / 1000 - 300);
    expect([...m.keys()].some((k) => k.startsWith("process_"))).toBe(true);
  });

  it.skipIf(!hasCurl)("the README's curl lines work as written", async () => {
    const run = async (line: string, id = "") => {
      const { stdout } = await promisify(execFile)("bash", ["-c", line], { env: { PATH: process.env["PATH"] ?? "/usr/bin:/bin", RUNNER: server.url, TOKEN, ID: id } });
      return JSON.parse(stdout);
    };
    expect((await run(README_CURL.status)).mode).toBe("scheduled");
    expect((await run(README_CURL.list)).backups.length).toBeGreaterThanOrEqual(2);
    const b = (await run(README_CURL.trigger)).operation;
    let op = b;
    for (let i = 0; i < 600 && op.state === "running"; i++) {
      await new Promise((r) => setTimeout(r, 100));
      op = (await run(README_CURL.poll, b.id)).operation;
    }
    expect(op.state).toBe("succeeded");
    const r = (await run(README_CURL.restore)).operation;
    op = r;
    for (let i = 0; i < 600 && op.state === "running"; i++) {
      await new Promise((res) => setTimeout(res, 100));
      op = (await run(README_CURL.pollRestore, r.id)).operation;
    }
    expect(op.state).toBe("succeeded");
    expect(await digest("apilogs.events", "apilogs_restored.events")).toEqual(source["apilogs.events"]);
    const v = (await run(README_CURL.verify)).operation;
    op = v;
    for (let i = 0; i < 600 && op.state === "running"; i++) {
      await new Promise((res) => setTimeout(res, 100));
      op = (await run(README_CURL.poll, v.id)).operation;
    }
    expect(op).toMatchObject({ kind: "verify", state: "succeeded" });
    expect(op.result.ok).toBe(true);
    expect(op.result.tables.map((t: { database: string; name: string }) => `${t.database}.${t.name}`).sort()).toEqual(Object.keys(TABLES).sort());
    const ops = (await run(README_CURL.operations)).operations as { id: string }[];
    expect(ops[0]!.id).toBe(v.id);
  });

  it("/readyz says which dependency fails: 503 naming storage while MinIO is down, 200 once it is back", async () => {
    await minio.kill();
    try {
      const down = await rawRequest(server.url, { path: "/readyz" });
      expect(down.status).toBe(503);
      expect(down.json.failed).toEqual(["storage"]);
      expect(down.json.checks.engine).toBe("ok");
      expect(down.json.checks.storage).not.toBe("ok");
      expect(down.text).not.toContain(minio.secretAccessKey);
      expect(down.text).not.toContain(minio.accessKeyId);
      // the API itself keeps answering
      expect((await api.get("/api/v1/status")).status).toBe(200);
    } finally {
      await minio.start();
    }
    const up = await pollJson(() => rawRequest(server.url, { path: "/readyz" }), (j) => j.ready === true, 30_000, 250);
    expect(up.checks).toEqual({ runner: "ok", storage: "ok", engine: "ok" });
  });

  it("logs one line per request and never a secret", () => {
    const lines = logLines.map((l) => JSON.parse(l) as Record<string, unknown>);
    const requests = lines.filter((l) => l["message"] === "request");
    expect(requests.length).toBeGreaterThan(30);
    for (const l of requests) {
      expect(Object.keys(l).sort()).toEqual(["durationMs", "level", "message", "method", "path", "status", "timestamp"]);
      expect(String(l["path"])).not.toContain("?");
    }
    expect(requests.some((l) => l["status"] === 401)).toBe(true);
    const all = logLines.join("\n");
    for (const secret of [TOKEN, ch.password, minio.secretAccessKey]) expect(all).not.toContain(secret);
  });
});
