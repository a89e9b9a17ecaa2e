// What the API shows: request schema of restores and the JSON views of
// operations, backups and status. Views are built field by field, so nothing
// reaches a client by accident (no config, no credentials).
import { z } from "zod";
import { recipientFingerprint, type RunnerConfig } from "../../apis/index.ts";
import type { CatalogEntry, UnreadableBackup } from "../catalog.ts";
import { isBackupId } from "../ids.ts";
import type { Owner } from "../manifest.ts";
import { isOwnedBy } from "../owner.ts";
import type { Operation, RunnerStatus } from "../runner.ts";

const MAX_NAME = 255;
const SYSTEM_DATABASES = new Set(["system", "INFORMATION_SCHEMA", "information_schema"]);
const CONTROL = /[\u0000-\u001f\u007f]/;

const dbName = z
  .string()
  .min(1, "must not be empty")
  .max(MAX_NAME, `must be at most ${MAX_NAME} characters`)
  .refine((s) => !CONTROL.test(s), "must not contain control characters");

const tableName = z
  .string()
  .max(2 * MAX_NAME + 1, "is too long")
  .regex(/^[^.]+\.[\s\S]+$/, 'must be "database.table"')
  .refine((s) => !CONTROL.test(s), "must not contain control characters");

/**
 * An age identity file the runner reads, relative to definition.encryption.identityDir
 * (a key of the mounted identity Secret). Never the key itself.
 */
const identityFile = z
  .string()
  .min(1, "must not be empty")
  .max(1024, "is too long")
  .refine((s) => !CONTROL.test(s) && !s.startsWith("/") && !s.split("/").some((p) => p === "" || p === "." || p === ".."), "must be a relative path inside the identity directory (a key of the runner's identity Secret, such as key.txt)")
  .refine((s) => !/AGE-SECRET-KEY-/i.test(s), "must name an identity file, not hold the key: put the key into the runner's identity Secret");

/** POST /api/v1/restores. Strict: unknown fields are errors, not ignored. */
export const restoreBody = z.strictObject({
  backup: z
    .string()
    .refine((s) => s === "latest" || isBackupId(s), 'must be "latest" or a backup id like 20261124T031000Z-a1b2c3'),
  databases: z.array(dbName).min(1, "must name at least one database; omit it to restore all").max(1000).optional(),
  tables: z.array(tableName).min(1, "must name at least one table; omit it to restore all").max(10_000).optional(),
  renameDatabases: z
    .record(dbName, dbName.refine((s) => !SYSTEM_DATABASES.has(s), "must not be a system database"))
    .refine((r) => Object.keys(r).length <= 1000, "too many renames")
    .optional(),
  existingTables: z.enum(["fail", "drop", "append"]).default("fail"),
  allowUnstagedDrop: z.boolean().default(false),
  /** A cluster backup restored into the one server the runner is configured for (replicated tables become plain ones). */
  mergeShards: z.boolean().default(false),
  identityFile: identityFile.optional(),
});
export type RestoreBody = z.infer<typeof restoreBody>;

/** POST /api/v1/backups/{id}/verify: no body, `{}`, or the identity file that opens an encrypted backup's content. */
export const verifyBody = z.strictObject({ identityFile: identityFile.optional() });

/** POST /api/v1/backups and POST /api/v1/backups/{id}/verify: no body, an empty one, or `{}`; any field is unknown. */
export const emptyBody = z.strictObject({});

/** The first zod issue as field path ("renameDatabases.shop") and reason. */
export function firstIssue(err: z.ZodError): { field: string; message: string } {
  const issue = err.issues[0];
  if (!issue) return { field: "", message: "invalid body" };
  if (issue.code === "unrecognized_keys") {
    const path = [...issue.path, issue.keys[0] ?? ""].map(String).filter((p) => p !== "");
    return { field: path.join("."), message: `unknown field${issue.keys.length > 1 ? "s" : ""} ${issue.keys.map((k) => `"${k}"`).join(", ")}` };
  }
  const field = issue.path.map(String).join(".");
  return { field: field || "(root)", message: issue.message };
}

/** Replaces configured secrets in text that leaves the process (errors of operations and health checks). */
export function secretRedactor(config: RunnerConfig): (text: string) => string {
  const secrets = [config.api.token, config.definition.clickhouse.password, config.storage.s3?.secretAccessKey]
    .filter((s): s is string => typeof s === "string" && s.length >= 4)
    .sort((a, b) => b.length - a.length);
  return (text) => {
    let out = text;
    for (const s of secrets) out = out.split(s).join("[REDACTED]");
    return out;
  };
}

export interface OperationView {
  id: string;
  kind: string;
  trigger: string;
  state: string;
  backupId: string | null;
  target: string | null;
  startedAt: string;
  endedAt: string | null;
  durationMs: number | null;
  progress: { phase: string; tablesDone: number; tablesTotal: number; bytes: number; rows: number; currentTable: string | null };
  error: string | null;
  retryable: boolean | null;
  result: Record<string, unknown> | null;
  /** The Idempotency-Key the restore was requested with (null: none). */
  idempotencyKey: string | null;
}

export function operationView(op: Operation, redact: (s: string) => string): OperationView {
  const p = op.progress;
  return {
    id: op.id,
    kind: op.kind,
    trigger: op.trigger,
    state: op.state,
    backupId: op.backupId ?? null,
    target: op.target ?? null,
    startedAt: op.startedAt,
    endedAt: op.endedAt ?? null,
    durationMs: op.durationMs ?? null,
    progress: { phase: p.phase, tablesDone: p.tablesDone, tablesTotal: p.tablesTotal, bytes: p.bytes, rows: p.rows, currentTable: p.currentTable ?? null },
    error: op.error === undefined ? null : redact(op.error),
    retryable: op.retryable ?? null,
    result: op.result ?? null,
    idempotencyKey: op.idempotencyKey ?? null,
  };
}

export interface BackupSummary {
  id: string;
  /** complete: the manifest was read; unreadable: see UnreadableBackupSummary. */
  state: "complete";
  startedAt: string;
  endedAt: string;
  durationMs: number;
  trigger: string;
  method: string;
  engine: string;
  engineVersion: string;
  bytes: number;
  rows: number;
  tables: number;
  databases: string[];
  labels: string[];
  pinned: boolean;
  baseBackupId: string | null;
  /** Who wrote it (null: written before owners were recorded; counts as this runner's). */
  owner: Owner | null;
  /** Written by another runner: never labelled or deleted by this one. */
  foreign: boolean;
  /** Present when the data is encrypted with age: the fingerprints of the recipients that can open it. */
  encryption?: { format: "age"; recipients: { fingerprint: string }[] } | undefined;
}

/** A backup whose manifest exists but could not be read: kept, never deleted, not restorable. */
export interface UnreadableBackupSummary {
  id: string;
  state: "unreadable";
  /** Start time from the id (to the second). */
  startedAt: string;
  endedAt: null;
  error: string;
  labels: string[];
  pinned: boolean;
}

export function backupSummary(e: CatalogEntry, labels: readonly string[], self: Owner): BackupSummary {
  const m = e.manifest;
  return {
    id: m.id,
    state: "complete",
    startedAt: m.startedAt,
    endedAt: m.endedAt,
    durationMs: m.durationMs,
    trigger: m.trigger,
    method: m.method,
    engine: m.engine,
    engineVersion: m.engineVersion,
    bytes: m.totalBytes,
    rows: m.totalRows,
    tables: m.tables.length,
    databases: m.databases,
    labels: [...labels],
    pinned: e.pinned,
    baseBackupId: m.baseBackupId ?? null,
    owner: m.owner ?? null,
    foreign: !isOwnedBy(m.owner, self),
    ...(m.encryption ? { encryption: { format: m.encryption.format, recipients: m.encryption.recipients.map((r) => ({ fingerprint: r.fingerprint })) } } : {}),
  };
}

export function unreadableSummary(u: UnreadableBackup, redact: (s: string) => string): UnreadableBackupSummary {
  return { id: u.id, state: "unreadable", startedAt: u.time.toISOString(), endedAt: null, error: redact(u.error), labels: [], pinned: u.pinned };
}

export function statusView(
  st: RunnerStatus,
  extra: { ready: boolean; nextRun: Date | undefined; config: RunnerConfig; startupProblem?: string | undefined },
  redact: (s: string) => string,
): Record<string, unknown> {
  const def = extra.config.definition;
  const perKind = (m: RunnerStatus["lastSuccess"]) => ({
    backup: m.backup ? operationView(m.backup, redact) : null,
    restore: m.restore ? operationView(m.restore, redact) : null,
    verify: m.verify ? operationView(m.verify, redact) : null,
  });
  return {
    namespace: st.namespace,
    definition: st.definition,
    mode: st.mode,
    ready: extra.ready,
    notReadyReason: extra.startupProblem === undefined ? null : redact(extra.startupProblem),
    engine: st.engine,
    method: st.method,
    storage: redact(st.storage),
    schedule: def.schedule ? { cron: def.schedule.cron, timeZone: def.schedule.timeZone, suspended: def.suspend } : null,
    singleBackupTarget: def.singleBackup?.target ?? null,
    // What new backups are encrypted to (fingerprints only), and where identity files are read from.
    ...(def.encryption
      ? { encryption: { format: "age", recipients: def.encryption.recipients.map((r) => ({ fingerprint: recipientFingerprint(r) })), identityDir: def.encryption.identityDir ?? null } }
      : {}),
    nextRun: extra.nextRun?.toISOString() ?? null,
    current: st.current ? operationView(st.current, redact) : null,
    lastSuccess: perKind(st.lastSuccess),
    lastFailure: perKind(st.lastFailure),
    lastVerified: st.lastVerified ?? null,
    interruptedRestoreCleanup: st.interruptedCleanup ?? null,
    consecutiveFailures: st.consecutiveFailures,
    backups: st.backups,
    unreadableBackups: st.unreadableBackups,
    owner: st.owner,
    foreignOwners: st.foreignOwners,
    warnings: st.warnings.map(redact),
  };
}
