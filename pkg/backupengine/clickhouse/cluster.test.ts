import { describe, expect, it } from "vitest";
import { CLUSTER_FORMAT, hostDumpDetails, mergedDumpDetails, type ClusterDetails, type ClusterHostPart } from "./cluster.ts";
import { DUMP_FORMAT, type DumpTable } from "./details.ts";
import { EngineError } from "../types.ts";
import { renamedZooKeeperPath, withZooKeeperPath } from "./clusterddl.ts";

const ddl = {
  events: "CREATE TABLE shop.events (id UInt64) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/shop/events', '{replica}') ORDER BY id",
  log: "CREATE TABLE shop.host_log (id UInt64) ENGINE = MergeTree ORDER BY id",
  all: "CREATE TABLE shop.events_all (id UInt64) ENGINE = Distributed(main, shop, events, id)",
};
const schema = (name: keyof typeof ddl, engine: string, kind: DumpTable["kind"]): DumpTable => ({ database: "shop", name: name === "log" ? "host_log" : name === "all" ? "events_all" : "events", engine, kind, ddl: ddl[name], rows: 0, bytes: 0, uncompressedBytes: 0 });
const data = (t: DumpTable, prefix: string, rows: number): DumpTable => ({
  ...t,
  dataObject: `${prefix}data/shop/${t.name}.native.zst`,
  columns: [{ name: "id", type: "UInt64" }],
  rows,
  bytes: rows * 2,
  uncompressedBytes: rows * 8,
});
const events = schema("events", "ReplicatedMergeTree", "data");
const hostLog = schema("log", "MergeTree", "data");
const eventsAll = schema("all", "Distributed", "schema");
const host = (shard: number, replica: number, role: ClusterHostPart["role"], tables: DumpTable[]): ClusterHostPart => ({
  id: `h${shard}${replica}:9000`,
  shard,
  replica,
  role,
  present: role === "unreachable" ? [] : ["shop.events", "shop.events_all", "shop.host_log"],
  tables,
});
const details = (): ClusterDetails => ({
  format: CLUSTER_FORMAT,
  serverVersion: "18.16.1",
  rowsFrom: "stream",
  compression: { codec: "zstd", level: 1, frameBytes: 4194304 },
  cluster: { name: "main", shards: [{ shard: 1, source: "h11:9000", replicas: ["h11:9000", "h12:9000"] }, { shard: 2, source: "h21:9000", replicas: ["h21:9000", "h22:9000"] }] },
  schema: { host: "h11:9000", databases: [{ name: "shop", engine: "Ordinary", ddl: "CREATE DATABASE shop" }], tables: [events, eventsAll, hostLog] },
  hosts: [
    host(1, 1, "source", [data(events, "shard-1/replica-1/", 30), data(hostLog, "shard-1/replica-1/", 1)]),
    host(1, 2, "replica", [data(hostLog, "shard-1/replica-2/", 2)]),
    host(2, 1, "source", [data(events, "shard-2/replica-1/", 20), data(hostLog, "shard-2/replica-1/", 3)]),
    host(2, 2, "unreachable", []),
  ],
});

describe("hostDumpDetails", () => {
  it("gives a replica its own tables' data and the replicated tables as DDL only", () => {
    const d = details();
    const replica = hostDumpDetails(d, d.hosts[1], (t) => t.ddl);
    expect(replica.format).toBe(DUMP_FORMAT);
    expect(replica.tables.map((t) => [t.name, t.kind, t.dataObject ?? null, t.rows])).toEqual([
      ["events", "schema", null, 0],
      ["events_all", "schema", null, 0],
      ["host_log", "data", "shard-1/replica-2/data/shop/host_log.native.zst", 2],
    ]);
    const source = hostDumpDetails(d, d.hosts[0], (t) => t.ddl);
    expect(source.tables.find((t) => t.name === "events")).toMatchObject({ kind: "data", rows: 30, dataObject: "shard-1/replica-1/data/shop/events.native.zst" });
  });

  it("gives a host that was unreachable at backup time the whole schema without data, and rewrites DDL as asked", () => {
    const d = details();
    const map = (t: DumpTable) => withZooKeeperPath(t.ddl, (p) => renamedZooKeeperPath(p, "shop", "copy"));
    const down = hostDumpDetails(d, d.hosts[3], map);
    expect(down.tables.map((t) => [t.name, t.kind])).toEqual([
      ["events", "schema"],
      ["events_all", "schema"],
      ["host_log", "schema"],
    ]);
    expect(down.tables[0]!.ddl).toContain("'/clickhouse/tables/{shard}/copy/events'");
  });
});

describe("mergedDumpDetails", () => {
  it("concatenates every shard's and host's pieces of a table and makes the engines plain", () => {
    const m = mergedDumpDetails(details());
    const byName = Object.fromEntries(m.tables.map((t) => [t.name, t]));
    expect(byName["events"]).toMatchObject({
      engine: "MergeTree",
      kind: "data",
      rows: 50,
      dataObject: "shard-1/replica-1/data/shop/events.native.zst",
      dataObjects: ["shard-1/replica-1/data/shop/events.native.zst", "shard-2/replica-1/data/shop/events.native.zst"],
    });
    expect(byName["events"]!.ddl).toBe("CREATE TABLE shop.events (id UInt64) ENGINE = MergeTree() ORDER BY id");
    expect(byName["host_log"]).toMatchObject({ rows: 6, bytes: 12, uncompressedBytes: 48 });
    expect(byName["host_log"]!.dataObjects).toHaveLength(3);
    expect(byName["events_all"]).toMatchObject({ engine: "Merge", kind: "schema", ddl: "CREATE TABLE `shop`.`events_all` AS `shop`.`events` ENGINE = Merge('shop', '^events$')" });
  });

  it("keeps a data table no host holds data for as DDL only", () => {
    const d = details();
    d.hosts = d.hosts.map((h) => ({ ...h, tables: h.tables.filter((t) => t.name !== "host_log") }));
    const t = mergedDumpDetails(d).tables.find((x) => x.name === "host_log");
    expect(t).toMatchObject({ kind: "schema", rows: 0, dataObject: undefined });
  });

  it("refuses to merge pieces stored with different compression or columns", () => {
    const d = details();
    d.hosts[2]!.tables[0] = { ...d.hosts[2]!.tables[0]!, codec: "lz4" };
    expect(() => mergedDumpDetails(d)).toThrow(EngineError);
    expect(() => mergedDumpDetails(d)).toThrow(/shop\.events.*compression/);
    const e = details();
    e.hosts[2]!.tables[1] = { ...e.hosts[2]!.tables[1]!, columns: [{ name: "other", type: "UInt64" }] };
    expect(() => mergedDumpDetails(e)).toThrow(/shop\.host_log.*columns/);
  });
});
