// ClickHouse 26.x in-process (npm package chdb), reachable through the same
// @clickhouse/client API as a server via chdb/connection. libchdb binds one
// data directory per process: vitest runs each test file in its own process.
import { ClickHouseLogLevel, createClient, type ClickHouseClient } from "@clickhouse/client";
import { createChdbConnection } from "chdb/connection";
import { randomUUID } from "node:crypto";
import { createWriteStream } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { execa } from "execa";
import { makeTempDir, removeDir } from "./proc.ts";

export interface ChdbEngine {
  readonly kind: "chdb";
  readonly version: string;
  readonly dir: string;
  /** The shared client (one chDB connection per process); do not close it, stop() does. */
  client(): ClickHouseClient;
  exec(sql: string): Promise<void>;
  /**
   * Streams Native data into `table` ("db.t"). chdb/connection materialises
   * insert bodies as UTF-8 strings (binary Native does not survive), so this
   * feeds a FIFO that chDB reads with file(..., 'Native'): still a stream.
   */
  insertNative(table: string, body: NodeJS.ReadableStream | AsyncIterable<Uint8Array>, signal?: AbortSignal): Promise<void>;
  query<T = Record<string, unknown>>(sql: string): Promise<T[]>;
  stop(): Promise<void>;
}

export async function startChdb(): Promise<ChdbEngine> {
  const dir = await makeTempDir("chdb");
  const connection = createChdbConnection({ path: dir });
  const client = createClient({ connection, log: { level: ClickHouseLogLevel.OFF } } as Parameters<typeof createClient>[0]);
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
    exec: async (sql) => {
      await client.command({ query: sql });
    },
    query,
    insertNative: async (table, body, signal) => {
      const fifo = join(dir, `in-${randomUUID()}.fifo`);
      await execa("mkfifo", [fifo]);
      try {
        const writer = pipeline(body, createWriteStream(fifo), { signal });
        const reader = client.command({ query: `INSERT INTO ${table} SELECT * FROM file('${fifo}', 'Native')` });
        await Promise.all([writer, reader]);
      } finally {
        await rm(fifo, { force: true });
      }
    },
    stop: async () => {
      await client.close();
      await removeDir(dir);
    },
  };
}
