// ClickHouse server (Debian's clickhouse-server, 18.16) as a local process on
// 127.0.0.1 with generated config, free ports, its own data dir and a user
// with a password.
import { createHash, randomBytes } from "node:crypto";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { ClickHouseLogLevel, createClient, type ClickHouseClient } from "@clickhouse/client";
import { clickhouseServerBinary } from "./tools.ts";
import { freePort, makeTempDir, removeDir, startProcess, waitUntil, type ManagedProcess } from "./proc.ts";

export interface ClickHouseServer {
  readonly kind: "server";
  readonly url: string;
  readonly httpPort: number;
  readonly tcpPort: number;
  readonly username: string;
  readonly password: string;
  readonly version: string;
  readonly dir: string;
  /** Every port the server listens on (for the teardown check). */
  readonly ports: readonly number[];
  pid(): number;
  /** A new @clickhouse/client for the backup user; the caller closes it. */
  client(): ClickHouseClient;
  /** Runs one statement as the backup user. */
  exec(sql: string): Promise<void>;
  /** Runs a query and returns JSONEachRow rows. */
  query<T = Record<string, unknown>>(sql: string): Promise<T[]>;
  /** Rotates the user's password (users.xml, reloaded by the server); resolves once it logs in. */
  setPassword(password: string): Promise<void>;
  /** SIGKILL (fault injection). `start()` brings it back with the same data and ports. */
  kill(): Promise<void>;
  start(): Promise<void>;
  stop(): Promise<void>;
}

const xmlEscape = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

/** For servers that are part of a cluster (test/env/cluster.ts): ports chosen by the caller and extra config. */
export interface StartClickHouseOptions {
  httpPort?: number | undefined;
  tcpPort?: number | undefined;
  /** Replication between replicas (interserver_http_port, on 127.0.0.1). */
  interserverPort?: number | undefined;
  /** The user's password (the cluster's hosts share one, as remote_servers names it). */
  password?: string | undefined;
  /** XML elements added inside <yandex> (zookeeper, macros, remote_servers, ...). */
  extraConfig?: string | undefined;
  /** Seconds to wait for /ping (default 60). */
  startTimeoutSeconds?: number | undefined;
}

export async function startClickHouse(opts: StartClickHouseOptions = {}): Promise<ClickHouseServer> {
  const bin = clickhouseServerBinary();
  const dir = await makeTempDir("clickhouse");
  const httpPort = opts.httpPort ?? (await freePort());
  const tcpPort = opts.tcpPort ?? (await freePort());
  const username = "backup";
  let password = opts.password ?? randomBytes(12).toString("hex");
  const data = join(dir, "data") + "/";
  await mkdir(data, { recursive: true });
  await writeFile(
    join(dir, "config.xml"),
    `<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>${xmlEscape(join(dir, "server.log"))}</log><errorlog>${xmlEscape(join(dir, "server.err.log"))}</errorlog></logger>
  <listen_host>127.0.0.1</listen_host>
  <http_port>${httpPort}</http_port>
  <tcp_port>${tcpPort}</tcp_port>
  <path>${xmlEscape(data)}</path>
  <tmp_path>${xmlEscape(join(data, "tmp"))}/</tmp_path>
  <user_files_path>${xmlEscape(join(data, "user_files"))}/</user_files_path>
  <format_schema_path>${xmlEscape(join(data, "format_schemas"))}/</format_schema_path>
  <users_config>${xmlEscape(join(dir, "users.xml"))}</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>268435456</mark_cache_size>
  <uncompressed_cache_size>268435456</uncompressed_cache_size>
  <timezone>UTC</timezone>
  <mlock_executable>false</mlock_executable>
${opts.interserverPort !== undefined ? `  <interserver_http_host>127.0.0.1</interserver_http_host>\n  <interserver_http_port>${opts.interserverPort}</interserver_http_port>\n` : ""}${opts.extraConfig ?? ""}
</yandex>
`,
  );
  const writeUsers = (pw: string) => {
  const hash = createHash("sha256").update(pw).digest("hex");
  return writeFile(
    join(dir, "users.xml"),
    `<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>4000000000</max_memory_usage></default></profiles>
  <users>
    <${username}><password_sha256_hex>${hash}</password_sha256_hex><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></${username}>
  </users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
`,
  );
  };
  await writeUsers(password);
  const url = `http://127.0.0.1:${httpPort}`;
  let proc: ManagedProcess | undefined;
  const start = async () => {
    proc = startProcess("clickhouse-server", bin, [`--config-file=${join(dir, "config.xml")}`], {
      cwd: dir,
      logFile: join(dir, "stdout.log"),
    });
    const p = proc;
    await waitUntil(
      `clickhouse-server on ${url}`,
      async () => {
        const res = await fetch(`${url}/ping`, { signal: AbortSignal.timeout(1000) });
        return res.ok;
      },
      { proc: p, timeoutMs: (opts.startTimeoutSeconds ?? 60) * 1000 },
    );
  };
  await start();
  const client = () =>
    createClient({
      url,
      username,
      password,
      request_timeout: 300_000,
      compression: { request: false, response: false },
      log: { level: ClickHouseLogLevel.OFF },
    });
  const query = async <T,>(sql: string): Promise<T[]> => {
    const c = client();
    try {
      const rs = await c.query({ query: sql, format: "JSONEachRow" });
      return await rs.json<T>();
    } finally {
      await c.close();
    }
  };
  const version = (await query<{ v: string }>("SELECT version() AS v"))[0]?.v ?? "unknown";
  return {
    kind: "server",
    url,
    httpPort,
    tcpPort,
    username,
    get password() {
      return password;
    },
    version,
    dir,
    ports: opts.interserverPort !== undefined ? [httpPort, tcpPort, opts.interserverPort] : [httpPort, tcpPort],
    pid: () => proc?.pid ?? -1,
    client,
    exec: async (sql) => {
      const c = client();
      try {
        await c.command({ query: sql });
      } finally {
        await c.close();
      }
    },
    query,
    setPassword: async (pw: string) => {
      await writeUsers(pw);
      // The server reloads users.xml on its own within seconds; wait until the new password logs in.
      await waitUntil("new ClickHouse password accepted", async () => {
        const res = await fetch(`${url}/?query=SELECT%201`, { headers: { "X-ClickHouse-User": username, "X-ClickHouse-Key": pw }, signal: AbortSignal.timeout(2000) });
        return res.ok;
      }, { timeoutMs: 30_000, intervalMs: 250 });
      password = pw;
    },
    kill: async () => {
      await proc?.kill();
    },
    start,
    stop: async () => {
      await proc?.stop(15_000);
      await removeDir(dir);
    },
  };
}
