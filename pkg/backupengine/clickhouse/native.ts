// The native method (ClickHouse 22.8+): `BACKUP ... TO S3(...) ASYNC` and
// `RESTORE ... FROM S3(...) ASYNC`, followed through system.backups. The data
// goes from ClickHouse straight to the bucket; the engine only orchestrates.
import { setTimeout as sleep } from "node:timers/promises";
import type { ClickHouseRunnerConfig } from "../../apis/clickhouse.ts";
import type { BackupRequest, EngineBackupResult, NativeS3Target, Progress, RestoreRequest, RestoreResult, TableEntry } from "../types.ts";
import { EngineError } from "../types.ts";
import { isExternalDatabase, readCatalog } from "./catalog.ts";
import type { Conn, ServerInfo } from "./conn.ts";
import { versionAtLeast } from "./conn.ts";
import { NATIVE_FORMAT, nativeDetails, type NativeDetails } from "./details.ts";
import { abortReason, cleanServerMessage, clickhouseCode, wrapError } from "./errors.ts";
import { dependencyOrder, restoreCategory } from "./order.ts";
import { decideExisting, planRestore } from "./plan.ts";
import { makeSelector } from "./select.ts";
import { qualified, quoteIdent, quoteString, redact, referencedNames, truncate } from "./sql.ts";
import type { Logger } from "winston";

export const NATIVE_OBJECT = "native";
export const NATIVE_MIN_VERSION: readonly [number, number] = [22, 8];

export interface NativeContext {
  conn: Conn;
  config: ClickHouseRunnerConfig;
  logger: Logger;
  /** Poll interval of system.backups (ms). */
  pollMs?: number;
}

export function requireNativeVersion(info: ServerInfo): void {
  if (!versionAtLeast(info.v, NATIVE_MIN_VERSION[0], NATIVE_MIN_VERSION[1])) {
    throw new EngineError(
      `the native method needs ClickHouse ${NATIVE_MIN_VERSION.join(".")} or newer (BACKUP/RESTORE); this server is ${info.version} - use the dump method`,
      { retryable: false },
    );
  }
}

const s3Expr = (t: NativeS3Target) => `S3(${quoteString(t.url)}, ${quoteString(t.accessKeyId)}, ${quoteString(t.secretAccessKey)})`;

interface BackupsRow {
  id: string;
  status: string;
  error?: string;
  query_id?: string;
  num_files?: number | string;
  total_size?: number | string;
  uncompressed_size?: number | string;
  compressed_size?: number | string;
}

const BACKUP_DONE = new Set(["BACKUP_CREATED", "BACKUP_COMPLETE"]);
const BACKUP_FAILED = new Set(["BACKUP_FAILED", "FAILED_TO_BACKUP", "BACKUP_CANCELLED"]);
const RESTORE_DONE = new Set(["RESTORED"]);
const RESTORE_FAILED = new Set(["RESTORE_FAILED", "FAILED_TO_RESTORE", "RESTORE_CANCELLED"]);

const optNum = (v: unknown): number | undefined => (v === undefined || v === null || v === "" ? undefined : Number(v));

async function backupsColumns(conn: Conn, signal: AbortSignal): Promise<Set<string>> {
  const rows = await conn.rows<{ name: string }>(
    "SELECT name FROM system.columns WHERE database = 'system' AND table = 'backups'",
    signal,
    "reading system.backups columns",
  );
  return new Set(rows.map((r) => r.name));
}

/**
 * Polls system.backups until the operation finished. On abort, asks the
 * server to cancel it (KILL QUERY on its query id; servers that cannot cancel
 * backups ignore it) and throws the abort reason.
 */
async function follow(
  ctx: NativeContext,
  op: "backup" | "restore",
  id: string,
  sql: string,
  secrets: readonly string[],
  signal: AbortSignal,
  onRow: (r: BackupsRow) => void,
): Promise<BackupsRow> {
  const { conn } = ctx;
  const cols = await backupsColumns(conn, signal);
  const select = ["id", "status", "error"];
  for (const c of ["query_id", "num_files", "total_size", "uncompressed_size", "compressed_size"]) if (cols.has(c)) select.push(c);
  const done = op === "backup" ? BACKUP_DONE : RESTORE_DONE;
  const failed = op === "backup" ? BACKUP_FAILED : RESTORE_FAILED;
  const pollSql = `SELECT ${select.join(", ")} FROM system.backups WHERE id = ${quoteString(id)}`;
  let interval = ctx.pollMs ?? 200;
  let missing = 0;
  let last: BackupsRow | undefined;
  try {
    for (;;) {
      const [row] = await conn.rows<BackupsRow>(pollSql, signal, `following the native ${op}`);
      if (!row) {
        if (++missing >= 5) {
          throw new EngineError(`the native ${op} ${id} disappeared from system.backups (server restarted?)`, { retryable: true });
        }
      } else {
        missing = 0;
        last = row;
        onRow(row);
        if (done.has(row.status)) return row;
        if (failed.has(row.status)) {
          const text = row.error || row.status;
          const all = [...conn.secrets, ...secrets];
          const classified = wrapError(new Error(text), { what: `running the native ${op}`, query: sql, username: conn.username, secrets: all });
          const code = clickhouseCode(text);
          throw new EngineError(
            `ClickHouse native ${op} ended with ${row.status}: ${redact(cleanServerMessage(text), all)}${code !== undefined ? ` (code ${code})` : ""} [query: ${truncate(redact(sql, all))}]`,
            { cause: classified, retryable: classified.retryable && !row.status.endsWith("CANCELLED") },
          );
        }
      }
      await sleep(interval, undefined, { signal });
      interval = Math.min(interval * 1.5, 2000);
    }
  } catch (err) {
    if (signal.aborted) {
      await cancel(ctx, last?.query_id);
      throw abortReason(signal);
    }
    throw err;
  }
}

async function cancel(ctx: NativeContext, queryId: string | undefined): Promise<void> {
  if (!queryId) return;
  try {
    await ctx.conn.command(`KILL QUERY WHERE query_id = ${quoteString(queryId)} ASYNC`, AbortSignal.timeout(5000), "cancelling the native operation");
  } catch (err) {
    ctx.logger.warn("clickhouse native: could not cancel the running operation", { err: err instanceof Error ? err.message : String(err) });
  }
}

export async function nativeBackup(ctx: NativeContext, info: ServerInfo, req: BackupRequest): Promise<EngineBackupResult> {
  requireNativeVersion(info);
  const { conn, config } = ctx;
  const signal = req.signal;
  const target = req.sink.nativeS3Target?.(NATIVE_OBJECT);
  if (!target) throw new EngineError("the native method needs S3 storage (the storage location gives no S3 target)", { retryable: false });

  const catalog = await readCatalog(conn, info, { databases: config.databases, tables: config.tables }, signal);
  const sel = makeSelector({ databases: config.databases, tables: config.tables });
  const local = catalog.databases.filter((d) => !isExternalDatabase(d.engine));
  for (const d of catalog.databases) {
    if (isExternalDatabase(d.engine)) req.logger.warn(`clickhouse native: database ${d.name} (${d.engine}) keeps its data elsewhere; it is not backed up`);
  }
  const scope: "databases" | "tables" = sel.allTables ? "databases" : "tables";
  const elements =
    scope === "databases"
      ? local.map((d) => `DATABASE ${quoteIdent(d.name)}`).join(", ")
      : catalog.tables.map((t) => `TABLE ${qualified(t.database, t.name)}`).join(", ");
  if (!elements) throw new EngineError("nothing to back up: no database or table matches the configured patterns", { retryable: false });

  let base: { target: NativeS3Target; backupId: string } | undefined;
  if (req.base) {
    if (req.base.result.method === "native") {
      const bd = nativeDetails.safeParse(req.base.result.details);
      const object = bd.success ? bd.data.native.object : NATIVE_OBJECT;
      const bt = req.base.source.nativeS3Target?.(object);
      if (!bt) throw new EngineError(`the base backup ${req.base.backupId} has no S3 location for an incremental native backup`, { retryable: false });
      base = { target: bt, backupId: req.base.backupId };
    } else {
      req.logger.info(`clickhouse native: base backup ${req.base.backupId} was made with the ${req.base.result.method} method; taking a full backup`);
    }
  }
  const secrets = [target.secretAccessKey, ...(base ? [base.target.secretAccessKey] : [])];
  const sql = `BACKUP ${elements} TO ${s3Expr(target)}${base ? ` SETTINGS base_backup = ${s3Expr(base.target)}` : ""} ASYNC`;
  req.logger.info("clickhouse native: starting backup", { scope, elements, incremental: !!base, url: target.url });

  const progress: Progress = { phase: "native-backup", tablesDone: 0, tablesTotal: catalog.tables.length, bytes: 0, rows: 0 };
  req.onProgress?.({ ...progress });
  const [started] = await conn.rows<{ id: string; status: string }>(sql, signal, "starting the native backup", undefined, secrets);
  if (!started?.id) throw new EngineError("BACKUP returned no operation id", { retryable: true });
  const final = await follow(ctx, "backup", started.id, sql, secrets, signal, (r) => {
    progress.bytes = optNum(r.total_size) ?? optNum(r.uncompressed_size) ?? 0;
    req.onProgress?.({ ...progress });
  });
  progress.tablesDone = catalog.tables.length;
  req.onProgress?.({ ...progress });

  const details: NativeDetails = {
    format: NATIVE_FORMAT,
    serverVersion: info.version,
    native: {
      object: NATIVE_OBJECT,
      url: target.url,
      operationId: started.id,
      incremental: !!base,
      baseBackupId: base?.backupId,
      baseUrl: base?.target.url,
      numFiles: optNum(final.num_files),
      totalSize: optNum(final.total_size),
      uncompressedSize: optNum(final.uncompressed_size),
      compressedSize: optNum(final.compressed_size),
    },
    elements,
    scope,
    databases: scope === "databases" ? local : local.filter((d) => catalog.tables.some((t) => t.database === d.name)),
    tables: catalog.tables.map((t) => ({ database: t.database, name: t.name, engine: t.engine, ddl: t.ddl, rows: t.totalRows ?? 0, bytes: t.totalBytes ?? 0 })),
  };
  const tables: TableEntry[] = details.tables.map((t) => ({ database: t.database, name: t.name, engine: t.engine, rows: t.rows, bytes: t.bytes }));
  return {
    engineVersion: info.version,
    method: "native",
    baseBackupId: base?.backupId,
    storedBytes: details.native.totalSize,
    databases: details.databases.map((d) => d.name),
    tables,
    objects: [],
    details,
  };
}

export async function nativeRestore(ctx: NativeContext, info: ServerInfo, req: RestoreRequest): Promise<RestoreResult> {
  requireNativeVersion(info);
  const { conn } = ctx;
  const signal = req.signal;
  const parsed = nativeDetails.safeParse(req.backup.details);
  if (!parsed.success) throw new EngineError(`backup details are not a native ClickHouse backup (${parsed.error.issues[0]?.message ?? "invalid"})`, { retryable: false });
  const details = parsed.data;
  const source = req.source.nativeS3Target?.(details.native.object);
  if (!source) throw new EngineError("the native method needs S3 storage (the storage location gives no S3 source)", { retryable: false });

  const plan = planRestore(details.databases, details.tables, req.options);
  const decision = await decideExisting(conn, plan, req.options.existingTables, signal);
  // ClickHouse's RESTORE writes into the target tables itself: there is no staging table to prove the data
  // in before the old tables go. Replacing existing tables is therefore only done when the user accepts it.
  if (decision.drop.length > 0 && !req.options.allowUnstagedDrop) {
    throw new EngineError(
      `restore refused: "drop" would destroy ${decision.drop.map((d) => d.key).join(", ")} before the new data is proven ` +
        `(a native backup is restored by ClickHouse straight into the target tables); restore into another database (rename) ` +
        `or set allowUnstagedDrop to accept that; nothing was changed`,
      { retryable: false },
    );
  }

  const wholeDatabases = details.scope === "databases" && !req.options.tables;
  const elements = wholeDatabases
    ? plan.databases.map((d) => `DATABASE ${quoteIdent(d.name)}${d.target !== d.name ? ` AS ${quoteIdent(d.target)}` : ""}`).join(", ")
    : plan.tables
        .map((t) => {
          const src = qualified(t.source.database, t.source.name);
          const dst = qualified(t.target.database, t.target.name);
          return `TABLE ${src}${src !== dst ? ` AS ${dst}` : ""}`;
        })
        .join(", ");
  if (!elements) throw new EngineError("nothing to restore: the selection matches no database or table of this backup", { retryable: false });

  if (!wholeDatabases) {
    for (const d of plan.databases) await conn.command(`CREATE DATABASE IF NOT EXISTS ${quoteIdent(d.target)}`, signal, `creating database ${d.target}`);
  }
  if (decision.drop.length > 0) {
    const dropSync = versionAtLeast(info.v, 21, 0) ? " SYNC" : "";
    const ordered = dependencyOrder(plan.tables.map((t) => ({ ...t, category: restoreCategory(t.source.engine), refs: referencedNames(t.ddl, t.key) })));
    for (const t of ordered.reverse()) {
      const d = decision.drop.find((x) => x.key === t.key);
      if (!d) continue;
      await conn.command(`DROP ${d.engine === "Dictionary" ? "DICTIONARY" : "TABLE"} IF EXISTS ${qualified(d.database, d.name)}${dropSync}`, signal, `dropping ${d.key}`);
    }
  }
  const settings = req.options.existingTables === "append" ? " SETTINGS allow_non_empty_tables = true" : "";
  const secrets = [source.secretAccessKey];
  const sql = `RESTORE ${elements} FROM ${s3Expr(source)}${settings} ASYNC`;
  req.logger.info("clickhouse native: starting restore", { elements, url: source.url });
  const progress: Progress = { phase: "native-restore", tablesDone: 0, tablesTotal: plan.tables.length, bytes: 0, rows: 0 };
  req.onProgress?.({ ...progress });
  const [started] = await conn.rows<{ id: string; status: string }>(sql, signal, "starting the native restore", undefined, secrets);
  if (!started?.id) throw new EngineError("RESTORE returned no operation id", { retryable: true });
  await follow(ctx, "restore", started.id, sql, secrets, signal, (r) => {
    progress.bytes = optNum(r.total_size) ?? optNum(r.uncompressed_size) ?? 0;
    req.onProgress?.({ ...progress });
  });
  // the rows reported are counted on the server after the restore, not taken from the manifest
  const rows = new Map<string, number>();
  for (const t of plan.tables) {
    if (t.kind === "schema") continue;
    const [c] = await conn.rows<{ c: string | number }>(`SELECT count() AS c FROM ${qualified(t.target.database, t.target.name)}`, signal, `counting the rows restored into ${t.key}`);
    rows.set(t.key, Number(c?.c ?? 0));
  }
  progress.tablesDone = plan.tables.length;
  progress.rows = [...rows.values()].reduce((s, n) => s + n, 0);
  req.onProgress?.({ ...progress });
  return {
    databases: plan.databases.map((d) => d.target),
    tables: plan.tables.map((t) => ({ database: t.target.database, name: t.target.name, rows: rows.get(t.key) ?? 0 })),
  };
}
