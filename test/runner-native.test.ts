// The runner with the native method on ClickHouse 26.x (chDB) against MinIO:
// full and incremental backups chosen by fullEvery, retention that never
// breaks an incremental chain, restore from an incremental.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startChdb, startMinio, type ChdbEngine, type MinioServer } from "./env/index.ts";
import { makeRunner, runnerConfig, s3Storage, silentLogger, tableChecksum } from "./helpers/runner.ts";
import { createClickHouseEngine } from "../pkg/backupengine/clickhouse/index.ts";

describe("runner, native method on ClickHouse 26 (chDB)", () => {
  let ch: ChdbEngine;
  let minio: MinioServer;
  let bucket: string;
  beforeAll(async () => {
    [ch, minio] = await Promise.all([startChdb(), startMinio()]);
    bucket = await minio.createBucket();
    await ch.exec("CREATE DATABASE shop");
    await ch.exec("CREATE TABLE shop.orders (id UInt64, kind LowCardinality(String), ts DateTime64(3), amount Decimal(18, 2)) ENGINE = MergeTree ORDER BY id");
  });
  afterAll(async () => {
    await ch?.stop();
    await minio?.stop();
  });

  it("takes full and incremental backups, keeps the chain through retention, and restores from an incremental", async () => {
    const config = runnerConfig({
      clickhouse: { url: "http://127.0.0.1:1", username: "default", password: "" },
      storage: s3Storage(minio, bucket, "native"),
      method: "native",
      fullEvery: 3,
      databases: ["shop"],
      // Keep only the newest backup by label: everything else survives only as a base of it.
      retention: { hourly: 1 },
    });
    const engine = createClickHouseEngine(config.definition.clickhouse, { logger: silentLogger(), client: ch.client(), nativePollMs: 100 });
    let now = new Date("2026-03-01T10:00:00Z");
    const runner = makeRunner(config, { engine, clock: () => now });
    await runner.init();
    const ids: string[] = [];
    const bases: (string | undefined)[] = [];
    for (let i = 0; i < 4; i++) {
      await ch.exec(`INSERT INTO shop.orders SELECT number + ${i * 10_000}, ['a','b'][number % 2 + 1], now64(3), number / 10 FROM numbers(10000)`);
      const op = await runner.startBackup("api").finished;
      expect(op.error).toBeUndefined();
      ids.push(op.backupId!);
      bases.push(runner.catalog.get(op.backupId!)?.manifest.baseBackupId);
      now = new Date(now.getTime() + 3_600_000);
    }
    // fullEvery 3: full, incremental, incremental, full. Retention (hourly: 1) keeps the newest and what it builds on.
    expect(bases).toEqual([undefined, ids[0], ids[1], undefined]);
    expect(runner.catalog.list().map((e) => e.manifest.id)).toEqual([ids[3]]);

    // A chain: take two more (incremental on ids[3]) and check the bases survive.
    for (let i = 4; i < 6; i++) {
      await ch.exec(`INSERT INTO shop.orders SELECT number + ${i * 10_000}, 'c', now64(3), 1 FROM numbers(10000)`);
      const op = await runner.startBackup("api").finished;
      expect(op.error).toBeUndefined();
      ids.push(op.backupId!);
      bases.push(runner.catalog.get(op.backupId!)?.manifest.baseBackupId);
      now = new Date(now.getTime() + 3_600_000);
    }
    expect(bases.slice(4)).toEqual([ids[3], ids[4]]);
    const kept = runner.catalog.list().map((e) => e.manifest.id).sort();
    expect(kept).toEqual([ids[3], ids[4], ids[5]].sort());
    expect(runner.catalog.get(ids[5]!)?.manifest.baseBackupId).toBe(ids[4]);
    expect(runner.catalog.get(ids[4]!)?.manifest.baseBackupId).toBe(ids[3]);
    // ClickHouse wrote the data itself: the manifest records its size from system.backups.
    expect(runner.catalog.get(ids[3]!)?.manifest.totalBytes).toBeGreaterThan(100_000);

    const source = await tableChecksum(ch, "shop.orders");
    expect(source.rows).toBe(60_000);
    const r = await runner.startRestore({ backup: ids[5]!, renameDatabases: { shop: "shop_restored" }, existingTables: "fail" }).finished;
    expect(r.error).toBeUndefined();
    expect(await tableChecksum(ch, "shop_restored.orders")).toEqual(source);
  });
});
