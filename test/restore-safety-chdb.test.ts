// Integrity and restore safety of the dump method on ClickHouse 26.x (chDB):
// current types counted from the stream both ways (including types the
// walker cannot size, which go last and are found by the next block's
// header), a staged "drop" over an Atomic database (materialized views with
// an inner table move aside and back with their data), a corrupted backup
// that touches nothing, a schema mismatch refused, and verify from storage.
import { createHash } from "node:crypto";
import { open } from "node:fs/promises";
import { join } from "node:path";
import type { ClickHouseClient } from "@clickhouse/client";
import winston from "winston";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clickhouseRunnerConfig, type ClickHouseRunnerConfigInput } from "../pkg/apis/clickhouse.ts";
import { createClickHouseEngine } from "../pkg/backupengine/clickhouse/index.ts";
import type { EngineBackupResult, RestoreOptions } from "../pkg/backupengine/types.ts";
import { chdbEngineClient, makeTempDir, removeDir, startChdb, type ChdbEngine } from "./env/index.ts";
import { DirSink } from "./helpers/sink.ts";

const logger = winston.createLogger({ silent: true });

describe("restore safety and row counts, chDB 26.x", () => {
  let chdb: ChdbEngine;
  let tmp: string;
  let engineClient: { client: ClickHouseClient; close: () => Promise<void> };
  let n = 0;
  const engine = (over: Partial<ClickHouseRunnerConfigInput> = {}) =>
    createClickHouseEngine(clickhouseRunnerConfig.parse({ url: "http://chdb.invalid:8123", ...over }), { logger, client: engineClient.client });
  const digest = async (db: string, t: string) => {
    const rs = await chdb.client().query({ query: `SELECT * FROM \`${db}\`.\`${t}\``, format: "TabSeparated" });
    const lines = (await rs.text()).split("\n").filter((l) => l.length > 0).sort();
    return { rows: lines.length, sha: createHash("sha256").update(lines.join("\n")).digest("hex") };
  };
  const tablesIn = async (db: string) =>
    (await chdb.query<{ name: string }>(`SELECT name FROM system.tables WHERE database = '${db}' AND name NOT LIKE '.inner%' ORDER BY name`)).map((r) => r.name);
  const workTables = async () =>
    (await chdb.query<{ name: string }>(`SELECT concat(database, '.', name) AS name FROM system.tables WHERE startsWith(name, '_chbackup_')`)).map((r) => r.name);
  const backupOf = async (over: Partial<ClickHouseRunnerConfigInput>) => {
    const e = engine(over);
    const sink = new DirSink(join(tmp, `b${++n}`));
    const b = await e.backup({ backupId: `b${n}`, signal: AbortSignal.timeout(120_000), sink, logger });
    return { sink, backup: JSON.parse(JSON.stringify(b)) as EngineBackupResult };
  };
  const restore = (sink: DirSink, backup: EngineBackupResult, options: Partial<RestoreOptions>) =>
    engine().restore({ signal: AbortSignal.timeout(120_000), source: sink, backup, options: { existingTables: "fail", ...options }, logger });

  const types: [string, string, string][] = [
    ["basic", "(id UInt64, b Bool, i128 Int128, u256 UInt256, f32 Float32, d32 Date32, dt64 DateTime64(6, 'Asia/Tokyo'), dec Decimal(40, 10))", "number, number % 2 = 0, toInt128(number) * -1, toUInt256(number), number / 3, toDate32('1950-01-01') + number, toDateTime64('2020-01-01 00:00:00', 6, 'Asia/Tokyo') + number, toDecimal256(number, 10)"],
    ["net", "(id UInt64, v4 IPv4, v6 IPv6, u UUID, e16 Enum16('a,b' = -1000, 'c)' = 2000))", "number, toIPv4(number), toIPv6('::1'), generateUUIDv4(), if(number % 2 = 0, 'a,b', 'c)')"],
    ["nested", "(id UInt64, m Map(LowCardinality(String), Array(Nullable(Decimal(20, 4)))), t Tuple(a Array(String), b Nullable(UInt8)), aa Array(Array(LowCardinality(Nullable(String)))), n Nested(x UInt8, y String))", "number, map(toString(number % 3), [toDecimal64(number, 4), NULL]), ([toString(number)], if(number % 2 = 0, NULL, toUInt8(number))), [[toString(number), NULL], []], [toUInt8(number)], [toString(number)]"],
    ["geo", "(id UInt64, p Point, r Ring, poly Polygon, fs FixedString(5), lc LowCardinality(Nullable(String)))", "number, (number, number / 2), [(1, 2), (3, 4)], [[(0, 0), (1, 1)]], toFixedString('ab', 5), if(number % 3 = 0, NULL, toString(number % 7))"],
    ["agg", "(k UInt64, q AggregateFunction(quantiles(0.5, 0.9), Float64), u AggregateFunction(uniqExact, String), s SimpleAggregateFunction(sum, UInt64), name String)", "number, quantilesState(0.5, 0.9)(toFloat64(number)), uniqExactState(toString(number)), number, 'x'"],
    ["variant", "(id UInt64, v Variant(UInt64, String, Array(UInt8)), d Dynamic, j JSON)", "number, multiIf(number % 3 = 0, number::Variant(UInt64, String, Array(UInt8)), number % 3 = 1, toString(number)::Variant(UInt64, String, Array(UInt8)), [toUInt8(number)]::Variant(UInt64, String, Array(UInt8))), number::Dynamic, concat('{\"a\": ', toString(number), ', \"b\": {\"c\": \"x\"}}')::JSON"],
  ];

  beforeAll(async () => {
    tmp = await makeTempDir("restore-safety-chdb");
    chdb = await startChdb();
    engineClient = chdbEngineClient(chdb.dir, tmp);
    await chdb.exec("CREATE DATABASE typ");
    for (const [name, cols, sel] of types) {
      for (const k of [0, 1, 3, 70_000]) {
        const engineClause = name === "agg" ? "AggregatingMergeTree ORDER BY (k, name)" : "MergeTree ORDER BY id";
        const t = `typ.${name}_${k}`;
        await chdb.exec(`CREATE TABLE ${t} ${cols} ENGINE = ${engineClause}`);
        if (k === 0) continue;
        await chdb.exec(`INSERT INTO ${t} SELECT ${sel} FROM numbers(${k})${name === "agg" ? " GROUP BY number" : ""}`);
      }
    }
    await chdb.exec("CREATE DATABASE live");
    await chdb.exec("CREATE TABLE live.events (id UInt64, kind String) ENGINE = MergeTree ORDER BY id");
    await chdb.exec("CREATE MATERIALIZED VIEW live.by_kind ENGINE = MergeTree ORDER BY (kind, id) AS SELECT kind, id FROM live.events");
    await chdb.exec("INSERT INTO live.events SELECT number, ['a', 'b'][number % 2 + 1] FROM numbers(50000)");
  }, 180_000);
  afterAll(async () => {
    await engineClient?.close();
    await chdb?.stop();
    if (tmp) await removeDir(tmp);
  });

  // lz4 is ClickHouse's HTTP compression (compress=1), which an in-process chDB has no HTTP for: zstd only here
  for (const compression of ["zstd"] as const) {
    it(`${compression}: every type with 0, 1, 3 and 70,000 rows round-trips, rows counted from the data both ways, and verify agrees`, async () => {
      const { sink, backup } = await backupOf({ compression, databases: { include: ["typ"] } });
      const expected = new Map<string, { rows: number; sha: string }>();
      for (const t of await tablesIn("typ")) expected.set(t, await digest("typ", t));
      for (const t of backup.tables) expect(t.rows, t.name).toBe(expected.get(t.name)?.rows);
      const v = await engine().verify!({ signal: AbortSignal.timeout(60_000), source: sink, backup, logger });
      expect(v.tables.filter((t) => !t.ok)).toEqual([]);
      expect(v.ok).toBe(true);
      const r = await restore(sink, backup, { renameDatabases: { typ: `typ_${compression}` } });
      for (const [t, d] of expected) {
        expect(await digest(`typ_${compression}`, t), t).toEqual(d);
        expect(r.tables.find((x) => x.name === t)?.rows, `${t} rows restored`).toBe(d.rows);
      }
    }, 300_000);
  }

  it('"drop" in an Atomic database moves the materialized view with its inner table aside; a corrupted backup leaves everything as it was', async () => {
    const { sink, backup } = await backupOf({ databases: { include: ["live"] } });
    await chdb.exec("INSERT INTO live.events VALUES (1000000, 'c')"); // the live data now differs from the backup
    const before = { events: await digest("live", "events"), mv: await digest("live", "by_kind") };
    // corrupt the view's data: same length, one byte flipped
    const f = await open(sink.pathOf("data/live/by_kind.native.zst"), "r+");
    const { size } = await f.stat();
    const b = Buffer.alloc(1);
    await f.read(b, 0, 1, Math.floor(size / 2));
    b[0] = b[0]! ^ 0x55;
    await f.write(b, 0, 1, Math.floor(size / 2));
    await f.close();
    await expect(restore(sink, backup, { existingTables: "drop" })).rejects.toThrow(/live\.by_kind/);
    expect(await digest("live", "events")).toEqual(before.events);
    expect(await digest("live", "by_kind")).toEqual(before.mv);
    expect(await tablesIn("live")).toEqual(["by_kind", "events"]);
    expect(await workTables()).toEqual([]);
    // the view still fires
    await chdb.exec("INSERT INTO live.events VALUES (1000001, 'z')");
    expect(await chdb.query("SELECT count() AS c FROM live.by_kind WHERE kind = 'z'")).toEqual([{ c: 1 }]);
  }, 120_000);

  it('"drop" over an Atomic database with a good backup replaces everything, the view included, without allowUnstagedDrop', async () => {
    const { sink, backup } = await backupOf({ databases: { include: ["live"] } });
    const expected = { events: await digest("live", "events"), mv: await digest("live", "by_kind") };
    await chdb.exec("INSERT INTO live.events VALUES (2000000, 'q')");
    const r = await restore(sink, backup, { existingTables: "drop" });
    expect(r.tables.find((t) => t.name === "by_kind")?.rows).toBe(expected.mv.rows);
    expect(await digest("live", "events")).toEqual(expected.events);
    expect(await digest("live", "by_kind")).toEqual(expected.mv);
    expect(await workTables()).toEqual([]);
  }, 120_000);

  it("a schema mismatch with fail or append is refused before anything changes", async () => {
    const { sink, backup } = await backupOf({ databases: { include: ["live"] } });
    await chdb.exec("CREATE DATABASE other");
    await chdb.exec("CREATE TABLE other.events (id UInt64, kind LowCardinality(String)) ENGINE = MergeTree ORDER BY id");
    for (const existingTables of ["fail", "append"] as const) {
      await expect(restore(sink, backup, { tables: ["live.events"], renameDatabases: { live: "other" }, existingTables })).rejects.toThrow(
        /other\.events: column 2 is `kind` LowCardinality\(String\) in the table and `kind` String in the backup; nothing was changed/,
      );
    }
    expect((await digest("other", "events")).rows).toBe(0);
    expect(await workTables()).toEqual([]);
  }, 120_000);

  it("verify names a table whose object was replaced by a valid empty one (checksum rewritten)", async () => {
    const { sink, backup } = await backupOf({ databases: { include: ["live"] } });
    const empty = await backupOf({ databases: { include: ["typ"] }, tables: { include: ["typ.basic_0"] } });
    const b = JSON.parse(JSON.stringify(backup)) as EngineBackupResult;
    // point events at the object of an empty table, with that object's own (correct) checksum
    const emptyObj = empty.backup.objects.find((o) => o.name.includes("basic_0"))!;
    const target = b.objects.find((o) => o.name.includes("events"))!;
    const { copyFile } = await import("node:fs/promises");
    await copyFile(empty.sink.pathOf(emptyObj.name), sink.pathOf(target.name));
    target.size = emptyObj.size;
    target.sha256 = emptyObj.sha256;
    sink.objects.set(target.name, { name: target.name, size: emptyObj.size, sha256: emptyObj.sha256 });
    const v = await engine().verify!({ signal: AbortSignal.timeout(60_000), source: sink, backup: b, logger });
    expect(v.ok).toBe(false);
    expect(v.tables.filter((t) => !t.ok).map((t) => `${t.database}.${t.name}: ${t.error}`)).toEqual([
      expect.stringMatching(/^live\.events: the data holds 0 rows, the manifest says \d+/),
    ]);
  }, 120_000);
});
