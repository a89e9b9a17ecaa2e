// What the controller reads from a runner's HTTP API (through its Service)
// and mirrors into BackupDefinition.status: readiness (/readyz), the runner's
// status (/api/v1/status) and its catalog (/api/v1/backups). Fetching is one
// function; turning the answers into status fields is pure (tested alone).
import { Agent as HttpAgent, request as httpRequest } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";

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
  /** Backups in the runner's catalog (its own and others'), and those it could not read. */
  backups?: number;
  unreadableBackups?: number;
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
 * first that fails gives the error, always the same one for the same fault), each given up after
 * `timeoutMs` without an answer, all ended by `signal`.
 * node:http with keep-alive agents rather than fetch: the poll reads every runner every minute,
 * and fetch leaves several times more garbage per request (the controller's heap and RSS grew
 * with it in bench:controller). The catalog (which grows with every backup kept) is read again
 * only when the status says it may have changed: another backup count, newest success or
 * unreadable count than at the last read.
 */
export function runnerSnapshotFetcher(url: RunnerUrl, timeoutMs = 5000): RunnerSnapshotFetcher {
  const agents = { http: new HttpAgent({ keepAlive: true, maxSockets: 8 }), https: new HttpsAgent({ keepAlive: true, maxSockets: 8 }) };
  const catalogs = new Map<string, { key: string; backups: RunnerBackupEntry[] }>();
  return async (service, token, signal) => {
    const base = url(service);
    const runnerKey = `${service.namespace}/${service.name}`;
    const where = `runner ${runnerKey}`;
    const get = async (path: string, auth: boolean, okStatuses: number[]): Promise<unknown> => {
      const target = new URL(`${base}${path}`);
      const https = target.protocol === "https:";
      const answer = await new Promise<{ status: number; text: string }>((resolve, reject) => {
        const req = (https ? httpsRequest : httpRequest)(
          target,
          { headers: auth ? { authorization: `Bearer ${token}` } : {}, agent: https ? agents.https : agents.http, signal, timeout: timeoutMs },
          (res) => {
            const chunks: Buffer[] = [];
            res.on("data", (c: Buffer) => chunks.push(c));
            res.on("error", reject);
            res.on("end", () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8") }));
          },
        );
        req.on("timeout", () => req.destroy(new Error(`no answer in ${timeoutMs} ms`)));
        req.on("error", reject);
        req.end();
      }).catch((err: unknown) => {
        throw new RunnerUnreachableError(`${where}: ${path}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
      });
      if (!okStatuses.includes(answer.status)) throw new RunnerUnreachableError(`${where}: ${path}: HTTP ${answer.status}`);
      try {
        return JSON.parse(answer.text) as unknown;
      } catch (err: unknown) {
        throw new RunnerUnreachableError(`${where}: ${path}: not JSON`, { cause: err });
      }
    };
    // /readyz answers 503 with the failed checks when the runner is up but not ready.
    const readyz = (await get("/readyz", false, [200, 503])) as { ready?: unknown; checks?: Record<string, unknown> };
    const status = (await get("/api/v1/status", true, [200])) as RunnerStatusAnswer;
    const catalogKey = JSON.stringify([status.backups, status.unreadableBackups, status.lastSuccess?.backup?.id, status.lastSuccess?.backup?.endedAt]);
    let backups: { backups?: RunnerBackupEntry[] };
    const known = catalogs.get(runnerKey);
    if (known && known.key === catalogKey && typeof status.backups === "number") backups = { backups: known.backups };
    else {
      backups = (await get("/api/v1/backups", true, [200])) as { backups?: RunnerBackupEntry[] };
      // One entry per runner; a controller that saw many come and go starts over.
      if (catalogs.size > 10_000) catalogs.clear();
      catalogs.set(runnerKey, { key: catalogKey, backups: Array.isArray(backups.backups) ? backups.backups : [] });
    }
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
