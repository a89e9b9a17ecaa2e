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
import { DEFAULT_FRAME_BYTES, DEFAULT_PARALLEL, outputBlockBytes, ZstdFramesCompress, ZstdFramesDecompress } from "../zstd.ts";
import { CompressedStreamCheck } from "./compressed.ts";
import { ordinaryColumns, readCatalog, type TableInfo } from "./catalog.ts";
import type { Conn, ServerInfo } from "./conn.ts";
import { versionAtLeast } from "./conn.ts";
import { DUMP_FORMAT, dumpDetails, type DumpDetails, type DumpTable } from "./details.ts";
import { abortReason, messageOf } from "./errors.ts";
import { dependencyOrder, restoreCategory, CATEGORY_TABLE } from "./order.ts";
import { decideExisting, planRestore, type PlannedTable } from "./plan.ts";
import { qualified, quoteIdent, referencedNames } from "./sql.ts";
import { isWalkableType, NativeCountStream, NativeFormatError, NativeWalker } from "./nativewalk.ts";
import { runPool } from "../../concurrency/pool.ts";
import { ByteCounter, FailureTracker, IdleWatch, StallError, TrailingExceptionCheck } from "./streams.ts";

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
export function progressReporter(onProgress: ((p: Progress) => void) | undefined, everyMs = 250) {
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
export function linked(parent: AbortSignal): { ac: AbortController; dispose: () => void } {
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
  /** Tests: the dump's buffer pools poison released blocks and check their use (BufferPoolOptions.poisonOnRelease). */
  debugPoolPoison?: boolean | undefined;
  /** Which tables' data this dump holds (default all); the others keep their DDL only (a cluster dumps replicated tables once per shard). */
  dataFilter?: ((t: TableInfo) => boolean) | undefined;
}

export async function dumpBackup(ctx: DumpContext, info: ServerInfo, req: BackupRequest): Promise<EngineBackupResult> {
  const { conn, config } = ctx;
  const log = req.logger;
  const signal = req.signal;
  const catalog = await readCatalog(conn, info, { databases: config.databases, tables: config.tables }, signal);
  const withData = catalog.tables.filter((t) => t.kind !== "schema" && (ctx.dataFilter?.(t) ?? true));
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

  const results = new Map<string, DumpedTable>();
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
      dataObject: r?.objects[0]?.name,
      dataObjects: r && r.objects.length > 1 ? r.objects.map((o) => o.name) : undefined,
      codec: r && r.codec !== (config.compression === "lz4" ? "lz4" : "zstd") ? r.codec : undefined,
      columns: r?.columns.table,
      streamColumns: r && r.columns.stream.some((c, i) => c.name !== r.columns.table[i]?.name) ? r.columns.stream.map((c) => c.name) : undefined,
      rows: r?.rows ?? 0,
      bytes: r?.bytes ?? 0,
      uncompressedBytes: r?.uncompressed ?? 0,
    };
  });
  const details: DumpDetails = {
    format: DUMP_FORMAT,
    serverVersion: info.version,
    rowsFrom: "stream",
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
    dataObjects: t.dataObjects,
  }));
  return {
    engineVersion: info.version,
    method: "dump",
    databases: catalog.databases.map((d) => d.name),
    tables,
    objects: [...results.values()].flatMap((r) => r.objects).sort((a, b) => (a.name < b.name ? -1 : 1)),
    details,
  };
}

/** A column as dumped: `SELECT` names them in this order and the restore's INSERT names them the same way. */
export interface DumpColumn {
  name: string;
  type: string;
}

/**
 * The columns `SELECT *` returns (no MATERIALIZED, ALIAS or EPHEMERAL ones),
 * with the columns whose data the Native walker cannot size (aggregate
 * function states and other self-delimiting types) moved to the end: the
 * walker then finds the end of such a block by the next block's header.
 */
export async function dumpColumns(conn: Conn, db: string, name: string, signal: AbortSignal): Promise<{ table: DumpColumn[]; stream: DumpColumn[] }> {
  const cols = await ordinaryColumns(conn, db, name, signal);
  if (cols.length === 0) throw new EngineError(`${db}.${name} has no column that SELECT * returns`, { retryable: false });
  return { table: cols, stream: [...cols.filter((c) => isWalkableType(c.type)), ...cols.filter((c) => !isWalkableType(c.type))] };
}

interface DumpedTable {
  rows: number;
  bytes: number;
  uncompressed: number;
  objects: WrittenObject[];
  codec: "zstd" | "lz4";
  columns: { table: DumpColumn[]; stream: DumpColumn[] };
}

async function countRows(conn: Conn, t: TableInfo, signal: AbortSignal): Promise<number> {
  const key = `${t.database}.${t.name}`;
  const [c] = await conn.rows<{ c: string | number }>(`SELECT count() AS c FROM ${qualified(t.database, t.name)}`, signal, `counting the rows of ${key}`);
  return Number(c?.c ?? 0);
}

/**
 * Dumps one table and proves it from the data: the rows are counted in the
 * Native blocks as they stream (the manifest records that count), a stream
 * that ends inside a block fails, and a stream whose row count disagrees
 * with the server's count() of a table that did not change meanwhile (or
 * holds no row of a table that has rows) fails the table - except that an
 * lz4 dump, whose compressed answers old servers get wrong for small
 * results, is then taken again uncompressed and stored as zstd.
 */
async function dumpTable(ctx: DumpContext, req: BackupRequest, t: TableInfo, signal: AbortSignal, onBytes: (delta: number) => void): Promise<DumpedTable> {
  const key = `${t.database}.${t.name}`;
  const columns = await dumpColumns(ctx.conn, t.database, t.name, signal);
  let codec: "zstd" | "lz4" = ctx.config.compression === "lz4" ? "lz4" : "zstd";
  for (;;) {
    const before = await countRows(ctx.conn, t, signal);
    const r = await streamTable(ctx, req, t, columns.stream, codec, signal, onBytes);
    if (r.rows === before) return { ...r, codec, columns };
    const after = await countRows(ctx.conn, t, signal);
    const empty = r.rows === 0 && before > 0 && after > 0;
    if (!empty && after !== before) {
      // the table changed while it was dumped: the stream's own count is what the backup holds
      req.logger.info("clickhouse dump: table changed while it was dumped", { table: key, countBefore: before, countAfter: after, rowsStreamed: r.rows });
      return { ...r, codec, columns };
    }
    if (codec === "lz4") {
      req.logger.warn("clickhouse dump: the server's compressed answer does not hold the table's rows; dumping it again uncompressed and storing it as zstd", {
        table: key,
        serverCount: before,
        rowsStreamed: r.rows,
      });
      await req.sink.removeObjects?.(r.objects.map((o) => o.name), signal);
      codec = "zstd";
      continue;
    }
    throw new EngineError(
      `dumping ${key} failed: the server counts ${before} rows but the data stream held ${r.rows}; the backup would not be whole`,
      { retryable: true },
    );
  }
}

async function streamTable(
  ctx: DumpContext,
  req: BackupRequest,
  t: TableInfo,
  columns: readonly DumpColumn[],
  codec: "zstd" | "lz4",
  signal: AbortSignal,
  onBytes: (delta: number) => void,
): Promise<{ rows: number; bytes: number; uncompressed: number; objects: WrittenObject[] }> {
  const { conn, config } = ctx;
  const key = `${t.database}.${t.name}`;
  const q = qualified(t.database, t.name);
  const lz4 = codec === "lz4";
  const name = dataObjectName(t.database, t.name, codec);
  const selectSql = `SELECT ${columns.map((c) => quoteIdent(c.name)).join(", ")} FROM ${q} FORMAT Native`;
  const { ac, dispose } = linked(signal);
  try {
    // The data arrives in blocks of this pool, and the one stage that reads a block last is handed the
    // pool's release (see storage/bufferpool.ts): for zstd the compressor (the blocks are whole frames,
    // compressed in place), for lz4 the storage. zstd writes its frames into blocks of `outPool`, which
    // the storage hands back. (Free blocks kept: as many as can be in flight at once.)
    const poolOpts = { poisonOnRelease: ctx.debugPoolPoison === true };
    const pool = new BufferPool(lz4 ? LZ4_BLOCK_BYTES : DEFAULT_FRAME_BYTES, 16, poolOpts);
    const outPool = lz4 ? undefined : new BufferPool(outputBlockBytes(DEFAULT_FRAME_BYTES), DEFAULT_PARALLEL + 4, poolOpts);
    // lz4: the server compresses (its own block format, HTTP compress=1); the runner decodes each block
    // only to walk the Native data inside it and count its rows.
    const idleMs = config.idleTimeoutSeconds * 1000;
    const res = await conn.selectStream(selectSql, ac.signal, `dumping ${key}`, lz4 ? ({ compress: 1 } as ClickHouseSettings) : undefined, {
      pool,
      headTimeoutMs: idleMs,
      stalledError: () => new StallError("ClickHouse", idleMs, `dumping ${key}`),
    });
    const tagHeader = res.headers["x-clickhouse-exception-tag"];
    const tag = typeof tagHeader === "string" ? tagHeader : undefined;
    const walker = new NativeWalker({ what: key });
    // lz4: a walker error is held until the end: the server may have appended an exception to the
    // compressed stream, and that (found by the check at its end) is the real cause.
    const blocks = lz4 ? new CompressedStreamCheck(tag, { onDecoded: (d) => walker.pushQuietly(d) }) : undefined;
    const check = blocks ?? new TrailingExceptionCheck(tag, pool.release);
    // one watch where the data comes in, one where it goes out (the buffers between them can hold a small table whole)
    const names = { upstream: "ClickHouse", downstream: "the storage", what: `dumping ${key}` };
    const idle = new IdleWatch(idleMs, names);
    const idleOut = new IdleWatch(idleMs, names);
    const count = lz4 ? new PassThrough() : new NativeCountStream(walker);
    const raw = new ByteCounter();
    // zstd: independent frames compressed on the thread pool (one zstd stream would cap the dump at one core).
    const zstd = lz4 ? new PassThrough() : new ZstdFramesCompress({ level: config.compressionLevel, frameBytes: DEFAULT_FRAME_BYTES, pool, outputPool: outPool });
    const out = new ByteCounter(onBytes);
    const body = new PassThrough();
    const failures = new FailureTracker<"clickhouse" | "sink" | "engine">();
    failures.watch("clickhouse", res.stream, check);
    for (const w of [idle, idleOut]) w.once("error", (err: unknown) => failures.note(err instanceof StallError && err.stalled === "ClickHouse" ? "clickhouse" : "sink", err));
    failures.watch("engine", count, raw, zstd, out);
    failures.watch("sink", body);
    const sink = req.sink;
    // The storage copies each chunk it gets and then hands it back: zstd's output blocks, or for lz4 the HTTP reader's.
    const putOpts = { release: outPool ? outPool.release : pool.release };
    const put = (sink.putObjects ? sink.putObjects(name, body, ac.signal, putOpts) : sink.putObject(name, body, ac.signal, putOpts).then((o) => [o])).catch((err: unknown) => {
      failures.note("sink", err);
      ac.abort(err);
      throw err;
    });
    const piped = pipeline(res.stream, idle, check, count, raw, zstd, out, idleOut, body, { signal: ac.signal }).catch((err: unknown) => {
      failures.note("engine", err);
      ac.abort(err);
      throw err;
    });
    // every byte has been handed to the storage: it must finish the object within the idle timeout too
    let deadline: NodeJS.Timeout | undefined;
    piped.then(
      () => {
        deadline = setTimeout(() => {
          const err = new StallError("the storage", idleMs, `dumping ${key} (the upload did not finish after the data ended)`);
          failures.note("sink", err);
          ac.abort(err);
        }, idleMs);
      },
      () => undefined,
    );
    void put.finally(() => clearTimeout(deadline)).catch(() => undefined);
    const [, w] = await Promise.allSettled([piped, put]);
    if (signal.aborted) throw abortReason(signal);
    const f = failures.first;
    // the server died, the connection broke, or the server reported an error mid-stream
    if (f?.err instanceof StallError) throw new EngineError(f.err.message, { cause: f.err, retryable: true });
    if (f?.origin === "clickhouse") conn.fail(f.err, signal, `dumping ${key}`, selectSql);
    if (f?.origin === "sink") throw f.err;
    if (f) throw new EngineError(`dumping ${key} failed: ${messageOf(f.err)}`, { cause: f.err, retryable: !(f.err instanceof NativeFormatError) });
    if (w.status === "rejected") throw w.reason;
    if (lz4) {
      try {
        walker.end();
      } catch (err: unknown) {
        await req.sink.removeObjects?.(w.value.map((o) => o.name), signal);
        throw new EngineError(`dumping ${key} failed: ${messageOf(err)}`, { cause: err, retryable: true });
      }
    }
    return {
      rows: walker.rows,
      bytes: w.value.reduce((n, o) => n + o.size, 0),
      uncompressed: walker.bytes,
      objects: w.value,
    };
  } finally {
    dispose();
  }
}

