// ClickHouse engine settings: the CRD form (secret references) and the runner
// form (resolved secret values) come from one schema.
import { z } from "zod";
import { secretKeyRef } from "./common.ts";

export const clickhouseMethod = z.enum(["dump", "native"]);
export type ClickHouseMethod = z.infer<typeof clickhouseMethod>;

const patterns = z
  .strictObject({
    include: z.array(z.string().min(1)).default(["*"]).describe('Glob patterns ("*", "?") to include; default all'),
    exclude: z.array(z.string().min(1)).default([]).describe("Glob patterns to exclude; applied after include"),
  })
  .describe("Include/exclude glob patterns");

const clickhouseBase = z.strictObject({
  url: z
    .string()
    .regex(/^https?:\/\/[^\s/]+(:\d+)?\/?$/, "must be an http(s) URL like http://clickhouse:8123")
    .describe("HTTP(S) endpoint of ClickHouse, e.g. http://clickhouse.db.svc:8123"),
  username: z.string().min(1).default("default").describe("ClickHouse user"),
  method: clickhouseMethod
    .default("dump")
    .describe("dump: SELECT/INSERT FORMAT Native through the runner (any version from 18.16); native: BACKUP/RESTORE TO S3 (22.8+, S3 storage only)"),
  databases: patterns
    .prefault({})
    .describe("Databases to back up by glob; system, INFORMATION_SCHEMA and information_schema are never included"),
  tables: patterns.prefault({}).describe('Tables to back up as "database.table" globs'),
  compression: z
    .enum(["zstd", "lz4"])
    .default("zstd")
    .describe(
      "Dump method compression. zstd: the runner compresses (parallel frames, compressionLevel), smallest backups. lz4: ClickHouse sends its own LZ4-compressed Native (HTTP compress=1) and decompresses it on restore, so the runner spends no CPU on compression; about 2x larger",
    ),
  compressionLevel: z.int().min(-7).max(19).default(1).describe("zstd level for compression zstd (negative levels are faster, larger)"),
  native: z
    .strictObject({
      fullEvery: z.int().min(1).default(7).describe("Take a full backup every N backups; the others are incremental (1 = always full)"),
      fullIntervalHours: z.int().min(1).optional().describe("Also take a full backup when the last full one is older than this"),
    })
    .prefault({})
    .describe("Settings of the native method"),
  cluster: z
    .strictObject({
      name: z.string().min(1).describe("The cluster's name in system.clusters (remote_servers), e.g. the Altinity operator's installation name"),
      httpPort: z
        .int()
        .min(1)
        .max(65535)
        .optional()
        .describe("HTTP port of the cluster's hosts (the hosts are reached by the host names system.clusters gives); default: the port of url, or 8123 (8443 with https) when url has none"),
      hosts: z
        .record(z.string().min(1), z.string().regex(/^https?:\/\/[^\s/]+(:\d+)?\/?$/, "must be an http(s) URL like http://host:8123"))
        .optional()
        .describe(
          'For tests and unusual networks: the URL of a host by its "host:port" in system.clusters (the TCP port listed there), when host name and httpPort do not reach it',
        ),
      concurrency: z.int().min(1).max(16).default(2).describe("Shards (and hosts) backed up or restored at once"),
      replicationTimeoutSeconds: z
        .int()
        .min(1)
        .default(600)
        .describe("How long a restore waits for the replicas of a shard to catch up before it counts their rows"),
    })
    .optional()
    .describe(
      "Back up a sharded, replicated cluster: the topology from system.clusters, the schema once, replicated tables once per shard from its healthiest replica, other tables from every host (dump method only)",
    ),
  requestTimeoutSeconds: z.int().min(1).default(3600).describe("Timeout of one ClickHouse request"),
  idleTimeoutSeconds: z
    .int()
    .min(1)
    .max(86400)
    .default(120)
    .describe(
      "A backup, restore or verify fails when no data moves for this long; the error names the side that stopped (ClickHouse or the storage)",
    ),
});

export const CLUSTER_NATIVE_MESSAGE =
  "cluster backups use the dump method: the native method would need BACKUP ... ON CLUSTER (ClickHouse 22.8+), which this runner does not drive";

/** A cluster is backed up with the dump method only. */
const clusterRules = (c: { method?: string; cluster?: unknown }, ctx: z.RefinementCtx) => {
  if (c.cluster !== undefined && c.method === "native") ctx.addIssue({ code: "custom", path: ["cluster"], message: CLUSTER_NATIVE_MESSAGE });
};
const always = { when: (p: { value: unknown }) => typeof p.value === "object" && p.value !== null };

/** As written in a BackupDefinition: the password comes from a Secret in the definition's namespace. */
export const clickhouseSpec = clickhouseBase
  .extend({
    passwordSecretRef: secretKeyRef.optional().describe("Secret key holding the ClickHouse password"),
  })
  .superRefine(clusterRules, always);
export type ClickHouseSpec = z.infer<typeof clickhouseSpec>;

/** As the runner gets it: the password resolved. */
export const clickhouseRunnerConfig = clickhouseBase
  .extend({
    password: z.string().default("").describe("ClickHouse password (resolved from passwordSecretRef)"),
  })
  .superRefine(clusterRules, always);
export type ClickHouseRunnerConfig = z.infer<typeof clickhouseRunnerConfig>;
export type ClickHouseRunnerConfigInput = z.input<typeof clickhouseRunnerConfig>;
