// Smoke test: ClickHouse 26.x in-process (chDB) through @clickhouse/client,
// including BACKUP/RESTORE to the MinIO of the test environment.
import { Transform } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startChdb, startMinio, type ChdbEngine, type MinioServer } from "./env/index.ts";

describe("chDB (ClickHouse 26.x)", () => {
  let ch: ChdbEngine;
  let minio: MinioServer;
  let bucket: string;
  beforeAll(async () => {
    [ch, minio] = await Promise.all([startChdb(), startMinio()]);
    bucket = await minio.createBucket();
  });
  afterAll(async () => {
    await ch?.stop();
    await minio?.stop();
  });

  it("is ClickHouse 26", () => {
    expect(ch.version).toMatch(/^26\./);
  });

  it("stores 100k rows and streams them out (client) and back in (FIFO) as Native", async () => {
    await ch.exec("CREATE DATABASE smoke");
    await ch.exec("CREATE TABLE smoke.src (id UInt64, name String, v Float64) ENGINE = MergeTree ORDER BY id");
    await ch.exec("CREATE TABLE smoke.dst AS smoke.src");
    await ch.exec("INSERT INTO smoke.src SELECT number, concat('n', toString(number)), number / 3 FROM numbers(100000)");
    const [count] = await ch.query<{ c: string }>("SELECT count() AS c FROM smoke.src");
    expect(Number(count?.c)).toBe(100_000);
    const client = ch.client();
    const rs = await client.exec({ query: "SELECT * FROM smoke.src FORMAT Native" });
    let bytes = 0;
    const counted = rs.stream.pipe(
      new Transform({
        transform(chunk: Buffer, _enc, cb) {
          bytes += chunk.length;
          cb(null, chunk);
        },
      }),
    );
    await ch.insertNative("smoke.dst", counted);
    expect(bytes).toBeGreaterThan(1_000_000);
    const sum = "SELECT count() AS c, toString(sum(cityHash64(id, name, v))) AS h FROM smoke.";
    const [a] = await ch.query(sum + "src");
    const [b] = await ch.query(sum + "dst");
    expect(b).toEqual(a);
  });

  it("backs up to MinIO with BACKUP ... TO S3 and restores from it", async () => {
    const url = `${minio.endpoint}/${bucket}/smoke/full`;
    const s3 = `S3('${url}', '${minio.accessKeyId}', '${minio.secretAccessKey}')`;
    await ch.exec(`BACKUP TABLE smoke.src TO ${s3}`);
    const [orig] = await ch.query<{ c: string; h: string }>("SELECT count() AS c, toString(sum(cityHash64(id, name, v))) AS h FROM smoke.src");
    await ch.exec(`RESTORE TABLE smoke.src AS smoke.restored FROM ${s3}`);
    const [restored] = await ch.query<{ c: string; h: string }>(
      "SELECT count() AS c, toString(sum(cityHash64(id, name, v))) AS h FROM smoke.restored",
    );
    expect(restored).toEqual(orig);
    expect(Number(restored?.c)).toBe(100_000);
    const backups = await ch.query<{ status: string }>("SELECT status FROM system.backups ORDER BY start_time");
    expect(backups.map((b) => b.status)).toEqual(["BACKUP_CREATED", "RESTORED"]);
  });
});
