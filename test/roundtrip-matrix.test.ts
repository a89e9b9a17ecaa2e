// The data path across its whole matrix: tables of every engine family the
// dump method stores data for, with 0, 1 and a few rows, backed up and
// restored on ClickHouse 18.16 (zstd and lz4) and on chDB 26.x (zstd: lz4 is
// HTTP compression, which in-process chDB does not have),
// into a renamed database and in place (the database dropped first). Every
// table's row count and checksum must equal the source's, and the rows the
// restore reports must equal the rows counted at backup.
import { join } from "node:path";
import winston from "winston";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clickhouseRunnerConfig } from "../pkg/apis/clickhouse.ts";
import { createClickHouseEngine } from "../pkg/backupengine/clickhouse/index.ts";
import type { EngineBackupResult } from "../pkg/backupengine/types.ts";
import { makeTempDir, removeDir, startChdb, startClickHouse, type ChdbEngine, type ClickHouseServer } from "./env/index.ts";
import { tableChecksum } from "./helpers/runner.ts";
import { DirSink } from "./helpers/sink.ts";

const logger = winston.createLogger({ silent: true });

/** Engine families with data of their own; every one gets a table of 0, 1 and 5 rows. */
const ENGINES: Record<string, { columns: string; engine: string; row: (i: number) => string }> = {
  mt: { columns: "id UInt64, s String, a Array(UInt32), n Nullable(Int32)", engine: "MergeTree ORDER BY id", row: (i) => `(${i}, 's${i}', [${i}, ${i + 1}], ${i % 2 ? "NULL" : i})` },
  replacing: { columns: "id UInt64, v UInt32", engine: "ReplacingMergeTree(v) ORDER BY id", row: (i) => `(${i}, ${i * 3})` },
  summing: { columns: "id UInt64, v UInt64", engine: "SummingMergeTree ORDER BY id", row: (i) => `(${i}, ${i * 7})` },
  collapsing: { columns: "id UInt64, sign Int8", engine: "CollapsingMergeTree(sign) ORDER BY id", row: (i) => `(${i}, 1)` },
  vcollapsing: { columns: "id UInt64, sign Int8, ver UInt32", engine: "VersionedCollapsingMergeTree(sign, ver) ORDER BY id", row: (i) => `(${i}, 1, ${i})` },
  log: { columns: "id UInt64, s String", engine: "Log", row: (i) => `(${i}, 'log${i}')` },
  tinylog: { columns: "id UInt64, s String", engine: "TinyLog", row: (i) => `(${i}, 'tiny${i}')` },
  stripelog: { columns: "id UInt64, s String", engine: "StripeLog", row: (i) => `(${i}, 'stripe${i}')` },
  memory: { columns: "id UInt64, s String", engine: "Memory", row: (i) => `(${i}, 'mem${i}')` },
};
const SIZES = [0, 1, 5];
const TABLES = Object.keys(ENGINES).flatMap((k) => SIZES.map((n) => `${k}_${n}`));

interface Server {
  exec(sql: string): Promise<void>;
  query<T>(sql: string): Promise<T[]>;
  engine(compression: "zstd" | "lz4"): ReturnType<typeof createClickHouseEngine>;
}

async function load(s: Server, db: string): Promise<void> {
  await s.exec(`CREATE DATABASE ${db}`);
  for (const [k, e] of Object.entries(ENGINES)) {
    for (const n of SIZES) {
      await s.exec(`CREATE TABLE ${db}.${k}_${n} (${e.columns}) ENGINE = ${e.engine}`);
      if (n > 0) await s.exec(`INSERT INTO ${db}.${k}_${n} VALUES ${Array.from({ length: n }, (_, i) => e.row(i + 1)).join(", ")}`);
    }
  }
}

async function sums(s: Server, db: string): Promise<Record<string, { rows: number; sum: string }>> {
  const out: Record<string, { rows: number; sum: string }> = {};
  for (const t of TABLES) out[t] = await tableChecksum(s, `${db}.${t}`);
  return out;
}

function matrix(name: string, setup: () => Promise<{ server: Server; stop: () => Promise<void> }>, compressions: ("zstd" | "lz4")[]) {
  describe(`round trip of every engine family, ${name}`, () => {
    let server: Server;
    let stop: () => Promise<void>;
    let tmp: string;
    let source: Record<string, { rows: number; sum: string }>;
    beforeAll(async () => {
      ({ server, stop } = await setup());
      tmp = await makeTempDir("matrix");
      await load(server, "mx");
      source = await sums(server, "mx");
      // the data is what it should be before anything is backed up
      for (const t of TABLES) expect(source[t]!.rows, t).toBe(Number(t.split("_").pop()));
    }, 120_000);
    afterAll(async () => {
      await stop?.();
      if (tmp) await removeDir(tmp);
    });

    for (const compression of compressions) {
      it(`${compression}: into a renamed database and in place, every table's rows and checksum equal the source's`, async () => {
        const sink = new DirSink(join(tmp, compression));
        const e = server.engine(compression);
        const backup = await e.backup({ backupId: compression, signal: AbortSignal.timeout(120_000), sink, logger });
        const byName = new Map(backup.tables.map((t) => [t.name, t]));
        for (const t of TABLES) expect(byName.get(t)?.rows, t).toBe(source[t]!.rows);
        const restore = (renameDatabases: Record<string, string>) =>
          server.engine(compression).restore({
            signal: AbortSignal.timeout(120_000),
            source: sink,
            backup: JSON.parse(JSON.stringify(backup)) as EngineBackupResult,
            options: { existingTables: "fail", renameDatabases },
            logger,
          });
        // renamed, next to the source
        const into = `mx_${compression}`;
        const renamed = await restore({ mx: into });
        expect(await sums(server, into)).toEqual(source);
        for (const t of TABLES) expect(renamed.tables.find((r) => r.name === t)?.rows ?? 0, `${into}.${t}`).toBe(source[t]!.rows);
        await server.exec(`DROP DATABASE ${into}`);
        // in place, after the database is gone
        await server.exec("DROP DATABASE mx");
        await restore({});
        expect(await sums(server, "mx")).toEqual(source);
      }, 240_000);
    }
  });
}

matrix(
  "ClickHouse 18.16",
  async () => {
    const ch: ClickHouseServer = await startClickHouse();
    return {
      server: {
        exec: (sql) => ch.exec(sql),
        query: (sql) => ch.query(sql),
        engine: (compression) =>
          createClickHouseEngine(clickhouseRunnerConfig.parse({ url: ch.url, username: ch.username, password: ch.password, compression, databases: { include: ["mx"] } }), {
            logger,
            debugPoolPoison: true,
          }),
      },
      stop: () => ch.stop(),
    };
  },
  ["zstd", "lz4"],
);

matrix(
  "chDB",
  async () => {
    const chdb: ChdbEngine = await startChdb();
    const client = chdb.engineClient();
    return {
      server: {
        exec: (sql) => chdb.exec(sql),
        query: (sql) => chdb.query(sql),
        engine: (compression) =>
          createClickHouseEngine(clickhouseRunnerConfig.parse({ url: "http://chdb.invalid:8123", compression, databases: { include: ["mx"] } }), {
            logger,
            client,
            debugPoolPoison: true,
          }),
      },
      stop: () => chdb.stop(),
    };
  },
  // (lz4 is ClickHouse's HTTP compression, compress=1; in-process chDB has no HTTP layer and refuses the setting)
  ["zstd"],
);
