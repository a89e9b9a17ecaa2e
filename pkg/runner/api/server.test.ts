// The HTTP API against a real Runner with a fake engine and a filesystem store:
// auth, routing, validation, error codes, traversal attempts, body limits,
// slow clients, logging and shutdown.
import { connect, type Socket } from "node:net";
import { request } from "node:http";
import { Writable } from "node:stream";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { apiClient, parsePrometheusText, pollJson, rawRequest } from "../../../test/helpers/api-http.ts";
import { FAKE_CH_PASSWORD, fakeRunner, gate, type FakeRunner } from "../../../test/helpers/api-fake.ts";
import { waitUntil } from "../../../test/env/proc.ts";
import { createLogger } from "../logging.ts";
import { RunnerMetrics } from "./metrics.ts";
import { startApiServer, type ApiServer, type ApiService } from "./server.ts";

const TOKEN = "unit-test-token-0123456789abcdef";
const silent = createLogger({ silent: true });

function lineCollector() {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString("utf8").split("\n")) if (l.trim()) lines.push(l);
      cb();
    },
  });
  return { lines, stream };
}

async function setup(opts: { mode?: "scheduled" | "single"; ready?: boolean; logStream?: NodeJS.WritableStream; timeouts?: Parameters<typeof startApiServer>[0]["timeouts"]; maxBodyBytes?: number } = {}) {
  const metrics = new RunnerMetrics({ defaultMetrics: false });
  const logger = opts.logStream ? createLogger({ stream: opts.logStream, level: "debug" }) : silent;
  const fr = await fakeRunner({ token: TOKEN, logger: silent, observer: metrics.observer(), ...(opts.mode ? { mode: opts.mode } : {}) });
  const service: ApiService & { ready: boolean } = { runner: fr.runner, ready: opts.ready ?? true, nextRun: () => new Date("2030-01-01T00:00:00Z") };
  const server = await startApiServer({
    service,
    metrics,
    logger,
    token: TOKEN,
    host: "127.0.0.1",
    port: 0,
    ...(opts.timeouts ? { timeouts: opts.timeouts } : {}),
    ...(opts.maxBodyBytes ? { maxBodyBytes: opts.maxBodyBytes } : {}),
  });
  return { fr, service, server, metrics, api: apiClient(server.url, TOKEN) };
}
type Setup = Awaited<ReturnType<typeof setup>>;

const waitOp = (s: Setup, id: string) => pollJson(() => s.api.get(`/api/v1/operations/${id}`), (j) => j.operation.state !== "running", 10_000, 20);

describe("API server (fake engine)", () => {
  let s: Setup;
  beforeAll(async () => {
    s = await setup();
  });
  afterAll(async () => {
    await s.server.close(1000);
    await s.fr.cleanup();
  });
  afterEach(() => {
    s.fr.engine.gate = undefined;
    s.fr.engine.checkError = undefined;
    s.fr.engine.restoreError = undefined;
    s.service.ready = true;
  });

  describe("probes and metrics (no auth)", () => {
    it("GET /healthz is 200", async () => {
      const r = await rawRequest(s.server.url, { path: "/healthz" });
      expect(r.status).toBe(200);
      expect(r.json).toEqual({ status: "ok" });
      expect(r.headers["content-type"]).toBe("application/json; charset=utf-8");
    });

    it("HEAD /healthz answers without a body", async () => {
      const r = await rawRequest(s.server.url, { method: "HEAD", path: "/healthz" });
      expect(r.status).toBe(200);
      expect(r.text).toBe("");
    });

    it("GET /readyz is 200 when storage and engine are fine", async () => {
      const r = await rawRequest(s.server.url, { path: "/readyz" });
      expect(r.status).toBe(200);
      expect(r.json).toMatchObject({ ready: true, checks: { runner: "ok", storage: "ok", engine: "ok" }, engineVersion: "1.2.3" });
    });

    it("GET /readyz is 503 naming the engine when its check fails, without secrets", async () => {
      s.fr.engine.checkError = `connection refused (password ${FAKE_CH_PASSWORD})`;
      const r = await rawRequest(s.server.url, { path: "/readyz" });
      expect(r.status).toBe(503);
      expect(r.json.ready).toBe(false);
      expect(r.json.failed).toEqual(["engine"]);
      expect(r.json.checks.storage).toBe("ok");
      expect(r.json.checks.engine).toContain("connection refused");
      expect(r.text).not.toContain(FAKE_CH_PASSWORD);
      expect(r.json.checks.engine).toContain("[REDACTED]");
    });

    it("GET /readyz is 503 while the service is starting", async () => {
      s.service.ready = false;
      const r = await rawRequest(s.server.url, { path: "/readyz" });
      expect(r.status).toBe(503);
      expect(r.json.failed).toEqual(["runner"]);
    });

    it("GET /metrics is Prometheus text", async () => {
      const r = await rawRequest(s.server.url, { path: "/metrics" });
      expect(r.status).toBe(200);
      expect(r.headers["content-type"]).toMatch(/^text\/plain; version=0\.0\.4/);
      const samples = parsePrometheusText(r.text);
      expect(samples.get('chbackup_runner_operations_total{kind="backup",result="succeeded"}')).toBeTypeOf("number");
    });
  });

  describe("auth", () => {
    const unauthorized = (r: { status: number; json: unknown; headers: Record<string, unknown> }) => {
      expect(r.status).toBe(401);
      expect(r.json).toEqual({ error: { code: "unauthorized", message: "unauthorized" } });
      expect(r.headers["www-authenticate"]).toBe("Bearer");
    };

    it.each([
      ["no header", {}],
      ["wrong token of the same length", { Authorization: `Bearer ${TOKEN.replace(/.$/, "X")}` }],
      ["shorter token", { Authorization: "Bearer abc" }],
      ["longer token", { Authorization: `Bearer ${TOKEN}x` }],
      ["the token with another scheme", { Authorization: `Basic ${TOKEN}` }],
      ["the token without a scheme", { Authorization: TOKEN }],
      ["the token plus junk", { Authorization: `Bearer ${TOKEN} junk` }],
      ["an empty bearer", { Authorization: "Bearer " }],
    ])("401 for %s", async (_name, headers: Record<string, string>) => {
      unauthorized(await rawRequest(s.server.url, { path: "/api/v1/status", headers }));
    });

    it("401 comes before 404, 405, 400 and body checks under /api/v1", async () => {
      unauthorized(await rawRequest(s.server.url, { path: "/api/v1/nope" }));
      unauthorized(await rawRequest(s.server.url, { method: "PUT", path: "/api/v1/backups" }));
      unauthorized(await rawRequest(s.server.url, { path: "/api/v1/backups/..%2f..%2fetc" }));
      unauthorized(await rawRequest(s.server.url, { method: "POST", path: "/api/v1/restores", body: "not json", headers: { "Content-Type": "text/plain" } }));
      unauthorized(await rawRequest(s.server.url, { path: "/api/v1" }));
    });

    it("an encoded /api/v1 prefix still needs the token", async () => {
      unauthorized(await rawRequest(s.server.url, { path: "/api/%761/status" }));
      unauthorized(await rawRequest(s.server.url, { path: "/%61pi/v1/backups" }));
      const ok = await rawRequest(s.server.url, { path: "/api/%761/status", token: TOKEN });
      expect(ok.status).toBe(200);
    });

    it("accepts the token (scheme case-insensitive)", async () => {
      expect((await rawRequest(s.server.url, { path: "/api/v1/status", token: TOKEN })).status).toBe(200);
      expect((await rawRequest(s.server.url, { path: "/api/v1/status", headers: { Authorization: `bearer ${TOKEN}` } })).status).toBe(200);
    });
  });

  describe("routing", () => {
    it("404 JSON for unknown routes", async () => {
      for (const path of ["/", "/nope", "/api/v2/status", "/api/v1/backups/", "/api/v1//backups", "/api/v1/backups/20261124T031000Z-a1b2c3/x"]) {
        const r = await s.api.get(path);
        expect(r.status, path).toBe(404);
        expect(r.json.error.code, path).toBe("not_found");
      }
    });

    it("405 with Allow for a wrong method on a known route", async () => {
      const cases: [string, string, string][] = [
        ["PUT", "/api/v1/backups", "GET, POST, HEAD"],
        ["DELETE", "/api/v1/status", "GET, HEAD"],
        ["GET", "/api/v1/restores", "POST"],
        ["GET", "/api/v1/backups/20261124T031000Z-a1b2c3/pin", "POST, DELETE"],
        ["POST", "/healthz", "GET, HEAD"],
        ["POST", "/metrics", "GET, HEAD"],
      ];
      for (const [method, path, allow] of cases) {
        const r = await s.api.raw({ method, path, token: TOKEN });
        expect(r.status, `${method} ${path}`).toBe(405);
        expect(r.json.error.code).toBe("method_not_allowed");
        expect(r.headers["allow"]).toBe(allow);
      }
    });

    it.each([
      "/api/v1/backups/..%2f..%2fetc",
      "/api/v1/backups/%2e%2e",
      "/api/v1/backups/%2E%2E/pin",
      "/api/v1/backups/..",
      "/api/v1/backups/../../../etc/passwd",
      "/api/v1/backups/.",
      "/api/v1/backups/a%5cb",
      "/api/v1/backups/a%2Fb",
      "/api/v1/backups/%00",
      "/api/v1/backups/%zz",
      "/api/v1/backups/..%5c..%5cetc",
      "/api/v1/operations/..%2fbackups",
      "/api/v1/restores/%2e%2e%2f%2e%2e",
    ])("400 for the traversal attempt %s", async (path) => {
      const r = await s.api.get(path);
      expect(r.status).toBe(400);
      expect(r.json.error.code).toBe("bad_path");
    });

    it("400 for a path segment that is not a backup id", async () => {
      for (const path of ["/api/v1/backups/etc", "/api/v1/backups/20261124T031000Z-a1b2c3%20", "/api/v1/backups/latest"]) {
        const r = await s.api.get(path);
        expect(r.status, path).toBe(400);
        expect(r.json.error.code).toBe("invalid_backup_id");
      }
      expect((await s.api.post("/api/v1/backups/x..y/pin")).status).toBe(400);
    });

    it("a query string is ignored for routing", async () => {
      expect((await s.api.get("/api/v1/status?verbose=1")).status).toBe(200);
    });
  });

  describe("backups", () => {
    let backupId: string;

    it("POST /api/v1/backups starts a backup: 202, Location, operation", async () => {
      const r = await s.api.post("/api/v1/backups");
      expect(r.status).toBe(202);
      expect(r.json.operation).toMatchObject({ kind: "backup", trigger: "api", state: "running" });
      expect(r.headers["location"]).toBe(`/api/v1/operations/${r.json.operation.id}`);
      const done = await waitOp(s, r.json.operation.id);
      expect(done.operation.state).toBe("succeeded");
      expect(done.operation.progress).toMatchObject({ tablesDone: 2, tablesTotal: 2, rows: 150 });
      expect(done.operation.result).toMatchObject({ rows: 150, tables: 2 });
      backupId = done.operation.backupId;
      expect(backupId).toMatch(/^\d{8}T\d{6}Z-[0-9a-f]{6}$/);
    });

    it("GET /api/v1/backups lists it with current labels", async () => {
      const r = await s.api.get("/api/v1/backups");
      expect(r.status).toBe(200);
      expect(r.json.backups).toHaveLength(1);
      const b = r.json.backups[0];
      expect(b).toMatchObject({ id: backupId, method: "dump", engineVersion: "1.2.3", rows: 150, tables: 2, pinned: false, baseBackupId: null, trigger: "api" });
      expect(b.bytes).toBeGreaterThan(0);
      expect(b.labels).toEqual(expect.arrayContaining(["hourly", "daily", "weekly", "monthly"]));
      expect(typeof b.durationMs).toBe("number");
    });

    it("GET /api/v1/backups/{id} returns summary and manifest; unknown id is 404", async () => {
      const r = await s.api.get(`/api/v1/backups/${backupId}`);
      expect(r.status).toBe(200);
      expect(r.json.backup.id).toBe(backupId);
      expect(r.json.manifest).toMatchObject({ id: backupId, format: 1, tables: [{ name: "t1" }, { name: "t2" }] });
      const missing = await s.api.get("/api/v1/backups/20200101T000000Z-abcdef");
      expect(missing.status).toBe(404);
      expect(missing.json.error.code).toBe("backup_not_found");
    });

    it("pins and unpins", async () => {
      const p = await s.api.post(`/api/v1/backups/${backupId}/pin`);
      expect(p.status).toBe(200);
      expect(p.json.backup).toMatchObject({ id: backupId, pinned: true });
      expect((await s.api.get(`/api/v1/backups/${backupId}`)).json.backup.pinned).toBe(true);
      const u = await s.api.del(`/api/v1/backups/${backupId}/pin`);
      expect(u.status).toBe(200);
      expect(u.json.backup.pinned).toBe(false);
      const missing = await s.api.post("/api/v1/backups/20200101T000000Z-abcdef/pin");
      expect(missing.status).toBe(404);
      expect((await s.api.del("/api/v1/backups/20200101T000000Z-abcdef/pin")).status).toBe(404);
    });

    it("409 busy while an operation runs; the API keeps answering", async () => {
      const g = gate();
      s.fr.engine.gate = g.promise;
      const first = await s.api.post("/api/v1/backups");
      expect(first.status).toBe(202);
      try {
        const second = await s.api.post("/api/v1/backups");
        expect(second.status).toBe(409);
        expect(second.json.error.code).toBe("busy");
        expect(second.json.error.message).toContain(first.json.operation.id);
        const restore = await s.api.post("/api/v1/restores", { backup: "latest" });
        expect(restore.status).toBe(409);
        expect(restore.json.error.code).toBe("busy");
        // status shows the running operation with its progress
        const st = await pollJson(() => s.api.get("/api/v1/status"), (j) => j.current?.progress?.tablesDone === 1, 5000, 10);
        expect(st.current).toMatchObject({ id: first.json.operation.id, kind: "backup", state: "running" });
        expect(st.current.progress).toMatchObject({ tablesDone: 1, tablesTotal: 2, rows: 100, currentTable: "db1.t2" });
        expect(st.current.progress.bytes).toBeGreaterThan(0);
        expect((await rawRequest(s.server.url, { path: "/healthz" })).status).toBe(200);
        expect((await rawRequest(s.server.url, { path: "/readyz" })).status).toBe(200);
        const m = parsePrometheusText((await rawRequest(s.server.url, { path: "/metrics" })).text);
        expect(m.get('chbackup_runner_current_operation{kind="backup"}')).toBe(1);
      } finally {
        g.open();
      }
      expect((await waitOp(s, first.json.operation.id)).operation.state).toBe("succeeded");
    });

    it("503 before the catalog is loaded", async () => {
      s.service.ready = false;
      for (const [method, path] of [
        ["GET", "/api/v1/backups"],
        ["POST", "/api/v1/backups"],
        ["GET", `/api/v1/backups/${backupId}`],
        ["POST", `/api/v1/backups/${backupId}/pin`],
      ] as const) {
        const r = await s.api.raw({ method, path, token: TOKEN });
        expect(r.status, `${method} ${path}`).toBe(503);
        expect(r.json.error.code).toBe("not_ready");
      }
      const st = await s.api.get("/api/v1/status");
      expect(st.status).toBe(200);
      expect(st.json.ready).toBe(false);
    });
  });

  describe("restores", () => {
    const post = (body: unknown, headers?: Record<string, string>) =>
      s.api.raw({ method: "POST", path: "/api/v1/restores", token: TOKEN, body, ...(headers ? { headers } : {}) });

    it.each([
      [{}, "backup"],
      [{ backup: 42 }, "backup"],
      [{ backup: "../etc" }, "backup"],
      [{ backup: "latest", extra: 1 }, "extra"],
      [{ backup: "latest", databases: "db1" }, "databases"],
      [{ backup: "latest", databases: [] }, "databases"],
      [{ backup: "latest", databases: [""] }, "databases.0"],
      [{ backup: "latest", tables: ["db1.t1", "nodot"] }, "tables.1"],
      [{ backup: "latest", renameDatabases: { db1: "system" } }, "renameDatabases.db1"],
      [{ backup: "latest", renameDatabases: { db1: 5 } }, "renameDatabases.db1"],
      [{ backup: "latest", renameDatabases: ["x"] }, "renameDatabases"],
      [{ backup: "latest", existingTables: "replace" }, "existingTables"],
      [[{ backup: "latest" }], "(root)"],
      ["\"latest\"", "(root)"],
    ])("400 for %j (field %s)", async (body, field) => {
      const r = await post(typeof body === "string" ? body : body, typeof body === "string" ? { "Content-Type": "application/json" } : undefined);
      expect(r.status).toBe(400);
      expect(r.json.error.code).toBe("invalid_request");
      expect(r.json.error.field).toBe(field);
      expect(r.json.error.message).toContain(field);
    });

    it("400 for a body that is not JSON", async () => {
      for (const body of ["{not json", "", "\u0000"]) {
        const r = await post(body, { "Content-Type": "application/json" });
        expect(r.status, JSON.stringify(body)).toBe(400);
        expect(r.json.error.code).toBe("invalid_json");
      }
      const badUtf8 = await post(Buffer.from([0x7b, 0xff, 0x7d]), { "Content-Type": "application/json" });
      expect(badUtf8.status).toBe(400);
    });

    it("415 without a JSON content type", async () => {
      for (const ct of ["text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin1"]) {
        const r = await post(JSON.stringify({ backup: "latest" }), { "Content-Type": ct });
        expect(r.status, ct).toBe(415);
        expect(r.json.error.code).toBe("unsupported_media_type");
      }
      const none = await post(JSON.stringify({ backup: "latest" }));
      expect(none.status).toBe(415);
      expect((await post(JSON.stringify({ backup: "latest" }), { "Content-Type": "application/json; charset=UTF-8" })).status).not.toBe(415);
      await pollJson(() => s.api.get("/api/v1/status"), (j) => j.current === null, 5000, 10);
    });

    it("404 for an unknown backup", async () => {
      const r = await post({ backup: "20200101T000000Z-abcdef" });
      expect(r.status).toBe(404);
      expect(r.json.error.code).toBe("backup_not_found");
    });

    it("202 with Location /api/v1/restores/{id}; options reach the engine", async () => {
      const before = s.fr.engine.restores.length;
      const r = await post({ backup: "latest", databases: ["db1"], renameDatabases: { db1: "db1_copy" } });
      expect(r.status).toBe(202);
      const id = r.json.operation.id;
      expect(r.headers["location"]).toBe(`/api/v1/restores/${id}`);
      expect(r.json.operation).toMatchObject({ kind: "restore", trigger: "api", state: "running" });
      const done = await pollJson(() => s.api.get(`/api/v1/restores/${id}`), (j) => j.operation.state !== "running", 5000, 10);
      expect(done.operation).toMatchObject({ id, kind: "restore", state: "succeeded", error: null });
      expect(done.operation.result).toMatchObject({ rows: 150, tables: 2 });
      const opts = s.fr.engine.restores[before]!;
      expect(opts.existingTables).toBe("fail");
      expect(opts.databases).toEqual(["db1"]);
      expect({ ...opts.renameDatabases }).toEqual({ db1: "db1_copy" });
      expect(Object.getPrototypeOf(opts.renameDatabases)).toBeNull();
      expect((await s.api.get(`/api/v1/operations/${id}`)).json.operation.kind).toBe("restore");
    });

    it("a failed restore shows its error", async () => {
      s.fr.engine.restoreError = `target table db1.t1 already holds data (pw ${FAKE_CH_PASSWORD})`;
      const r = await post({ backup: "latest", existingTables: "fail" });
      expect(r.status).toBe(202);
      const done = await pollJson(() => s.api.get(`/api/v1/restores/${r.json.operation.id}`), (j) => j.operation.state !== "running", 5000, 10);
      expect(done.operation.state).toBe("failed");
      expect(done.operation.error).toContain("db1.t1 already holds data");
      expect(done.operation.error).not.toContain(FAKE_CH_PASSWORD);
      const st = (await s.api.get("/api/v1/status")).json;
      expect(st.lastFailure.restore.error).toContain("db1.t1");
      expect(st.consecutiveFailures).toBe(1);
    });

    it("GET /api/v1/restores/{id} is 404 for backups and unknown ids", async () => {
      const list = await s.api.post("/api/v1/backups");
      expect(list.status).toBe(202);
      await waitOp(s, list.json.operation.id);
      expect((await s.api.get(`/api/v1/restores/${list.json.operation.id}`)).status).toBe(404);
      expect((await s.api.get("/api/v1/restores/00000000-0000-0000-0000-000000000000")).json.error.code).toBe("restore_not_found");
      expect((await s.api.get("/api/v1/operations/nope")).json.error.code).toBe("operation_not_found");
    });
  });

  describe("status", () => {
    it("shows mode, schedule, next run, last results and no secrets", async () => {
      const r = await s.api.get("/api/v1/status");
      expect(r.status).toBe(200);
      expect(r.json).toMatchObject({
        namespace: "shop",
        definition: "orders",
        mode: "scheduled",
        ready: true,
        engine: "fake",
        method: "dump",
        schedule: { cron: "0 0 1 1 *", timeZone: "Europe/Berlin", suspended: false },
        nextRun: "2030-01-01T00:00:00.000Z",
        current: null,
        consecutiveFailures: 0,
      });
      expect(r.json.storage).toMatch(/^file:\/\//);
      expect(r.json.backups).toBeGreaterThanOrEqual(2);
      expect(r.json.lastSuccess.backup.state).toBe("succeeded");
      expect(r.json.lastFailure.restore.state).toBe("failed");
      expect(r.text).not.toContain(TOKEN);
      expect(r.text).not.toContain(FAKE_CH_PASSWORD);
    });
  });

  describe("metrics", () => {
    it("count operations, bytes and rows of both kinds", async () => {
      const m = parsePrometheusText((await rawRequest(s.server.url, { path: "/metrics" })).text);
      expect(m.get('chbackup_runner_operations_total{kind="backup",result="succeeded"}')).toBe(3);
      expect(m.get('chbackup_runner_operations_total{kind="restore",result="succeeded"}')).toBe(2);
      expect(m.get('chbackup_runner_operations_total{kind="restore",result="failed"}')).toBe(1);
      expect(m.get('chbackup_runner_bytes_total{kind="backup"}')).toBe(3 * 4096);
      expect(m.get('chbackup_runner_bytes_total{kind="restore"}')).toBe(3 * 4096);
      expect(m.get('chbackup_runner_rows_total{kind="backup"}')).toBe(3 * 150);
      expect(m.get('chbackup_runner_rows_total{kind="restore"}')).toBe(2 * 150 + 100);
      expect(m.get('chbackup_runner_current_operation{kind="backup"}')).toBe(0);
      expect(m.get("chbackup_runner_consecutive_failures")).toBe(0);
      expect(m.get("chbackup_runner_backups")).toBe(2); // retention dropped the middle one (no label, not newest)
      expect(m.get('chbackup_runner_backups_by_label{label="hourly"}')).toBeGreaterThanOrEqual(1);
      expect(m.get('chbackup_runner_last_success_timestamp_seconds{kind="backup"}')).toBeGreaterThan(Date.now() / 1000 - 60);
      expect(m.get('chbackup_runner_operation_duration_seconds_count{kind="backup"}')).toBe(3);
      expect(m.get('chbackup_runner_operation_duration_seconds_bucket{le="3600",kind="backup"}')).toBe(3);
    });
  });
});

describe("API server: operations, verify, cancel (fake engine)", () => {
  let s: Setup;
  beforeAll(async () => {
    s = await setup();
    const r = await s.api.post("/api/v1/backups");
    await waitOp(s, r.json.operation.id);
  });
  afterAll(async () => {
    await s.server.close(1000);
    await s.fr.cleanup();
  });
  afterEach(() => {
    s.fr.engine.gate = undefined;
    s.fr.engine.verifyResult = undefined;
    s.fr.engine.checkError = undefined;
    (s.service as { catalogLoaded?: boolean }).catalogLoaded = undefined;
    s.service.ready = true;
  });

  it("POST /api/v1/backups takes no body, an empty one or {}; any field is 400, non-JSON 415", async () => {
    for (const body of [undefined, "", "{}", " {} "]) {
      const r = await s.api.raw({ method: "POST", path: "/api/v1/backups", token: TOKEN, ...(body === undefined ? {} : { body, headers: { "Content-Type": "application/json" } }) });
      expect(r.status, JSON.stringify(body)).toBe(202);
      await waitOp(s, r.json.operation.id);
    }
    const unknown = await s.api.post("/api/v1/backups", { labels: ["daily"] });
    expect(unknown.status).toBe(400);
    expect(unknown.json.error).toMatchObject({ code: "invalid_request", field: "labels" });
    expect(unknown.json.error.message).toContain('unknown field "labels"');
    expect((await s.api.raw({ method: "POST", path: "/api/v1/backups", token: TOKEN, body: "[]", headers: { "Content-Type": "application/json" } })).status).toBe(400);
    expect((await s.api.raw({ method: "POST", path: "/api/v1/backups", token: TOKEN, body: "{nope", headers: { "Content-Type": "application/json" } })).json.error.code).toBe("invalid_json");
    expect((await s.api.raw({ method: "POST", path: "/api/v1/backups", token: TOKEN, body: "x=1", headers: { "Content-Type": "application/x-www-form-urlencoded" } })).status).toBe(415);
  });

  it("allowUnstagedDrop reaches the engine; a non-boolean is 400", async () => {
    const before = s.fr.engine.restores.length;
    const r = await s.api.post("/api/v1/restores", { backup: "latest", existingTables: "drop", allowUnstagedDrop: true });
    expect(r.status).toBe(202);
    await waitOp(s, r.json.operation.id);
    expect(s.fr.engine.restores[before]).toMatchObject({ existingTables: "drop", allowUnstagedDrop: true });
    const bad = await s.api.post("/api/v1/restores", { backup: "latest", allowUnstagedDrop: "yes" });
    expect(bad.status).toBe(400);
    expect(bad.json.error.field).toBe("allowUnstagedDrop");
  });

  it("mergeShards reaches the engine; a non-boolean is 400", async () => {
    const before = s.fr.engine.restores.length;
    const r = await s.api.post("/api/v1/restores", { backup: "latest", mergeShards: true });
    expect(r.status).toBe(202);
    await waitOp(s, r.json.operation.id);
    expect(s.fr.engine.restores[before]).toMatchObject({ mergeShards: true });
    const bad = await s.api.post("/api/v1/restores", { backup: "latest", mergeShards: 1 });
    expect(bad.status).toBe(400);
    expect(bad.json.error.field).toBe("mergeShards");
  });

  it("POST /api/v1/backups/{id|latest}/verify runs a verify operation; its result holds the per-table report", async () => {
    const id = s.fr.runner.latest()!.manifest.id;
    for (const ref of ["latest", id]) {
      const r = await s.api.post(`/api/v1/backups/${ref}/verify`);
      expect(r.status).toBe(202);
      expect(r.headers["location"]).toBe(`/api/v1/operations/${r.json.operation.id}`);
      expect(r.json.operation).toMatchObject({ kind: "verify", state: "running", backupId: id });
      const done = await waitOp(s, r.json.operation.id);
      expect(done.operation.state).toBe("succeeded");
      expect(done.operation.result).toMatchObject({ backupId: id, ok: true, tables: [{ database: "db1", name: "t1", rows: 100, ok: true }] });
    }
    const st = (await s.api.get("/api/v1/status")).json;
    expect(st.lastVerified).toMatchObject({ backupId: id, ok: true });
    expect(st.lastSuccess.verify.kind).toBe("verify");
    expect((await s.api.post("/api/v1/backups/20200101T000000Z-abcdef/verify")).status).toBe(404);
    expect((await s.api.post("/api/v1/backups/nope/verify")).status).toBe(400);
    expect((await s.api.post(`/api/v1/backups/${id}/verify`, { deep: true })).status).toBe(400);
  });

  it("a damaged backup: the verify operation fails naming the tables", async () => {
    s.fr.engine.verifyResult = {
      ok: false,
      tables: [{ database: "db1", name: "t1", objects: ["data.bin"], expectedRows: 100, rows: 0, bytes: 1, uncompressedBytes: 0, ok: false, error: "the data holds 0 rows, the manifest says 100" }],
      otherObjects: [],
    };
    const r = await s.api.post("/api/v1/backups/latest/verify");
    const done = await waitOp(s, r.json.operation.id);
    expect(done.operation.state).toBe("failed");
    expect(done.operation.error).toContain("is not whole: db1.t1 (the data holds 0 rows, the manifest says 100)");
    expect(done.operation.result.ok).toBe(false);
    expect((await s.api.get("/api/v1/status")).json.lastVerified.ok).toBe(false);
  });

  it("verify works once the catalog is loaded, before the database answers; backups and restores wait", async () => {
    s.service.ready = false;
    (s.service as { catalogLoaded?: boolean }).catalogLoaded = true;
    s.fr.engine.checkError = "connect ECONNREFUSED";
    const v = await s.api.post("/api/v1/backups/latest/verify");
    expect(v.status).toBe(202);
    expect((await waitOp(s, v.json.operation.id)).operation.state).toBe("succeeded");
    expect((await s.api.get("/api/v1/backups")).status).toBe(200);
    const b = await s.api.post("/api/v1/backups");
    expect(b.status).toBe(503);
    expect(b.json.error.code).toBe("not_ready");
    expect((await s.api.post("/api/v1/restores", { backup: "latest" })).status).toBe(503);
  });

  it("Idempotency-Key: a repeated key starts nothing and answers 200 with the same restore, also while another operation runs; a malformed key is 400", async () => {
    const post = (key: string) => s.api.raw({ method: "POST", path: "/api/v1/restores", token: TOKEN, body: JSON.stringify({ backup: "latest" }), headers: { "Content-Type": "application/json", "Idempotency-Key": key } });
    const before = s.fr.engine.restores.length;
    const first = await post("restore-3f0c9a52-uid");
    expect(first.status).toBe(202);
    const id = (first.json as { operation: { id: string; idempotencyKey: string } }).operation.id;
    expect((first.json as { operation: { idempotencyKey: string } }).operation.idempotencyKey).toBe("restore-3f0c9a52-uid");
    const again = await post("restore-3f0c9a52-uid");
    expect(again.status).toBe(200);
    expect(again.headers["location"]).toBe(`/api/v1/restores/${id}`);
    expect((again.json as { operation: { id: string } }).operation.id).toBe(id);
    await waitOp(s, id);
    // Ended, and a backup running now: still the same answer, not 409 busy.
    const g = gate();
    s.fr.engine.gate = g.promise;
    const backup = await s.api.post("/api/v1/backups");
    const late = await post("restore-3f0c9a52-uid");
    expect(late.status).toBe(200);
    expect((late.json as { operation: { id: string; state: string } }).operation).toMatchObject({ id, state: "succeeded" });
    const other = await post("restore-other-uid");
    expect(other.status).toBe(409);
    g.open();
    await waitOp(s, backup.json.operation.id);
    expect(s.fr.engine.restores.length).toBe(before + 1);
    const listed = (await s.api.get("/api/v1/operations")).json.operations as { id: string; idempotencyKey: string | null }[];
    expect(listed.filter((o) => o.idempotencyKey === "restore-3f0c9a52-uid").map((o) => o.id)).toEqual([id]);
    for (const bad of ["", "has space", "x".repeat(129), "a/b"]) {
      const r = await post(bad);
      expect(r.status, bad).toBe(400);
      expect((r.json as { error: { code: string } }).error.code).toBe("invalid_idempotency_key");
    }
  });

  it("GET /api/v1/operations lists every remembered operation, newest first", async () => {
    const r = await s.api.get("/api/v1/operations");
    expect(r.status).toBe(200);
    const ops = r.json.operations as { id: string; kind: string; startedAt: string }[];
    expect(ops.length).toBeGreaterThan(5);
    expect(new Set(ops.map((o) => o.kind))).toEqual(new Set(["backup", "restore", "verify"]));
    const times = ops.map((o) => Date.parse(o.startedAt));
    expect([...times].sort((a, b) => b - a)).toEqual(times);
  });

  it("DELETE /api/v1/operations/{id} cancels a running operation: 202, then cancelled; 409 once ended; 404 unknown", async () => {
    const g = gate();
    s.fr.engine.gate = g.promise;
    const r = await s.api.post("/api/v1/backups");
    const id = r.json.operation.id;
    await pollJson(() => s.api.get(`/api/v1/operations/${id}`), (j) => j.operation.progress.tablesDone === 1, 5000, 10);
    const c = await s.api.del(`/api/v1/operations/${id}`);
    expect(c.status).toBe(202);
    expect(c.json.operation.id).toBe(id);
    g.open();
    const done = await waitOp(s, id);
    expect(done.operation.state).toBe("cancelled");
    expect(done.operation.error).toContain("cancelled by API request");
    expect(s.fr.runner.catalog.get(done.operation.backupId)).toBeUndefined();
    const again = await s.api.del(`/api/v1/operations/${id}`);
    expect(again.status).toBe(409);
    expect(again.json.error.code).toBe("operation_finished");
    const unknown = await s.api.del("/api/v1/operations/00000000-0000-0000-0000-000000000000");
    expect(unknown.status).toBe(404);
    expect(unknown.json.error.code).toBe("operation_not_found");
    const m = parsePrometheusText((await rawRequest(s.server.url, { path: "/metrics" })).text);
    expect(m.get('chbackup_runner_operations_total{kind="backup",result="cancelled"}')).toBe(1);
  });

  it("/readyz and the 503s say why the runner is not ready", async () => {
    const svc = s.service as ApiService & { ready: boolean; startupProblem?: () => string | undefined };
    svc.ready = false;
    svc.startupProblem = () => "loading the backup catalog from storage: connect ECONNREFUSED 127.0.0.1:9000";
    try {
      const r = await rawRequest(s.server.url, { path: "/readyz" });
      expect(r.status).toBe(503);
      expect(r.json.checks.runner).toBe("not ready: loading the backup catalog from storage: connect ECONNREFUSED 127.0.0.1:9000");
      const b = await s.api.get("/api/v1/backups");
      expect(b.status).toBe(503);
      expect(b.json.error.message).toContain("ECONNREFUSED");
      expect((await s.api.get("/api/v1/status")).json.notReadyReason).toContain("ECONNREFUSED");
    } finally {
      delete svc.startupProblem;
    }
  });
});

describe("API documentation", () => {
  it("the README's endpoint table lists every route, and no route that does not exist", async () => {
    const { readFile } = await import("node:fs/promises");
    const readme = await readFile(new URL("../../../README.md", import.meta.url), "utf8");
    const section = readme.slice(readme.indexOf("## Runner HTTP API"), readme.indexOf("\n## ", readme.indexOf("## Runner HTTP API") + 5));
    const table = section.split("\n").filter((l) => l.startsWith("| `"));
    const documented = new Set(table.flatMap((l) => [...l.split(" | ")[0]!.matchAll(/`(GET|POST|DELETE|PUT|PATCH) (\/[^`]*)`/g)].map((m) => `${m[1]} ${m[2]}`)));
    const s = await setup();
    try {
      expect(new Set(s.server.routes)).toEqual(documented);
    } finally {
      await s.server.close(100);
      await s.fr.cleanup();
    }
  });
});

describe("API server: modes and shutdown", () => {
  it("single mode: POST /api/v1/backups is 409 single_mode", async () => {
    const s = await setup({ mode: "single" });
    try {
      const r = await s.api.post("/api/v1/backups");
      expect(r.status).toBe(409);
      expect(r.json.error.code).toBe("single_mode");
      expect((await s.api.get("/api/v1/status")).json).toMatchObject({ mode: "single", singleBackupTarget: "exports/one" });
    } finally {
      await s.server.close(100);
      await s.fr.cleanup();
    }
  });

  it("503 shutting_down once the runner shuts down", async () => {
    const s = await setup();
    try {
      await s.fr.runner.shutdown(0);
      const r = await s.api.post("/api/v1/backups");
      expect(r.status).toBe(503);
      expect(r.json.error.code).toBe("shutting_down");
    } finally {
      await s.server.close(100);
      await s.fr.cleanup();
    }
  });

  it("stopAccepting lets requests in flight finish; close(grace) then ends every connection", async () => {
    const s = await setup();
    try {
      s.fr.engine.checkDelayMs = 300;
      const checksBefore = s.fr.engine.checkCalls;
      const inFlight = rawRequest(s.server.url, { path: "/readyz" });
      await waitUntil("/readyz is in flight", async () => s.fr.engine.checkCalls > checksBefore, { timeoutMs: 10_000, intervalMs: 5 });
      // a connection that never finishes its request
      const hung = connect(s.server.port, "127.0.0.1");
      await new Promise((r) => hung.once("connect", r));
      hung.write("GET /healthz HTTP/1.1\r\nHost: x\r\n");
      const hungClosed = new Promise((r) => hung.once("close", r));
      await s.server.stopAccepting();
      await expect(rawRequest(s.server.url, { path: "/healthz" })).rejects.toThrow(/ECONNREFUSED/);
      const r = await inFlight;
      expect(r.status).toBe(200); // in flight while stopping: completes normally
      const t0 = Date.now();
      await s.server.close(200);
      expect(Date.now() - t0).toBeLessThan(5000); // not held up by the hung connection
      await hungClosed;
    } finally {
      await s.fr.cleanup();
    }
  });
});

describe("API server: limits and slow clients", () => {
  /** Body limit 1 KiB, default (long) timeouts: a quick answer cannot be a timeout. */
  let s: Setup;
  /** Short timeouts. */
  let slow: Setup;
  beforeAll(async () => {
    s = await setup({ maxBodyBytes: 1024 });
    slow = await setup({ timeouts: { headersMs: 300, requestMs: 600 } });
  });
  afterAll(async () => {
    for (const x of [s, slow]) {
      await x.server.close(100);
      await x.fr.cleanup();
    }
  });

  const openSocket = async (to: Setup = s): Promise<{ sock: Socket; data: () => string; closed: Promise<number> }> => {
    const sock = connect(to.server.port, "127.0.0.1");
    await new Promise((r) => sock.once("connect", r));
    let data = "";
    sock.on("data", (c: Buffer) => (data += c.toString("utf8")));
    sock.on("error", () => {});
    const t0 = Date.now();
    const closed = new Promise<number>((r) => sock.once("close", () => r(Date.now() - t0)));
    return { sock, data: () => data, closed };
  };

  it("413 for a declared Content-Length over the limit, without reading the body", async () => {
    const { sock, data, closed } = await openSocket();
    sock.write(
      `POST /api/v1/restores HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\n\r\n{"backup":`,
    );
    const ms = await closed;
    expect(ms).toBeLessThan(5000); // answered at once, not after reading 100 MB or a timeout (10 s / 30 s here)
    expect(data()).toMatch(/^HTTP\/1\.1 413 /);
    expect(data()).toContain('"code":"payload_too_large"');
  });

  it("413 as soon as a chunked body grows over the limit", async () => {
    const { sock, data, closed } = await openSocket();
    sock.write(`POST /api/v1/restores HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n`);
    const chunk = "x".repeat(600);
    sock.write(`${chunk.length.toString(16)}\r\n${chunk}\r\n`);
    sock.write(`${chunk.length.toString(16)}\r\n${chunk}\r\n`);
    // the body never ends: the server must answer anyway
    const ms = await closed;
    expect(ms).toBeLessThan(5000);
    expect(data()).toMatch(/^HTTP\/1\.1 413 /);
    expect(data().toLowerCase()).toContain("connection: close");
  });

  it("a body under the limit is read", async () => {
    const r = await rawRequest(s.server.url, { method: "POST", path: "/api/v1/restores", token: TOKEN, body: { backup: "20200101T000000Z-abcdef", tables: ["a.b"] } });
    expect(r.status).toBe(404);
  });

  it("a client sending headers byte by byte is cut off by headersTimeout", async () => {
    const { sock, closed } = await openSocket(slow);
    const req = `GET /api/v1/status HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nX-Slow: ${"y".repeat(200)}\r\n\r\n`;
    let i = 0;
    const timer = setInterval(() => {
      if (i < req.length && !sock.destroyed) sock.write(req[i++]!);
    }, 20);
    const ms = await closed;
    clearInterval(timer);
    expect(i).toBeLessThan(req.length);
    expect(ms).toBeGreaterThanOrEqual(250);
    expect(ms).toBeLessThan(3000);
  });

  it("a client sending its body slowly is cut off by requestTimeout", async () => {
    const { sock, data, closed } = await openSocket(slow);
    sock.write(`POST /api/v1/restores HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n`);
    let sent = 0;
    const timer = setInterval(() => {
      if (sent < 500 && !sock.destroyed) {
        sock.write(" ");
        sent++;
      }
    }, 20);
    const ms = await closed;
    clearInterval(timer);
    expect(sent).toBeLessThan(500);
    expect(ms).toBeLessThan(3000);
    expect(data()).toMatch(/^HTTP\/1\.1 (408|400) /);
  });

  it("still serves other clients while a slow one dribbles", async () => {
    const { sock, closed } = await openSocket(slow);
    sock.write("GET /healthz HTTP/1.1\r\n");
    const r = await rawRequest(slow.server.url, { path: "/healthz" });
    expect(r.status).toBe(200);
    await closed;
  });
});

describe("API server: request log", () => {
  it("one line per request with method, path without query, status and duration; never the token", async () => {
    const { lines, stream } = lineCollector();
    const s = await setup({ logStream: stream });
    try {
      await s.api.get("/api/v1/status?token=secret-in-query");
      await rawRequest(s.server.url, { path: "/api/v1/backups", headers: { Authorization: "Bearer wrong-token-value-123" } });
      await rawRequest(s.server.url, { method: "POST", path: "/api/v1/restores", token: TOKEN, body: { backup: "latest", secretField: TOKEN } });
      await rawRequest(s.server.url, { path: "/healthz" });
      const requestLines = () => lines.map((l) => JSON.parse(l)).filter((l) => l.message === "request");
      await waitUntil("four request lines", async () => requestLines().length >= 4, { timeoutMs: 10_000, intervalMs: 10 });
      const reqLines = requestLines();
      expect(reqLines).toHaveLength(4);
      expect(reqLines[0]).toMatchObject({ level: "info", method: "GET", path: "/api/v1/status", status: 200 });
      expect(typeof reqLines[0].durationMs).toBe("number");
      expect(reqLines[1]).toMatchObject({ method: "GET", path: "/api/v1/backups", status: 401 });
      expect(reqLines[2]).toMatchObject({ method: "POST", path: "/api/v1/restores", status: 400 });
      expect(reqLines[3]).toMatchObject({ level: "debug", path: "/healthz", status: 200 });
      const all = lines.join("\n");
      expect(all).not.toContain(TOKEN);
      expect(all).not.toContain("wrong-token-value-123");
      expect(all).not.toContain("secret-in-query");
      expect(all).not.toContain("secretField");
    } finally {
      await s.server.close(100);
      await s.fr.cleanup();
    }
  });
});

describe("API server: options", () => {
  it("refuses a short token", async () => {
    const fr = await fakeRunner({ token: TOKEN, logger: silent });
    try {
      await expect(
        startApiServer({ service: { runner: fr.runner, ready: true, nextRun: () => undefined }, metrics: new RunnerMetrics({ defaultMetrics: false }), logger: silent, token: "short", host: "127.0.0.1", port: 0 }),
      ).rejects.toThrow(/at least 16/);
    } finally {
      await fr.cleanup();
    }
  });

  it("reports a port in use", async () => {
    const s = await setup();
    try {
      await expect(
        startApiServer({ service: s.service, metrics: s.metrics, logger: silent, token: TOKEN, host: "127.0.0.1", port: s.server.port }),
      ).rejects.toThrow(/EADDRINUSE/);
    } finally {
      await s.server.close(100);
      await s.fr.cleanup();
    }
  });

  it("node:http request keeps the raw path (sanity check of the test client)", async () => {
    const s = await setup();
    try {
      const seen = await new Promise<number>((resolve, reject) => {
        const req = request({ host: "127.0.0.1", port: s.server.port, path: "/api/v1/backups/%2e%2e", headers: { Authorization: `Bearer ${TOKEN}` } }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on("error", reject);
        req.end();
      });
      expect(seen).toBe(400);
    } finally {
      await s.server.close(100);
      await s.fr.cleanup();
    }
  });
});
