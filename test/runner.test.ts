// The runner end to end on real servers: ClickHouse 18.16 (dump method) to
// MinIO and to the filesystem; catalog rebuilt from the bucket; leftovers
// cleaned; single-backup mode; faults (MinIO down mid-upload, corrupted
// object, wrong credentials).
import { PutObjectCommand, ListMultipartUploadsCommand } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startClickHouse, startMinio, makeTempDir, removeDir, type ClickHouseServer, type MinioServer } from "./env/index.ts";
import { backupNow, makeRunner, runnerConfig, s3Storage, tableChecksum } from "./helpers/runner.ts";

const TABLES = ["shop.orders", "shop.customers", "shop.empty", "metrics.events"];

async function seed(ch: ClickHouseServer, rows = 200_000): Promise<void> {
  await ch.exec("CREATE DATABASE IF NOT EXISTS shop");
  await ch.exec("CREATE DATABASE IF NOT EXISTS metrics");
  await ch.exec("CREATE TABLE shop.orders (id UInt64, customer UInt32, amount Decimal(18, 2), note Nullable(String), tags Array(String), ts DateTime) ENGINE = MergeTree ORDER BY id");
  await ch.exec("CREATE TABLE shop.customers (id UInt32, name String, version UInt32) ENGINE = ReplacingMergeTree(version) ORDER BY id");
  await ch.exec("CREATE TABLE shop.empty (id UInt64) ENGINE = MergeTree ORDER BY id");
  await ch.exec("CREATE TABLE metrics.events (day Date, kind String, n UInt64) ENGINE = MergeTree ORDER BY (day, kind)");
  await ch.exec("CREATE VIEW shop.big_orders AS SELECT id, amount FROM shop.orders WHERE amount > 500");
  await ch.exec("CREATE TABLE metrics.daily (day Date, n UInt64) ENGINE = SummingMergeTree ORDER BY day");
  await ch.exec("CREATE MATERIALIZED VIEW metrics.daily_mv TO metrics.daily AS SELECT day, sum(n) AS n FROM metrics.events GROUP BY day");
  await ch.exec(
    `INSERT INTO shop.orders SELECT number, number % 1000, toDecimal64(number % 100000, 2) / 100, if(number % 3 = 0, NULL, concat('note ', toString(number))), [toString(number % 7), 'x'], toDateTime('2026-01-01 00:00:00') + number FROM system.numbers LIMIT ${rows}`,
  );
  await ch.exec("INSERT INTO shop.customers SELECT number, concat('c', toString(number)), 1 FROM system.numbers LIMIT 1000");
  await ch.exec("INSERT INTO metrics.events SELECT toDate('2026-01-01') + number % 30, ['a', 'b', 'c'][number % 3 + 1], number FROM system.numbers LIMIT 50000");
}

async function checksums(ch: ClickHouseServer, tables = [...TABLES, "metrics.daily"]) {
  const out: Record<string, { rows: number; sum: string }> = {};
  for (const t of tables) out[t] = await tableChecksum(ch, t);
  return out;
}

describe("runner on ClickHouse 18.16", () => {
  let ch: ClickHouseServer;
  let minio: MinioServer;
  let bucket: string;
  let before: Awaited<ReturnType<typeof checksums>>;
  beforeAll(async () => {
    [ch, minio] = await Promise.all([startClickHouse(), startMinio()]);
    bucket = await minio.createBucket();
    await seed(ch);
    before = await checksums(ch);
  });
  afterAll(async () => {
    await ch?.stop();
    await minio?.stop();
  });

  it("backs up to MinIO, rebuilds the catalog from the bucket and restores into the same and renamed databases", async () => {
    const config = runnerConfig({ clickhouse: ch, storage: s3Storage(minio, bucket) });
    const runner = makeRunner(config);
    await runner.init();
    const op = await backupNow(runner);
    expect(op.error).toBeUndefined();
    expect(op.state).toBe("succeeded");
    const id = op.backupId!;

    // A fresh runner (lost volume) sees the same backup from the bucket alone.
    const fresh = makeRunner(config);
    await fresh.init();
    const entry = fresh.catalog.get(id)!;
    expect(entry).toBeDefined();
    const m = entry.manifest;
    expect(m.engineVersion).toMatch(/^18\.16/);
    expect(m.method).toBe("dump");
    expect(m.databases).toEqual(expect.arrayContaining(["metrics", "shop"]));
    expect(m.tables.find((t) => t.database === "shop" && t.name === "orders")?.rows).toBe(200_000);
    expect(m.objects.every((o) => /^[0-9a-f]{64}$/.test(o.sha256))).toBe(true);
    expect(m.labels.length).toBeGreaterThan(0);

    await ch.exec("DROP DATABASE shop");
    await ch.exec("DROP DATABASE metrics");
    const restore = await fresh.startRestore({ backup: "latest", existingTables: "fail" }).finished;
    expect(restore.error).toBeUndefined();
    expect(await checksums(ch)).toEqual(before);

    const renamed = await fresh.startRestore({ backup: id, databases: ["shop"], renameDatabases: { shop: "shop_copy" }, existingTables: "fail" }).finished;
    expect(renamed.error).toBeUndefined();
    for (const t of ["orders", "customers", "empty"]) expect(await tableChecksum(ch, `shop_copy.${t}`)).toEqual(before[`shop.${t}`]);
    await ch.exec("DROP DATABASE shop_copy");
  });

  it("refuses to restore into non-empty tables with policy fail and changes nothing", async () => {
    const runner = makeRunner(runnerConfig({ clickhouse: ch, storage: s3Storage(minio, bucket) }));
    await runner.init();
    const op = await runner.startRestore({ backup: "latest", existingTables: "fail" }).finished;
    expect(op.state).toBe("failed");
    expect(op.error).toMatch(/shop\.orders/);
    expect(await checksums(ch)).toEqual(before);
  });

  it("backs up to and restores from the filesystem backend", async () => {
    const dir = await makeTempDir("fs-store");
    try {
      const runner = makeRunner(runnerConfig({ clickhouse: ch, storage: { filesystem: { path: dir } }, databases: ["shop"] }));
      await runner.init();
      const op = await backupNow(runner);
      expect(op.state).toBe("succeeded");
      const r = await runner.startRestore({ backup: op.backupId!, renameDatabases: { shop: "shop_fs" }, existingTables: "fail" }).finished;
      expect(r.error).toBeUndefined();
      expect(await tableChecksum(ch, "shop_fs.orders")).toEqual(before["shop.orders"]);
      await ch.exec("DROP DATABASE shop_fs");
    } finally {
      await removeDir(dir);
    }
  });

  it("single-backup mode writes exactly one backup to the target and restores from it", async () => {
    const config = runnerConfig({ clickhouse: ch, storage: s3Storage(minio, bucket, "exports"), mode: "single", singleTarget: "one-off/orders-2026", databases: ["shop"] });
    const runner = makeRunner(config);
    const op = await runner.startSingleBackup("one-off/orders-2026").finished;
    expect(op.state).toBe("succeeded");
    const keys: string[] = [];
    const s3 = minio.s3();
    const { ListObjectsV2Command } = await import("@aws-sdk/client-s3");
    const listed = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: "exports/" }));
    for (const o of listed.Contents ?? []) keys.push(o.Key!);
    expect(keys.every((k) => k.startsWith("exports/one-off/orders-2026/"))).toBe(true);
    expect(keys).toContain("exports/one-off/orders-2026/manifest.json");
    // A second export to the same target is refused, not overwritten.
    const again = await runner.startSingleBackup("one-off/orders-2026").finished;
    expect(again.state).toBe("failed");
    expect(again.error).toMatch(/already holds a backup/);
    const r = await runner.startTargetRestore("one-off/orders-2026", { renameDatabases: { shop: "shop_single" }, existingTables: "fail" }).finished;
    expect(r.error).toBeUndefined();
    expect(await tableChecksum(ch, "shop_single.orders")).toEqual(before["shop.orders"]);
    await ch.exec("DROP DATABASE shop_single");
    s3.destroy();
  });

  it("detects a corrupted object on restore", async () => {
    const config = runnerConfig({ clickhouse: ch, storage: s3Storage(minio, bucket, "corrupt"), databases: ["shop"] });
    const runner = makeRunner(config);
    await runner.init();
    const op = await backupNow(runner);
    const m = runner.catalog.get(op.backupId!)!.manifest;
    const obj = m.objects.find((o) => o.name.includes("orders"))!;
    const key = `corrupt/${runner.catalog.dir(m.id)}/${obj.name}`;
    const s3 = minio.s3();
    // (a) garbage: the decoder or the checksum stops the restore.
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: Buffer.alloc(obj.size, 7) }));
    const r = await runner.startRestore({ backup: m.id, renameDatabases: { shop: "shop_corrupt" }, existingTables: "drop" }).finished;
    expect(r.state).toBe("failed");
    expect(r.error).toMatch(/orders/);
    // (b) a valid but different object (another table's data): only the SHA-256 can tell.
    const other = m.objects.find((o) => o.name.includes("empty"))!;
    const { GetObjectCommand } = await import("@aws-sdk/client-s3");
    const otherBody = await (await s3.send(new GetObjectCommand({ Bucket: bucket, Key: `corrupt/${runner.catalog.dir(m.id)}/${other.name}` }))).Body!.transformToByteArray();
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: otherBody }));
    s3.destroy();
    const r2 = await runner.startRestore({ backup: m.id, renameDatabases: { shop: "shop_corrupt" }, existingTables: "drop" }).finished;
    expect(r2.state).toBe("failed");
    expect(r2.error).toMatch(/checksum mismatch/i);
    await ch.exec("DROP DATABASE IF EXISTS shop_corrupt");
  });

  it("fails cleanly when MinIO dies mid-upload and succeeds once it is back", async () => {
    // Incompressible data, so the upload takes long enough for the kill to land in the middle of it.
    await ch.exec("CREATE DATABASE fault");
    await ch.exec("CREATE TABLE fault.big (id UInt64, noise String) ENGINE = MergeTree ORDER BY id");
    await ch.exec("INSERT INTO fault.big SELECT number, concat(toString(rand64()), toString(rand64()), toString(rand64())) FROM system.numbers LIMIT 2000000");
    const config = runnerConfig({ clickhouse: ch, storage: s3Storage(minio, bucket, "fault"), databases: ["fault"] });
    const runner = makeRunner(config);
    await runner.init();
    const started = runner.startBackup("api");
    // Kill MinIO as soon as bytes flow.
    for (let i = 0; i < 400 && started.operation.progress.bytes === 0; i++) await new Promise((r) => setTimeout(r, 10));
    await minio.kill();
    const op = await started.finished;
    expect(op.state).toBe("failed");
    expect(op.retryable).toBe(true);
    await minio.start();
    const fresh = makeRunner(config);
    await fresh.init();
    expect(fresh.catalog.list().map((e) => e.manifest.id)).not.toContain(op.backupId);
    const s3 = minio.s3();
    const mp = await s3.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
    s3.destroy();
    expect((mp.Uploads ?? []).filter((u) => u.Key?.startsWith("fault/"))).toEqual([]);
    const ok = await backupNow(fresh);
    expect(ok.state).toBe("succeeded");
    expect(fresh.catalog.list().map((e) => e.manifest.id)).toEqual([ok.backupId]);
    await ch.exec("DROP DATABASE fault");
  });

  it("reports rejected S3 credentials clearly and without the secret", async () => {
    const storage = s3Storage(minio, bucket, "creds");
    storage.s3!.secretAccessKey = "definitely-wrong-secret-value";
    const runner = makeRunner(runnerConfig({ clickhouse: ch, storage }));
    await expect(runner.init()).rejects.toThrow(/credentials/i);
    const health = await runner.health();
    expect(health.storage).toMatch(/credentials/i);
    expect(health.storage).not.toContain("definitely-wrong-secret-value");
    expect(health.engine).toBe("ok");
  });
});
