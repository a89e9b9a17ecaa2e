// The dump method: DDL from system.tables, data streamed per table as
// `SELECT * FORMAT Native` -> zstd -> the sink; restore recreates the objects
// in dependency order and streams the data back with `INSERT ... FORMAT Native`.
// Nothing is ever held whole in memory: every table is one stream pipeline.
import { PassThrough, type Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createZstdDecompress } from "node:zlib";
import type { ClickHouseSettings } from "@clickhouse/client";
import type { Logger } from "winston";
import type { ClickHouseRunnerConfig } from "../../apis/clickhouse.ts";
import type { BackupRequest, EngineBackupResult, Progress, RestoreRequest, RestoreResult, TableEntry, WrittenObject } from "../types.ts";
import { EngineError } from "../types.ts";
import { BufferPool } from "../../storage/bufferpool.ts";
import { DEFAULT_FRAME_BYTES, ZstdFramesCompress, ZstdFramesDecompress } from "../zstd.ts";
import { CompressedStreamCheck } from "./compressed.ts";
import { createDatabaseSql, readCatalog, type TableInfo } from "./catalog.ts";
import type { Conn, ServerInfo } from "./conn.ts";
import { versionAtLeast } from "./conn.ts";
import { DUMP_FORMAT, dumpDetails, type DumpDetails, type DumpTable } from "./details.ts";
import { abortReason, messageOf } from "./errors.ts";
import { dependencyOrder, restoreCategory, CATEGORY_TABLE } from "./order.ts";
import { decideExisting, planRestore, type PlannedTable } from "./plan.ts";
import { qualified, referencedNames } from "./sql.ts";
import { runPool } from "../../concurrency/pool.ts";
import { ByteCounter, FailureTracker, TrailingExceptionCheck } from "./streams.ts";

/** Blocks in which an lz4 dump passes through the runner. */
const LZ4_BLOCK_BYTES = 1024 * 1024;

/** Tables dumped or restored at the same time. */
export const DUMP_CONCURRENCY = 2;

/** Characters kept as-is in object names; everything else is %-encoded (no "/", no "..", no surprises). */
export function encodeName(name: string): string {
  let out = "";
  for (const b of Buffer.from(name, "utf8")) {
    const c = String.fromCharCode(b);
    out += /[A-Za-z0-9_-]/.test(c) ? c : `%${b.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out || "%";
}

/** `.native.zst`: zstd frames of Native; `.native.lz4`: ClickHouse's compressed block stream (HTTP compress=1) of Native. */
export function dataObjectName(db: string, table: string, codec: "zstd" | "lz4" = "zstd"): string {
  return `data/${encodeName(db)}/${encodeName(table)}.native.${codec === "lz4" ? "lz4" : "zst"}`;
}

/** Emits progress at most every `everyMs`, and always when forced. */
function progressReporter(onProgress: ((p: Progress) => void) | undefined, everyMs = 250) {
  let last = 0;
  return (p: Progress, force = false) => {
    if (!onProgress) return;
    const now = Date.now();
    if (!force && now - last < everyMs) return;
    last = now;
    try {
      onProgress(p);
    } catch {
      // a failing progress callback must not fail the backup
    }
  };
}

/** An AbortController that follows `parent`. */
function linked(parent: AbortSignal): { ac: AbortController; dispose: () => void } {
  const ac = new AbortController();
  const on = () => ac.abort(parent.reason);
  if (parent.aborted) on();
  else parent.addEventListener("abort", on, { once: true });
  return { ac, dispose: () => parent.removeEventListener("abort", on) };
}

export interface DumpContext {
  conn: Conn;
  config: ClickHouseRunnerConfig;
  logger: Logger;
  /** Tables at once (default DUMP_CONCURRENCY). */
  concurrency?: number | undefined;
}

export async function dumpBackup(ctx: DumpContext, info: ServerInfo, req: BackupRequest): Promise<EngineBackupResult> {
  const { conn, config } = ctx;
  const log = req.logger;
  const signal = req.signal;
  const catalog = await readCatalog(conn, info, { databases: config.databases, tables: config.tables }, signal);
  const withData = catalog.tables.filter((t) => t.kind !== "schema");
  log.info("clickhouse dump: starting", {
    databases: catalog.databases.map((d) => d.name),
    tables: catalog.tables.length,
    tablesWithData: withData.length,
    serverVersion: info.version,
  });
  for (const t of catalog.tables) {
    if (t.engine === "Set" || t.engine === "Join") log.warn(`clickhouse dump: ${t.database}.${t.name} (${t.engine}) cannot be read back; only its DDL is kept`);
    if (t.ddl.includes("[HIDDEN]")) log.warn(`clickhouse dump: the server hid a secret in the DDL of ${t.database}.${t.name}; fix it after a restore`);
  }

  const progress: Progress = { phase: "dump", tablesDone: 0, tablesTotal: withData.length, bytes: 0, rows: 0 };
  const report = progressReporter(req.onProgress);
  report({ ...progress }, true);

  const results = new Map<string, { rows: number; bytes: number; uncompressed: number; object: WrittenObject }>();
  await runPool(withData, ctx.concurrency ?? DUMP_CONCURRENCY, signal, async (t, sig) => {
    const key = `${t.database}.${t.name}`;
    progress.currentTable = key;
    const r = await dumpTable(ctx, req, t, sig, (delta) => {
      progress.bytes += delta;
      report({ ...progress });
    });
    results.set(key, r);
    progress.tablesDone++;
    progress.rows += r.rows;
    report({ ...progress }, true);
    log.debug("clickhouse dump: table done", { table: key, rows: r.rows, bytes: r.bytes, uncompressedBytes: r.uncompressed });
  });
  progress.currentTable = undefined;
  report({ ...progress }, true);

  const detailTables: DumpTable[] = catalog.tables.map((t) => {
    const r = results.get(`${t.database}.${t.name}`);
    return {
      database: t.database,
      name: t.name,
      engine: t.engine,
      kind: t.kind,
      ddl: t.ddl,
      dataObject: r?.object.name,
      rows: r?.rows ?? 0,
      bytes: r?.bytes ?? 0,
      uncompressedBytes: r?.uncompressed ?? 0,
    };
  });
  const details: DumpDetails = {
    format: DUMP_FORMAT,
    serverVersion: info.version,
    compression:
      config.compression === "lz4" ? { codec: "lz4" } : { codec: "zstd", level: config.compressionLevel, frameBytes: DEFAULT_FRAME_BYTES },
    databases: catalog.databases,
    tables: detailTables,
  };
  const tables: TableEntry[] = detailTables.map((t) => ({
    database: t.database,
    name: t.name,
    engine: t.engine,
    rows: t.rows,
    bytes: t.bytes,
    dataObject: t.dataObject,
  }));
  return {
    engineVersion: info.version,
    method: "dump",
    databases: catalog.databases.map((d) => d.name),
    tables,
    objects: [...results.values()].map((r) => r.object).sort((a, b) => (a.name < b.name ? -1 : 1)),
    details,
  };
}

async function dumpTable(
  ctx: DumpContext,
  req: BackupRequest,
  t: TableInfo,
  signal: AbortSignal,
  onBytes: (delta: number) => void,
): Promise<{ rows: number; bytes: number; uncompressed: number; object: WrittenObject }> {
  const { conn, config } = ctx;
  const key = `${t.database}.${t.name}`;
  const q = qualified(t.database, t.name);
  const countSql = `SELECT count() AS c FROM ${q}`;
  const [c] = await conn.rows<{ c: string | number }>(countSql, signal, `counting the rows of ${key}`);
  const rows = Number(c?.c ?? 0);

  const lz4 = config.compression === "lz4";
  const name = dataObjectName(t.database, t.name, config.compression);
  const selectSql = `SELECT * FROM ${q} FORMAT Native`;
  const { ac, dispose } = linked(signal);
  try {
    // The data arrives in blocks of this pool, and the stage that reads a block last hands it back (see
    // storage/bufferpool.ts): for zstd the blocks are whole frames, compressed in place.
    // (Free blocks kept: as many as can be in flight at once, so a burst of releases is not thrown away.)
    const pool = new BufferPool(lz4 ? LZ4_BLOCK_BYTES : DEFAULT_FRAME_BYTES, 16);
    // lz4: the server compresses (its own block format, HTTP compress=1), the runner only checks the framing.
    const res = await conn.selectStream(selectSql, ac.signal, `dumping ${key}`, lz4 ? ({ compress: 1 } as ClickHouseSettings) : undefined, { pool });
    const tagHeader = res.headers["x-clickhouse-exception-tag"];
    const tag = typeof tagHeader === "string" ? tagHeader : undefined;
    const blocks = lz4 ? new CompressedStreamCheck(tag) : undefined;
    const check = blocks ?? new TrailingExceptionCheck(tag);
    const raw = new ByteCounter();
    // zstd: independent frames compressed on the thread pool (one zstd stream would cap the dump at one core).
    const zstd = lz4 ? new PassThrough() : new ZstdFramesCompress({ level: config.compressionLevel, frameBytes: DEFAULT_FRAME_BYTES, pool });
    const out = new ByteCounter(onBytes);
    const body = new PassThrough();
    const failures = new FailureTracker<"clickhouse" | "sink" | "engine">();
    failures.watch("clickhouse", res.stream, check);
    failures.watch("engine", raw, zstd, out);
    failures.watch("sink", body);
    const put = req.sink.putObject(name, body, ac.signal).catch((err: unknown) => {
      failures.note("sink", err);
      ac.abort(err);
      throw err;
    });
    const piped = pipeline(res.stream, check, raw, zstd, out, body, { signal: ac.signal }).catch((err: unknown) => {
      failures.note("engine", err);
      ac.abort(err);
      throw err;
    });
    const [, w] = await Promise.allSettled([piped, put]);
    if (signal.aborted) throw abortReason(signal);
    const f = failures.first;
    // the server died, the connection broke, or the server reported an error mid-stream
    if (f?.origin === "clickhouse") conn.fail(f.err, signal, `dumping ${key}`, selectSql);
    if (f?.origin === "sink") throw f.err;
    if (f) throw new EngineError(`dumping ${key} failed: ${messageOf(f.err)}`, { cause: f.err, retryable: true });
    if (w.status === "rejected") throw w.reason;
    return { rows, bytes: w.value.size, uncompressed: blocks ? blocks.decompressedBytes : raw.bytes, object: w.value };
  } finally {
    dispose();
  }
}

// ---------------------------------------------------------------------------
// Restore

function parseDetails(details: unknown): DumpDetails {
  const r = dumpDetails.safeParse(details);
  if (!r.success) throw new EngineError(`backup details are not a ClickHouse dump (${r.error.issues[0]?.message ?? "invalid"})`, { retryable: false });
  return r.data;
}

export async function dumpRestore(ctx: DumpContext, info: ServerInfo, req: RestoreRequest): Promise<RestoreResult> {
  const { conn } = ctx;
  const log = req.logger;
  const signal = req.signal;
  const details = parseDetails(req.backup.details);
  const plan = planRestore(details.databases, details.tables, req.options);
  const decision = await decideExisting(conn, plan, req.options.existingTables, signal);

  // creation order: every object after what its DDL refers to
  const ordered = dependencyOrder(
    plan.tables.map((t) => ({ ...t, category: restoreCategory(t.source.engine), refs: referencedNames(t.ddl, t.key) })),
  );
  const progress: Progress = {
    phase: "restore",
    tablesDone: 0,
    tablesTotal: plan.tables.filter((t) => t.kind !== "schema").length,
    bytes: 0,
    rows: 0,
  };
  const report = progressReporter(req.onProgress);
  report({ ...progress }, true);

  // 1. databases
  for (const d of plan.databases) {
    const sql = createDatabaseSql(d.target, d.engine, d.ddl);
    await conn.command(sql, signal, `creating database ${d.target}`);
  }
  // 2. drops (policy "drop"), dependents first
  const dropSync = versionAtLeast(info.v, 21, 0) ? " SYNC" : "";
  const dropOrder = ordered.filter((t) => decision.drop.some((d) => d.key === t.key)).reverse();
  for (const t of dropOrder) {
    const d = decision.drop.find((x) => x.key === t.key);
    const what = d?.engine === "Dictionary" ? "DICTIONARY" : "TABLE";
    await conn.command(`DROP ${what} IF EXISTS ${qualified(t.target.database, t.target.name)}${dropSync}`, signal, `dropping ${t.key}`);
  }

  const restored = new Map<string, number>();
  const create = async (t: PlannedTable<DumpTable>) => {
    if (decision.reuse.has(t.key)) return;
    await conn.ddl(t.ddl, signal, `creating ${t.key}`);
  };
  const restoreData = async (t: PlannedTable<DumpTable>, sig: AbortSignal) => {
    progress.currentTable = t.key;
    await insertTable(ctx, info, req, t, details.compression, sig, (delta) => {
      progress.bytes += delta;
      report({ ...progress });
    });
    restored.set(t.key, t.source.rows);
    progress.tablesDone++;
    progress.rows += t.source.rows;
    report({ ...progress }, true);
  };

  // 3. storage tables, then their data - before any materialized view exists
  //    that would fire on these inserts
  const storage = ordered.filter((t) => restoreCategory(t.source.engine) === CATEGORY_TABLE);
  for (const t of storage) await create(t);
  await runPool(
    storage.filter((t) => t.kind === "data"),
    ctx.concurrency ?? DUMP_CONCURRENCY,
    signal,
    restoreData,
  );
  // 4. everything else in dependency order; a materialized view's own data
  //    right after the view, before views that read from it exist
  for (const t of ordered) {
    if (restoreCategory(t.source.engine) === CATEGORY_TABLE) continue;
    await create(t);
    if (t.kind === "view-data") await restoreData(t, signal);
  }
  progress.currentTable = undefined;
  report({ ...progress }, true);
  log.info("clickhouse restore: done", { tables: plan.tables.length, rows: progress.rows });
  return {
    databases: plan.databases.map((d) => d.target),
    tables: plan.tables.map((t) => ({ database: t.target.database, name: t.target.name, rows: restored.get(t.key) ?? 0 })),
  };
}

/** Settings of the restore INSERTs. */
function insertSettings(info: ServerInfo): ClickHouseSettings {
  // a restore must not lose blocks that happen to repeat (replicated tables deduplicate inserts)
  const s: Record<string, number> = { insert_deduplicate: 0 };
  // 18.x refuses LowCardinality columns without this, also on INSERT when views are involved
  if (!versionAtLeast(info.v, 19, 0)) s["allow_experimental_low_cardinality_type"] = 1;
  return s as ClickHouseSettings;
}

async function insertTable(
  ctx: DumpContext,
  info: ServerInfo,
  req: RestoreRequest,
  t: PlannedTable<DumpTable>,
  compression: DumpDetails["compression"],
  signal: AbortSignal,
  onBytes: (delta: number) => void,
): Promise<void> {
  const { conn } = ctx;
  const object = t.source.dataObject;
  if (!object) throw new EngineError(`backup has no data object for ${t.source.database}.${t.source.name}`, { retryable: false });
  if (t.source.uncompressedBytes === 0) return; // empty table: nothing to insert
  const insertSql = `INSERT INTO ${qualified(t.target.database, t.target.name)} FORMAT Native`;
  const { ac, dispose } = linked(signal);
  try {
    let src: Readable;
    try {
      src = await req.source.getObject(object, ac.signal);
    } catch (err) {
      if (signal.aborted) throw abortReason(signal);
      throw err;
    }
    const counter = new ByteCounter(onBytes);
    // lz4 objects are ClickHouse's own compressed format: the server decompresses them (decompress=1).
    const lz4 = compression.codec === "lz4";
    const unzstd = lz4 ? new PassThrough() : compression.frameBytes !== undefined ? new ZstdFramesDecompress({ frameBytes: compression.frameBytes }) : createZstdDecompress();
    const body = new PassThrough();
    const failures = new FailureTracker<"source" | "clickhouse">();
    failures.watch("source", src, counter, unzstd);
    // the client pipes `body` into the HTTP request: a failing request destroys it first
    failures.watch("clickhouse", body);
    const piped = pipeline(src, counter, unzstd, body, { signal: ac.signal }).catch((err: unknown) => {
      failures.note("source", err);
      ac.abort(err);
      throw err;
    });
    const inserted = conn
      .insertStream(insertSql, body, ac.signal, `restoring the data of ${t.key}`, { ...insertSettings(info), ...(lz4 ? { decompress: 1 } : {}) } as ClickHouseSettings)
      .catch((err: unknown) => {
        failures.note("clickhouse", err);
        if (!ac.signal.aborted) ac.abort(err);
        throw err;
      });
    const [, i] = await Promise.allSettled([piped, inserted]);
    if (signal.aborted) throw abortReason(signal);
    const f = failures.first;
    if (f?.origin === "source") {
      // the storage, the checksum, or the compressed data failed
      if (f.err instanceof EngineError) throw f.err;
      const m = messageOf(f.err);
      throw new EngineError(`reading the backup of ${t.source.database}.${t.source.name} (${object}) failed: ${m}`, {
        cause: f.err,
        retryable: !/checksum|sha256|corrupt|frame|zstd|decompress/i.test(m),
      });
    }
    if (f?.origin === "clickhouse") {
      // insertStream already wrapped what the server said; a destroyed body carries the raw network error
      if (f.err instanceof EngineError) throw f.err;
      if (i.status === "rejected" && i.reason instanceof EngineError) throw i.reason;
      conn.fail(f.err, signal, `restoring the data of ${t.key}`, insertSql);
    }
    if (i.status === "rejected") throw i.reason;
  } finally {
    dispose();
  }
}
