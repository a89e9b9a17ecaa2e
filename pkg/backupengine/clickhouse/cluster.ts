// Cluster-aware dump backups: an orchestrator over the single-server dump
// and restore (dump.ts, restore.ts), run once per host.
//
// Backup: the topology comes from system.clusters (through the configured
// URL); every host is probed (reachable, replicas not read-only, their
// absolute_delay) and each shard's healthiest replica is its source. The
// schema is read once, from the first shard's source. Each host is dumped
// with the single-server dump into its own directory of the backup:
// replicated tables only on their shard's source (once per shard), other
// tables with data on every host (their data differs per host). A shard
// with no healthy replica fails the backup, naming the shard.
//
// Restore onto the same topology: each host gets the single-server restore
// of its own part (staged, proven), the shard's source first, so that its
// replicated tables carry the data to the other replicas, which only create
// theirs; then every replica's row count is proven once replication has
// caught up. Renamed databases get rewritten ZooKeeper paths, and a restore
// whose ZooKeeper path is in use fails before it changes anything.
//
// Restore with mergeShards: every shard's (and host's) pieces of a table
// are concatenated into one table of one server (Native streams and zstd
// frames concatenate), replicated engines become plain ones, and the
// single-server restore proves the sum.
import { z } from "zod";
import type { Logger } from "winston";
import type { BackupRequest, BackupSink, EngineBackupResult, InterruptedCleanup, Progress, RestoreRequest, RestoreResult, TableEntry, VerifiedTable, VerifyRequest, VerifyResult, WrittenObject } from "../types.ts";
import { EngineError } from "../types.ts";
import { runPool } from "../../concurrency/pool.ts";
import { existingTables, readCatalog, type TableInfo } from "./catalog.ts";
import type { Conn, ServerInfo } from "./conn.ts";
import { dumpDetails, dumpTable, DUMP_FORMAT, type DumpDetails, type DumpTable } from "./details.ts";
import { DUMP_CONCURRENCY, dumpBackup, progressReporter, type DumpContext } from "./dump.ts";
import { messageOf } from "./errors.ts";
import { planRestore } from "./plan.ts";
import { cleanupInterrupted, dumpRestore, dumpRestoreCheck } from "./restore.ts";
import { quoteString, qualified } from "./sql.ts";
import { verifyDump } from "./verify.ts";
import {
  distributedAsMerge,
  distributedTarget,
  expandMacros,
  isReplicatedObject,
  renamedZooKeeperPath,
  replicatedEngine,
  withDistributedCluster,
  withoutReplication,
  withZooKeeperPath,
} from "./clusterddl.ts";

export const CLUSTER_FORMAT = "clickhouse-cluster-dump/1";

const clusterHost = z.object({
  /** "host:port" as system.clusters lists it (the TCP port). */
  id: z.string(),
  shard: z.number(),
  replica: z.number(),
  /** source: the shard's replicated tables were dumped here; replica: only its own (non-replicated) tables; unreachable: nothing. */
  role: z.enum(["source", "replica", "unreachable"]),
  /** Why the host was not the source or not reached. */
  note: z.string().optional(),
  /** "db.table" of every selected object on the host. */
  present: z.array(z.string()),
  /** The host's tables whose data it holds, and its objects the schema lacks (as the single-server dump records them). */
  tables: z.array(dumpTable),
});
export type ClusterHostPart = z.infer<typeof clusterHost>;

export const clusterDetails = z.object({
  format: z.literal(CLUSTER_FORMAT),
  serverVersion: z.string(),
  rowsFrom: z.enum(["stream"]).optional(),
  compression: dumpDetails.shape.compression,
  cluster: z.object({
    name: z.string(),
    shards: z.array(z.object({ shard: z.number(), source: z.string(), replicas: z.array(z.string()) })),
  }),
  /** The schema, once, from the first shard's source. */
  schema: z.object({ host: z.string(), databases: dumpDetails.shape.databases, tables: z.array(dumpTable) }),
  hosts: z.array(clusterHost),
});
export type ClusterDetails = z.infer<typeof clusterDetails>;

export function isClusterDetails(details: unknown): boolean {
  return typeof details === "object" && details !== null && (details as { format?: unknown }).format === CLUSTER_FORMAT;
}

function parseClusterDetails(details: unknown): ClusterDetails {
  const r = clusterDetails.safeParse(details);
  if (!r.success) throw new EngineError(`backup details are not a ClickHouse cluster dump (${r.error.issues[0]?.message ?? "invalid"})`, { retryable: false });
  return r.data;
}

/** One host of the cluster as system.clusters lists it, and the URL the runner reaches it by. */
export interface TopologyHost {
  id: string;
  host: string;
  port: number;
  shard: number;
  replica: number;
  url: string;
}

/** How the orchestrator reaches a host: a connection of the engine's kind, closed by the caller. */
export interface HostConnector {
  connect(url: string): { conn: Conn; close: () => Promise<void> };
}

export interface ClusterContext extends DumpContext {
  connector: HostConnector;
}

/**
 * Tables each host dumps or restores at once while `hosts` hosts work at
 * once: the engine's table concurrency shared out, so that the runner holds
 * max(tables, hosts) table streams, as many as for one server by default.
 */
export function tablesPerHost(tables: number, hosts: number): number {
  return Math.max(1, Math.floor(tables / Math.max(1, hosts)));
}

/** Bounded time for probing a host (connect, version, replicas). */
const PROBE_MS = 15_000;

function clusterConfig(ctx: DumpContext) {
  const c = ctx.config.cluster;
  if (!c) throw new EngineError("no cluster is configured (clickhouse.cluster)", { retryable: false });
  return c;
}

/** The URL of a host: the `hosts` override, else the host name with the configured URL's scheme and port (cluster.httpPort, else the URL's port, else ClickHouse's 8123 / 8443). */
export function hostUrl(baseUrl: string, cluster: { httpPort?: number | undefined; hosts?: Record<string, string> | undefined }, host: string, tcpPort: number): string {
  const id = `${host}:${tcpPort}`;
  const override = cluster.hosts?.[id];
  if (override) return override.replace(/\/$/, "");
  const base = new URL(baseUrl);
  const port = cluster.httpPort ?? (base.port ? Number(base.port) : base.protocol === "https:" ? 8443 : 8123);
  const h = host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
  return `${base.protocol}//${h}:${port}`;
}

export async function readTopology(ctx: DumpContext, signal: AbortSignal): Promise<TopologyHost[]> {
  const c = clusterConfig(ctx);
  const rows = await ctx.conn.rows<{ shard_num: number | string; replica_num: number | string; host_name: string; port: number | string }>(
    `SELECT shard_num, replica_num, host_name, port FROM system.clusters WHERE cluster = ${quoteString(c.name)} ORDER BY shard_num, replica_num`,
    signal,
    `reading the topology of cluster ${c.name}`,
  );
  if (rows.length === 0) throw new EngineError(`cluster "${c.name}" is not in system.clusters of ${ctx.config.url}`, { retryable: false });
  return rows.map((r) => {
    const port = Number(r.port);
    return { id: `${r.host_name}:${port}`, host: r.host_name, port, shard: Number(r.shard_num), replica: Number(r.replica_num), url: hostUrl(ctx.config.url, c, r.host_name, port) };
  });
}

interface Connected extends TopologyHost {
  conn?: Conn | undefined;
  close?: (() => Promise<void>) | undefined;
  info?: ServerInfo | undefined;
  error?: string | undefined;
  readonly?: boolean | undefined;
  delay?: number | undefined;
}

async function connectAll(ctx: ClusterContext, topo: TopologyHost[], signal: AbortSignal, replicas: boolean): Promise<Connected[]> {
  return Promise.all(
    topo.map(async (h): Promise<Connected> => {
      const out: Connected = { ...h };
      try {
        const c = ctx.connector.connect(h.url);
        out.conn = c.conn;
        out.close = c.close;
        const probe = AbortSignal.any([signal, AbortSignal.timeout(PROBE_MS)]);
        out.info = await c.conn.info(probe);
        if (replicas) {
          const [r] = await c.conn.rows<{ ro: number | string; exp: number | string; d: number | string }>(
            "SELECT max(is_readonly) AS ro, max(is_session_expired) AS exp, max(absolute_delay) AS d FROM system.replicas",
            probe,
            `reading the replication state of ${h.id}`,
          );
          out.readonly = Number(r?.ro ?? 0) > 0 || Number(r?.exp ?? 0) > 0;
          out.delay = Number(r?.d ?? 0);
        }
      } catch (err: unknown) {
        signal.throwIfAborted();
        out.error = messageOf(err);
        out.info = undefined;
      }
      return out;
    }),
  );
}

async function closeAll(hosts: readonly Connected[]): Promise<void> {
  await Promise.allSettled(hosts.map((h) => h.close?.()));
}

/** The replica to dump a shard's replicated tables from: reachable, not read-only, smallest absolute_delay, then the lowest number. */
export function chooseSource<T extends { info?: unknown; error?: string | undefined; readonly?: boolean | undefined; delay?: number | undefined; replica: number }>(
  replicas: readonly T[],
): T | undefined {
  return [...replicas]
    .filter((h) => h.info !== undefined && !h.error && !h.readonly)
    .sort((a, b) => (a.delay ?? 0) - (b.delay ?? 0) || a.replica - b.replica)[0];
}

/** A sink that puts a host's objects under its own directory of the backup. */
function prefixedSink(sink: BackupSink, prefix: string): BackupSink {
  const out: BackupSink = {
    putObject: (name, body, signal, opts) => sink.putObject(prefix + name, body, signal, opts),
  };
  if (sink.putObjects) {
    const put = sink.putObjects.bind(sink);
    out.putObjects = (name, body, signal, opts) => put(prefix + name, body, signal, opts);
  }
  // (names given back are the ones the sink returned: already prefixed)
  if (sink.removeObjects) out.removeObjects = sink.removeObjects.bind(sink);
  return out;
}

const key = (t: { database: string; name: string }) => `${t.database}.${t.name}`;

/** Sums the progress of the hosts dumped or restored at once. */
function progressSum(onProgress: ((p: Progress) => void) | undefined, phase: string) {
  const parts = new Map<string, Progress>();
  const report = progressReporter(onProgress);
  return (id: string) => (p: Progress) => {
    parts.set(id, p);
    const all = [...parts.values()];
    report({
      phase,
      tablesDone: all.reduce((n, x) => n + x.tablesDone, 0),
      tablesTotal: all.reduce((n, x) => n + x.tablesTotal, 0),
      bytes: all.reduce((n, x) => n + x.bytes, 0),
      rows: all.reduce((n, x) => n + x.rows, 0),
      currentTable: p.currentTable ? `${id}: ${p.currentTable}` : undefined,
    });
  };
}

export async function clusterBackup(ctx: ClusterContext, info: ServerInfo, req: BackupRequest): Promise<EngineBackupResult> {
  const c = clusterConfig(ctx);
  const { signal } = req;
  const log = req.logger;
  const topo = await readTopology(ctx, signal);
  const hosts = await connectAll(ctx, topo, signal, true);
  try {
    const shards = [...new Set(hosts.map((h) => h.shard))].sort((a, b) => a - b);
    const sources = new Map<number, Connected>();
    const failed: string[] = [];
    for (const s of shards) {
      const replicas = hosts.filter((h) => h.shard === s);
      const src = chooseSource(replicas);
      if (src) sources.set(s, src);
      else {
        const why = replicas.map((h) => `${h.id}: ${h.error ? `unreachable (${h.error})` : "read-only (lost its ZooKeeper session or metadata)"}`).join("; ");
        failed.push(`shard ${s} has no healthy replica (${why})`);
      }
    }
    if (failed.length > 0) {
      throw new EngineError(`backup of cluster ${c.name} failed: ${failed.join("; ")}; nothing was backed up`, { retryable: true });
    }
    for (const h of hosts) if (h.error) log.warn("clickhouse cluster: a replica is unreachable; its shard is dumped from another replica, its own non-replicated tables are not in the backup", { host: h.id, shard: h.shard, error: h.error });
    const schemaHost = sources.get(shards[0]!)!;
    const selection = { databases: ctx.config.databases, tables: ctx.config.tables };
    const schema = await readCatalog(schemaHost.conn!, schemaHost.info!, selection, signal);
    log.info("clickhouse cluster dump: starting", {
      cluster: c.name,
      shards: shards.length,
      hosts: hosts.length,
      sources: [...sources.values()].map((h) => h.id),
      schemaFrom: schemaHost.id,
      tables: schema.tables.length,
    });

    const progress = progressSum(req.onProgress, "dump");
    const parts = new Map<string, { result: EngineBackupResult; details: DumpDetails }>();
    const reachable = hosts.filter((h) => !h.error);
    await runPool(reachable, c.concurrency, signal, async (h, sig) => {
      const isSource = sources.get(h.shard) === h;
      const dataFilter = (t: TableInfo) => isSource || !isReplicatedObject(t.engine, t.ddl);
      const concurrency = tablesPerHost(ctx.concurrency ?? DUMP_CONCURRENCY, c.concurrency);
      const result = await dumpBackup({ ...ctx, conn: h.conn!, dataFilter, concurrency }, h.info!, {
        ...req,
        signal: sig,
        sink: prefixedSink(req.sink, hostPrefix(h)),
        logger: log.child({ host: h.id, shard: h.shard }),
        onProgress: progress(h.id),
      });
      parts.set(h.id, { result, details: dumpDetails.parse(result.details) });
    });

    const schemaKeys = new Set(schema.tables.map(key));
    const hostParts: ClusterHostPart[] = hosts.map((h) => {
      const p = parts.get(h.id);
      const role = h.error ? "unreachable" : sources.get(h.shard) === h ? "source" : "replica";
      const note = h.error ? h.error : role === "replica" && h.readonly ? "read-only" : undefined;
      return {
        id: h.id,
        shard: h.shard,
        replica: h.replica,
        role,
        ...(note ? { note } : {}),
        present: p ? p.details.tables.map(key) : [],
        tables: p ? p.details.tables.filter((t) => t.dataObject !== undefined || !schemaKeys.has(key(t))) : [],
      };
    });
    const schemaTables: DumpTable[] = schema.tables.map((t) => ({ database: t.database, name: t.name, engine: t.engine, kind: t.kind, ddl: t.ddl, rows: 0, bytes: 0, uncompressedBytes: 0 }));
    const first = [...parts.values()][0]!.details;
    const details: ClusterDetails = {
      format: CLUSTER_FORMAT,
      serverVersion: info.version,
      rowsFrom: "stream",
      compression: first.compression,
      cluster: {
        name: c.name,
        shards: shards.map((s) => ({ shard: s, source: sources.get(s)!.id, replicas: hosts.filter((h) => h.shard === s).map((h) => h.id) })),
      },
      schema: { host: schemaHost.id, databases: schema.databases, tables: schemaTables },
      hosts: hostParts,
    };
    const tables: TableEntry[] = [];
    const withData = new Set<string>();
    for (const h of hostParts) {
      for (const t of h.tables) {
        if (!t.dataObject) continue;
        withData.add(key(t));
        tables.push({ database: t.database, name: t.name, engine: t.engine, rows: t.rows, bytes: t.bytes, dataObject: t.dataObject, dataObjects: t.dataObjects, host: h.id, shard: h.shard });
      }
    }
    for (const t of schemaTables) if (!withData.has(key(t))) tables.push({ database: t.database, name: t.name, engine: t.engine, rows: 0, bytes: 0 });
    const objects: WrittenObject[] = [...parts.values()].flatMap((p) => p.result.objects).sort((a, b) => (a.name < b.name ? -1 : 1));
    log.info("clickhouse cluster dump: done", { cluster: c.name, rows: tables.reduce((n, t) => n + t.rows, 0), objects: objects.length });
    return {
      engineVersion: info.version,
      method: "dump",
      databases: schema.databases.map((d) => d.name),
      tables,
      objects,
      details,
    };
  } finally {
    await closeAll(hosts);
  }
}

function hostPrefix(h: { shard: number; replica: number }): string {
  return `shard-${h.shard}/replica-${h.replica}/`;
}

/** The single-server dump details of one host: the schema (objects present on it), with its own data. */
export function hostDumpDetails(d: ClusterDetails, part: ClusterHostPart | undefined, mapDdl: (t: DumpTable) => string): DumpDetails {
  const own = new Map((part?.tables ?? []).map((t) => [key(t), t]));
  const present = part && part.role !== "unreachable" ? new Set(part.present) : undefined;
  const tables: DumpTable[] = [];
  for (const t of d.schema.tables) {
    if (present && !present.has(key(t))) continue;
    const mine = own.get(key(t));
    if (mine) tables.push({ ...mine, ddl: mapDdl(mine) });
    // no data of this host: its DDL only (a replicated table's data comes through replication)
    else tables.push({ ...t, kind: "schema", ddl: mapDdl(t) });
    own.delete(key(t));
  }
  for (const t of own.values()) tables.push({ ...t, ddl: mapDdl(t) });
  return {
    format: DUMP_FORMAT,
    serverVersion: d.serverVersion,
    rowsFrom: d.rowsFrom,
    compression: d.compression,
    databases: d.schema.databases,
    tables,
  };
}

/** Whether a ZooKeeper node exists (system.zookeeper fails for a parent that does not). */
async function zkExists(conn: Conn, path: string, signal: AbortSignal): Promise<boolean> {
  const p = path.replace(/\/+$/, "");
  const at = p.lastIndexOf("/");
  const parent = at <= 0 ? "/" : p.slice(0, at);
  const name = p.slice(at + 1);
  try {
    const rows = await conn.rows<{ c: number | string }>(
      `SELECT count() AS c FROM system.zookeeper WHERE path = ${quoteString(parent)} AND name = ${quoteString(name)}`,
      signal,
      `looking up ZooKeeper path ${path}`,
    );
    return Number(rows[0]?.c ?? 0) > 0;
  } catch (err: unknown) {
    signal.throwIfAborted();
    if (/no ?node/i.test(messageOf(err))) return false;
    throw err;
  }
}

async function macrosOf(conn: Conn, signal: AbortSignal): Promise<Record<string, string>> {
  const rows = await conn.rows<{ macro: string; substitution: string }>("SELECT macro, substitution FROM system.macros", signal, "reading the macros");
  return Object.fromEntries(rows.map((r) => [r.macro, r.substitution]));
}

/** A replicated table's (or a materialized view's replicated inner table's) replication queue and rows on one host. */
async function replicaState(conn: Conn, db: string, name: string, view: boolean, signal: AbortSignal): Promise<{ idle: boolean; rows: number }> {
  // (a view's inner table: `.inner.<view>` in Ordinary databases; elsewhere not found, and only the counts decide)
  const table = view ? `.inner.${name}` : name;
  const [q] = await conn.rows<{ q: number | string }>(
    `SELECT queue_size + inserts_in_queue AS q FROM system.replicas WHERE database = ${quoteString(db)} AND table = ${quoteString(table)}`,
    signal,
    `reading the replication queue of ${db}.${name}`,
  );
  const [c] = await conn.rows<{ c: number | string }>(`SELECT count() AS c FROM ${qualified(db, name)}`, signal, `counting the rows of ${db}.${name}`);
  return { idle: Number(q?.q ?? 0) === 0, rows: Number(c?.c ?? 0) };
}

/**
 * Waits (bounded) until a replica holds what its shard's source restored:
 * the rows sent, where count() is exact (ReplicatedMergeTree without TTL),
 * else the source's own count once both replication queues are empty (the
 * replicas then hold the same parts).
 */
async function waitForReplica(
  src: Conn,
  other: Conn,
  t: { db: string; name: string; view: boolean; sent: number; exact: boolean },
  timeoutMs: number,
  signal: AbortSignal,
): Promise<{ ok: boolean; rows: number; expected: number }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const o = await replicaState(other, t.db, t.name, t.view, signal);
    let expected = t.sent;
    if (t.exact) {
      if (o.idle && o.rows === t.sent) return { ok: true, rows: o.rows, expected };
    } else {
      const s = await replicaState(src, t.db, t.name, t.view, signal);
      expected = s.rows;
      if (o.idle && s.idle && o.rows === s.rows) return { ok: true, rows: o.rows, expected };
    }
    if (Date.now() >= deadline) return { ok: false, rows: o.rows, expected };
    await new Promise((r) => setTimeout(r, 250));
    signal.throwIfAborted();
  }
}

export async function clusterRestore(ctx: ClusterContext, info: ServerInfo, req: RestoreRequest): Promise<RestoreResult> {
  const d = parseClusterDetails(req.backup.details);
  if (req.options.mergeShards) return mergedRestore(ctx, info, req, d);
  const c = ctx.config.cluster;
  if (!c) {
    throw new EngineError(
      `backup is of cluster ${d.cluster.name} (${d.cluster.shards.length} shards): restore it with clickhouse.cluster configured, or with mergeShards into one server`,
      { retryable: false },
    );
  }
  const { signal } = req;
  const log = req.logger;
  const topo = await readTopology(ctx, signal);
  const shards = [...new Set(topo.map((h) => h.shard))].sort((a, b) => a - b);
  const backupShards = d.cluster.shards.map((s) => s.shard).sort((a, b) => a - b);
  if (shards.join(",") !== backupShards.join(",")) {
    throw new EngineError(
      `restore refused: the backup has ${backupShards.length} shard(s) of cluster ${d.cluster.name} and cluster ${c.name} has ${shards.length}; ` +
        `restore onto the same number of shards, or set mergeShards to restore every shard into one server; nothing was changed`,
      { retryable: false },
    );
  }
  const partOf = (h: TopologyHost) => d.hosts.find((p) => p.shard === h.shard && p.replica === h.replica);
  const orphans = d.hosts.filter((p) => p.tables.some((t) => t.dataObject) && !topo.some((h) => h.shard === p.shard && h.replica === p.replica));
  if (orphans.length > 0) {
    throw new EngineError(`restore refused: cluster ${c.name} has no replica ${orphans.map((p) => `${p.replica} of shard ${p.shard} (${p.id} in the backup)`).join(", ")}, whose own tables hold data in the backup; nothing was changed`, {
      retryable: false,
    });
  }
  const hosts = await connectAll(ctx, topo, signal, false);
  try {
    const down = hosts.filter((h) => h.error);
    if (down.length > 0) throw new EngineError(`restore refused: ${down.map((h) => `${h.id} is unreachable (${h.error})`).join("; ")}; nothing was changed`, { retryable: true });
    const renames = req.options.renameDatabases ?? {};
    // renamed databases get their own ZooKeeper paths; Distributed tables name the cluster restored onto
    const mapDdl = (t: DumpTable) => {
      const to = renames[t.database];
      const ddl = to && to !== t.database ? withZooKeeperPath(t.ddl, (p) => renamedZooKeeperPath(p, t.database, to)) : t.ddl;
      return withDistributedCluster(ddl, d.cluster.name, c.name);
    };
    const plans = hosts.map((h) => {
      const details = hostDumpDetails(d, partOf(h), mapDdl);
      const plan = planRestore(details.databases, details.tables, req.options);
      return { h, details, plan };
    });

    // Before anything changes: no replicated table is restored into an existing one or onto a ZooKeeper path in use.
    const refused: string[] = [];
    const seen = new Set<string>();
    const owners = new Map<string, string>();
    for (const { h, plan } of plans) {
      const macros = await macrosOf(h.conn!, signal);
      const existing = await existingTables(h.conn!, [...new Set(plan.tables.map((t) => t.target.database))], signal);
      for (const t of plan.tables) {
        if (!isReplicatedObject(t.source.engine, t.ddl)) continue;
        if (existing.has(t.key)) {
          refused.push(`${t.key} exists on ${h.id} (a replicated table is restored only into a new table: drop it first, or restore into another database)`);
          continue;
        }
        const e = replicatedEngine(t.ddl);
        if (!e?.path) continue;
        const path = expandMacros(e.path, macros, { database: t.target.database, table: t.target.name });
        if (path === undefined) {
          log.warn("clickhouse cluster restore: cannot expand the ZooKeeper path to check it", { table: t.key, host: h.id, path: e.path });
          continue;
        }
        // two tables of the restore on one path (a rename rule that folds two paths into one) would collide
        const owner = owners.get(`${h.id}\u0000${path}`);
        if (owner !== undefined && owner !== t.key) {
          refused.push(`${owner} and ${t.key} on ${h.id} would share ZooKeeper path ${path}`);
          continue;
        }
        owners.set(`${h.id}\u0000${path}`, t.key);
        if (seen.has(`${h.shard}\u0000${path}`) || seen.has(`*\u0000${path}`)) continue;
        seen.add(`${h.shard}\u0000${path}`);
        if (await zkExists(h.conn!, path, signal)) {
          seen.add(`*\u0000${path}`);
          refused.push(`${t.key} on ${h.id} would use ZooKeeper path ${path}, which is in use`);
        }
      }
    }
    if (refused.length > 0) throw new EngineError(`restore refused: ${refused.join("; ")}; nothing was changed`, { retryable: false });
    // every host's own refusals (existing tables, schemas, policies) before any host changes
    for (const p of plans) {
      try {
        await dumpRestoreCheck({ ...ctx, conn: p.h.conn! }, p.h.info!, { ...req, backup: { ...req.backup, details: p.details }, logger: log.child({ host: p.h.id }) });
      } catch (err: unknown) {
        if (err instanceof EngineError) throw new EngineError(`${p.h.id}: ${err.message}`, { cause: err, retryable: err.retryable });
        throw err;
      }
    }

    const progress = progressSum(req.onProgress, "restoring");
    const results = new Map<string, RestoreResult>();
    const restored: string[] = [];
    try {
      await runPool(shards, c.concurrency, signal, async (s, sig) => {
        const sourceId = d.cluster.shards.find((x) => x.shard === s)?.source;
        const inShard = plans.filter((p) => p.h.shard === s);
        // the replica that had the shard's data at backup time last: the others' replicated tables exist (empty) by
        // then, and the source's inserts reach them through the replication log at once (a replica created after the
        // data was inserted catches up with the existing parts only after a delay, about 10 s on 18.16)
        inShard.sort((a, b) => Number(partOf(a.h)?.id === sourceId) - Number(partOf(b.h)?.id === sourceId) || a.h.replica - b.h.replica);
        for (const p of inShard) {
          let r: RestoreResult;
          try {
            const concurrency = tablesPerHost(ctx.concurrency ?? DUMP_CONCURRENCY, c.concurrency);
            r = await dumpRestore({ ...ctx, conn: p.h.conn!, concurrency }, p.h.info!, {
              ...req,
              signal: sig,
              backup: { ...req.backup, details: p.details },
              logger: log.child({ host: p.h.id, shard: s }),
              onProgress: progress(p.h.id),
            });
          } catch (err: unknown) {
            // (an abort stays what it is: the runner tells a cancel by its name)
            if (!(err instanceof EngineError)) throw err;
            throw new EngineError(`restoring ${p.h.id} (shard ${s}) failed: ${err.message}`, { cause: err, retryable: err.retryable });
          }
          results.set(p.h.id, r);
          restored.push(p.h.id);
        }
      });
    } catch (err: unknown) {
      const base = messageOf(err);
      const note = restored.length > 0 ? `; hosts already restored (their restore stands): ${restored.join(", ")}` : "";
      if (err instanceof Error && ["AbortError", "ShuttingDownError", "TimeoutError"].includes(err.name)) {
        // the same kind of error (the runner tells a cancel or a shutdown by its name), saying what stands
        const e = new Error(`${base}${note}`, { cause: err });
        e.name = err.name;
        throw e;
      }
      throw new EngineError(`cluster restore failed: ${base}${note}`, { cause: err, retryable: err instanceof EngineError ? err.retryable : false });
    }

    // Replication carries every shard's data to its other replicas: prove each replica's rows.
    const timeoutMs = c.replicationTimeoutSeconds * 1000;
    const short: string[] = [];
    for (const s of shards) {
      const inShard = plans.filter((p) => p.h.shard === s);
      for (const src of inShard) {
        for (const t of src.plan.tables) {
          if (!isReplicatedObject(t.source.engine, t.ddl) || t.source.kind === "schema") continue;
          const sent = results.get(src.h.id)?.tables.find((x) => x.database === t.target.database && x.name === t.target.name)?.rows ?? 0;
          const exact = /^ReplicatedMergeTree$/.test(t.source.engine) && !/\bTTL\b/i.test(t.ddl);
          const view = t.source.engine === "MaterializedView";
          for (const other of inShard) {
            if (other === src) continue;
            const t0 = Date.now();
            const w = await waitForReplica(src.h.conn!, other.h.conn!, { db: t.target.database, name: t.target.name, view, sent, exact }, timeoutMs, signal);
            log.debug("clickhouse cluster restore: replica caught up", { table: t.key, host: other.h.id, rows: w.rows, ok: w.ok, waitedMs: Date.now() - t0 });
            if (!w.ok) {
              const what = exact ? `${w.expected} were restored on ${src.h.id}` : `${src.h.id} holds ${w.expected}`;
              short.push(`${t.key} on ${other.h.id} (shard ${s}) holds ${w.rows} rows after ${c.replicationTimeoutSeconds} s, ${what}`);
            }
          }
        }
      }
    }
    if (short.length > 0) throw new EngineError(`cluster restore: replication did not bring every row: ${short.join("; ")}`, { retryable: true });

    const sums = new Map<string, { database: string; name: string; rows: number }>();
    for (const r of results.values()) {
      for (const t of r.tables) {
        const k = key(t);
        const cur = sums.get(k) ?? { database: t.database, name: t.name, rows: 0 };
        cur.rows += t.rows;
        sums.set(k, cur);
      }
    }
    const databases = [...new Set([...results.values()].flatMap((r) => r.databases))];
    log.info("clickhouse cluster restore: done", { cluster: c.name, hosts: restored.length, rows: [...sums.values()].reduce((n, t) => n + t.rows, 0) });
    return { databases, tables: [...sums.values()] };
  } finally {
    await closeAll(hosts);
  }
}

/** The backup as one server's dump: every shard's and host's pieces of a table concatenated, replication and Distributed rewritten. */
export function mergedDumpDetails(d: ClusterDetails, log?: Logger): DumpDetails {
  const defaultCodec = d.compression.codec;
  const all = new Map<string, DumpTable>();
  for (const t of d.schema.tables) all.set(key(t), t);
  for (const h of d.hosts) for (const t of h.tables) if (!all.has(key(t))) all.set(key(t), t);
  const tables: DumpTable[] = [];
  for (const t of all.values()) {
    const pieces = d.hosts.flatMap((h) => h.tables.filter((x) => key(x) === key(t) && x.dataObject !== undefined).map((x) => ({ h, x })));
    let ddl = t.ddl;
    let engine = t.engine;
    if (isReplicatedObject(t.engine, t.ddl)) {
      ddl = withoutReplication(ddl);
      if (engine !== "MaterializedView") engine = engine.slice("Replicated".length);
    }
    if (engine === "Distributed") {
      const target = distributedTarget(ddl);
      if (target) {
        ddl = distributedAsMerge(t.database, t.name, target);
        engine = "Merge";
      } else log?.warn("clickhouse restore: a Distributed table whose target is not a plain name is left out of a merged restore", { table: key(t) });
      if (!target) continue;
    }
    if (pieces.length === 0) {
      tables.push({ ...t, ddl, engine, kind: t.kind === "data" || t.kind === "view-data" ? "schema" : t.kind, dataObject: undefined, dataObjects: undefined, rows: 0, bytes: 0, uncompressedBytes: 0 });
      continue;
    }
    const codecs = new Set(pieces.map((p) => p.x.codec ?? defaultCodec));
    const orders = new Set(pieces.map((p) => JSON.stringify(p.x.streamColumns ?? p.x.columns?.map((c) => c.name) ?? null)));
    if (codecs.size > 1 || orders.size > 1) {
      throw new EngineError(
        `cannot merge the shards of ${key(t)}: its hosts' data differ in ${codecs.size > 1 ? "compression" : "columns"} (${pieces.map((p) => p.h.id).join(", ")})`,
        { retryable: false },
      );
    }
    const names = pieces.flatMap((p) => p.x.dataObjects ?? [p.x.dataObject!]);
    const codec = [...codecs][0]!;
    const head = pieces[0]!.x;
    tables.push({
      ...head,
      ddl,
      engine,
      dataObject: names[0],
      dataObjects: names.length > 1 ? names : undefined,
      codec: codec !== defaultCodec ? codec : undefined,
      rows: pieces.reduce((n, p) => n + p.x.rows, 0),
      bytes: pieces.reduce((n, p) => n + p.x.bytes, 0),
      uncompressedBytes: pieces.reduce((n, p) => n + p.x.uncompressedBytes, 0),
    });
  }
  return { format: DUMP_FORMAT, serverVersion: d.serverVersion, rowsFrom: d.rowsFrom, compression: d.compression, databases: d.schema.databases, tables };
}

async function mergedRestore(ctx: DumpContext, info: ServerInfo, req: RestoreRequest, d: ClusterDetails): Promise<RestoreResult> {
  const details = mergedDumpDetails(d, req.logger);
  req.logger.info("clickhouse restore: merging the shards of a cluster backup into one server", { cluster: d.cluster.name, shards: d.cluster.shards.length, hosts: d.hosts.length });
  return dumpRestore(ctx, info, { ...req, backup: { ...req.backup, details } });
}

/** Verifies every host's part of a cluster backup from storage alone; each table is reported with its host. */
export async function clusterVerify(req: VerifyRequest, opts: { idleTimeoutMs: number }): Promise<VerifyResult> {
  const d = parseClusterDetails(req.backup.details);
  const tables: VerifiedTable[] = [];
  const otherObjects: VerifyResult["otherObjects"] = [];
  const prefixes = d.hosts.map(hostPrefix);
  // each host's part on its own (with the objects in its directory), then the objects of no host
  const parts: { id?: string; tables: DumpTable[]; objects: WrittenObject[] }[] = d.hosts.map((h) => ({
    id: h.id,
    tables: h.tables.filter((t) => t.dataObject !== undefined),
    objects: req.backup.objects.filter((o) => o.name.startsWith(hostPrefix(h))),
  }));
  parts.push({ tables: [], objects: req.backup.objects.filter((o) => !prefixes.some((p) => o.name.startsWith(p))) });
  for (const part of parts) {
    if (part.tables.length === 0 && part.objects.length === 0) continue;
    const details: DumpDetails = { format: DUMP_FORMAT, serverVersion: d.serverVersion, rowsFrom: d.rowsFrom, compression: d.compression, databases: d.schema.databases, tables: part.tables };
    const r = await verifyDump({ ...req, backup: { ...req.backup, objects: part.objects, details } }, opts);
    tables.push(...r.tables.map((t) => (part.id ? { ...t, host: part.id } : t)));
    otherObjects.push(...r.otherObjects);
  }
  return { ok: tables.every((t) => t.ok) && otherObjects.every((o) => o.ok), tables, otherObjects };
}

/**
 * What interrupted restores left behind on every host of the cluster (see
 * cleanupInterrupted in restore.ts); names are prefixed with the host. A
 * host that cannot be reached is skipped with a warning: it is cleaned up
 * at the next start.
 */
export async function clusterCleanupInterrupted(ctx: ClusterContext, signal: AbortSignal): Promise<InterruptedCleanup> {
  const topo = await readTopology(ctx, signal);
  const hosts = await connectAll(ctx, topo, signal, false);
  const out: InterruptedCleanup = { removed: [], restored: [], kept: [] };
  try {
    for (const h of hosts) {
      if (h.error) {
        ctx.logger.warn("clickhouse cluster: a host could not be checked for what an interrupted restore left behind", { host: h.id, error: h.error });
        continue;
      }
      const r = await cleanupInterrupted(h.conn!, h.info!, ctx.logger.child({ host: h.id }), signal);
      out.removed.push(...r.removed.map((x) => `${h.id}: ${x}`));
      out.restored.push(...r.restored.map((x) => `${h.id}: ${x}`));
      out.kept.push(...r.kept.map((x) => `${h.id}: ${x}`));
    }
  } finally {
    await closeAll(hosts);
  }
  return out;
}
