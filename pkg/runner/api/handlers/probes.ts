// Probes and status: GET /healthz (liveness), /readyz (readiness: runner,
// storage and database), /metrics (Prometheus) and /api/v1/status.
import { describeError } from "../../errors.ts";
import type { Gate } from "../gate.ts";
import { sendJson } from "../http.ts";
import type { RunnerMetrics } from "../metrics.ts";
import type { Ctx, Route } from "../router.ts";
import type { ApiRunner, ApiService, Redact } from "../types.ts";
import { statusView } from "../views.ts";

export interface ProbeDeps {
  service: Pick<ApiService, "ready" | "nextRun">;
  runner: Pick<ApiRunner, "config" | "status" | "health">;
  metrics: Pick<RunnerMetrics, "registry">;
  gate: Pick<Gate, "startupProblem">;
  redact: Redact;
  /** Readiness checks of storage and database give up after this. */
  healthMs: number;
  /** True once the server stops accepting connections. */
  isStopping: () => boolean;
}

type Health = Awaited<ReturnType<ApiRunner["health"]>>;

/** One readiness check at a time; concurrent probes share it. */
function sharedHealthCheck(runner: Pick<ApiRunner, "health">, healthMs: number): () => Promise<Health> {
  let inFlight: Promise<Health> | undefined;
  return () => {
    inFlight ??= runner.health(AbortSignal.timeout(healthMs)).finally(() => {
      inFlight = undefined;
    });
    return inFlight;
  };
}

async function readiness(deps: ProbeDeps, health: () => Promise<Health>, { res }: Ctx): Promise<void> {
  const { service, runner, gate, redact } = deps;
  if (deps.isStopping()) return sendJson(res, 503, { ready: false, checks: { server: "shutting down" } });
  const h = await health().catch((err: unknown) => ({ storage: describeError(err), engine: describeError(err), engineVersion: undefined }));
  const checks = { runner: service.ready ? "ok" : redact(`not ready: ${gate.startupProblem() ?? "starting"}`), storage: redact(h.storage), engine: redact(h.engine) };
  const ok = Object.values(checks).every((v) => v === "ok");
  const failed = Object.entries(checks)
    .filter(([, v]) => v !== "ok")
    .map(([k]) => k);
  // Warnings (another owner in the prefix, unreadable manifests) are shown but do not make the runner unready.
  const warnings = runner.status().warnings.map(redact);
  sendJson(res, ok ? 200 : 503, { ready: ok, ...(ok ? {} : { failed }), checks, engineVersion: h.engineVersion ?? null, warnings });
}

async function prometheus({ metrics }: ProbeDeps, { res }: Ctx): Promise<void> {
  const text = await metrics.registry.metrics();
  res.writeHead(200, { "Content-Type": metrics.registry.contentType, "Content-Length": String(Buffer.byteLength(text)), "Cache-Control": "no-store" });
  res.end(text);
}

function status({ service, runner, gate, redact }: ProbeDeps, { res }: Ctx): void {
  sendJson(res, 200, statusView(runner.status(), { ready: service.ready, nextRun: service.nextRun(), config: runner.config, startupProblem: gate.startupProblem() }, redact));
}

export function probeRoutes(deps: ProbeDeps): Route[] {
  const health = sharedHealthCheck(deps.runner, deps.healthMs);
  return [
    { pattern: ["healthz"], methods: { GET: ({ res }) => sendJson(res, 200, { status: "ok" }) } },
    { pattern: ["readyz"], methods: { GET: (ctx) => readiness(deps, health, ctx) } },
    { pattern: ["metrics"], methods: { GET: (ctx) => prometheus(deps, ctx) } },
    { pattern: ["api", "v1", "status"], methods: { GET: (ctx) => status(deps, ctx) } },
  ];
}
