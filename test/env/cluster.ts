// A replicated, sharded ClickHouse 18.16 cluster on loopback: one ZooKeeper
// (test/env/zookeeper.ts) and shards x replicas clickhouse-server processes,
// each with its own ports and dirs, sharing a remote_servers cluster
// (internal_replication), macros {shard} and {replica}, the ZooKeeper and the
// distributed DDL queue. Every host is 127.0.0.1 with its own TCP port: the
// cluster's host:port in system.clusters is how a backup finds each host, and
// `hostUrls` maps it to the host's HTTP URL.
import { randomBytes } from "node:crypto";
import { startClickHouse, type ClickHouseServer } from "./clickhouse.ts";
import { freePort, waitUntil } from "./proc.ts";
import { startZooKeeper, type ZooKeeperServer } from "./zookeeper.ts";

export interface ClusterHost {
  /** 1-based, as system.clusters numbers them. */
  shard: number;
  replica: number;
  /** "127.0.0.1:<tcp port>": the host as system.clusters names it. */
  id: string;
  server: ClickHouseServer;
}

export interface ClickHouseCluster {
  /** The cluster's name in remote_servers. */
  readonly name: string;
  readonly zookeeper: ZooKeeperServer;
  readonly hosts: readonly ClusterHost[];
  readonly username: string;
  readonly password: string;
  /** "127.0.0.1:<tcp port>" -> "http://127.0.0.1:<http port>" for every host. */
  readonly hostUrls: Readonly<Record<string, string>>;
  /** Every port of the cluster (for the teardown check). */
  readonly ports: readonly number[];
  host(shard: number, replica: number): ClickHouseServer;
  /** Runs a statement on every host, one after the other. */
  execAll(sql: string): Promise<void>;
  /** Waits (bounded) until every replicated table on every running host has an empty replication queue. */
  syncReplicas(timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

export interface StartClusterOptions {
  shards?: number;
  replicas?: number;
  name?: string;
}

const xmlEscape = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

export async function startClickHouseCluster(opts: StartClusterOptions = {}): Promise<ClickHouseCluster> {
  const shards = opts.shards ?? 2;
  const replicas = opts.replicas ?? 2;
  const name = opts.name ?? "chbackup_test";
  const username = "backup";
  const password = randomBytes(12).toString("hex");
  const zk = await startZooKeeper();
  const layout: { shard: number; replica: number; http: number; tcp: number; interserver: number }[] = [];
  for (let s = 1; s <= shards; s++) {
    for (let r = 1; r <= replicas; r++) layout.push({ shard: s, replica: r, http: await freePort(), tcp: await freePort(), interserver: await freePort() });
  }
  const remoteServers = `  <remote_servers>
    <${name}>
${Array.from({ length: shards }, (_, i) => {
  const s = i + 1;
  return `      <shard>
        <internal_replication>true</internal_replication>
${layout
  .filter((h) => h.shard === s)
  .map((h) => `        <replica><host>127.0.0.1</host><port>${h.tcp}</port><user>${username}</user><password>${xmlEscape(password)}</password></replica>`)
  .join("\n")}
      </shard>`;
}).join("\n")}
    </${name}>
  </remote_servers>`;
  const common = `  <zookeeper>
    <node><host>127.0.0.1</host><port>${zk.port}</port></node>
    <session_timeout_ms>30000</session_timeout_ms>
  </zookeeper>
  <distributed_ddl><path>/clickhouse/task_queue/ddl</path></distributed_ddl>
${remoteServers}
`;
  const started: ClusterHost[] = [];
  const stopAll = async () => {
    await Promise.allSettled(started.map((h) => h.server.stop()));
    await zk.stop();
  };
  try {
    // two at a time: four servers starting at once on 2 cores only wait for each other
    const queue = [...layout];
    const worker = async () => {
      for (let h = queue.shift(); h; h = queue.shift()) {
        const server = await startClickHouse({
          httpPort: h.http,
          tcpPort: h.tcp,
          interserverPort: h.interserver,
          password,
          startTimeoutSeconds: 90,
          extraConfig: `${common}  <macros><shard>${h.shard}</shard><replica>s${h.shard}r${h.replica}</replica></macros>\n`,
        });
        started.push({ shard: h.shard, replica: h.replica, id: `127.0.0.1:${h.tcp}`, server });
      }
    };
    await Promise.all([worker(), worker()]);
  } catch (err) {
    await stopAll();
    throw err;
  }
  started.sort((a, b) => a.shard - b.shard || a.replica - b.replica);
  const hosts = started;
  const host = (shard: number, replica: number) => {
    const h = hosts.find((x) => x.shard === shard && x.replica === replica);
    if (!h) throw new Error(`no host for shard ${shard} replica ${replica}`);
    return h.server;
  };
  const alive = async (s: ClickHouseServer) => {
    try {
      return (await fetch(`${s.url}/ping`, { signal: AbortSignal.timeout(1000) })).ok;
    } catch {
      return false;
    }
  };
  return {
    name,
    zookeeper: zk,
    hosts,
    username,
    password,
    hostUrls: Object.fromEntries(hosts.map((h) => [h.id, h.server.url])),
    ports: [...zk.ports, ...hosts.flatMap((h) => h.server.ports)],
    host,
    execAll: async (sql) => {
      for (const h of hosts) await h.server.exec(sql);
    },
    syncReplicas: async (timeoutMs = 60_000) => {
      for (const h of hosts) {
        if (!(await alive(h.server))) continue;
        // An empty queue is not enough: an insert on another replica reaches this queue only once this
        // replica has pulled the shared log. SYNC REPLICA waits for that pull and for the queue alike.
        const tables = await h.server.query<{ database: string; table: string }>("SELECT database, table FROM system.replicas WHERE NOT is_readonly");
        for (const t of tables) await h.server.exec(`SYSTEM SYNC REPLICA \`${t.database}\`.\`${t.table}\``);
        await waitUntil(
          `replication queues of ${h.id} empty`,
          async () => {
            const [r] = await h.server.query<{ q: string }>("SELECT toString(sum(queue_size) + sum(inserts_in_queue) + sum(merges_in_queue)) AS q FROM system.replicas");
            return Number(r?.q ?? 0) === 0;
          },
          { timeoutMs, intervalMs: 200 },
        );
      }
    },
    stop: stopAll,
  };
}
