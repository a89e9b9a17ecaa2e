// What the controller reads from a runner's HTTP API (through its Service)
// and mirrors into BackupDefinition.status: readiness (/readyz), the runner's
// status (/api/v1/status) and its catalog (/api/v1/backups). Fetching is one
// function; turning the answers into status fields is pure (tested alone).
export type RunnerUrl = (service: { name: string; namespace: string }) => string;

/** In a cluster: the Service's DNS name and the runner's port. */
export const clusterRunnerUrl =
  (port: number, domain = "svc"): RunnerUrl =>
  (svc) =>
    `http://${svc.name}.${svc.namespace}.${domain}:${port}`;

/** One operation as the runner's API shows it (the fields the controller reads). */
export interface RunnerOperation {
  id: string;
  kind: string;
  state: string;
  backupId?: string | null;
  startedAt: string;
  endedAt?: string | null;
  durationMs?: number | null;
  progress?: { phase?: string; tablesDone?: number; tablesTotal?: number; bytes?: number; rows?: number } | null;
  error?: string | null;
  retryable?: boolean | null;
}

/** The runner's GET /api/v1/status (the fields the controller reads). */
export interface RunnerStatusAnswer {
  ready?: boolean;
  nextRun?: string | null;
  current?: RunnerOperation | null;
  lastSuccess?: { backup?: RunnerOperation | null };
  lastFailure?: { backup?: RunnerOperation | null };
  lastVerified?: { backupId: string; at: string; ok: boolean; operationId?: string } | null;
  consecutiveFailures?: number;
}

/** One entry of GET /api/v1/backups. */
export interface RunnerBackupEntry {
  id?: unknown;
  state?: unknown;
  foreign?: unknown;
  endedAt?: unknown;
  durationMs?: unknown;
  bytes?: unknown;
  rows?: unknown;
}

/** The runner's GET /readyz: which checks failed and why. */
export interface RunnerReadiness {
  ready: boolean;
  checks: { runner?: string; storage?: string; engine?: string };
}

export interface RunnerSnapshot {
  readiness: RunnerReadiness;
  status: RunnerStatusAnswer;
  backups: RunnerBackupEntry[];
}

export type RunnerSnapshotFetcher = (service: { name: string; namespace: string }, token: string, signal: AbortSignal) => Promise<RunnerSnapshot>;

/** The runner did not answer, or answered what the controller cannot read. */
export class RunnerUnreachableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "RunnerUnreachableError";
  }
}

/** A runner URL from a template with {service} and {namespace}. */
export const templateRunnerUrl =
  (template: string): RunnerUrl =>
  (svc) =>
    template.replaceAll("{service}", svc.name).replaceAll("{namespace}", svc.namespace);

/**
 * Reads readiness, status and catalog of one runner: three requests one after the other (the
 * first that fails gives the error, always the same one for the same fault), within `signal`.
 */
export function runnerSnapshotFetcher(url: RunnerUrl): RunnerSnapshotFetcher {
  return async (service, token, signal) => {
    const base = url(service);
    const where = `runner ${service.namespace}/${service.name}`;
    const get = async (path: string, auth: boolean, okStatuses: number[]): Promise<unknown> => {
      let res: Response;
      try {
        res = await fetch(`${base}${path}`, { headers: auth ? { authorization: `Bearer ${token}` } : {}, signal });
      } catch (err: unknown) {
        throw new RunnerUnreachableError(`${where}: ${path}: ${err instanceof Error ? (err.cause instanceof Error ? err.cause.message : err.message) : String(err)}`, { cause: err });
      }
      if (!okStatuses.includes(res.status)) {
        await res.body?.cancel();
        throw new RunnerUnreachableError(`${where}: ${path}: HTTP ${res.status}`);
      }
      try {
        return await res.json();
      } catch (err: unknown) {
        throw new RunnerUnreachableError(`${where}: ${path}: not JSON`, { cause: err });
      }
    };
    // /readyz answers 503 with the failed checks when the runner is up but not ready.
    const readyz = (await get("/readyz", false, [200, 503])) as { ready?: unknown; checks?: Record<string, unknown> };
    const status = (await get("/api/v1/status", true, [200])) as RunnerStatusAnswer;
    const backups = (await get("/api/v1/backups", true, [200])) as { backups?: RunnerBackupEntry[] };
    const checks = readyz.checks ?? {};
    const str = (v: unknown) => (typeof v === "string" ? v : undefined);
    return {
      readiness: {
        ready: readyz.ready === true,
        checks: {
          ...(str(checks["runner"]) ? { runner: str(checks["runner"])! } : {}),
          ...(str(checks["storage"]) ? { storage: str(checks["storage"])! } : {}),
          ...(str(checks["engine"]) ? { engine: str(checks["engine"])! } : {}),
        },
      },
      status,
      backups: Array.isArray(backups.backups) ? backups.backups : [],
    };
  };
}

/** Second precision, as Kubernetes shows times (the runner's have milliseconds). */
export function toSeconds(iso: string): string {
  return iso.replace(/\.\d+Z$/, "Z");
}

/** 1536 → "1.5 KiB". */
export function humanBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[i]}`;
}

/** The figures of BackupDefinition.status that mirror the runner (see backupDefinitionStatus). */
export interface MirroredFigures {
  lastBackup?: { id: string; time: string; durationSeconds: number; bytes: number; rows: number };
  lastFailure?: { time: string; message: string; retryable: boolean };
  consecutiveFailures: number;
  nextRun?: string;
  backups: { count: number; oldest?: string; newest?: string; totalBytes: number; size: string };
  lastVerified?: { backupId: string; time: string; ok: boolean };
  currentOperation?: { id: string; kind: string; startedAt: string; phase: string; tablesDone: number; tablesTotal: number; bytes: number; rows: number };
}

const num = (v: unknown) => (typeof v === "number" && Number.isFinite(v) ? v : 0);

/**
 * The status figures from one snapshot. Only this runner's own complete backups count (not an
 * unreadable one, not one another runner wrote into the same prefix).
 */
export function mirrorFigures(s: Pick<RunnerSnapshot, "status" | "backups">): MirroredFigures {
  const own = s.backups
    .filter((b) => b.state === "complete" && b.foreign !== true && typeof b.id === "string" && typeof b.endedAt === "string")
    .map((b) => ({ id: b.id as string, endedAt: b.endedAt as string, durationMs: num(b.durationMs), bytes: num(b.bytes), rows: num(b.rows) }))
    .sort((a, b) => Date.parse(b.endedAt) - Date.parse(a.endedAt));
  const newest = own[0];
  const oldest = own[own.length - 1];
  const totalBytes = own.reduce((sum, b) => sum + b.bytes, 0);
  const st = s.status;
  const failed = st.lastFailure?.backup;
  const cur = st.current;
  const v = st.lastVerified;
  return {
    ...(newest ? { lastBackup: { id: newest.id, time: toSeconds(newest.endedAt), durationSeconds: Math.round(newest.durationMs / 1000), bytes: newest.bytes, rows: newest.rows } } : {}),
    ...(failed && failed.endedAt
      ? { lastFailure: { time: toSeconds(failed.endedAt), message: (failed.error ?? `the backup ended ${failed.state}`).slice(0, 500), retryable: failed.retryable === true } }
      : {}),
    consecutiveFailures: num(st.consecutiveFailures),
    ...(st.nextRun ? { nextRun: toSeconds(st.nextRun) } : {}),
    backups: { count: own.length, ...(oldest ? { oldest: toSeconds(oldest.endedAt) } : {}), ...(newest ? { newest: toSeconds(newest.endedAt) } : {}), totalBytes, size: humanBytes(totalBytes) },
    ...(v ? { lastVerified: { backupId: v.backupId, time: toSeconds(v.at), ok: v.ok } } : {}),
    ...(cur && cur.state === "running"
      ? {
          currentOperation: {
            id: cur.id,
            kind: cur.kind,
            startedAt: toSeconds(cur.startedAt),
            phase: cur.progress?.phase ?? "",
            tablesDone: num(cur.progress?.tablesDone),
            tablesTotal: num(cur.progress?.tablesTotal),
            bytes: num(cur.progress?.bytes),
            rows: num(cur.progress?.rows),
          },
        }
      : {}),
  };
}

/** Whether the newest backup attempt failed (a failure after the newest success). */
export function lastAttemptFailed(st: RunnerStatusAnswer): boolean {
  const f = st.lastFailure?.backup?.endedAt;
  if (!f) return false;
  const ok = st.lastSuccess?.backup?.endedAt;
  return !ok || Date.parse(f) > Date.parse(ok);
}
