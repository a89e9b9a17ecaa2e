// npm run bench: dump-method throughput and memory against baselines measured
// in the same run, on ClickHouse 18.16 (local process) and MinIO.
//
// For each data size it prints:
//   raw export    SELECT * FORMAT Native over HTTP to /dev/null (baseline)
//   runner backup backup-runner backup --once to MinIO (zstd, multipart)
//   raw insert    INSERT ... FORMAT Native of the same data from a local file (baseline)
//   runner restore backup-runner restore --from (download, unzstd, INSERT)
// and the runner's peak RSS (GNU time's maximum resident set size).
//
// Usage: npm run bench [-- --sizes 0.25,1.1]   (GiB of Native data per size)
import { randomBytes } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { Writable } from "node:stream";
import { parseArgs } from "node:util";
import { execa } from "execa";
import { startClickHouse, startMinio, makeTempDir, removeDir, repoRoot, type ClickHouseServer } from "../test/env/index.ts";

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;
// Five columns as in the design's reference measurement: ~36 bytes per row as Native.
const BYTES_PER_ROW = 35.9;

const { values } = parseArgs({ options: { sizes: { type: "string", default: "0.25,1.1" } } });
const sizes = values.sizes.split(",").map(Number);

const out = (s: string) => process.stdout.write(`${s}\n`);

async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const t = performance.now();
  const value = await fn();
  return { ms: performance.now() - t, value };
}

async function rawExport(ch: ClickHouseServer, file?: string): Promise<number> {
  const c = ch.client();
  try {
    const rs = await c.exec({ query: "SELECT * FROM bench.t FORMAT Native" });
    let n = 0;
    const sink = file
      ? createWriteStream(file)
      : new Writable({
          write(chunk: Buffer, _e, cb) {
            n += chunk.length;
            cb();
          },
        });
    await pipeline(rs.stream, sink);
    return file ? (await stat(file)).size : n;
  } finally {
    await c.close();
  }
}

async function rawInsert(ch: ClickHouseServer, file: string): Promise<void> {
  const c = ch.client();
  try {
    await c.exec({ query: "INSERT INTO bench.t FORMAT Native", values: createReadStream(file, { highWaterMark: 1024 * 1024 }) });
  } finally {
    await c.close();
  }
}

async function runRunner(args: string[], configPath: string): Promise<{ ms: number; maxRssKiB: number }> {
  const t = performance.now();
  const r = await execa("/usr/bin/time", ["-f", "MAXRSS %M", process.execPath, join(repoRoot, "cmd", "backup-runner", "main.ts"), ...args, "--config", configPath], {
    env: { LOG_LEVEL: "warn" },
    reject: false,
  });
  const ms = performance.now() - t;
  if (r.exitCode !== 0) throw new Error(`backup-runner ${args.join(" ")} failed:\n${r.stdout}\n${r.stderr}`);
  const m = /MAXRSS (\d+)/.exec(r.stderr);
  return { ms, maxRssKiB: Number(m?.[1] ?? 0) };
}

const mbps = (bytes: number, ms: number) => bytes / MiB / (ms / 1000);

async function benchSize(gib: number): Promise<void> {
  const rows = Math.round((gib * GiB) / BYTES_PER_ROW);
  const [ch, minio] = await Promise.all([startClickHouse(), startMinio()]);
  const dir = await makeTempDir("bench");
  try {
    const bucket = await minio.createBucket("bench");
    await ch.exec("CREATE DATABASE bench");
    await ch.exec("CREATE TABLE bench.t (id UInt64, ts DateTime, user UInt32, value Float64, label String) ENGINE = MergeTree ORDER BY id");
    out(`\n== ${gib} GiB target: loading ${rows.toLocaleString("en")} rows into ClickHouse ${ch.version} ...`);
    await ch.exec(
      `INSERT INTO bench.t SELECT number, toDateTime('2026-01-01 00:00:00') + number % 31536000, number % 100000, number / 7, concat('label-', toString(number % 1000)) FROM system.numbers LIMIT ${rows}`,
    );
    await ch.exec("OPTIMIZE TABLE bench.t FINAL");
    const nativeFile = join(dir, "t.native");
    // Warm the page cache, and keep a Native copy for the raw insert baseline.
    const bytes = await rawExport(ch, nativeFile);
    const exp = await timed(() => rawExport(ch));
    const config = {
      definition: {
        namespace: "bench",
        name: "t",
        clickhouse: { url: ch.url, username: ch.username, password: ch.password, databases: { include: ["bench"] } },
        mode: "single",
        singleBackup: { target: "bench-export" },
      },
      storage: {
        s3: { endpoint: minio.endpoint, region: minio.region, bucket, forcePathStyle: true, accessKeyId: minio.accessKeyId, secretAccessKey: minio.secretAccessKey },
      },
      api: { token: randomBytes(16).toString("hex") },
    };
    const configPath = join(dir, "config.json");
    await writeFile(configPath, JSON.stringify(config));
    const backup = await runRunner(["backup", "--once"], configPath);

    await ch.exec("TRUNCATE TABLE bench.t");
    const ins = await timed(() => rawInsert(ch, nativeFile));
    await ch.exec("DROP TABLE bench.t");
    const restore = await runRunner(["restore", "--from", "bench-export"], configPath);
    const [check] = await ch.query<{ c: string }>("SELECT toString(count()) AS c FROM bench.t");
    if (Number(check?.c) !== rows) throw new Error(`restore check: ${check?.c} rows, expected ${rows}`);

    const row = (name: string, ms: number, base?: number) =>
      out(`${name.padEnd(16)} ${(ms / 1000).toFixed(2).padStart(7)} s ${mbps(bytes, ms).toFixed(0).padStart(6)} MiB/s${base ? `   ratio ${(base / ms).toFixed(2)}x` : ""}`);
    out(`Native data: ${(bytes / MiB).toFixed(0)} MiB (${(bytes / GiB).toFixed(2)} GiB), ${rows.toLocaleString("en")} rows`);
    row("raw export", exp.ms);
    row("runner backup", backup.ms, exp.ms);
    row("raw insert", ins.ms);
    row("runner restore", restore.ms, ins.ms);
    out(`runner peak RSS: backup ${(backup.maxRssKiB / 1024).toFixed(0)} MiB, restore ${(restore.maxRssKiB / 1024).toFixed(0)} MiB`);
    out(`(runner times include process start-up, ~0.3 s)`);
  } finally {
    await ch.stop();
    await minio.stop();
    await removeDir(dir);
  }
}

for (const s of sizes) await benchSize(s);
