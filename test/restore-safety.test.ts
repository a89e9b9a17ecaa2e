// Integrity and restore safety of the dump method on a real ClickHouse 18.16
// server: rows counted from the stream both ways (every dumped engine family
// with 0, 1 and 3 rows, zstd and lz4), a corrupted backup never touches the
// data it would replace, a schema mismatch is refused before anything
// changes, an aborted restore rolls back, and what an interrupted restore
// left behind is cleaned up.
import { createHash } from "node:crypto";
import { open, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Transform, type Readable } from "node:stream";
import type { ClickHouseSettings } from "@clickhouse/client";
import winston from "winston";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clickhouseRunnerConfig, type ClickHouseRunnerConfigInput } from "../pkg/apis/clickhouse.ts";
import { createClickHouseEngine } from "../pkg/backupengine/clickhouse/index.ts";
import { ASIDE_PREFIX, STAGING_PREFIX } from "../pkg/backupengine/clickhouse/restore.ts";
import { quoteIdent } from "../pkg/backupengine/clickhouse/sql.ts";
import type { BackupSink, BackupSource, EngineBackupResult, RestoreOptions } from "../pkg/backupengine/types.ts";
import { makeTempDir, removeDir, startClickHouse, type ClickHouseServer } from "./env/index.ts";
import { waitUntil } from "./env/proc.ts";
import { DirSink } from "./helpers/sink.ts";

const logger = winston.createLogger({ silent: true });

describe("restore safety and row counts, ClickHouse 18.16", () => {
  let ch: ClickHouseServer;
  let tmp: string;
  let n = 0;
  const newSink = () => new DirSink(join(tmp, `b${++n}`));
  const engine = (over: Partial<ClickHouseRunnerConfigInput> = {}) =>
    createClickHouseEngine(clickhouseRunnerConfig.parse({ url: ch.url, username: ch.username, password: ch.password, ...over }), { logger });
  const lc = { allow_experimental_low_cardinality_type: 1 } as ClickHouseSettings;
  const run = async (q: string) => {
    const c = ch.client();
    try {
      await c.command({ query: q, clickhouse_settings: lc });
    } finally {
      await c.close();
    }
  };
  /** count and an order-independent digest of a table's rows */
  const digest = async (db: string, t: string) => {
    const c = ch.client();
    try {
      const rs = await c.query({ query: `SELECT * FROM ${quoteIdent(db)}.${quoteIdent(t)}`, format: "TabSeparated" });
      const lines = (await rs.text()).split("\n").filter((l) => l.length > 0).sort();
      return { rows: lines.length, sha: createHash("sha256").update(lines.join("\n")).digest("hex") };
    } finally {
      await c.close();
    }
  };
  const tablesIn = async (db: string) =>
    (await ch.query<{ name: string }>(`SELECT name FROM system.tables WHERE database = '${db}' ORDER BY name`)).map((r) => r.name);
  const workTables = async () =>
    (await ch.query<{ name: string }>(`SELECT concat(database, '.', name) AS name FROM system.tables WHERE startsWith(name, '_chbackup_')`)).map((r) => r.name);
  const backupOf = async (over: Partial<ClickHouseRunnerConfigInput>) => {
    const e = engine(over);
    const sink = newSink();
    try {
      const b = await e.backup({ backupId: `b${n}`, signal: AbortSignal.timeout(120_000), sink, logger });
      return { sink, backup: JSON.parse(JSON.stringify(b)) as EngineBackupResult };
    } finally {
      await e.close();
    }
  };
  const restore = async (sink: DirSink, backup: EngineBackupResult, options: Partial<RestoreOptions>, signal = AbortSignal.timeout(120_000)) => {
    const e = engine();
    try {
      return await e.restore({ signal, source: sink, backup, options: { existingTables: "fail", ...options }, logger });
    } finally {
      await e.close();
    }
  };

  /** Every engine family the dump backs up, each with 0, 1 and 3 rows. */
  const families: [string, string, string][] = [
    ["mt", "(id UInt64, s String, n Nullable(Int32), a Array(String), lc LowCardinality(String)) ENGINE = MergeTree ORDER BY id", "number, toString(number), if(number = 1, NULL, toInt32(number)), [toString(number), ''], toString(number % 2)"],
    ["rmt", "(id UInt64, v UInt32) ENGINE = ReplacingMergeTree(v) ORDER BY id", "number, toUInt32(number)"],
    ["smt", "(k UInt64, c UInt64) ENGINE = SummingMergeTree ORDER BY k", "number, 1"],
    ["cmt", "(k UInt64, sign Int8) ENGINE = CollapsingMergeTree(sign) ORDER BY k", "number, 1"],
    ["vcmt", "(k UInt64, sign Int8, ver UInt32) ENGINE = VersionedCollapsingMergeTree(sign, ver) ORDER BY k", "number, 1, 1"],
    ["gmt", "(Path String, Time DateTime, Value Float64, Version UInt32) ENGINE = GraphiteMergeTree('graphite_rollup') ORDER BY (Path, Time)", "concat('a.', toString(number)), toDateTime(1500000000 + number), number / 3, 1"],
    ["tiny", "(k String, v Int64) ENGINE = TinyLog", "toString(number), -number"],
    ["log", "(k String, v Enum8('a, (b)' = 1, 'c''' = 2)) ENGINE = Log", "toString(number), if(number % 2 = 0, 'a, (b)', 'c''')"],
    ["stripe", "(k FixedString(3), d Date, t Tuple(UInt8, String)) ENGINE = StripeLog", "toFixedString('abc', 3), toDate('2020-01-01') + number, (toUInt8(number), 'x')"],
    ["mem", "(k UUID, f Float32, dec Decimal(20, 4)) ENGINE = Memory", "toUUID('00000000-0000-0000-0000-000000000001'), number / 7, toDecimal128(number, 4)"],
  ];
  const sizes = [0, 1, 3];

  beforeAll(async () => {
    tmp = await makeTempDir("restore-safety");
    ch = await startClickHouse();
    await run("CREATE DATABASE fam");
    for (const [name, ddl, sel] of families) {
      for (const k of sizes) {
        const t = `fam.${name}_${k}`;
        // GraphiteMergeTree needs a rollup config; skip it when the server has none
        try {
          await run(`CREATE TABLE ${t} ${ddl}`);
        } catch {
          continue;
        }
        if (k > 0) await run(`INSERT INTO ${t} SELECT ${sel} FROM system.numbers LIMIT ${k}`);
      }
    }
    // aggregate states (the walker cannot size them: they go last in the SELECT and are found by the next block's header)
    for (const k of sizes) {
      await run(
        `CREATE TABLE fam.agg_${k} (k UInt64, u AggregateFunction(uniq, UInt64), s AggregateFunction(sum, UInt64), g AggregateFunction(groupArray, String), name String) ENGINE = AggregatingMergeTree ORDER BY k`,
      );
      if (k > 0) {
        await run(
          `INSERT INTO fam.agg_${k} SELECT number % ${k}, uniqState(number), sumState(number), groupArrayState(toString(number)), 'n' FROM (SELECT number FROM system.numbers LIMIT 10) GROUP BY number % ${k}`,
        );
      }
    }
    // a materialized view with an inner table, with 2 rows
    await run("CREATE TABLE fam.src (id UInt64, s String) ENGINE = MergeTree ORDER BY id");
    await run("CREATE MATERIALIZED VIEW fam.mv ENGINE = MergeTree ORDER BY id AS SELECT id, s FROM fam.src");
    await run("INSERT INTO fam.src VALUES (1, 'a'), (2, 'b')");

    // a big table for the safety cases
    await run("CREATE DATABASE prod");
    await run(
      "CREATE TABLE prod.orders (id UInt64, customer String, amount Decimal(12, 2), note Nullable(String), created DateTime) ENGINE = MergeTree ORDER BY id",
    );
    await run(
      "INSERT INTO prod.orders SELECT number, concat('c', toString(number % 1000)), toDecimal64(number % 1000, 2) / 10, if(number % 3 = 0, NULL, 'n'), toDateTime('2024-01-01 00:00:00') + number FROM system.numbers LIMIT 300000",
    );
    await run("CREATE TABLE prod.small (k String) ENGINE = Log");
    await run("INSERT INTO prod.small VALUES ('a'), ('b')");
    await run("CREATE VIEW prod.big_orders AS SELECT id FROM prod.orders WHERE amount > 50");
    await run("CREATE TABLE prod.daily (day Date, c UInt64) ENGINE = SummingMergeTree ORDER BY day");
    await run("CREATE MATERIALIZED VIEW prod.daily_mv TO prod.daily AS SELECT toDate(created) AS day, count() AS c FROM prod.orders GROUP BY day");
  }, 120_000);
  afterAll(async () => {
    await ch?.stop();
    if (tmp) await removeDir(tmp);
  });

  for (const compression of ["zstd", "lz4"] as const) {
    it(`${compression}: every engine family with 0, 1 and 3 rows round-trips with rows counted from the data both ways`, async () => {
      const { sink, backup } = await backupOf({ compression, databases: { include: ["fam"] } });
      const expected = new Map<string, { rows: number; sha: string }>();
      for (const t of await tablesIn("fam")) if (!t.startsWith(".inner")) expected.set(t, await digest("fam", t));
      for (const t of backup.tables) {
        if (t.dataObject === undefined) continue;
        expect(t.rows, `${t.name} rows in the manifest`).toBe(expected.get(t.name)?.rows);
        // a non-empty table never yields an empty object
        if (t.rows > 0) expect(sink.objects.get(t.dataObject)?.size, t.name).toBeGreaterThan(0);
      }
      expect(backup.tables.find((t) => t.name === "mv")?.rows).toBe(2);
      expect(backup.tables.find((t) => t.name === "agg_3")?.rows).toBe(3);
      const r = await restore(sink, backup, { renameDatabases: { fam: `fam_${compression}` } });
      for (const [t, d] of expected) {
        expect(await digest(`fam_${compression}`, t), t).toEqual(d);
        const reported = r.tables.find((x) => x.name === t);
        if (backup.tables.find((x) => x.name === t)?.dataObject) expect(reported?.rows, `${t} rows restored`).toBe(d.rows);
      }
      // in place, replacing every table: refused for the materialized view with an inner table
      // (an Ordinary database cannot rename it aside safely) unless the user accepts that
      await expect(restore(sink, backup, { existingTables: "drop" })).rejects.toThrow(/would destroy fam\.mv .*allowUnstagedDrop.*nothing was changed/);
      const r2 = await restore(sink, backup, { existingTables: "drop", allowUnstagedDrop: true });
      for (const [t, d] of expected) expect(await digest("fam", t), t).toEqual(d);
      expect(r2.tables.find((x) => x.name === "agg_3")?.rows).toBe(3);
      expect(await workTables()).toEqual([]);
    }, 180_000);
  }

  describe("awkward names and columns", () => {
    const db = "wëird db.1";
    const q = (t: string) => `\`${db}\`.\`${t.replace(/`/g, "\\`")}\``;
    const names = ["a.b", "quote`s", "spaces here", "таблица", "1starts_with_digit", "x".repeat(150)];
    beforeAll(async () => {
      await run(`CREATE DATABASE \`${db}\``);
      for (const t of names) {
        await run(
          `CREATE TABLE ${q(t)} (\`col with space\` UInt32, \`dot.col\` String, \`q\`\`c\` Nullable(Float64), d DEFAULT \`col with space\` * 2, m MATERIALIZED \`col with space\` + 1, al ALIAS \`col with space\` - 1, n Nested(x UInt8, y Array(String)), e Enum8('it''s' = 1, '\\\\back' = 2, ',()' = 3)) ENGINE = MergeTree ORDER BY \`col with space\``,
        );
        await run(
          `INSERT INTO ${q(t)} (\`col with space\`, \`dot.col\`, \`q\`\`c\`, \`n.x\`, \`n.y\`, e) SELECT number, if(number = 2, arrayStringConcat(arrayMap(x -> 'long', range(250000))), 'tab\\there'), if(number % 2 = 0, NULL, number / 3), [toUInt8(number), 1], [['a', ''], []], [1, 2, 3][number % 3 + 1] FROM system.numbers LIMIT 5`,
        );
      }
      await run(`CREATE TABLE ${q("null_engine")} (x UInt8) ENGINE = Null`);
      await run(`CREATE TABLE ${q("buf")} (\`col with space\` UInt32) ENGINE = Buffer(\`${db}\`, \`a.b\`, 1, 10, 100, 10000, 1000000, 10000000, 100000000)`);
      await run(`CREATE TABLE ${q("merged")} (\`col with space\` UInt32) ENGINE = Merge(\`${db}\`, '^a')`);
      await run(`CREATE VIEW ${q("view of a.b")} AS SELECT \`col with space\`, d FROM ${q("a.b")}`);
      await run("CREATE DATABASE empty_db");
    }, 120_000);

    for (const compression of ["zstd", "lz4"] as const) {
      it(`${compression}: every table comes back equal, renamed and in place, and MATERIALIZED/ALIAS/DEFAULT columns behave`, async () => {
        const { sink, backup } = await backupOf({ compression, databases: { include: [db, "empty_db"] } });
        const before = new Map<string, { rows: number; sha: string }>();
        for (const t of await tablesIn(db)) before.set(t, await digest(db, t));
        expect(backup.databases).toEqual(["empty_db", db]);
        const target = `${db} ${compression}`;
        await restore(sink, backup, { renameDatabases: { [db]: target, empty_db: `empty_db_${compression}` } });
        for (const [t, d] of before) expect(await digest(target, t), t).toEqual(d);
        expect(await tablesIn(`empty_db_${compression}`)).toEqual([]);
        // materialized and alias columns are computed again, not restored from the dump
        const [row] = await ch.query<{ m: string; al: string; d: string }>(`SELECT m, al, d FROM \`${target}\`.\`a.b\` WHERE \`col with space\` = 3`);
        expect(row).toEqual({ m: "4", al: "2", d: "6" }); // 64-bit integers come as strings in JSON
        const r = await restore(sink, backup, { existingTables: "drop", databases: [db] });
        expect(r.tables.find((t) => t.name === "таблица")?.rows).toBe(5);
        for (const [t, d] of before) expect(await digest(db, t), t).toEqual(d);
        expect(await workTables()).toEqual([]);
      }, 120_000);
    }
  });

  it("a restore fails, naming the table, when the data holds fewer rows than the manifest", async () => {
    const { sink, backup } = await backupOf({ databases: { include: ["prod"] } });
    const b = JSON.parse(JSON.stringify(backup)) as EngineBackupResult;
    const details = b.details as { tables: { name: string; rows: number }[] };
    details.tables.find((t) => t.name === "orders")!.rows += 1;
    const before = await digest("prod", "orders");
    await expect(restore(sink, b, { existingTables: "drop" })).rejects.toThrow(/prod\.orders.*300000 rows after loading the backup's data, the manifest says 300001/);
    expect(await digest("prod", "orders")).toEqual(before);
    expect(await workTables()).toEqual([]);
  }, 120_000);

  describe("a corrupted backup never touches the data", () => {
    let sink: DirSink;
    let backup: EngineBackupResult;
    let before: { rows: number; sha: string };
    beforeAll(async () => {
      ({ sink, backup } = await backupOf({ databases: { include: ["prod"] } }));
      before = await digest("prod", "orders");
      // flip one byte in the middle of the orders object: same length
      const path = sink.pathOf("data/prod/orders.native.zst");
      const f = await open(path, "r+");
      try {
        const { size } = await f.stat();
        const buf = Buffer.alloc(1);
        await f.read(buf, 0, 1, Math.floor(size / 2));
        buf[0] = buf[0]! ^ 0xff;
        await f.write(buf, 0, 1, Math.floor(size / 2));
      } finally {
        await f.close();
      }
    }, 120_000);

    it('with "drop" over the intact copy: fails, the copy is unchanged', async () => {
      await expect(restore(sink, backup, { existingTables: "drop" })).rejects.toThrow(/prod\.orders/);
      expect(await digest("prod", "orders")).toEqual(before);
      expect(await tablesIn("prod")).toEqual(["big_orders", "daily", "daily_mv", "orders", "small"]);
      expect(await workTables()).toEqual([]);
    });

    it('with "fail" into a new database: fails, no database or table is left behind', async () => {
      await expect(restore(sink, backup, { renameDatabases: { prod: "prod_new" } })).rejects.toThrow(/prod_new\.orders|prod\.orders/);
      expect(await ch.query("SELECT name FROM system.databases WHERE name = 'prod_new'")).toEqual([]);
      expect(await workTables()).toEqual([]);
    });

    it("a truncated object is caught too", async () => {
      const path = sink.pathOf("data/prod/orders.native.zst");
      const whole = await readFile(path);
      await writeFile(path, whole.subarray(0, whole.length - 1000));
      try {
        await expect(restore(sink, backup, { existingTables: "drop" })).rejects.toThrow(/prod\.orders/);
        expect(await digest("prod", "orders")).toEqual(before);
      } finally {
        await writeFile(path, whole);
      }
    });
  });

  describe("schema checked before data moves", () => {
    let sink: DirSink;
    let backup: EngineBackupResult;
    beforeAll(async () => {
      ({ sink, backup } = await backupOf({ databases: { include: ["prod"] } }));
      await run("CREATE DATABASE other");
      await run("CREATE TABLE other.orders (id UInt64, note String) ENGINE = MergeTree ORDER BY id");
    }, 120_000);

    it('"fail" into an existing empty table with other columns is refused, naming the table and column', async () => {
      await expect(restore(sink, backup, { renameDatabases: { prod: "other" }, tables: ["prod.orders"] })).rejects.toThrow(
        /other\.orders: column 2 is `note` String in the table and `customer` String in the backup; nothing was changed/,
      );
      expect(await tablesIn("other")).toEqual(["orders"]);
      expect((await digest("other", "orders")).rows).toBe(0);
    });

    it('"append" with other columns is refused; with the same columns it appends', async () => {
      await run("INSERT INTO other.orders VALUES (1, 'keep')");
      await expect(restore(sink, backup, { renameDatabases: { prod: "other" }, tables: ["prod.orders"], existingTables: "append" })).rejects.toThrow(
        /schema.*other\.orders: column 2/,
      );
      expect((await digest("other", "orders")).rows).toBe(1);
      await run("CREATE TABLE other.small (k String) ENGINE = Log");
      await run("INSERT INTO other.small VALUES ('z')");
      const r = await restore(sink, backup, { renameDatabases: { prod: "other" }, tables: ["prod.small"], existingTables: "append" });
      expect(r.tables).toEqual([{ database: "other", name: "small", rows: 2 }]);
      expect((await digest("other", "small")).rows).toBe(3);
      expect(await workTables()).toEqual([]);
    });

    it('"drop" over a table with other columns replaces it (that is what drop means)', async () => {
      const r = await restore(sink, backup, { renameDatabases: { prod: "other" }, tables: ["prod.orders"], existingTables: "drop" });
      expect(r.tables[0]?.rows).toBe(300000);
      expect(await digest("other", "orders")).toEqual(await digest("prod", "orders"));
      expect(await workTables()).toEqual([]);
    });
  });

  it("a failure after the swap rolls everything back: tables renamed back, views created again as they were", async () => {
    const { sink, backup } = await backupOf({ databases: { include: ["prod"] } });
    await run("INSERT INTO prod.small VALUES ('after')"); // differs from the backup
    const before = { orders: await digest("prod", "orders"), small: await digest("prod", "small") };
    const b = JSON.parse(JSON.stringify(backup)) as EngineBackupResult;
    // the view's DDL refers to a column that does not exist: its creation fails after the data was swapped in
    const details = b.details as { tables: { name: string; ddl: string }[] };
    const view = details.tables.find((t) => t.name === "big_orders")!;
    view.ddl = view.ddl.replace("amount > 50", "no_such_column > 50");
    await expect(restore(sink, b, { existingTables: "drop" })).rejects.toThrow(/prod\.big_orders.*every pre-existing table is as it was/s);
    expect(await digest("prod", "orders")).toEqual(before.orders);
    expect(await digest("prod", "small")).toEqual(before.small);
    expect(await tablesIn("prod")).toEqual(["big_orders", "daily", "daily_mv", "orders", "small"]);
    expect(await workTables()).toEqual([]);
    // the materialized view (dropped to be replaced: 18.16 cannot rename one) was created again and fires
    await run("INSERT INTO prod.orders VALUES (999999999, 'c', 1, NULL, toDateTime('2031-05-05 00:00:00'))");
    expect(await ch.query("SELECT toString(c) AS c FROM prod.daily WHERE day = '2031-05-05'")).toEqual([{ c: "1" }]);
    await run("ALTER TABLE prod.orders DELETE WHERE id = 999999999");
    // A mutation runs in the background: let it finish here, not in the middle of the next test's digests.
    await waitUntil("the mutation done", async () => (await ch.query<{ n: string }>("SELECT count() AS n FROM system.mutations WHERE database = 'prod' AND table = 'orders' AND is_done = 0"))[0]!.n === "0", { timeoutMs: 60_000 });
  }, 120_000);

  it("an aborted restore rolls back: the replaced tables are as they were, nothing is left behind", async () => {
    const { sink, backup } = await backupOf({ databases: { include: ["prod"] } });
    await run("INSERT INTO prod.small VALUES ('c')"); // differs from the backup
    const before = { orders: await digest("prod", "orders"), small: await digest("prod", "small") };
    const ac = new AbortController();
    let inserting = false;
    // abort once some data has gone into a staging table
    const poll = setInterval(() => {
      void ch.query<{ c: string }>(`SELECT count() AS c FROM system.tables WHERE startsWith(name, '${STAGING_PREFIX}')`).then((r) => {
        if (Number(r[0]?.c) > 0) {
          inserting = true;
          ac.abort(new Error("stopped by the test"));
        }
      });
    }, 20);
    try {
      await expect(restore(sink, backup, { existingTables: "drop" }, ac.signal)).rejects.toThrow();
    } finally {
      clearInterval(poll);
    }
    expect(inserting).toBe(true);
    expect(await digest("prod", "orders")).toEqual(before.orders);
    expect(await digest("prod", "small")).toEqual(before.small);
    expect(await tablesIn("prod")).toEqual(["big_orders", "daily", "daily_mv", "orders", "small"]);
    expect(await workTables()).toEqual([]);
  }, 120_000);

  describe("every wait is bounded", () => {
    /** A source that sends the first `bytes` of every object, then nothing. */
    const stalling = (sink: DirSink, bytes: number): BackupSource => ({
      async getObject(name, signal) {
        const whole = await sink.getObject(name, signal);
        let sent = 0;
        const out = new Transform({
          transform(chunk: Buffer, _e, cb) {
            if (sent >= bytes) return; // never calls back: the stream stops moving
            sent += chunk.length;
            cb(null, chunk);
          },
        });
        whole.on("error", (err) => out.destroy(err));
        return whole.pipe(out);
      },
    });

    it("a storage that stops sending fails the restore within the idle timeout, naming the storage; nothing changed", async () => {
      const { sink, backup } = await backupOf({ databases: { include: ["prod"] } });
      const before = await digest("prod", "orders");
      const e = engine({ idleTimeoutSeconds: 2 });
      const t0 = Date.now();
      try {
        await expect(
          e.restore({ signal: AbortSignal.timeout(60_000), source: stalling(sink, 100_000), backup, options: { existingTables: "drop" }, logger }),
        ).rejects.toThrow(/the storage stalled: no data moved for 2 s while restoring prod\.(orders|small)/);
      } finally {
        await e.close();
      }
      expect(Date.now() - t0).toBeLessThan(15_000);
      expect(await digest("prod", "orders")).toEqual(before);
      expect(await workTables()).toEqual([]);
    }, 60_000);

    it("a storage that stops taking data fails the backup, naming the storage", async () => {
      const sink = newSink();
      const stuck: BackupSink = {
        putObject: (name, body, signal) =>
          sink.putObject(
            name,
            (body as Readable).pipe(
              new Transform({
                transform(chunk: Buffer, _e, cb) {
                  if (chunk.length > 0 && name.includes("orders")) return; // stops taking data
                  cb(null, chunk);
                },
              }),
            ),
            signal,
          ),
      };
      const e = engine({ idleTimeoutSeconds: 2, databases: { include: ["prod"] } });
      try {
        await expect(e.backup({ backupId: "stall", signal: AbortSignal.timeout(60_000), sink: stuck, logger })).rejects.toThrow(
          /the storage stalled: no data moved for 2 s while dumping prod\.orders/,
        );
      } finally {
        await e.close();
      }
    }, 60_000);

    it("a ClickHouse that stops sending (SIGSTOP) fails the backup, naming ClickHouse", async () => {
      await run("CREATE DATABASE IF NOT EXISTS bulk");
      await run("CREATE TABLE IF NOT EXISTS bulk.t (id UInt64, s String) ENGINE = MergeTree ORDER BY id");
      await run("INSERT INTO bulk.t SELECT number, concat(toString(cityHash64(number)), toString(cityHash64(number + 1)), toString(cityHash64(number + 2))) FROM system.numbers LIMIT 1000000");
      const sink = newSink();
      const e = engine({ idleTimeoutSeconds: 2, databases: { include: ["bulk"] } });
      let stopped = false;
      sink.onBytes = (name) => {
        if (!stopped && name.includes("bulk")) {
          stopped = true;
          process.kill(ch.pid(), "SIGSTOP");
        }
      };
      try {
        await expect(e.backup({ backupId: "stall2", signal: AbortSignal.timeout(60_000), sink, logger })).rejects.toThrow(/ClickHouse stalled: no data moved for 2 s/);
      } finally {
        process.kill(ch.pid(), "SIGCONT");
        await e.close();
      }
      expect(stopped).toBe(true);
      await run("DROP DATABASE bulk");
    }, 60_000);
  });

  it("cleanupInterrupted drops staging tables and puts moved-aside tables back (or keeps them beside a restored one)", async () => {
    await run("CREATE DATABASE crash");
    await run(`CREATE TABLE crash.\`${STAGING_PREFIX}0badc0de_t\` (x UInt8) ENGINE = Log`);
    await run(`CREATE TABLE crash.\`${ASIDE_PREFIX}0badc0de_gone\` (x UInt8) ENGINE = Log`);
    await run(`INSERT INTO crash.\`${ASIDE_PREFIX}0badc0de_gone\` VALUES (7)`);
    await run(`CREATE TABLE crash.\`${ASIDE_PREFIX}0badc0de_both\` (x UInt8) ENGINE = Log`);
    await run("CREATE TABLE crash.both (x UInt8) ENGINE = Log");
    const e = engine();
    try {
      const r = await e.cleanupInterrupted!(AbortSignal.timeout(30_000));
      expect(r).toEqual({ removed: [`crash.${STAGING_PREFIX}0badc0de_t`], restored: ["crash.gone"], kept: [`crash.${ASIDE_PREFIX}0badc0de_both`] });
    } finally {
      await e.close();
    }
    expect(await tablesIn("crash")).toEqual([`${ASIDE_PREFIX}0badc0de_both`, "both", "gone"]);
    expect(await ch.query("SELECT x FROM crash.gone")).toEqual([{ x: 7 }]);
  });
});
