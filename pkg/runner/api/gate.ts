// Readiness gates: which requests the runner can serve while it starts.
// Backups and restores need the runner fully ready; listing the catalog, pins
// and verify need only the catalog (not the database). Both answer 503 with
// Retry-After and the (redacted) reason while the runner starts.
import { ApiError } from "./http.ts";
import type { ApiService, Redact } from "./types.ts";

const notReady = (why: string | undefined) =>
  new ApiError(503, "not_ready", `the runner is not ready yet (${why ?? "starting"}); try again shortly`, { headers: { "Retry-After": "5" } });

export interface Gate {
  /** Why the runner is not ready yet (unredacted); undefined once it is. */
  startupProblem(): string | undefined;
  /** Backups and restores: catalog loaded and interrupted restores cleaned up. */
  requireReady(): void;
  /** Reading the catalog, pins and verify: only the catalog is needed (not the database). */
  requireCatalog(): void;
}

/** Reads the service's state on every call (it changes while the runner starts). */
export function readinessGate(service: Pick<ApiService, "ready" | "catalogLoaded" | "startupProblem">, redact: Redact): Gate {
  const startupProblem = () => (service.startupProblem ? service.startupProblem() : service.ready ? undefined : "starting");
  return {
    startupProblem,
    requireReady: () => {
      if (!service.ready) throw notReady(redact(startupProblem() ?? "starting"));
    },
    requireCatalog: () => {
      if (!(service.catalogLoaded ?? service.ready)) throw notReady(redact(startupProblem() ?? "starting"));
    },
  };
}
