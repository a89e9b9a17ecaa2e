// The runner's HTTP API: probes, Prometheus metrics, status, the backup
// catalog, on-demand backups, pins, restores, verify, and operations (list,
// follow, cancel).
//
// Plain node:http, no framework: a dozen fixed routes, JSON in and out, one
// bearer token. A router, body parser and error mapper are a few dozen lines
// here, and every behaviour that matters for safety (path decoding, body
// limits, timeouts, constant-time auth, shutdown) stays visible in this
// directory instead of in a dependency's defaults.
//
// Operations are asynchronous: handlers start them and answer 202 at once;
// nothing ever awaits a backup or restore, so the API keeps answering (probes,
// status, progress) while one runs.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { performance } from "node:perf_hooks";
import type { Logger } from "winston";
import type { RunnerConfig } from "../../apis/index.ts";
import type { CatalogEntry, UnreadableBackup } from "../catalog.ts";
import { BackupNotFoundError, BackupUnreadableError, BusyError, NotReadyError, OperationFinishedError, OperationNotFoundError, ShuttingDownError, describeError } from "../errors.ts";
import { isBackupId } from "../ids.ts";
import type { RetentionDecision } from "../retention.ts";
import type { BackupTrigger, Operation, RestoreRequest, RunnerStatus } from "../runner.ts";
import { BearerAuth } from "./auth.ts";
import { ApiError, parsePath, readJsonBody, readOptionalJsonBody, sendError, sendJson } from "./http.ts";
import type { RunnerMetrics } from "./metrics.ts";
import type { Owner } from "../manifest.ts";
import { backupSummary, emptyBody, firstIssue, operationView, restoreBody, secretRedactor, statusView, unreadableSummary } from "./views.ts";

/** What the API uses of the Runner (the Runner class satisfies it; tests may pass a fake). */
export interface ApiRunner {
  readonly config: RunnerConfig;
  readonly owner: Owner;
  readonly catalog: {
    list(): CatalogEntry[];
    get(id: string): CatalogEntry | undefined;
    unreadable(): UnreadableBackup[];
    getUnreadable(id: string): UnreadableBackup | undefined;
    setPinned(id: string, pinned: boolean): Promise<CatalogEntry>;
  };
  status(): RunnerStatus;
  health(signal?: AbortSignal): Promise<{ storage: string; engine: string; engineVersion?: string | undefined }>;
  operation(id: string): Operation | undefined;
  operations(): Operation[];
  cancel(id: string, by: string): Operation;
  retentionDecision(): RetentionDecision;
  startBackup(trigger: BackupTrigger): { operation: Operation; finished: Promise<Operation> };
  startRestore(req: RestoreRequest, trigger?: string): { operation: Operation; finished: Promise<Operation> };
  startVerify(ref: string, trigger?: string): { operation: Operation; finished: Promise<Operation> };
}

/** What the API uses of the RunnerService. */
export interface ApiService {
  readonly runner: ApiRunner;
  /** Ready for every operation (catalog loaded, interrupted restores cleaned up). */
  readonly ready: boolean;
  /** The catalog is loaded (listing, pins and verify work); defaults to `ready`. */
  readonly catalogLoaded?: boolean;
  /** Why the runner is not ready yet, for /readyz and 503 answers. */
  startupProblem?(): string | undefined;
  nextRun(): Date | undefined;
}

export interface ApiTimeouts {
  /** Whole request (headers and body) must arrive within this (default 30 s). */
  requestMs?: number;
  /** Headers must arrive within this (default 10 s). */
  headersMs?: number;
  /** Idle keep-alive connections are closed after this (default 5 s). */
  keepAliveMs?: number;
  /** Readiness checks of storage and database give up after this (default 4 s). */
  healthMs?: number;
}

export interface ApiServerOptions {
  service: ApiService;
  metrics: RunnerMetrics;
  logger: Logger;
  token: string;
  host: string;
  /** 0 = any free port. */
  port: number;
  /** Largest accepted request body (default 64 KiB). */
  maxBodyBytes?: number;
  timeouts?: ApiTimeouts;
}

export interface ApiServer {
  url: string;
  port: number;
  /** Every route as "METHOD /path/{param}" (for documentation checks). */
  routes: string[];
  /** Stops accepting connections; requests in flight go on. Resolves once the listener is closed. */
  stopAccepting(): Promise<void>;
  /** stopAccepting, waits up to graceMs for requests in flight, then closes every connection. */
  close(graceMs: number): Promise<void>;
}

type Ctx = {
  req: IncomingMessage;
  res: ServerResponse;
  /** Decoded path parameters (":id"). */
  params: Record<string, string>;
};
type Handler = (ctx: Ctx) => Promise<void> | void;
interface Route {
  pattern: string[];
  methods: Record<string, Handler>;
}

const DEFAULT_MAX_BODY = 64 * 1024;
/** Paths polled by kubelet and Prometheus: logged at debug level when they succeed. */
const QUIET_PATHS = new Set(["/healthz", "/readyz", "/metrics"]);

const unauthorized = () => new ApiError(401, "unauthorized", "unauthorized", { headers: { "WWW-Authenticate": "Bearer" } });
const notReady = (why: string | undefined) =>
  new ApiError(503, "not_ready", `the runner is not ready yet (${why ?? "starting"}); try again shortly`, { headers: { "Retry-After": "5" } });
const NOT_FOUND_OPERATION = "no such operation (the runner remembers the newest 100, across restarts when it has a state directory)";

function matchRoute(routes: readonly Route[], segments: readonly string[]): { route: Route; params: Record<string, string> } | undefined {
  for (const route of routes) {
    if (route.pattern.length !== segments.length) continue;
    const params: Record<string, string> = {};
    let ok = true;
    for (let i = 0; i < segments.length && ok; i++) {
      const p = route.pattern[i]!;
      const s = segments[i]!;
      if (p.startsWith(":")) {
        params[p.slice(1)] = s;
        ok = s !== "";
      }
      else ok = p === s;
    }
    if (ok) return { route, params };
  }
  return undefined;
}

function urlFor(host: string, port: number): string {
  const h = host === "0.0.0.0" || host === "" ? "127.0.0.1" : host === "::" ? "[::1]" : host.includes(":") ? `[${host}]` : host;
  return `http://${h}:${port}`;
}

export async function startApiServer(opts: ApiServerOptions): Promise<ApiServer> {
  const { service, metrics, logger } = opts;
  const runner = service.runner;
  const auth = new BearerAuth(opts.token);
  const maxBody = opts.maxBodyBytes ?? DEFAULT_MAX_BODY;
  const t = opts.timeouts ?? {};
  const requestMs = t.requestMs ?? 30_000;
  const headersMs = Math.min(t.headersMs ?? 10_000, requestMs);
  const keepAliveMs = t.keepAliveMs ?? 5_000;
  const healthMs = t.healthMs ?? 4_000;
  const redact = secretRedactor(runner.config);
  let stopping = false;

  // One readiness check at a time; concurrent probes share it.
  let healthInFlight: ReturnType<ApiRunner["health"]> | undefined;
  const health = () => {
    healthInFlight ??= runner.health(AbortSignal.timeout(healthMs)).finally(() => {
      healthInFlight = undefined;
    });
    return healthInFlight;
  };

  const startupProblem = () => (service.startupProblem ? service.startupProblem() : service.ready ? undefined : "starting");
  /** Backups and restores: catalog loaded and interrupted restores cleaned up. */
  const requireReady = () => {
    if (!service.ready) throw notReady(redact(startupProblem() ?? "starting"));
  };
  /** Reading the catalog, pins and verify: only the catalog is needed (not the database). */
  const requireCatalog = () => {
    if (!(service.catalogLoaded ?? service.ready)) throw notReady(redact(startupProblem() ?? "starting"));
  };
  const noBody = async (req: IncomingMessage) => {
    const body = await readOptionalJsonBody(req, maxBody);
    if (body === undefined) return;
    const parsed = emptyBody.safeParse(body);
    if (!parsed.success) {
      const { field, message } = firstIssue(parsed.error);
      throw new ApiError(400, "invalid_request", `${field}: ${message}`, { field });
    }
  };
  const backupId = (ctx: Ctx): string => {
    const id = ctx.params["id"] ?? "";
    if (!isBackupId(id)) throw new ApiError(400, "invalid_backup_id", "not a backup id (format 20261124T031000Z-a1b2c3)");
    return id;
  };
  const labelsOf = (decision: RetentionDecision, id: string) => decision.labels.get(id) ?? [];
  const entryOr404 = (id: string): CatalogEntry => {
    const e = runner.catalog.get(id);
    if (!e) throw new ApiError(404, "backup_not_found", `backup ${id} not found`);
    return e;
  };
  const operationResponse = (res: ServerResponse, op: Operation, location: string) =>
    sendJson(res, 202, { operation: operationView(op, redact) }, { Location: location });

  const routes: Route[] = [
    { pattern: ["healthz"], methods: { GET: ({ res }) => sendJson(res, 200, { status: "ok" }) } },
    {
      pattern: ["readyz"],
      methods: {
        GET: async ({ res }) => {
          if (stopping) return sendJson(res, 503, { ready: false, checks: { server: "shutting down" } });
          const h = await health().catch((err: unknown) => ({ storage: describeError(err), engine: describeError(err), engineVersion: undefined }));
          const checks = { runner: service.ready ? "ok" : redact(`not ready: ${startupProblem() ?? "starting"}`), storage: redact(h.storage), engine: redact(h.engine) };
          const ok = Object.values(checks).every((v) => v === "ok");
          const failed = Object.entries(checks)
            .filter(([, v]) => v !== "ok")
            .map(([k]) => k);
          // Warnings (another owner in the prefix, unreadable manifests) are shown but do not make the runner unready.
          const warnings = runner.status().warnings.map(redact);
          sendJson(res, ok ? 200 : 503, { ready: ok, ...(ok ? {} : { failed }), checks, engineVersion: h.engineVersion ?? null, warnings });
        },
      },
    },
    {
      pattern: ["metrics"],
      methods: {
        GET: async ({ res }) => {
          const text = await metrics.registry.metrics();
          res.writeHead(200, { "Content-Type": metrics.registry.contentType, "Content-Length": String(Buffer.byteLength(text)), "Cache-Control": "no-store" });
          res.end(text);
        },
      },
    },
    {
      pattern: ["api", "v1", "status"],
      methods: {
        GET: ({ res }) =>
          sendJson(res, 200, statusView(runner.status(), { ready: service.ready, nextRun: service.nextRun(), config: runner.config, startupProblem: startupProblem() }, redact)),
      },
    },
    {
      pattern: ["api", "v1", "backups"],
      methods: {
        GET: ({ res }) => {
          requireCatalog();
          const decision = runner.retentionDecision();
          // Newest first by start time: ids only order to the second (two backups in one second sort by their random suffix).
          const items = [
            ...runner.catalog.list().map((e) => ({ at: Date.parse(e.manifest.startedAt), view: backupSummary(e, labelsOf(decision, e.manifest.id), runner.owner) })),
            ...runner.catalog.unreadable().map((u) => ({ at: u.time.getTime(), view: unreadableSummary(u, redact) })),
          ].sort((a, b) => b.at - a.at || b.view.id.localeCompare(a.view.id));
          sendJson(res, 200, { backups: items.map((i) => i.view) });
        },
        POST: async ({ req, res }) => {
          requireReady();
          await noBody(req);
          if (runner.config.definition.mode === "single") {
            throw new ApiError(409, "single_mode", "this runner is in single-backup mode: it takes its one backup and no others (scheduled mode only)");
          }
          const { operation } = runner.startBackup("api");
          operationResponse(res, operation, `/api/v1/operations/${operation.id}`);
        },
      },
    },
    {
      pattern: ["api", "v1", "backups", ":id"],
      methods: {
        GET: (ctx) => {
          const id = backupId(ctx);
          requireCatalog();
          const u = runner.catalog.getUnreadable(id);
          if (u) return sendJson(ctx.res, 200, { backup: unreadableSummary(u, redact), manifest: null });
          const e = entryOr404(id);
          sendJson(ctx.res, 200, { backup: backupSummary(e, labelsOf(runner.retentionDecision(), id), runner.owner), manifest: e.manifest });
        },
      },
    },
    {
      pattern: ["api", "v1", "backups", ":id", "pin"],
      methods: {
        POST: (ctx) => pin(ctx, true),
        DELETE: (ctx) => pin(ctx, false),
      },
    },
    {
      pattern: ["api", "v1", "backups", ":id", "verify"],
      methods: {
        POST: async (ctx) => {
          const ref = ctx.params["id"] ?? "";
          if (ref !== "latest") backupId(ctx);
          requireCatalog();
          await noBody(ctx.req);
          const { operation } = runner.startVerify(ref, "api");
          operationResponse(ctx.res, operation, `/api/v1/operations/${operation.id}`);
        },
      },
    },
    {
      pattern: ["api", "v1", "restores"],
      methods: {
        POST: async ({ req, res }) => {
          requireReady();
          const body = await readJsonBody(req, maxBody);
          const parsed = restoreBody.safeParse(body);
          if (!parsed.success) {
            const { field, message } = firstIssue(parsed.error);
            throw new ApiError(400, "invalid_request", `${field}: ${message}`, { field });
          }
          const b = parsed.data;
          const request: RestoreRequest = {
            backup: b.backup,
            existingTables: b.existingTables,
            ...(b.allowUnstagedDrop ? { allowUnstagedDrop: true } : {}),
            ...(b.databases ? { databases: b.databases } : {}),
            ...(b.tables ? { tables: b.tables } : {}),
            // a prototype-less copy: database names like "constructor" must not resolve to Object's members
            ...(b.renameDatabases ? { renameDatabases: Object.assign(Object.create(null) as Record<string, string>, b.renameDatabases) } : {}),
          };
          const { operation } = runner.startRestore(request, "api");
          operationResponse(res, operation, `/api/v1/restores/${operation.id}`);
        },
      },
    },
    {
      pattern: ["api", "v1", "restores", ":id"],
      methods: {
        GET: ({ res, params }) => {
          const op = runner.operation(params["id"] ?? "");
          if (!op || op.kind !== "restore") throw new ApiError(404, "restore_not_found", NOT_FOUND_OPERATION.replace("operation", "restore"));
          sendJson(res, 200, { operation: operationView(op, redact) });
        },
      },
    },
    {
      pattern: ["api", "v1", "operations"],
      methods: {
        GET: ({ res }) => sendJson(res, 200, { operations: runner.operations().map((op) => operationView(op, redact)) }),
      },
    },
    {
      pattern: ["api", "v1", "operations", ":id"],
      methods: {
        GET: ({ res, params }) => {
          const op = runner.operation(params["id"] ?? "");
          if (!op) throw new ApiError(404, "operation_not_found", NOT_FOUND_OPERATION);
          sendJson(res, 200, { operation: operationView(op, redact) });
        },
        // Cancel: the operation stops with the same guarantees as a failure and ends "cancelled".
        DELETE: ({ res, params }) => {
          const op = runner.cancel(params["id"] ?? "", "API request");
          sendJson(res, 202, { operation: operationView(op, redact) });
        },
      },
    },
  ];

  async function pin(ctx: Ctx, pinned: boolean): Promise<void> {
    const id = backupId(ctx);
    requireCatalog();
    // setPinned waits for a running retention pass and then answers 404 if that pass deleted the backup.
    const e = await runner.catalog.setPinned(id, pinned);
    sendJson(ctx.res, 200, { backup: backupSummary(e, labelsOf(runner.retentionDecision(), id), runner.owner) });
  }

  async function handle(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    const method = req.method === "HEAD" ? "GET" : (req.method ?? "GET");
    // Authenticate before anything else under /api/v1, so unauthenticated clients learn nothing about routes or ids.
    const rawApi = path === "/api/v1" || path.startsWith("/api/v1/");
    if (rawApi && !auth.check(req.headers.authorization)) throw unauthorized();
    const segments = parsePath(path);
    // "/api/%761/..." decodes to the API too: the check is on the decoded segments as well.
    if (!rawApi && segments[0] === "api" && segments[1] === "v1" && !auth.check(req.headers.authorization)) throw unauthorized();
    const match = matchRoute(routes, segments);
    if (!match) throw new ApiError(404, "not_found", "no such endpoint");
    const handler = match.route.methods[method];
    if (!handler) {
      const allow = Object.keys(match.route.methods);
      if (allow.includes("GET")) allow.push("HEAD");
      throw new ApiError(405, "method_not_allowed", `use ${allow.join(", ")}`, { headers: { Allow: allow.join(", ") } });
    }
    await handler({ req, res, params: match.params });
  }

  function toApiError(err: unknown): ApiError | undefined {
    if (err instanceof ApiError) return err;
    if (err instanceof BusyError) return new ApiError(409, "busy", err.message);
    if (err instanceof ShuttingDownError) return new ApiError(503, "shutting_down", err.message);
    if (err instanceof BackupNotFoundError) return new ApiError(404, "backup_not_found", err.message);
    if (err instanceof BackupUnreadableError) return new ApiError(409, "backup_unreadable", redact(err.message));
    if (err instanceof OperationNotFoundError) return new ApiError(404, "operation_not_found", NOT_FOUND_OPERATION);
    if (err instanceof OperationFinishedError) return new ApiError(409, "operation_finished", err.message);
    if (err instanceof NotReadyError) return new ApiError(503, "not_ready", redact(err.message), { headers: { "Retry-After": "5" } });
    return undefined;
  }

  const server: Server = createServer(
    {
      requestTimeout: requestMs,
      headersTimeout: headersMs,
      keepAliveTimeout: keepAliveMs,
      // how often Node checks connections against headersTimeout / requestTimeout
      connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(headersMs / 4))),
    },
    (req, res) => {
      const started = performance.now();
      const rawTarget = req.url ?? "/";
      const q = rawTarget.indexOf("?");
      const path = q >= 0 ? rawTarget.slice(0, q) : rawTarget;
      const logPath = path.length > 256 ? `${path.slice(0, 256)}…` : path;
      res.once("close", () => {
        const line = { method: req.method, path: logPath, status: res.statusCode, durationMs: Math.round((performance.now() - started) * 10) / 10 };
        if (QUIET_PATHS.has(path) && res.statusCode < 400) logger.debug("request", line);
        else logger.info("request", line);
      });
      handle(req, res, path).catch((err: unknown) => {
        let apiErr = toApiError(err);
        if (!apiErr) {
          logger.error("request failed", { method: req.method, path: logPath, error: redact(describeError(err)) });
          apiErr = new ApiError(500, "internal", "internal error; see the runner log");
        }
        if (res.headersSent) {
          res.destroy();
          return;
        }
        sendError(res, apiErr);
      });
    },
  );
  server.keepAliveTimeout = keepAliveMs;

  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    server.once("error", onError);
    server.listen(opts.port, opts.host, () => {
      server.off("error", onError);
      resolve();
    });
  });
  server.on("error", (err) => logger.error("api server error", { error: describeError(err) }));
  const port = (server.address() as AddressInfo).port;
  const url = urlFor(opts.host, port);
  logger.info("api listening", { url, host: opts.host, port });

  let closed: Promise<void> | undefined;
  const stopAccepting = async (): Promise<void> => {
    stopping = true;
    closed ??= new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeIdleConnections();
    });
  };
  return {
    url,
    port,
    routes: routes.flatMap((r) => Object.keys(r.methods).map((m) => `${m} /${r.pattern.map((p) => (p.startsWith(":") ? `{${p.slice(1)}}` : p)).join("/")}`)),
    stopAccepting,
    close: async (graceMs: number) => {
      await stopAccepting();
      const done = closed!;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([done, new Promise<void>((r) => (timer = setTimeout(r, graceMs)))]);
      clearTimeout(timer);
      server.closeAllConnections();
      await done;
    },
  };
}
