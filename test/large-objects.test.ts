// Tables of any size: with the part count of one upload lowered through the
// configuration (5 MiB parts, at most 3 per upload: 15 MiB per object), a
// table whose dump is larger is stored as several objects. The runner backs
// it up to MinIO, verify reads every piece, and the restore brings every row
// back - with zstd and with lz4.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startClickHouse, startMinio, type ClickHouseServer, type MinioServer } from "./env/index.ts";
import { backupNow, makeRunner, runnerConfig, s3Storage, tableChecksum } from "./helpers/runner.ts";
import type { RunnerConfigInput } from "../pkg/apis/index.ts";
import { parseRunnerConfig } from "../pkg/apis/index.ts";

describe("tables larger than one object", () => {
  let ch: ClickHouseServer;
  let minio: MinioServer;
  let bucket: string;
  let before: { rows: number; sum: string };
  beforeAll(async () => {
    [ch, minio] = await Promise.all([startClickHouse(), startMinio()]);
    bucket = await minio.createBucket();
    await ch.exec("CREATE DATABASE big");
    await ch.exec("CREATE TABLE big.t (id UInt64, a String, b String) ENGINE = MergeTree ORDER BY id");
    // about 60 MB of Native that compresses poorly: several 15 MiB objects with either codec
    await ch.exec(
      "INSERT INTO big.t SELECT number, hex(cityHash64(number)), concat(hex(cityHash64(number, 1)), hex(cityHash64(number, 2)), hex(cityHash64(number, 3))) FROM system.numbers LIMIT 700000",
    );
    before = await tableChecksum(ch, "big.t");
  }, 120_000);
  afterAll(async () => {
    await ch?.stop();
    await minio?.stop();
  });

  for (const compression of ["zstd", "lz4"] as const) {
    it(`${compression}: a table stored as several objects backs up, verifies and restores`, async () => {
      const base = runnerConfig({ clickhouse: ch, storage: s3Storage(minio, bucket, `split-${compression}`), databases: ["big"] });
      const input = JSON.parse(JSON.stringify(base)) as RunnerConfigInput;
      input.definition.clickhouse = { ...input.definition.clickhouse, compression };
      input.storage.s3 = { ...input.storage.s3!, partSizeMiB: 5, maxParts: 3 };
      const config = parseRunnerConfig(input);
      const runner = makeRunner(config);
      await runner.init();
      const op = await backupNow(runner);
      expect(op.error).toBeUndefined();
      const m = runner.catalog.get(op.backupId!)!.manifest;
      const table = m.tables.find((t) => t.name === "t")!;
      expect(table.rows).toBe(700_000);
      const pieces = table.dataObjects ?? [];
      expect(pieces.length).toBeGreaterThanOrEqual(2);
      for (const p of pieces) {
        const o = m.objects.find((x) => x.name === p)!;
        expect(o.size).toBeLessThanOrEqual(15 * 1024 * 1024);
      }
      const v = await runner.startVerify(op.backupId!).finished;
      expect(v.state, v.error).toBe("succeeded");
      await ch.exec("DROP TABLE big.t");
      const r = await runner.startRestore({ backup: op.backupId!, existingTables: "fail" }).finished;
      expect(r.error).toBeUndefined();
      expect(r.result?.["rows"]).toBe(700_000);
      expect(await tableChecksum(ch, "big.t")).toEqual(before);
    }, 180_000);
  }
});
