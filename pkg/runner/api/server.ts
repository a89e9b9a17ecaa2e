// The runner's HTTP API: probes, Prometheus metrics, status, the backup
// catalog, on-demand backups, pins, restores, verify, and operations (list,
// follow, cancel).
//
// Plain node:http, no framework: a dozen fixed routes, JSON in and out, one
// bearer token. A router, body parser and error mapper are a few dozen lines
// here, and every behaviour that matters for safety (path decoding, body
// limits, timeouts, constant-time auth, shutdown) stays visible in this
// directory instead of in a dependency's defaults:
//
//   server.ts        startApiServer: wires the pieces below together
//   types.ts         what the API needs of the runner and its service
//   router.ts        route table, matching, auth, 404/405
//   listener.ts      request log, runner errors to JSON error answers
//   lifecycle.ts     timeouts, listen, stop accepting, close
//   gate.ts          readiness gates (503 while the runner starts)
//   requests.ts      request pieces the handler groups share
//   handlers/        one module per resource: probes (health, readiness,
//                    metrics, status), backups (with pin and verify),
//                    restores, operations (with cancel)
//   http.ts, auth.ts, views.ts, metrics.ts   JSON and body helpers, bearer
//                    auth, response views, Prometheus metrics
//
// Operations are asynchronous: handlers start them and answer 202 at once;
// nothing ever awaits a backup or restore, so the API keeps answering (probes,
// status, progress) while one runs.
import type { Logger } from "winston";
import { BearerAuth } from "./auth.ts";
import { readinessGate } from "./gate.ts";
import { backupRoutes } from "./handlers/backups.ts";
import { operationRoutes } from "./handlers/operations.ts";
import { probeRoutes } from "./handlers/probes.ts";
import { restoreRoutes } from "./handlers/restores.ts";
import { listen, resolveTimeouts, shutdown } from "./lifecycle.ts";
import { requestListener } from "./listener.ts";
import type { RunnerMetrics } from "./metrics.ts";
import { dispatcher, routeNames, type Route } from "./router.ts";
import type { ApiService, ApiTimeouts } from "./types.ts";
import { secretRedactor } from "./views.ts";

export type { ApiRunner, ApiService, ApiTimeouts } from "./types.ts";

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

const DEFAULT_MAX_BODY = 64 * 1024;

export async function startApiServer(opts: ApiServerOptions): Promise<ApiServer> {
  const { service, metrics, logger } = opts;
  const runner = service.runner;
  const auth = new BearerAuth(opts.token);
  const maxBodyBytes = opts.maxBodyBytes ?? DEFAULT_MAX_BODY;
  const timeouts = resolveTimeouts(opts.timeouts);
  const redact = secretRedactor(runner.config);
  const gate = readinessGate(service, redact);
  let stopping = false;

  const routes: Route[] = [
    ...probeRoutes({ service, runner, metrics, gate, redact, healthMs: timeouts.healthMs, isStopping: () => stopping }),
    ...backupRoutes({ runner, gate, redact, maxBodyBytes }),
    ...restoreRoutes({ runner, gate, redact, maxBodyBytes }),
    ...operationRoutes({ runner, redact }),
  ];
  const listener = requestListener(dispatcher(routes, auth), { logger, redact });
  const { server, port, url } = await listen(listener, { host: opts.host, port: opts.port, timeouts, logger });
  const { stopAccepting, close } = shutdown(server, () => {
    stopping = true;
  });
  return { url, port, routes: routeNames(routes), stopAccepting, close };
}
