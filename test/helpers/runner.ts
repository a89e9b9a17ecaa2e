// Builds real runner configs and runners against the test environment's servers.
import { randomBytes } from "node:crypto";
import { parseRunnerConfig, type RunnerConfig, type RunnerConfigInput } from "../../pkg/apis/index.ts";
import { createRunner, type AppDeps } from "../../pkg/runner/app.ts";
import { createLogger } from "../../pkg/runner/logging.ts";
import type { Runner, Operation } from "../../pkg/runner/runner.ts";
import type { ClickHouseServer, MinioServer } from "../env/index.ts";

export const silentLogger = () => createLogger({ silent: true });

export function s3Storage(minio: MinioServer, bucket: string, prefix = "backups"): RunnerConfigInput["storage"] {
  return {
    s3: {
      endpoint: minio.endpoint,
      region: minio.region,
      bucket,
      prefix,
      forcePathStyle: true,
      accessKeyId: minio.accessKeyId,
      secretAccessKey: minio.secretAccessKey,
      partSizeMiB: 5,
      concurrency: 2,
    },
  };
}

export function runnerConfig(opts: {
  clickhouse: Pick<ClickHouseServer, "url" | "username" | "password">;
  storage: RunnerConfigInput["storage"];
  name?: string;
  method?: "dump" | "native";
  mode?: "scheduled" | "single";
  singleTarget?: string;
  retention?: Record<string, number>;
  databases?: string[];
  fullEvery?: number;
}): RunnerConfig {
  return parseRunnerConfig({
    definition: {
      namespace: "team-a",
      name: opts.name ?? "orders",
      clickhouse: {
        url: opts.clickhouse.url,
        username: opts.clickhouse.username,
        password: opts.clickhouse.password,
        method: opts.method ?? "dump",
        ...(opts.databases ? { databases: { include: opts.databases } } : {}),
        ...(opts.fullEvery ? { native: { fullEvery: opts.fullEvery } } : {}),
      },
      mode: opts.mode ?? "scheduled",
      schedule: { cron: "0 0 1 1 *", timeZone: "UTC" },
      ...(opts.retention ? { retention: opts.retention } : {}),
      ...(opts.singleTarget ? { singleBackup: { target: opts.singleTarget } } : {}),
    },
    storage: opts.storage,
    api: { token: randomBytes(16).toString("hex") },
  });
}

export function makeRunner(config: RunnerConfig, extra: Partial<AppDeps> = {}): Runner {
  return createRunner({ config, logger: silentLogger(), ...extra });
}

/** Runs a backup to completion and returns the finished operation. */
export async function backupNow(runner: Runner): Promise<Operation> {
  return runner.startBackup("api").finished;
}

/** Row count and an order-independent checksum of a table, named columns (18.16 has no cityHash64(*)). */
export async function tableChecksum(
  ch: { query<T>(sql: string): Promise<T[]> },
  table: string,
): Promise<{ rows: number; sum: string }> {
  const [db, name] = table.split(".");
  const cols = await ch.query<{ name: string; type: string }>(`SELECT name, type FROM system.columns WHERE database = '${db}' AND table = '${name}'`);
  // 18.16's cityHash64 takes neither Decimal nor Array: hash a text form of every value.
  const text = (c: { name: string; type: string }) => {
    const q = `\`${c.name}\``;
    if (c.type.startsWith("Array(")) return `arrayStringConcat(arrayMap(x -> ifNull(toString(x), '\\N'), ${q}), ',')`;
    if (c.type.startsWith("Nullable(")) return `ifNull(toString(${q}), '\\N')`;
    return `toString(${q})`;
  };
  const list = cols.map(text).join(", ");
  const [r] = await ch.query<{ c: string; h: string }>(`SELECT toString(count()) AS c, toString(sum(cityHash64(${list}))) AS h FROM ${table}`);
  return { rows: Number(r?.c ?? 0), sum: r?.h ?? "" };
}
