// The ClickHouse engine's dump method against a real ClickHouse 18.16 server:
// round trips (same and renamed databases), existing-table policies, and
// faults (server killed mid-dump, abort mid-dump, wrong password).
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Writable, type Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { ClickHouseSettings } from "@clickhouse/client";
import winston from "winston";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clickhouseRunnerConfig, type ClickHouseRunnerConfigInput } from "../pkg/apis/clickhouse.ts";
import { createClickHouseEngine, registerClickHouse } from "../pkg/backupengine/clickhouse/index.ts";
import { EngineRegistry } from "../pkg/backupengine/registry.ts";
import { TrailingExceptionCheck } from "../pkg/backupengine/clickhouse/streams.ts";
import { httpSelect } from "../pkg/backupengine/clickhouse/httpselect.ts";
import { EngineError, type EngineBackupResult, type Progress, type RestoreOptions } from "../pkg/backupengine/types.ts";
import { freePort, makeTempDir, removeDir, startClickHouse, type ClickHouseServer } from "./env/index.ts";
import { waitUntil } from "./env/proc.ts";
import { DirSink } from "./helpers/sink.ts";

const logger = winston.createLogger({ silent: true });

describe("ClickHouse engine, dump method, ClickHouse 18.16 server", () => {
  let ch: ClickHouseServer;
  let tmp: string;
  let n = 0;
  const newSink = () => new DirSink(join(tmp, `b${++n}`));
  /** No dump query of `big` is left running on the server. */
  const waitNoDumpQuery = () =>
    waitUntil("no dump query left running", async () => (await ch.query("SELECT query FROM system.processes WHERE query LIKE 'SELECT * FROM `big`%'")).length === 0, { timeoutMs: 10_000, intervalMs: 100 });
  const engine = (over: Partial<ClickHouseRunnerConfigInput> = {}) =>
    createClickHouseEngine(clickhouseRunnerConfig.parse({ url: ch.url, username: ch.username, password: ch.password, ...over }), { logger });

  /** count and an order-independent digest of a table's (or view's) rows */
  const digest = async (db: string, t: string) => {
    const c = ch.client();
    try {
      const rs = await c.query({ query: `SELECT * FROM \`${db}\`.\`${t}\``, format: "TabSeparated" });
      const lines = (await rs.text()).split("\n").filter((l) => l.length > 0).sort();
      return { rows: lines.length, sha: createHash("sha256").update(lines.join("\n")).digest("hex") };
    } finally {
      await c.close();
    }
  };
  const tablesIn = async (db: string) =>
    (await ch.query<{ name: string }>(`SELECT name FROM system.tables WHERE database = '${db}' ORDER BY name`)).map((r) => r.name);
  /** 18.16 needs this setting for inserts into tables with LowCardinality columns that feed materialized views */
  const lcExec = async (q: string) => {
    const c = ch.client();
    try {
      await c.command({ query: q, clickhouse_settings: { allow_experimental_low_cardinality_type: 1 } as ClickHouseSettings });
    } finally {
      await c.close();
    }
  };
  const ddlOf = async (db: string, t: string) => (await ch.query<{ statement: string }>(`SHOW CREATE TABLE \`${db}\`.\`${t}\``))[0]?.statement ?? "";

  const checked = ["shop.orders", "shop.customers", "shop.empty_t", "shop.logt", "shop.mem", "shop.daily", "shop.by_status", "shop.v", "logs.events", "logs.all_events", "logs.order_ids"];
  let before: Record<string, { rows: number; sha: string }>;
  let backup: EngineBackupResult;
  let backupSink: DirSink;

  beforeAll(async () => {
    tmp = await makeTempDir("engine-ch-server");
    ch = await startClickHouse();
    const c = ch.client();
    const run = (q: string, lc = false) => c.command({ query: q, clickhouse_settings: lc ? ({ allow_experimental_low_cardinality_type: 1 } as ClickHouseSettings) : {} });
    try {
      await run("CREATE DATABASE shop");
      await run("CREATE DATABASE logs");
      await run(
        "CREATE TABLE shop.orders (id UInt64, customer String, amount Decimal(12, 2), note Nullable(String), tags Array(String), status LowCardinality(String), created DateTime) ENGINE = MergeTree ORDER BY id",
        true,
      );
      await run("CREATE TABLE shop.customers (id UInt64, name String, version UInt32) ENGINE = ReplacingMergeTree(version) ORDER BY id");
      await run("CREATE TABLE shop.empty_t (id UInt64, x Float64) ENGINE = MergeTree ORDER BY id");
      await run("CREATE TABLE shop.logt (k String, v Int64) ENGINE = Log");
      await run("CREATE TABLE shop.mem (k String) ENGINE = Memory");
      await run("CREATE TABLE shop.daily (day Date, cnt UInt64) ENGINE = SummingMergeTree ORDER BY day");
      await run("CREATE MATERIALIZED VIEW shop.daily_mv TO shop.daily AS SELECT toDate(created) AS day, count() AS cnt FROM shop.orders GROUP BY day");
      await run("CREATE MATERIALIZED VIEW shop.by_status ENGINE = MergeTree ORDER BY (status, id) AS SELECT toString(status) AS status, id FROM shop.orders", true);
      await run("CREATE VIEW shop.v AS SELECT id, amount FROM shop.orders WHERE amount > 50");
      await run("CREATE TABLE logs.events (ts DateTime, level String, msg String) ENGINE = MergeTree ORDER BY ts");
      await run("CREATE TABLE logs.all_events AS logs.events ENGINE = Merge(logs, '^events$')");
      await run("CREATE VIEW logs.order_ids AS SELECT id FROM shop.orders");
      await run(
        "INSERT INTO shop.orders SELECT number, concat('c', toString(number % 100)), toDecimal64(number % 1000, 2) / 10, if(number % 3 = 0, NULL, concat('n', toString(number))), [toString(number % 5), 'x'], if(number % 2 = 0, 'paid', 'open'), toDateTime('2024-01-01 00:00:00') + number * 97 FROM system.numbers LIMIT 20000",
        true,
      );
      await run("INSERT INTO shop.customers SELECT number % 500, concat('name', toString(number)), number FROM system.numbers LIMIT 2000");
      await run("INSERT INTO shop.logt VALUES ('a', 1), ('b', -2), ('tab\\there', 3)");
      await run("INSERT INTO shop.mem VALUES ('m1'), ('m2')");
      await run("INSERT INTO logs.events SELECT toDateTime('2024-01-01 00:00:00') + number, if(number % 10 = 0, 'error', 'info'), concat('message ', toString(number)) FROM system.numbers LIMIT 5000");
    } finally {
      await c.close();
    }
    before = {};
    for (const k of checked) {
      const [db, t] = k.split(".") as [string, string];
      before[k] = await digest(db, t);
    }
  });
  afterAll(async () => {
    await ch?.stop();
    if (tmp) await removeDir(tmp);
  });

  it("is registered as 'clickhouse' and validates its config", () => {
    const reg = registerClickHouse(new EngineRegistry());
    expect(reg.names()).toContain("clickhouse");
    expect(() => reg.create("clickhouse", { url: "not a url" }, { logger })).toThrow(/invalid ClickHouse engine config: url/);
    const e = reg.create("clickhouse", { url: ch.url, username: ch.username, password: ch.password }, { logger });
    expect(e.name).toBe("clickhouse");
    return e.close();
  });

  it("checks the connection and reports the version", async () => {
    const e = engine();
    try {
      expect((await e.check(AbortSignal.timeout(10_000))).version).toMatch(/^18\.16\./);
    } finally {
      await e.close();
    }
  });

  it("backs up several databases: DDL for every object, data for tables and the inner-table view", async () => {
    const e = engine();
    backupSink = newSink();
    const events: Progress[] = [];
    try {
      backup = await e.backup({ backupId: "b1", signal: AbortSignal.timeout(60_000), sink: backupSink, logger, onProgress: (p) => events.push(p) });
    } finally {
      await e.close();
    }
    expect(backup.method).toBe("dump");
    expect(backup.engineVersion).toMatch(/^18\.16\./);
    expect(backup.databases).toEqual(["default", "logs", "shop"]); // default is an ordinary (here empty) database
    const byKey = new Map(backup.tables.map((t) => [`${t.database}.${t.name}`, t]));
    expect([...byKey.keys()].sort()).toEqual(
      ["logs.all_events", "logs.events", "logs.order_ids", "shop.by_status", "shop.customers", "shop.daily", "shop.daily_mv", "shop.empty_t", "shop.logt", "shop.mem", "shop.orders", "shop.v"].sort(),
    );
    expect(byKey.get("shop.orders")).toMatchObject({ rows: 20000, dataObject: "data/shop/orders.native.zst" });
    expect(byKey.get("shop.by_status")).toMatchObject({ rows: 20000, dataObject: "data/shop/by_status.native.zst" });
    expect(byKey.get("shop.mem")?.rows).toBe(2);
    expect(byKey.get("shop.empty_t")).toMatchObject({ rows: 0, dataObject: "data/shop/empty_t.native.zst" });
    for (const k of ["shop.v", "shop.daily_mv", "logs.all_events", "logs.order_ids"]) expect(byKey.get(k)).toMatchObject({ rows: 0, bytes: 0, dataObject: undefined });
    // every object written is listed with its checksum, and nothing else was written
    expect(backup.objects.map((o) => o.name).sort()).toEqual([...backupSink.objects.keys()].sort());
    expect(backup.objects).toHaveLength(8);
    for (const o of backup.objects) expect(o.sha256).toMatch(/^[0-9a-f]{64}$/);
    const details = backup.details as { databases: { name: string; ddl: string }[]; tables: { name: string; ddl: string; kind: string }[] };
    expect(details.databases.map((d) => d.ddl)).toEqual([
      "CREATE DATABASE default ENGINE = Ordinary",
      "CREATE DATABASE logs ENGINE = Ordinary",
      "CREATE DATABASE shop ENGINE = Ordinary",
    ]);
    expect(details.tables.find((t) => t.name === "daily_mv")).toMatchObject({ kind: "schema" });
    expect(details.tables.find((t) => t.name === "by_status")).toMatchObject({ kind: "view-data" });
    expect(details.tables.find((t) => t.name === "orders")?.ddl).toMatch(/^CREATE TABLE shop\.orders/);
    // progress: ends with every data table done
    const last = events.at(-1);
    expect(last).toMatchObject({ tablesDone: 8, tablesTotal: 8, rows: 20000 + 2000 + 0 + 3 + 2 + byKey.get("shop.daily")!.rows + 20000 + 5000 });
    expect(last!.bytes).toBe(backup.objects.reduce((s, o) => s + o.size, 0));
  });

  const restore = async (options: Partial<RestoreOptions>, sink = backupSink, b = backup) => {
    const e = engine();
    try {
      return await e.restore({
        signal: AbortSignal.timeout(60_000),
        source: sink,
        backup: JSON.parse(JSON.stringify(b)) as EngineBackupResult, // as read back from a manifest
        options: { existingTables: "fail", ...options },
        logger,
      });
    } finally {
      await e.close();
    }
  };

  it("restores into the same databases after they were dropped; data and views work", async () => {
    await ch.exec("DROP DATABASE logs");
    await ch.exec("DROP DATABASE shop");
    const r = await restore({});
    expect(r.databases.sort()).toEqual(["default", "logs", "shop"]);
    expect(r.tables.find((t) => t.name === "orders")?.rows).toBe(20000);
    for (const k of checked) {
      const [db, t] = k.split(".") as [string, string];
      expect(await digest(db, t), k).toEqual(before[k]);
    }
    expect(await tablesIn("shop")).toContain(".inner.by_status");
    // the materialized views were recreated and fire again
    await lcExec("INSERT INTO shop.orders VALUES (99999, 'c', 1.5, NULL, [], 'paid', toDateTime('2030-01-01 00:00:00'))");
    expect(await ch.query("SELECT cnt FROM shop.daily WHERE day = '2030-01-01'")).toEqual([{ cnt: "1" }]);
    expect(await ch.query("SELECT count() AS c FROM shop.by_status WHERE id = 99999")).toEqual([{ c: "1" }]);
    await ch.exec("ALTER TABLE shop.orders DELETE WHERE id = 99999");
  });

  it("restores into renamed databases, rewriting references in views", async () => {
    const r = await restore({ renameDatabases: { shop: "shop2", logs: "logs2" } });
    expect(r.databases.sort()).toEqual(["default", "logs2", "shop2"]);
    for (const k of checked) {
      const [db, t] = k.split(".") as [string, string];
      expect(await digest(`${db}2`, t), k).toEqual(before[k]);
    }
    expect(await ddlOf("logs2", "order_ids")).toContain("FROM shop2.orders");
    expect(await ddlOf("shop2", "daily_mv")).toMatch(/TO shop2\.daily .*FROM shop2\.orders/s);
    expect(await ddlOf("logs2", "all_events")).toContain("Merge(logs2, '^events$')");
    await lcExec("INSERT INTO shop2.orders VALUES (77777, 'c', 1.5, NULL, [], 'open', toDateTime('2031-01-01 00:00:00'))");
    expect(await ch.query("SELECT cnt FROM shop2.daily WHERE day = '2031-01-01'")).toEqual([{ cnt: "1" }]);
    expect(await ch.query("SELECT count() AS c FROM shop.daily WHERE day = '2031-01-01'")).toEqual([{ c: "0" }]);
  });

  it("policy fail: a non-empty target table stops the restore before anything changes", async () => {
    await ch.exec("CREATE DATABASE shop3");
    await ch.exec("CREATE TABLE shop3.customers (id UInt64, name String, version UInt32) ENGINE = ReplacingMergeTree(version) ORDER BY id");
    await ch.exec("INSERT INTO shop3.customers VALUES (1, 'keep me', 1)");
    const err = await restore({ renameDatabases: { shop: "shop3", logs: "logs3" } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EngineError);
    expect((err as EngineError).retryable).toBe(false);
    expect((err as Error).message).toMatch(/target table shop3\.customers already holds data.*nothing was changed/);
    expect(await tablesIn("shop3")).toEqual(["customers"]);
    expect(await ch.query("SELECT name FROM system.databases WHERE name = 'logs3'")).toEqual([]);
    expect(await digest("shop3", "customers")).toMatchObject({ rows: 1 });
  });

  it("policy fail reuses an existing empty table", async () => {
    await ch.exec("TRUNCATE TABLE shop3.customers");
    await restore({ databases: ["shop"], tables: ["shop.customers"], renameDatabases: { shop: "shop3" } });
    expect(await digest("shop3", "customers")).toEqual(before["shop.customers"]);
  });

  it("policy drop replaces existing tables; policy append adds to them", async () => {
    await lcExec("INSERT INTO shop2.orders VALUES (88888, 'c', 1.5, NULL, [], 'open', now())");
    await ch.exec("INSERT INTO shop2.mem VALUES ('extra')");
    // shop.by_status is a materialized view with an inner table in an Ordinary database: it cannot be moved
    // aside and back safely, so "drop" is refused for it unless the user accepts dropping it first
    await expect(restore({ databases: ["shop"], renameDatabases: { shop: "shop2" }, existingTables: "drop" })).rejects.toThrow(/would destroy shop2\.by_status/);
    await restore({ databases: ["shop"], renameDatabases: { shop: "shop2" }, existingTables: "drop", allowUnstagedDrop: true });
    for (const k of checked.filter((k) => k.startsWith("shop."))) {
      expect(await digest("shop2", k.slice(5)), k).toEqual(before[k]);
    }
    await restore({ tables: ["shop.logt", "shop.mem"], renameDatabases: { shop: "shop2" }, existingTables: "append" });
    expect((await digest("shop2", "logt")).rows).toBe(6);
    expect((await digest("shop2", "mem")).rows).toBe(4);
    expect(await digest("shop2", "orders")).toEqual(before["shop.orders"]);
  });

  it("refuses the native method on 18.16", async () => {
    const e = engine({ method: "native" });
    try {
      await expect(e.check(AbortSignal.timeout(10_000))).rejects.toThrow(/native method needs ClickHouse 22\.8 or newer.*18\.16/);
      const sink = newSink();
      const err = await e.backup({ backupId: "n", signal: AbortSignal.timeout(10_000), sink, logger }).catch((x: unknown) => x);
      expect(err).toBeInstanceOf(EngineError);
      expect((err as EngineError).retryable).toBe(false);
    } finally {
      await e.close();
    }
  });

  it("wrong password: a clear terminal error that shows no password", async () => {
    const wrong = "not-the-password-42";
    const e = engine({ password: wrong });
    try {
      const err = await e.check(AbortSignal.timeout(10_000)).catch((x: unknown) => x);
      expect(err).toBeInstanceOf(EngineError);
      expect((err as EngineError).retryable).toBe(false);
      expect((err as Error).message).toMatch(/^ClickHouse authentication failed for user backup: Wrong password for user backup/);
      expect(JSON.stringify({ m: (err as Error).message, c: String((err as Error).cause) })).not.toContain(wrong);
      const err2 = await e.backup({ backupId: "x", signal: AbortSignal.timeout(10_000), sink: newSink(), logger }).catch((x: unknown) => x);
      expect((err2 as Error).message).toMatch(/authentication failed for user backup/);
    } finally {
      await e.close();
    }
  });

  it("an unreachable server is a retryable error", async () => {
    const port = await freePort();
    const e = createClickHouseEngine(clickhouseRunnerConfig.parse({ url: `http://127.0.0.1:${port}`, password: "x" }), { logger });
    try {
      const err = await e.check(AbortSignal.timeout(10_000)).catch((x: unknown) => x);
      expect(err).toBeInstanceOf(EngineError);
      expect((err as EngineError).retryable).toBe(true);
      expect((err as Error).message).toMatch(/unreachable.*ECONNREFUSED/);
    } finally {
      await e.close();
    }
  });

  describe("faults mid-dump", () => {
    beforeAll(async () => {
      await ch.exec("CREATE DATABASE big");
      await ch.exec("CREATE TABLE big.numbers (id UInt64, s String, f Float64) ENGINE = MergeTree ORDER BY id");
      await ch.exec("INSERT INTO big.numbers SELECT number, toString(cityHash64(number)), number / 3 FROM system.numbers LIMIT 4000000");
    });

    it("abort via the signal rejects promptly and aborts the sink's put", async () => {
      const e = engine({ databases: { include: ["big"] } });
      const sink = newSink();
      const ac = new AbortController();
      let abortedAt = 0;
      sink.onBytes = () => {
        if (!abortedAt) {
          abortedAt = Date.now();
          ac.abort();
        }
      };
      try {
        const err = await e.backup({ backupId: "abort", signal: ac.signal, sink, logger }).catch((x: unknown) => x);
        const took = Date.now() - abortedAt;
        expect(abortedAt).toBeGreaterThan(0);
        expect((err as Error).name).toBe("AbortError");
        expect(took).toBeLessThan(5000); // a whole dump of big.numbers would take longer; loose enough for a loaded machine
        expect(sink.puts).toHaveLength(1);
        expect(sink.puts[0]).toMatchObject({ name: "data/big/numbers.native.zst", status: "aborted" });
        expect(existsSync(sink.pathOf("data/big/numbers.native.zst"))).toBe(false);
        expect(await readdir(join(sink.dir, "data", "big"))).toEqual([]);
      } finally {
        await e.close();
      }
      // the server is still fine and has no query left running (the cancelled query ends within seconds)
      await waitNoDumpQuery();
    });

    it("the server killed mid-dump gives a retryable error and no complete object", async () => {
      const e = engine({ databases: { include: ["big"] } });
      const sink = newSink();
      let killed: Promise<void> | undefined;
      sink.onBytes = () => {
        killed ??= ch.kill();
      };
      try {
        const err = await e.backup({ backupId: "kill", signal: AbortSignal.timeout(60_000), sink, logger }).catch((x: unknown) => x);
        expect(killed).toBeDefined();
        expect(err).toBeInstanceOf(EngineError);
        expect((err as EngineError).retryable).toBe(true);
        expect((err as Error).message).toMatch(/while dumping big\.numbers/);
        expect(sink.puts[0]?.status).not.toBe("ok");
        expect(sink.objects.size).toBe(0);
      } finally {
        await killed;
        await e.close();
        await ch.start();
      }
      expect(await ch.query("SELECT count() AS c FROM big.numbers")).toEqual([{ c: "4000000" }]);
    });

    it("abort mid-restore rejects promptly", async () => {
      const e = engine({ databases: { include: ["big"] } });
      const sink = newSink();
      const b = await e.backup({ backupId: "big", signal: AbortSignal.timeout(60_000), sink, logger });
      const ac = new AbortController();
      let abortedAt = 0;
      const err = await e
        .restore({
          signal: ac.signal,
          source: sink,
          backup: b,
          options: { existingTables: "fail", renameDatabases: { big: "big_restored" } },
          logger,
          onProgress: (p) => {
            if (p.bytes > 0 && !abortedAt) {
              abortedAt = Date.now();
              ac.abort();
            }
          },
        })
        .catch((x: unknown) => x);
      await e.close();
      expect(abortedAt).toBeGreaterThan(0);
      expect((err as Error).name).toBe("AbortError");
      expect(Date.now() - abortedAt).toBeLessThan(5000);
    });

    it("a failing sink fails the backup with the sink's own error", async () => {
      const e = engine({ databases: { include: ["big"] } });
      const sink = newSink();
      sink.onBytes = () => {
        throw new Error("disk full (test)");
      };
      try {
        const err = await e.backup({ backupId: "sinkfail", signal: AbortSignal.timeout(60_000), sink, logger }).catch((x: unknown) => x);
        expect(err).not.toBeInstanceOf(EngineError);
        expect((err as Error).message).toBe("disk full (test)");
      } finally {
        await e.close();
      }
      await waitNoDumpQuery();
    });

    it("a corrupt backup object fails the restore with a terminal error naming it", async () => {
      const e = engine({ databases: { include: ["shop"] }, tables: { include: ["shop.orders"] } });
      const sink = newSink();
      try {
        const b = await e.backup({ backupId: "corrupt", signal: AbortSignal.timeout(60_000), sink, logger });
        const path = sink.pathOf("data/shop/orders.native.zst");
        const buf = await readFile(path);
        for (let i = 100; i < 200; i++) buf[i] = (buf[i] ?? 0) ^ 0xff;
        await writeFile(path, buf);
        const err = await e
          .restore({ signal: AbortSignal.timeout(60_000), source: sink, backup: b, options: { existingTables: "fail", renameDatabases: { shop: "shop_corrupt" } }, logger })
          .catch((x: unknown) => x);
        expect(err).toBeInstanceOf(EngineError);
        expect((err as EngineError).retryable).toBe(false);
        expect((err as Error).message).toMatch(/^reading the backup of shop\.orders \(data\/shop\/orders\.native\.zst\) failed/);
      } finally {
        await e.close();
      }
    });

    it("notices an exception that 18.16 writes into a response that already started", async () => {
      const c = ch.client();
      try {
        const r = await c.exec({ query: "SELECT number, throwIf(number = 2500000) FROM system.numbers LIMIT 4000000 FORMAT Native" });
        const tag = r.response_headers["x-clickhouse-exception-tag"];
        expect(r.http_status_code).toBe(200);
        await expect(
          pipeline(r.stream as Readable, new TrailingExceptionCheck(typeof tag === "string" ? tag : undefined), new Writable({ write: (_c, _e, cb) => cb() })),
        ).rejects.toThrow(/Code: 395.*throwIf/);
      } finally {
        await c.close();
      }
      // the same through the dump's raw-socket reader
      const r = await httpSelect(
        { url: ch.url, username: ch.username, password: ch.password, timeoutMs: 60_000 },
        "SELECT number, throwIf(number = 2500000) FROM system.numbers LIMIT 4000000 FORMAT Native",
        {},
        AbortSignal.timeout(60_000),
      );
      await expect(pipeline(r.stream, new TrailingExceptionCheck(r.headers["x-clickhouse-exception-tag"]), new Writable({ write: (_c, _e, cb) => cb() }))).rejects.toThrow(
        /Code: 395.*throwIf/,
      );
    });
  });
});
