// The ClickHouse backup engine: talks to ClickHouse over HTTP with
// @clickhouse/client and backs up with one of two methods - "dump"
// (SELECT/INSERT FORMAT Native streamed through the runner, any version from
// 18.16) or "native" (BACKUP/RESTORE TO S3, 22.8+).
import { ClickHouseLogLevel, createClient, type ClickHouseClient } from "@clickhouse/client";
import type { Logger } from "winston";
import { clickhouseRunnerConfig, type ClickHouseRunnerConfig } from "../../apis/clickhouse.ts";
import type { EngineRegistry } from "../registry.ts";
import type { BackupEngine, BackupRequest, EngineBackupResult, InterruptedCleanup, RestoreRequest, RestoreResult, VerifyRequest, VerifyResult } from "../types.ts";
import { EngineError } from "../types.ts";
import { Conn } from "./conn.ts";
import { dumpBackup } from "./dump.ts";
import { cleanupInterrupted, dumpRestore } from "./restore.ts";
import { verifyDump } from "./verify.ts";
import { nativeBackup, nativeRestore, requireNativeVersion } from "./native.ts";
import { clusterBackup, clusterCleanupInterrupted, clusterRestore, clusterVerify, isClusterDetails, readTopology, type HostConnector } from "./cluster.ts";
import { CLUSTER_NATIVE_MESSAGE } from "../../apis/clickhouse.ts";

export { redact } from "./sql.ts";
export { DUMP_CONCURRENCY, dataObjectName } from "./dump.ts";
export { NATIVE_OBJECT } from "./native.ts";

export interface ClickHouseEngineDeps {
  logger: Logger;
  /** A ready client (tests inject a chDB-backed one); the engine uses it and never closes it. */
  client?: ClickHouseClient | undefined;
  /** Poll interval of system.backups for the native method (ms). */
  nativePollMs?: number | undefined;
  /** Tables dumped/restored at once by the dump method (default DUMP_CONCURRENCY). */
  dumpConcurrency?: number | undefined;
  /** Tests only: the dump poisons every buffer it hands back and checks their use (see BufferPoolOptions.poisonOnRelease). */
  debugPoolPoison?: boolean | undefined;
}

export const ENGINE_NAME = "clickhouse";

class ClickHouseEngine implements BackupEngine {
  readonly name = ENGINE_NAME;
  readonly #config: ClickHouseRunnerConfig;
  readonly #logger: Logger;
  readonly #client: ClickHouseClient;
  readonly #ownsClient: boolean;
  readonly #conn: Conn;
  readonly #pollMs: number | undefined;
  readonly #concurrency: number | undefined;
  readonly #debugPoolPoison: boolean;

  constructor(config: ClickHouseRunnerConfig, deps: ClickHouseEngineDeps) {
    this.#config = config;
    this.#logger = deps.logger;
    this.#pollMs = deps.nativePollMs;
    this.#concurrency = deps.dumpConcurrency;
    this.#debugPoolPoison = deps.debugPoolPoison === true;
    if (deps.client) {
      this.#client = deps.client;
      this.#ownsClient = false;
      // An injected client may not be an HTTP server at all (chDB): its endpoint is not read directly.
      this.#conn = new Conn(this.#client, config.username, config.password ? [config.password] : [], undefined, { answerTimeoutMs: config.idleTimeoutSeconds * 1000 });
    } else {
      ({ client: this.#client, conn: this.#conn } = openServer(config, config.url));
      this.#ownsClient = true;
    }
  }

  /** Connections to the other hosts of a cluster, with the same credentials and settings. */
  readonly #connector: HostConnector = {
    connect: (url: string) => {
      if (!this.#ownsClient) throw new EngineError("cluster backups need the engine's own HTTP client (an injected client reaches one server)", { retryable: false });
      const { client, conn } = openServer(this.#config, url);
      return { conn, close: () => client.close() };
    },
  };

  async check(signal: AbortSignal): Promise<{ version: string }> {
    const info = await this.#conn.info(signal);
    if (this.#config.method === "native" && this.#config.cluster) throw new EngineError(CLUSTER_NATIVE_MESSAGE, { retryable: false });
    // a cluster the server does not know is a configuration error the readiness check should show
    if (this.#config.cluster) await readTopology({ conn: this.#conn, config: this.#config, logger: this.#logger }, signal);
    if (this.#config.method === "native") requireNativeVersion(info);
    return { version: info.version };
  }

  async backup(req: BackupRequest): Promise<EngineBackupResult> {
    const info = await this.#conn.info(req.signal);
    const ctx = { conn: this.#conn, config: this.#config, logger: this.#logger, pollMs: this.#pollMs, concurrency: this.#concurrency, debugPoolPoison: this.#debugPoolPoison };
    if (this.#config.cluster) {
      if (this.#config.method === "native") throw new EngineError(CLUSTER_NATIVE_MESSAGE, { retryable: false });
      return clusterBackup({ ...ctx, connector: this.#connector }, info, req);
    }
    return this.#config.method === "native" ? nativeBackup(ctx, info, req) : dumpBackup(ctx, info, req);
  }

  async restore(req: RestoreRequest): Promise<RestoreResult> {
    const info = await this.#conn.info(req.signal);
    const ctx = { conn: this.#conn, config: this.#config, logger: this.#logger, pollMs: this.#pollMs, concurrency: this.#concurrency };
    if (req.backup.method === "dump" && isClusterDetails(req.backup.details)) return clusterRestore({ ...ctx, connector: this.#connector }, info, req);
    if (req.options.mergeShards) throw new EngineError("mergeShards applies to backups of a cluster; this backup is of one server", { retryable: false });
    switch (req.backup.method) {
      case "dump":
        return dumpRestore(ctx, info, req);
      case "native":
        return nativeRestore(ctx, info, req);
      default:
        throw new EngineError(`cannot restore a backup made with method "${req.backup.method}"`, { retryable: false });
    }
  }

  async verify(req: VerifyRequest): Promise<VerifyResult> {
    if (req.backup.method !== "dump") {
      throw new EngineError(`verify reads the data of dump backups; a "${req.backup.method}" backup is written by ClickHouse itself (restore it to check it)`, { retryable: false });
    }
    if (isClusterDetails(req.backup.details)) return clusterVerify(req, { idleTimeoutMs: this.#config.idleTimeoutSeconds * 1000 });
    return verifyDump(req, { idleTimeoutMs: this.#config.idleTimeoutSeconds * 1000, debugPoolPoison: this.#debugPoolPoison });
  }

  async cleanupInterrupted(signal: AbortSignal): Promise<InterruptedCleanup> {
    const info = await this.#conn.info(signal);
    if (this.#config.cluster) {
      const ctx = { conn: this.#conn, config: this.#config, logger: this.#logger, connector: this.#connector };
      return clusterCleanupInterrupted(ctx, signal);
    }
    return cleanupInterrupted(this.#conn, info, this.#logger, signal);
  }

  async close(): Promise<void> {
    if (this.#ownsClient) await this.#client.close();
  }
}

export function createClickHouseEngine(config: ClickHouseRunnerConfig, deps: ClickHouseEngineDeps): BackupEngine {
  return new ClickHouseEngine(config, deps);
}

/** Registers the engine as "clickhouse"; its config is validated with clickhouseRunnerConfig. */
export function registerClickHouse(registry: EngineRegistry): EngineRegistry {
  return registry.register(ENGINE_NAME, (config, deps) => {
    const parsed = clickhouseRunnerConfig.safeParse(config);
    if (!parsed.success) {
      const issues = parsed.error.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`).join("; ");
      throw new EngineError(`invalid ClickHouse engine config: ${issues}`, { retryable: false });
    }
    return createClickHouseEngine(parsed.data, { logger: deps.logger });
  });
}

/**
 * The engine's own HTTP client and connection to one server (the configured one, or another host
 * of its cluster), with the configured credentials and timeouts.
 */
function openServer(config: ClickHouseRunnerConfig, url: string): { client: ClickHouseClient; conn: Conn } {
  const client = createClient({
    url,
    username: config.username,
    password: config.password,
    request_timeout: config.requestTimeoutSeconds * 1000,
    // the dump method compresses with zstd itself; HTTP compression would only cost CPU twice
    compression: { request: false, response: false },
    log: { level: ClickHouseLogLevel.OFF },
    max_open_connections: 8,
    application: "clickhouse-k8s-backup",
  });
  const http = { url, username: config.username, password: config.password, timeoutMs: config.requestTimeoutSeconds * 1000, userAgent: "clickhouse-k8s-backup" };
  const conn = new Conn(client, config.username, config.password ? [config.password] : [], http, { answerTimeoutMs: config.idleTimeoutSeconds * 1000 });
  return { client, conn };
}
