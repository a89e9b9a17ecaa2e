import { describe, expect, it } from "vitest";
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
import { chooseSource, hostUrl, tablesPerHost } from "./cluster.ts";

const rmt = "CREATE TABLE shop.events (id UInt64) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/shop/events', '{replica}') ORDER BY id SETTINGS index_granularity = 8192";

describe("replicatedEngine", () => {
  it("finds the engine, its ZooKeeper path and replica as written", () => {
    expect(replicatedEngine(rmt)).toEqual({ name: "ReplicatedMergeTree", plain: "MergeTree", path: "/clickhouse/tables/{shard}/shop/events", replica: "{replica}" });
    expect(replicatedEngine("CREATE TABLE a.b (x UInt8) ENGINE = MergeTree ORDER BY x")).toBeUndefined();
    expect(replicatedEngine("CREATE TABLE a.b (x UInt8) ENGINE = ReplicatedMergeTree ORDER BY x")).toEqual({ name: "ReplicatedMergeTree", plain: "MergeTree", path: undefined, replica: undefined });
  });
  it("tells replicated objects: tables, and materialized views with a replicated inner table", () => {
    expect(isReplicatedObject("ReplicatedReplacingMergeTree", "")).toBe(true);
    expect(isReplicatedObject("MaterializedView", "CREATE MATERIALIZED VIEW a.v ENGINE = ReplicatedMergeTree('/p/{shard}/v', '{replica}') ORDER BY x AS SELECT x FROM a.t")).toBe(true);
    expect(isReplicatedObject("MaterializedView", "CREATE MATERIALIZED VIEW a.v TO a.t AS SELECT x FROM a.s")).toBe(false);
    expect(isReplicatedObject("MergeTree", rmt)).toBe(false);
  });
});

describe("renamedZooKeeperPath", () => {
  it("replaces the database's path segment", () => {
    expect(renamedZooKeeperPath("/clickhouse/tables/{shard}/shop/events", "shop", "copy")).toBe("/clickhouse/tables/{shard}/copy/events");
  });
  it("appends the new database to the last segment when no segment names the database", () => {
    expect(renamedZooKeeperPath("/clickhouse/tables/{shard}/events", "shop", "copy")).toBe("/clickhouse/tables/{shard}/events_copy");
    expect(renamedZooKeeperPath("/clickhouse/tables/{shard}/events/", "shop", "copy")).toBe("/clickhouse/tables/{shard}/events_copy/");
  });
  it("leaves paths built from {database} or {uuid}, and unrenamed databases, alone", () => {
    expect(renamedZooKeeperPath("/t/{shard}/{database}/{table}", "shop", "copy")).toBe("/t/{shard}/{database}/{table}");
    expect(renamedZooKeeperPath("/t/{uuid}", "shop", "copy")).toBe("/t/{uuid}");
    expect(renamedZooKeeperPath("/t/shop/x", "shop", "shop")).toBe("/t/shop/x");
  });
  it("rewrites only the path argument of the DDL", () => {
    const out = withZooKeeperPath(rmt, (p) => renamedZooKeeperPath(p, "shop", "copy"));
    expect(out).toBe(rmt.replace("{shard}/shop/events", "{shard}/copy/events"));
    expect(withZooKeeperPath("CREATE TABLE a.b (x UInt8) ENGINE = Log", () => "x")).toBe("CREATE TABLE a.b (x UInt8) ENGINE = Log");
  });
});

describe("withoutReplication", () => {
  it("drops the path and replica arguments", () => {
    expect(withoutReplication(rmt)).toBe("CREATE TABLE shop.events (id UInt64) ENGINE = MergeTree() ORDER BY id SETTINGS index_granularity = 8192");
    expect(withoutReplication("CREATE TABLE a.c (s String, v UInt64) ENGINE = ReplicatedReplacingMergeTree('/p/{shard}/c', '{replica}', v) ORDER BY s")).toBe(
      "CREATE TABLE a.c (s String, v UInt64) ENGINE = ReplacingMergeTree(v) ORDER BY s",
    );
    // old syntax: partition column, key, granularity stay
    expect(withoutReplication("CREATE TABLE a.o (d Date, id UInt64) ENGINE = ReplicatedMergeTree('/p/o', '{replica}', d, (id), 8192)")).toBe(
      "CREATE TABLE a.o (d Date, id UInt64) ENGINE = MergeTree(d, (id), 8192)",
    );
    expect(withoutReplication("CREATE TABLE a.b (x UInt8) ENGINE = ReplicatedMergeTree ORDER BY x")).toBe("CREATE TABLE a.b (x UInt8) ENGINE = MergeTree ORDER BY x");
  });
});

describe("Distributed tables in a merged restore", () => {
  it("become a Merge table over their local table", () => {
    const ddl = "CREATE TABLE shop.events_all (id UInt64) ENGINE = Distributed(c2x2, shop, events, id)";
    expect(distributedTarget(ddl)).toEqual({ database: "shop", table: "events" });
    expect(distributedTarget("CREATE TABLE a.d (x UInt8) ENGINE = Distributed(c, currentDatabase(), t)")).toBeUndefined();
    expect(distributedAsMerge("shop", "events_all", { database: "shop", table: "events" })).toBe(
      "CREATE TABLE `shop`.`events_all` AS `shop`.`events` ENGINE = Merge('shop', '^events$')",
    );
  });
});

describe("withDistributedCluster", () => {
  it("points a Distributed table over the backed-up cluster at the cluster restored onto", () => {
    expect(withDistributedCluster("CREATE TABLE a.d (x UInt8) ENGINE = Distributed(prod, a, t, rand())", "prod", "staging")).toBe(
      "CREATE TABLE a.d (x UInt8) ENGINE = Distributed(`staging`, a, t, rand())",
    );
    expect(withDistributedCluster("CREATE TABLE a.d (x UInt8) ENGINE = Distributed('prod', a, t)", "prod", "staging")).toBe("CREATE TABLE a.d (x UInt8) ENGINE = Distributed('staging', a, t)");
    // another cluster, or the same name: unchanged
    expect(withDistributedCluster("CREATE TABLE a.d (x UInt8) ENGINE = Distributed(other, a, t)", "prod", "staging")).toBe("CREATE TABLE a.d (x UInt8) ENGINE = Distributed(other, a, t)");
    expect(withDistributedCluster("CREATE TABLE a.d (x UInt8) ENGINE = Distributed(prod, a, t)", "prod", "prod")).toBe("CREATE TABLE a.d (x UInt8) ENGINE = Distributed(prod, a, t)");
  });
});

describe("expandMacros", () => {
  it("expands known macros and says when one is unknown", () => {
    expect(expandMacros("/t/{shard}/{database}/x", { shard: "2" }, { database: "copy" })).toBe("/t/2/copy/x");
    expect(expandMacros("/t/{layer}-{shard}", { shard: "2" })).toBeUndefined();
  });
});

describe("cluster hosts", () => {
  it("reaches a host by its name with the URL's scheme and port, httpPort, or an override", () => {
    expect(hostUrl("http://ch.db.svc:8123", {}, "chi-prod-0-1", 9000)).toBe("http://chi-prod-0-1:8123");
    expect(hostUrl("https://ch.db.svc", { httpPort: 8443 }, "chi-prod-0-1", 9440)).toBe("https://chi-prod-0-1:8443");
    // a URL without a port (an ingress, say): the hosts' ClickHouse default
    expect(hostUrl("https://ch.example.com", {}, "h", 9440)).toBe("https://h:8443");
    expect(hostUrl("http://ch.example.com/", {}, "h", 9000)).toBe("http://h:8123");
    expect(hostUrl("http://x:8123", { hosts: { "127.0.0.1:9001": "http://127.0.0.1:18124/" } }, "127.0.0.1", 9001)).toBe("http://127.0.0.1:18124");
    expect(hostUrl("http://x:8123", {}, "::1", 9000)).toBe("http://[::1]:8123");
  });
  it("chooses the reachable, writable replica with the smallest delay", () => {
    const r = (replica: number, o: { error?: string; readonly?: boolean; delay?: number }) => ({ replica, info: o.error ? undefined : {}, ...o });
    expect(chooseSource([r(1, { delay: 5 }), r(2, { delay: 0 })])?.replica).toBe(2);
    expect(chooseSource([r(1, { error: "refused" }), r(2, { delay: 9 })])?.replica).toBe(2);
    expect(chooseSource([r(1, { readonly: true }), r(2, { delay: 0, error: "down" })])).toBeUndefined();
    expect(chooseSource([r(2, { delay: 0 }), r(1, { delay: 0 })])?.replica).toBe(1);
  });
});

describe("tablesPerHost", () => {
  it("shares the engine's table streams among the hosts at once: max(tables, hosts) in all", () => {
    expect([1, 2, 3, 4].map((h) => tablesPerHost(2, h) * h)).toEqual([2, 2, 3, 4]);
    expect(tablesPerHost(4, 2)).toBe(2);
    expect(tablesPerHost(2, 0)).toBe(2);
  });
});
