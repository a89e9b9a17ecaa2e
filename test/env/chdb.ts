// ClickHouse 26.x in-process (npm package chdb), reachable through the same
// @clickhouse/client API as a server via chdb/connection. libchdb binds one
// data directory per process: vitest runs each test file in its own process.
//
// chdb/connection turns insert bodies into UTF-8 strings, which corrupts
// binary formats such as Native. Streamed inserts therefore go through a FIFO
// that chDB reads with `INSERT ... FROM INFILE '<fifo>' FORMAT Native`: the
// body is never spooled to disk nor held in memory whole.
import { ClickHouseLogLevel, createClient, type ClickHouseClient } from "@clickhouse/client";
import { createChdbConnection } from "chdb/connection";
import { randomUUID } from "node:crypto";
import { constants, open } from "node:fs";
import { mkdir, rm } from "node:fs/promises";
import { Socket } from "node:net";
import { join } from "node:path";
import { Readable } from "node:stream";
import { once } from "node:events";
import { promisify } from "node:util";
import { execa } from "execa";
import { quoteString } from "../../pkg/backupengine/clickhouse/sql.ts";
import { makeTempDir, removeDir } from "./proc.ts";

type ChdbConn = ReturnType<typeof createChdbConnection>;
type ExecParams = Parameters<ChdbConn["exec"]>[0];
type CommandResult = Awaited<ReturnType<ChdbConn["command"]>>;
type Body = NodeJS.ReadableStream | AsyncIterable<Uint8Array | string>;

const openFd = promisify(open);
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * The start of a Native block (one column, one row) and then nothing. Ends a
 * body that failed or was aborted, so that chDB's reader hits end of data in
 * the middle of a block and the INSERT fails, as a server fails an INSERT
 * whose HTTP body is cut off, instead of taking a stream that happens to end
 * at a block boundary as complete.
 */
const CUT_OFF = Buffer.from([1, 1]);

const STOPPED = "chDB stopped reading the insert body";
const asError = (err: unknown): Error => (err instanceof Error ? err : new Error(String(err)));

/**
 * Opens the write end of a FIFO once a reader has it open, without ever
 * blocking a thread: O_WRONLY|O_NONBLOCK fails with ENXIO while there is no
 * reader, so it is retried. (A writer that opened earlier, with O_RDWR, could
 * write a short body and close before chDB opens the FIFO: the data would be
 * dropped with the last open end and chDB would wait for a writer forever.)
 * Returns undefined if `gaveUp()` turns true first (the INSERT ended without
 * reading).
 */
async function openFifoWriter(fifo: string, gaveUp: () => boolean): Promise<number | undefined> {
  for (let wait = 1; ; wait = Math.min(wait * 2, 25)) {
    if (gaveUp()) return undefined;
    try {
      return await openFd(fifo, constants.O_WRONLY | constants.O_NONBLOCK);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENXIO") throw err;
    }
    await sleep(wait);
  }
}

/**
 * Runs `INSERT ... FORMAT <fmt>` with a streamed body on a chDB connection,
 * binary-safe: the body is written into a FIFO in `fifoDir` while chDB reads
 * it with FROM INFILE. Backpressure is the pipe's: at most a pipe buffer and
 * one chunk are in flight. A failing or aborted body fails the INSERT; a
 * failing INSERT stops reading the body.
 */
export async function insertThroughFifo(
  conn: ChdbConn,
  params: Omit<ExecParams, "values"> & { values: Body },
  fifoDir: string,
): Promise<CommandResult> {
  const m = /^([\s\S]*?)\s+FORMAT\s+(\w+)\s*;?\s*$/i.exec(params.query);
  if (!m) throw new Error(`chDB insert through a FIFO needs "INSERT ... FORMAT <format>", got: ${params.query.slice(0, 200)}`);
  // No abort_signal for chDB itself: an aborted command() would settle at once while the in-process query
  // goes on waiting for the FIFO (and holds its table, so a later DROP ... SYNC waits forever). An abort
  // reaches the query through the feed instead: the body stops and the query reads a cut-off stream.
  const { values, decompress_response_stream: _d, ignore_error_response: _i, abort_signal: _a, ...rest } = params;
  const signal = params.abort_signal;
  signal?.throwIfAborted();
  const fifo = join(fifoDir, `insert-${randomUUID()}.fifo`);
  await execa("mkfifo", ["-m", "600", fifo]);
  let pipe: Socket | undefined;
  let settled = false;
  const insert = conn.command({ ...rest, query: `${m[1]} FROM INFILE ${quoteString(fifo)} FORMAT ${m[2]}` }).finally(() => {
    settled = true;
    // chDB read to the end, or gave up: never leave the feed waiting for a reader
    pipe?.destroy(new Error(STOPPED));
  });
  insert.catch(() => {}); // awaited below
  let sourceError: unknown;
  const feed = async (): Promise<void> => {
    const fd = await openFifoWriter(fifo, () => settled);
    if (fd === undefined) return;
    const p = new Socket({ fd, readable: false, writable: true });
    pipe = p;
    p.on("error", () => {}); // reported through drain below
    let pipeError: unknown;
    try {
      for await (const chunk of values) {
        signal?.throwIfAborted();
        if (p.destroyed) {
          pipeError = new Error(STOPPED);
          break;
        }
        if (!p.write(chunk)) {
          try {
            await once(p, "drain", signal ? { signal } : {});
          } catch (err) {
            if (signal?.aborted) throw err;
            pipeError = err; // chDB closed its end (EPIPE) or the INSERT ended
            break;
          }
        }
      }
      if (pipeError === undefined) signal?.throwIfAborted();
    } catch (err) {
      sourceError = err; // the body failed, or the request was aborted
    }
    if (pipeError !== undefined || p.destroyed) throw asError(pipeError ?? new Error(STOPPED));
    const closed = once(p, "close");
    // closing the only write end is the end of data for chDB
    if (sourceError === undefined) p.end();
    else p.end(CUT_OFF);
    await closed;
  };
  try {
    const [f, i] = await Promise.allSettled([feed(), insert]);
    if (sourceError !== undefined) throw asError(sourceError); // the body failed or was aborted: the root cause
    if (i.status === "rejected") throw i.reason;
    if (f.status === "rejected") throw f.reason;
    return i.value;
  } finally {
    pipe?.destroy();
    await rm(fifo, { force: true });
  }
}

/**
 * A @clickhouse/client for the backup engine on top of a chDB connection:
 * streamed inserts (`exec` with a body, "INSERT ... FORMAT Native") go
 * through {@link insertThroughFifo}; everything else goes to chdb/connection
 * unchanged. Pass a data directory to open a connection of its own (closed by
 * close()), or an open connection (left open). FIFOs are made in `fifoDir`.
 */
export function chdbEngineClient(target: string | ChdbConn, fifoDir: string): { client: ClickHouseClient; close: () => Promise<void> } {
  const owned = typeof target === "string";
  const conn: ChdbConn = typeof target === "string" ? createChdbConnection({ path: target }) : target;
  const wrapped = {
    ping: conn.ping.bind(conn),
    query: conn.query.bind(conn),
    insert: conn.insert.bind(conn),
    command: conn.command.bind(conn),
    close: async () => {},
    exec: async (params: ExecParams) => {
      if (params.values === undefined) return conn.exec(params);
      const r = await insertThroughFifo(conn, { ...params, values: params.values }, fifoDir);
      return { ...r, stream: Readable.from([]) };
    },
  };
  const client = createClient({ connection: wrapped, log: { level: ClickHouseLogLevel.OFF } } as Parameters<typeof createClient>[0]);
  return { client, close: async () => (owned ? conn.close() : undefined) };
}

export interface ChdbEngine {
  readonly kind: "chdb";
  readonly version: string;
  readonly dir: string;
  /** The shared client (one chDB connection per process); do not close it, stop() does. */
  client(): ClickHouseClient;
  /**
   * A client for the backup engine on the same connection, whose streamed
   * inserts go through a FIFO (see chdbEngineClient); stop() closes it.
   */
  engineClient(): ClickHouseClient;
  exec(sql: string): Promise<void>;
  /**
   * Streams Native data into `table` ("db.t"). chdb/connection materialises
   * insert bodies as UTF-8 strings (binary Native does not survive), so this
   * feeds a FIFO that chDB reads with FROM INFILE: still a stream.
   */
  insertNative(table: string, body: NodeJS.ReadableStream | AsyncIterable<Uint8Array>, signal?: AbortSignal): Promise<void>;
  query<T = Record<string, unknown>>(sql: string): Promise<T[]>;
  stop(): Promise<void>;
}

export interface StartChdbOptions {
  /** Data directory (created if missing, removed by stop()); default: a new temp dir. */
  dir?: string;
}

export async function startChdb(opts: StartChdbOptions = {}): Promise<ChdbEngine> {
  const dir = opts.dir ?? (await makeTempDir("chdb"));
  if (opts.dir) await mkdir(dir, { recursive: true });
  const connection = createChdbConnection({ path: dir });
  const client = createClient({ connection, log: { level: ClickHouseLogLevel.OFF } } as Parameters<typeof createClient>[0]);
  let engine: ReturnType<typeof chdbEngineClient> | undefined;
  const query = async <T,>(sql: string): Promise<T[]> => {
    const rs = await client.query({ query: sql, format: "JSONEachRow" });
    return rs.json<T>();
  };
  const version = (await query<{ v: string }>("SELECT version() AS v"))[0]?.v ?? "unknown";
  return {
    kind: "chdb",
    version,
    dir,
    client: () => client,
    engineClient: () => (engine ??= chdbEngineClient(connection, dir)).client,
    exec: async (sql) => {
      await client.command({ query: sql });
    },
    query,
    insertNative: async (table, body, signal) => {
      await insertThroughFifo(connection, { query: `INSERT INTO ${table} FORMAT Native`, values: body, ...(signal ? { abort_signal: signal } : {}) }, dir);
    },
    stop: async () => {
      await engine?.client.close();
      await client.close();
      await removeDir(dir);
    },
  };
}
