// Wiring: config → store, engine, runner. Used by cmd/backup-runner and tests.
import type { Logger } from "winston";
import type { RunnerConfig, StorageRunnerConfig } from "../apis/index.ts";
import { EngineRegistry } from "../backupengine/registry.ts";
import { registerClickHouse } from "../backupengine/clickhouse/index.ts";
import type { BackupEngine } from "../backupengine/types.ts";
import { createStore, type ObjectStore } from "../storage/index.ts";
import { Runner, type RunnerObserver } from "./runner.ts";

const MiB = 1024 * 1024;

export function defaultEngineRegistry(): EngineRegistry {
  const r = new EngineRegistry();
  registerClickHouse(r);
  return r;
}

export function storeFromConfig(storage: StorageRunnerConfig, logger: Logger): ObjectStore {
  if (storage.s3) {
    const s3 = storage.s3;
    return createStore(
      {
        s3: {
          ...(s3.endpoint ? { endpoint: s3.endpoint } : {}),
          region: s3.region,
          bucket: s3.bucket,
          prefix: s3.prefix,
          forcePathStyle: s3.forcePathStyle,
          ...(s3.accessKeyId ? { accessKeyId: s3.accessKeyId } : {}),
          ...(s3.secretAccessKey ? { secretAccessKey: s3.secretAccessKey } : {}),
          partSizeBytes: s3.partSizeMiB * MiB,
          maxParts: s3.maxParts,
          queueSize: s3.concurrency,
        },
      },
      { logger },
    );
  }
  if (storage.filesystem) return createStore({ filesystem: { path: storage.filesystem.path } }, { logger });
  throw new Error("storage: exactly one of s3 or filesystem must be set");
}

export interface AppDeps {
  config: RunnerConfig;
  logger: Logger;
  registry?: EngineRegistry;
  /** Overrides (tests): a prepared engine or store. */
  engine?: BackupEngine;
  store?: ObjectStore;
  observer?: RunnerObserver;
  clock?: () => Date;
}

export function createRunner(deps: AppDeps): Runner {
  const def = deps.config.definition;
  const logger = deps.logger.child({ namespace: def.namespace, definition: def.name });
  const store = deps.store ?? storeFromConfig(deps.config.storage, logger);
  const engine = deps.engine ?? (deps.registry ?? defaultEngineRegistry()).create(def.engine, def.clickhouse, { logger });
  return new Runner({
    config: deps.config,
    store,
    engine,
    logger,
    ...(deps.observer ? { observer: deps.observer } : {}),
    ...(deps.clock ? { clock: deps.clock } : {}),
  });
}
