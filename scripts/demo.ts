// npm run demo: a complete backup-and-restore on embedded defaults.
// Starts a local ClickHouse (Debian's clickhouse-server, like the tests),
// fills it with sample data, runs the real backup-runner binary to take a
// one-off backup to a local directory (filesystem storage, zero setup), drops
// the data, restores it with the runner, and checks that it matches.
import { randomBytes } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { startClickHouse, makeTempDir, removeDir, repoRoot } from "../test/env/index.ts";

const log = (msg: string) => process.stdout.write(`[demo] ${msg}\n`);

async function checksum(ch: Awaited<ReturnType<typeof startClickHouse>>): Promise<string> {
  const [r] = await ch.query<{ c: string; h: string }>(
    "SELECT toString(count()) AS c, toString(sum(cityHash64(id, customer, toString(amount), note))) AS h FROM demo.orders",
  );
  return `${r?.c} rows, checksum ${r?.h}`;
}

async function main(): Promise<void> {
  log("starting ClickHouse (local process on 127.0.0.1)");
  const ch = await startClickHouse();
  const dir = await makeTempDir("demo");
  try {
    log(`ClickHouse ${ch.version} at ${ch.url}`);
    await ch.exec("CREATE DATABASE demo");
    await ch.exec("CREATE TABLE demo.orders (id UInt64, customer UInt32, amount Decimal(18, 2), note String) ENGINE = MergeTree ORDER BY id");
    await ch.exec(
      "INSERT INTO demo.orders SELECT number, number % 5000, toDecimal64(number % 100000, 2) / 100, concat('order ', toString(number)) FROM system.numbers LIMIT 1000000",
    );
    await ch.exec("CREATE VIEW demo.big_orders AS SELECT * FROM demo.orders WHERE amount > 900");
    const before = await checksum(ch);
    log(`source: demo.orders has ${before}`);

    const storage = join(dir, "storage");
    const config = {
      definition: {
        namespace: "demo",
        name: "orders",
        clickhouse: { url: ch.url, username: ch.username, password: ch.password, databases: { include: ["demo"] } },
        mode: "single",
        singleBackup: { target: "exports/demo-orders" },
      },
      storage: { filesystem: { path: storage } },
      api: { token: randomBytes(16).toString("hex") },
    };
    const configPath = join(dir, "config.json");
    await writeFile(configPath, JSON.stringify(config, null, 2), { mode: 0o600 });
    const runner = (args: string[]) =>
      execa(process.execPath, [join(repoRoot, "cmd", "backup-runner", "main.ts"), ...args, "--config", configPath], {
        stdout: "pipe",
        stderr: "pipe",
        env: { LOG_LEVEL: "warn" },
      });

    log("backup-runner backup --once  (one-off export to the filesystem storage)");
    const t0 = Date.now();
    const b = await runner(["backup", "--once"]);
    const backup = JSON.parse(b.stdout.trim().split("\n").pop() ?? "{}") as { result?: { bytes: number; rows: number } };
    log(`backup done in ${Date.now() - t0} ms: ${backup.result?.rows} rows, ${backup.result?.bytes} bytes (zstd) in ${join(storage, "exports/demo-orders")}`);

    log("dropping database demo");
    await ch.exec("DROP DATABASE demo");

    log("backup-runner restore --from exports/demo-orders");
    const t1 = Date.now();
    await runner(["restore", "--from", "exports/demo-orders"]);
    log(`restore done in ${Date.now() - t1} ms`);
    const after = await checksum(ch);
    log(`restored: demo.orders has ${after}`);
    const views = await ch.query<{ name: string }>("SELECT name FROM system.tables WHERE database = 'demo' ORDER BY name");
    log(`tables after restore: ${views.map((v) => v.name).join(", ")}`);
    if (after !== before) throw new Error(`restored data differs: ${after} != ${before}`);
    log("OK: restored data equals the source");
  } finally {
    await ch.stop();
    await removeDir(dir);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`[demo] FAILED: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(1);
});
