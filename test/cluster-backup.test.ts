// Cluster-aware dump backups against a real 2 shards x 2 replicas ClickHouse
// 18.16 cluster with ZooKeeper (test/env/cluster.ts): a ReplicatedMergeTree,
// a non-replicated MergeTree per host, a Distributed table and a
// materialized view. Backup (data once per shard, per-host tables from every
// host), verify, a renamed restore next to the live tables (rewritten
// ZooKeeper paths, a path in use refused), drop everything and restore,
// replicas stopped during backup, and mergeShards into chDB. One cluster for
// the whole file.
import { readFile, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import winston from "winston";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clickhouseRunnerConfig, type ClickHouseRunnerConfigInput } from "../pkg/apis/clickhouse.ts";
import { createClickHouseEngine } from "../pkg/backupengine/clickhouse/index.ts";
import type { ClusterDetails } from "../pkg/backupengine/clickhouse/cluster.ts";
import { EngineError, type EngineBackupResult, type RestoreOptions } from "../pkg/backupengine/types.ts";
import { execa } from "execa";
import { generateX25519Identity, identityToRecipient } from "age-encryption";
import { AgeIdentities } from "../pkg/encryption/identity.ts";
import { makeTempDir, removeDir, repoRoot, startChdb, startClickHouse, startClickHouseCluster, type ClickHouseCluster, type ClickHouseServer, type ChdbEngine } from "./env/index.ts";
import { DirSink } from "./helpers/sink.ts";
import { parseRunnerConfig } from "../pkg/apis/index.ts";
import { makeRunner } from "./helpers/runner.ts";

const logger = process.env["TEST_LOG"] ? winston.createLogger({ level: "debug", format: winston.format.combine(winston.format.timestamp(), winston.format.json()), transports: [new winston.transports.Console()] }) : winston.createLogger({ silent: true });

describe("cluster backups (2 shards x 2 replicas, ZooKeeper, ClickHouse 18.16)", () => {
  let cluster: ClickHouseCluster;
  let tmp: string;
  let n = 0;
  const newSink = () => new DirSink(join(tmp, `b${++n}`));
  const engine = (over: Partial<ClickHouseRunnerConfigInput> = {}) =>
    createClickHouseEngine(
      clickhouseRunnerConfig.parse({
        url: cluster.host(1, 1).url,
        username: cluster.username,
        password: cluster.password,
        databases: { include: ["shop*"] },
        cluster: { name: cluster.name, hosts: cluster.hostUrls, replicationTimeoutSeconds: 60 },
        ...over,
      }),
      { logger },
    );
  const backupWith = async (over: Partial<ClickHouseRunnerConfigInput> = {}) => {
    const sink = newSink();
    const e = engine(over);
    try {
      const result = await e.backup({ backupId: `b${n}`, signal: AbortSignal.timeout(120_000), sink, logger });
      return { result, sink };
    } finally {
      await e.close();
    }
  };
  const restoreWith = async (b: { result: EngineBackupResult; sink: DirSink }, options: Partial<RestoreOptions> = {}) => {
    const e = engine();
    try {
      return await e.restore({ signal: AbortSignal.timeout(180_000), source: b.sink, backup: b.result, options: { existingTables: "fail", ...options }, logger });
    } finally {
      await e.close();
    }
  };
  /** count and an order-independent checksum of a table on one host */
  const sum = async (s: number, r: number, table: string) => {
    const [row] = await cluster.host(s, r).query<{ n_rows: string; digest: string }>(`SELECT toString(count()) AS n_rows, toString(sum(cityHash64(*))) AS digest FROM ${table}`);
    return { rows: Number(row?.n_rows), sha: row?.digest };
  };
  const everyHost = async (table: string) => {
    const out: Record<string, { rows: number; sha: string | undefined }> = {};
    for (const h of cluster.hosts) out[`${h.shard}/${h.replica}`] = await sum(h.shard, h.replica, table);
    return out;
  };
  const createShop = async (db: string) => {
    await cluster.execAll(`CREATE DATABASE IF NOT EXISTS ${db}`);
    await cluster.execAll(
      `CREATE TABLE ${db}.events (id UInt64, s String, v Float64) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/${db}/events', '{replica}') ORDER BY id`,
    );
    await cluster.execAll(
      `CREATE TABLE ${db}.counts (s String, c UInt64) ENGINE = ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/${db}/counts', '{replica}') ORDER BY s`,
    );
    await cluster.execAll(`CREATE MATERIALIZED VIEW ${db}.counts_mv TO ${db}.counts AS SELECT s, count() AS c FROM ${db}.events GROUP BY s`);
    await cluster.execAll(`CREATE TABLE ${db}.host_log (id UInt64, msg String) ENGINE = MergeTree ORDER BY id`);
    // a materialized view whose inner table is replicated
    await cluster.execAll(
      `CREATE MATERIALIZED VIEW ${db}.by_s ENGINE = ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/${db}/by_s', '{replica}') ORDER BY s AS SELECT s, sum(v) AS total FROM ${db}.events GROUP BY s`,
    );
    await cluster.execAll(`CREATE TABLE ${db}.events_all AS ${db}.events ENGINE = Distributed(${cluster.name}, ${db}, events, id)`);
  };

  let before: { events: Record<string, unknown>; hostLog: Record<string, unknown>; counts: Record<string, unknown>; byS: Record<string, unknown> };
  let main: { result: EngineBackupResult; sink: DirSink };

  /** A runner of the cluster's `shop` database with filesystem storage under `dir`. */
  const clusterRunnerConfig = (name: string, dir: string, extra: { encryption?: { recipients: string[] } } = {}) =>
    parseRunnerConfig({
      definition: {
        namespace: "analytics",
        name,
        clickhouse: {
          url: cluster.host(1, 1).url,
          username: cluster.username,
          password: cluster.password,
          databases: { include: ["shop"] },
          cluster: { name: cluster.name, hosts: cluster.hostUrls, replicationTimeoutSeconds: 60 },
        },
        schedule: { cron: "0 0 1 1 *", timeZone: "UTC" },
        ...extra,
      },
      storage: { filesystem: { path: dir } },
      api: { token: "token-0123456789abcdef" },
    });

  beforeAll(async () => {
    tmp = await makeTempDir("cluster-backup");
    cluster = await startClickHouseCluster({ shards: 2, replicas: 2 });
    await createShop("shop");
    // shard 1 gets 3000 rows through replica 1, shard 2 gets 2000 through replica 2
    await cluster.host(1, 1).exec("INSERT INTO shop.events SELECT number, toString(number % 7), number / 3 FROM system.numbers LIMIT 3000");
    await cluster.host(2, 2).exec("INSERT INTO shop.events SELECT number + 100000, toString(number % 5), number / 7 FROM system.numbers LIMIT 2000");
    // every host's own table holds different rows
    for (const h of cluster.hosts) {
      const k = h.shard * 10 + h.replica;
      await h.server.exec(`INSERT INTO shop.host_log SELECT number + ${k * 1000}, 'host ${k}' FROM system.numbers LIMIT ${k * 10}`);
    }
    // a table only one host has (not on the host the schema is read from)
    await cluster.host(2, 1).exec("CREATE TABLE shop.only_here (k String) ENGINE = Log");
    await cluster.host(2, 1).exec("INSERT INTO shop.only_here VALUES ('a'), ('b')");
    await cluster.syncReplicas();
    before = { events: await everyHost("shop.events"), hostLog: await everyHost("shop.host_log"), counts: await everyHost("shop.counts"), byS: await everyHost("shop.by_s") };
  }, 240_000);

  afterAll(async () => {
    await cluster?.stop();
    if (tmp) await removeDir(tmp);
  }, 60_000);

  it("backs up the schema once, each shard's replicated data once, and every host's own tables", async () => {
    main = await backupWith();
    const d = main.result.details as ClusterDetails;
    expect(d.format).toBe("clickhouse-cluster-dump/1");
    expect(d.cluster.shards.map((s) => [s.shard, s.replicas.length])).toEqual([
      [1, 2],
      [2, 2],
    ]);
    expect(d.schema.tables.map((t) => t.name).sort()).toEqual(["by_s", "counts", "counts_mv", "events", "events_all", "host_log"]);
    // a table one host has: in that host's part only
    const ids = Object.fromEntries(cluster.hosts.map((h) => [`${h.shard}/${h.replica}`, h.id]));
    expect(d.hosts.filter((h) => h.present.includes("shop.only_here")).map((h) => h.id)).toEqual([ids["2/1"]]);
    expect(main.result.tables.filter((t) => t.name === "only_here").map((t) => [t.host, t.rows])).toEqual([[ids["2/1"], 2]]);
    // the view's replicated inner table: once per shard
    expect(main.result.tables.filter((t) => t.name === "by_s" && t.host).map((t) => t.shard).sort()).toEqual([1, 2]);
    const rowsOf = (name: string) =>
      main.result.tables
        .filter((t) => t.name === name && t.host)
        .map((t) => [t.shard, t.rows])
        .sort((a, b) => Number(a[0]) - Number(b[0]));
    // replicated: once per shard
    expect(rowsOf("events")).toEqual([
      [1, 3000],
      [2, 2000],
    ]);
    // non-replicated: from every host
    expect(main.result.tables.filter((t) => t.name === "host_log").map((t) => t.rows).sort((a, b) => a - b)).toEqual([110, 120, 210, 220]);
    // the ZooKeeper path and macros as written
    expect(d.schema.tables.find((t) => t.name === "events")?.ddl).toContain("/clickhouse/tables/{shard}/shop/events");
    expect(d.hosts.filter((h) => h.role === "source")).toHaveLength(2);
    // Distributed and the view keep their DDL only
    expect(main.result.tables.filter((t) => t.name === "events_all" || t.name === "counts_mv").every((t) => t.rows === 0 && !t.dataObject)).toBe(true);
  });

  it("checks that the server knows the configured cluster", async () => {
    const good = engine();
    const bad = engine({ cluster: { name: "no_such_cluster" } });
    try {
      expect((await good.check(AbortSignal.timeout(10_000))).version).toMatch(/^18\.16\./);
      await expect(bad.check(AbortSignal.timeout(10_000))).rejects.toThrow(/cluster "no_such_cluster" is not in system\.clusters/);
    } finally {
      await good.close();
      await bad.close();
    }
  });

  it("verifies the backup from storage alone, host by host", async () => {
    const e = engine();
    try {
      const r = await e.verify!({ signal: AbortSignal.timeout(60_000), source: main.sink, backup: main.result, logger });
      expect(r.ok).toBe(true);
      expect(r.tables.filter((t) => t.name === "events").map((t) => t.rows).sort()).toEqual([2000, 3000]);
      expect(r.tables.filter((t) => t.name === "host_log").map((t) => t.host).sort()).toEqual(cluster.hosts.map((h) => h.id).sort());
    } finally {
      await e.close();
    }
  });

  it("restores into a renamed database next to the live tables, on its own ZooKeeper paths", async () => {
    const r = await restoreWith(main, { renameDatabases: { shop: "shop_copy" } });
    expect(r.tables.find((t) => t.name === "events")?.rows).toBe(5000);
    expect(await everyHost("shop_copy.events")).toEqual(before.events);
    expect(await everyHost("shop_copy.host_log")).toEqual(before.hostLog);
    expect(await everyHost("shop_copy.counts")).toEqual(before.counts);
    expect(await everyHost("shop_copy.by_s")).toEqual(before.byS);
    const onlyHere = async () => (await Promise.all(cluster.hosts.map((h) => h.server.query("SELECT name FROM system.tables WHERE database = 'shop_copy' AND name = 'only_here'")))).map((r) => r.length);
    expect(await onlyHere()).toEqual([0, 0, 1, 0]);
    expect(await cluster.host(2, 1).query("SELECT k FROM shop_copy.only_here ORDER BY k")).toEqual([{ k: "a" }, { k: "b" }]);
    const paths = await cluster.host(1, 2).query<{ database: string; zookeeper_path: string }>(
      "SELECT database, zookeeper_path FROM system.replicas WHERE table = 'events' ORDER BY database",
    );
    expect(paths).toEqual([
      { database: "shop", zookeeper_path: "/clickhouse/tables/1/shop/events" },
      { database: "shop_copy", zookeeper_path: "/clickhouse/tables/1/shop_copy/events" },
    ]);
    // the Distributed copy reads the copy
    const ddl = (await cluster.host(2, 1).query<{ statement: string }>("SHOW CREATE TABLE shop_copy.events_all"))[0]?.statement ?? "";
    expect(ddl).toContain("shop_copy");
    expect(Number((await cluster.host(2, 1).query<{ c: string }>("SELECT count() AS c FROM shop_copy.events_all"))[0]?.c)).toBe(5000);
    // writes to one never appear in the other
    await cluster.host(1, 1).exec("INSERT INTO shop_copy.events VALUES (999999, 'copy', 1)");
    await cluster.host(2, 1).exec("INSERT INTO shop.events VALUES (888888, 'live', 1)");
    await cluster.syncReplicas();
    expect((await sum(1, 2, "shop_copy.events")).rows).toBe(3001);
    expect((await sum(1, 2, "shop.events")).rows).toBe(3000);
    expect((await sum(2, 2, "shop.events")).rows).toBe(2001);
    expect((await sum(2, 2, "shop_copy.events")).rows).toBe(2000);
    await cluster.host(2, 1).exec("ALTER TABLE shop.events DELETE WHERE id = 888888");
    await cluster.syncReplicas();
  });

  it("points Distributed tables at the cluster restored onto when it has another name", async () => {
    // the same backup as if taken from a cluster named "prod_events"
    const other = structuredClone(main.result.details) as ClusterDetails;
    other.cluster.name = "prod_events";
    for (const t of other.schema.tables) t.ddl = t.ddl.replace(`Distributed(${cluster.name},`, "Distributed(prod_events,");
    expect(other.schema.tables.find((t) => t.name === "events_all")?.ddl).toContain("Distributed(prod_events,");
    await restoreWith({ result: { ...main.result, details: other }, sink: main.sink }, { renameDatabases: { shop: "shop_moved" } });
    for (const h of cluster.hosts) {
      const ddl = (await h.server.query<{ statement: string }>("SHOW CREATE TABLE shop_moved.events_all"))[0]?.statement ?? "";
      expect(ddl).toContain(`Distributed(${cluster.name}, shop_moved, events`);
      expect(Number((await h.server.query<{ c: string }>("SELECT count() AS c FROM shop_moved.events_all"))[0]?.c)).toBe(5000);
    }
    await cluster.execAll("DROP DATABASE shop_moved");
  });

  it("refuses, before changing anything on any host, a restore whose ZooKeeper path is in use or that one host refuses", async () => {
    // a table elsewhere holds the path a restore into shop_taken would get
    await cluster.execAll("CREATE DATABASE IF NOT EXISTS other");
    await cluster.execAll("CREATE TABLE other.squatter (x UInt8) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/shop_taken/events', '{replica}') ORDER BY x");
    const err = await restoreWith(main, { renameDatabases: { shop: "shop_taken" } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EngineError);
    expect((err as Error).message).toMatch(/ZooKeeper path \/clickhouse\/tables\/1\/shop_taken\/events.*in use.*nothing was changed/);
    for (const h of cluster.hosts) expect(await h.server.query("SELECT name FROM system.databases WHERE name = 'shop_taken'")).toEqual([]);
    // and a second restore into the existing copy is refused as well
    const again = await restoreWith(main, { renameDatabases: { shop: "shop_copy" } }).catch((e: unknown) => e);
    expect((again as Error).message).toMatch(/restore refused/);
    await cluster.execAll("DROP DATABASE other");
    // two tables that would end up on one ZooKeeper path
    const twin = structuredClone(main.result.details) as ClusterDetails;
    for (const t of twin.schema.tables) if (t.name === "counts") t.ddl = t.ddl.replace("/shop/counts'", "/shop/events'");
    const shared = await restoreWith({ result: { ...main.result, details: twin }, sink: main.sink }, { renameDatabases: { shop: "shop_twin" } }).catch((e: unknown) => e);
    expect((shared as Error).message).toMatch(/shop_twin\.(counts|events) and shop_twin\.(counts|events) on .* would share ZooKeeper path \/clickhouse\/tables\/1\/shop_twin\/events.*nothing was changed/);
    for (const h of cluster.hosts) expect(await h.server.query("SELECT name FROM system.databases WHERE name = 'shop_twin'")).toEqual([]);
    // one host's own refusal (a target that holds data) stops the restore before any host changes
    const h22 = cluster.host(2, 2);
    await h22.exec("CREATE DATABASE shop_pre");
    await h22.exec("CREATE TABLE shop_pre.host_log (id UInt64, msg String) ENGINE = MergeTree ORDER BY id");
    await h22.exec("INSERT INTO shop_pre.host_log VALUES (1, 'mine')");
    const held = await restoreWith(main, { renameDatabases: { shop: "shop_pre" } }).catch((e: unknown) => e);
    expect((held as Error).message).toMatch(new RegExp(`${cluster.hosts[3]!.id}: restore refused: target table shop_pre.host_log already holds data.*nothing was changed`));
    for (const h of cluster.hosts) {
      const tables = await h.server.query<{ name: string }>("SELECT name FROM system.tables WHERE database = 'shop_pre' ORDER BY name");
      expect(tables.map((t) => t.name)).toEqual(h.server === h22 ? ["host_log"] : []);
    }
    await h22.exec("DROP DATABASE shop_pre");
  });

  it("restores the whole cluster after everything was dropped", async () => {
    await cluster.execAll("DROP DATABASE shop");
    await cluster.execAll("DROP DATABASE shop_copy");
    const r = await restoreWith(main);
    expect(r.tables.find((t) => t.name === "host_log")?.rows).toBe(660);
    expect(await everyHost("shop.events")).toEqual(before.events);
    expect(await everyHost("shop.host_log")).toEqual(before.hostLog);
    expect(await everyHost("shop.counts")).toEqual(before.counts);
    expect(await everyHost("shop.by_s")).toEqual(before.byS);
    for (const h of cluster.hosts) expect(Number((await h.server.query<{ c: string }>("SELECT count() AS c FROM shop.events_all"))[0]?.c)).toBe(5000);
    // the materialized view works again and replication too
    await cluster.host(2, 1).exec("INSERT INTO shop.events VALUES (777777, 'after', 1)");
    await cluster.syncReplicas();
    expect(await cluster.host(2, 2).query("SELECT s, c FROM shop.counts WHERE s = 'after'")).toEqual([{ s: "after", c: "1" }]);
  });

  it("uses the other replica when one replica of each shard is stopped", async () => {
    await cluster.host(1, 1).kill();
    await cluster.host(2, 2).kill();
    try {
      const b = await backupWith({ url: cluster.host(1, 2).url });
      const d = b.result.details as ClusterDetails;
      const ids = Object.fromEntries(cluster.hosts.map((h) => [`${h.shard}/${h.replica}`, h.id]));
      expect(d.cluster.shards.map((s) => s.source)).toEqual([ids["1/2"], ids["2/1"]]);
      expect(d.hosts.filter((h) => h.role === "unreachable").map((h) => h.id).sort()).toEqual([ids["1/1"], ids["2/2"]].sort());
      expect(b.result.tables.filter((t) => t.name === "events").map((t) => t.rows).sort()).toEqual([2001, 3000]);
    } finally {
      await cluster.host(1, 1).start();
      await cluster.host(2, 2).start();
    }
  });

  it("fails, naming the shard, when no replica of a shard is healthy", async () => {
    await cluster.host(2, 1).kill();
    await cluster.host(2, 2).kill();
    try {
      const err = await backupWith().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(EngineError);
      expect((err as Error).message).toMatch(/shard 2 has no healthy replica/);
      expect((err as Error).message).not.toMatch(/shard 1 has/);
    } finally {
      await cluster.host(2, 1).start();
      await cluster.host(2, 2).start();
    }
  });

  it("runs through the runner: the start-up clean-up on every host, backup, verify and a renamed restore as operations", async () => {
    // a staging table an interrupted restore left on another host than the configured one
    await cluster.host(2, 2).exec("CREATE TABLE shop._chbackup_stage_0badc0de_events (x UInt8) ENGINE = Log");
    const config = clusterRunnerConfig("events-cluster", join(tmp, "runner"));
    const runner = makeRunner(config);
    await runner.init();
    const cleaned = await runner.cleanupInterrupted(AbortSignal.timeout(30_000));
    expect(cleaned?.removed).toEqual([`${cluster.hosts.find((h) => h.shard === 2 && h.replica === 2)!.id}: shop._chbackup_stage_0badc0de_events`]);
    expect(await cluster.host(2, 2).query("SELECT name FROM system.tables WHERE database = 'shop' AND name LIKE '_chbackup%'")).toEqual([]);
    const b = await runner.startBackup("api").finished;
    expect(b.error).toBeUndefined();
    expect(b.state).toBe("succeeded");
    const v = await runner.startVerify(b.backupId!).finished;
    expect(v.state).toBe("succeeded");
    const r = await runner.startRestore({ backup: b.backupId!, renameDatabases: { shop: "shop_op" }, existingTables: "fail" }).finished;
    expect(r.error).toBeUndefined();
    expect(r.state).toBe("succeeded");
    for (const h of cluster.hosts) {
      expect(await sum(h.shard, h.replica, "shop_op.events")).toEqual(await sum(h.shard, h.replica, "shop.events"));
      expect(await sum(h.shard, h.replica, "shop_op.host_log")).toEqual(await sum(h.shard, h.replica, "shop.host_log"));
    }
    await runner.shutdown(5000);
    await cluster.execAll("DROP DATABASE shop_op");
  });

  it("encrypts a cluster backup (age) and restores and verifies it with an identity", async () => {
    const identity = await generateX25519Identity();
    const keyFile = join(tmp, "cluster-key.txt");
    await writeFile(keyFile, `${identity}\n`, { mode: 0o600 });
    const config = clusterRunnerConfig("events-encrypted", join(tmp, "runner-enc"), { encryption: { recipients: [await identityToRecipient(identity)] } });
    const runner = makeRunner(config);
    await runner.init();
    try {
      const b = await runner.startBackup("api").finished;
      expect(b.error).toBeUndefined();
      const m = runner.catalog.get(b.backupId!)!.manifest;
      const dataObjects = m.objects.filter((o) => o.name.startsWith("shard-"));
      expect(dataObjects.length).toBeGreaterThan(0);
      expect(dataObjects.every((o) => o.name.endsWith(".age"))).toBe(true);
      const ids = await AgeIdentities.fromFile(keyFile);
      expect((await runner.startVerify(b.backupId!, "api", ids).finished).state).toBe("succeeded");
      const r = await runner.startRestore({ backup: b.backupId!, renameDatabases: { shop: "shop_enc" }, existingTables: "fail", identities: ids }, "api").finished;
      expect(r.error).toBeUndefined();
      for (const h of cluster.hosts) {
        expect(await sum(h.shard, h.replica, "shop_enc.events")).toEqual(await sum(h.shard, h.replica, "shop.events"));
        expect(await sum(h.shard, h.replica, "shop_enc.host_log")).toEqual(await sum(h.shard, h.replica, "shop.host_log"));
      }
    } finally {
      await runner.shutdown(5000);
      await cluster.execAll("DROP DATABASE IF EXISTS shop_enc");
    }
  });

  it("backup-runner restore --merge-shards puts the runner's cluster backup into one ClickHouse 18.16 server", async () => {
    const single = await startClickHouse();
    try {
      const path = join(tmp, "single.json");
      await writeFile(
        path,
        JSON.stringify({
          definition: {
            namespace: "analytics",
            name: "events-cluster",
            clickhouse: { url: single.url, username: single.username, password: single.password },
            schedule: { cron: "0 0 1 1 *", timeZone: "UTC" },
          },
          storage: { filesystem: { path: join(tmp, "runner") } },
          api: { token: "token-0123456789abcdef" },
        }),
      );
      const r = await execa(process.execPath, [join(repoRoot, "cmd", "backup-runner", "main.ts"), "restore", "--backup", "latest", "--merge-shards", "--config", path], {
        reject: false,
        timeout: 120_000,
      });
      expect(r.exitCode, r.stderr).toBe(0);
      const count = async (s: ClickHouseServer | undefined, t: string) => Number((await s!.query<{ c: string }>(`SELECT count() AS c FROM ${t}`))[0]?.c);
      const events = (await count(cluster.host(1, 1), "shop.events")) + (await count(cluster.host(2, 1), "shop.events"));
      const hostLog = (await Promise.all(cluster.hosts.map((h) => count(h.server, "shop.host_log")))).reduce((a, b) => a + b, 0);
      expect(await count(single, "shop.events")).toBe(events);
      expect(await count(single, "shop.events_all")).toBe(events);
      expect(await count(single, "shop.host_log")).toBe(hostLog);
      expect((await single.query<{ engine: string }>("SELECT engine FROM system.tables WHERE database = 'shop' AND name = 'counts'"))[0]?.engine).toBe("SummingMergeTree");
    } finally {
      await single.stop();
    }
  });

  it("names the hosts whose restore stands when a later host fails (a restore across hosts is not one transaction)", async () => {
    // host 2/1 (shard 2's source, restored after 2/2) takes no DDL or INSERT: it fails after every check passed
    const h21 = cluster.host(2, 1);
    const users = join(h21.dir, "users.xml");
    const original = await readFile(users, "utf8");
    const readonly = async (v: string) =>
      expect
        .poll(async () => (await h21.query<{ value: string }>("SELECT value FROM system.settings WHERE name = 'readonly'"))[0]?.value, { timeout: 30_000, interval: 250 })
        .toBe(v);
    // ClickHouse reloads users.xml when its modification time changes, which it reads to the second: each write
    // gets a time of its own, so that putting the original back within the same second is not missed.
    let writes = 0;
    const writeUsers = async (text: string) => {
      await writeFile(users, text);
      const t = new Date(Date.now() + 10_000 * ++writes);
      await utimes(users, t, t);
    };
    await writeUsers(original.replace("<max_memory_usage>", "<readonly>2</readonly><max_memory_usage>"));
    await readonly("2");
    try {
      const err = await restoreWith(main, { renameDatabases: { shop: "shop_fail" } }).catch((e: unknown) => e);
      const ids = Object.fromEntries(cluster.hosts.map((h) => [`${h.shard}/${h.replica}`, h.id]));
      expect(err).toBeInstanceOf(EngineError);
      const msg = (err as Error).message;
      expect(msg).toMatch(new RegExp(`^cluster restore failed: restoring ${ids["2/1"]} \\(shard 2\\) failed: .*readonly`, "i"));
      expect(msg).toContain(`hosts already restored (their restore stands): `);
      expect(msg.slice(msg.indexOf("hosts already restored"))).toContain(ids["2/2"]!);
      expect(msg.slice(msg.indexOf("hosts already restored"))).not.toContain(ids["2/1"]!);
      // 2/2 holds its own restored table; 2/1 has nothing
      expect((await sum(2, 2, "shop_fail.host_log")).rows).toBe(220);
      expect(await h21.query("SELECT name FROM system.databases WHERE name = 'shop_fail'")).toEqual([]);
    } finally {
      await writeUsers(original);
      await readonly("0");
      await cluster.execAll("DROP DATABASE IF EXISTS shop_fail");
    }
  });

  it("a cancelled cluster restore ends with the abort (the runner reports it as cancelled), whenever it comes", async () => {
    for (const afterMs of [150, 600]) {
      const ac = new AbortController();
      const e = engine();
      const timer = setTimeout(() => ac.abort(), afterMs);
      try {
        const err = await e
          .restore({ signal: ac.signal, source: main.sink, backup: main.result, options: { existingTables: "fail", renameDatabases: { shop: "shop_cancel" } }, logger })
          .then(() => undefined, (x: unknown) => x);
        // (a restore that finished before the abort is fine too)
        if (err !== undefined) expect((err as Error).name, String(err)).toBe("AbortError");
      } finally {
        clearTimeout(timer);
        await e.close();
        await cluster.execAll("DROP DATABASE IF EXISTS shop_cancel");
      }
    }
  });

  it("refuses a restore onto another number of shards, and merges every shard into chDB with mergeShards", async () => {
    // the backup as if it came from a cluster with one more shard
    const d = structuredClone(main.result.details) as ClusterDetails;
    d.cluster.shards.push({ shard: 3, source: "x:1", replicas: ["x:1"] });
    const err = await restoreWith({ result: { ...main.result, details: d }, sink: main.sink }).catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/3 shard\(s\).*has 2.*mergeShards/);

    let chdb: ChdbEngine | undefined;
    try {
      chdb = await startChdb();
      const e = createClickHouseEngine(clickhouseRunnerConfig.parse({ url: "http://chdb:8123" }), { logger, client: chdb.engineClient() });
      const r = await e.restore({ signal: AbortSignal.timeout(120_000), source: main.sink, backup: main.result, options: { existingTables: "fail", mergeShards: true }, logger });
      await e.close();
      expect(r.tables.find((t) => t.name === "events")?.rows).toBe(5000);
      expect(r.tables.find((t) => t.name === "host_log")?.rows).toBe(660);
      const q = async (sql: string) => (await chdb!.query<{ c: string }>(sql))[0]?.c;
      expect(Number(await q("SELECT count() AS c FROM shop.events"))).toBe(5000);
      expect(Number(await q("SELECT count() AS c FROM shop.events_all"))).toBe(5000);
      expect(Number(await q("SELECT count() AS c FROM shop.host_log"))).toBe(660);
      expect(await q("SELECT engine AS c FROM system.tables WHERE database = 'shop' AND name = 'events'")).toBe("MergeTree");
      // the same rows: chDB's checksum is the sum of both shards' checksums before the backup
      const merged = (await chdb.query<{ digest: string }>("SELECT toString(sum(cityHash64(*))) AS digest FROM shop.events"))[0]?.digest;
      const ev = before.events as Record<string, { sha: string }>;
      expect(BigInt(merged ?? "0")).toBe((BigInt(ev["1/1"]!.sha) + BigInt(ev["2/1"]!.sha)) % 2n ** 64n);
    } finally {
      await chdb?.stop();
    }
  });
});
