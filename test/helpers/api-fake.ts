// A real Runner over a filesystem store with a fake engine, for the API unit
// tests: the engine writes one small object per backup, can be held running
// (gate), can fail its check, and records what restores were asked for.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import type { Logger } from "winston";
import { parseRunnerConfig, type RunnerConfig } from "../../pkg/apis/index.ts";
import type { BackupEngine, BackupRequest, EngineBackupResult, InterruptedCleanup, RestoreRequest, RestoreResult, VerifyRequest, VerifyResult } from "../../pkg/backupengine/types.ts";
import { Runner, type RunnerObserver } from "../../pkg/runner/runner.ts";
import { createFilesystemStore, type ObjectStore } from "../../pkg/storage/index.ts";

export const FAKE_CH_PASSWORD = "ch-password-do-not-leak";

export class FakeEngine implements BackupEngine {
  readonly name = "fake";
  /** When set, backups and restores wait for it before finishing. */
  gate: Promise<void> | undefined;
  /** When set, check() throws this message. */
  checkError: string | undefined;
  /** check() takes this long. */
  checkDelayMs = 0;
  /** How often check() was called. */
  checkCalls = 0;
  /** When set, restore() fails with this message. */
  restoreError: string | undefined;
  readonly restores: RestoreRequest["options"][] = [];
  dataBytes = 4096;
  /** What verify reports (default: whole). */
  verifyResult: VerifyResult | undefined;
  /** What cleanupInterrupted reports, and how often it was called; cleanupError makes it fail. */
  cleanup: InterruptedCleanup = { removed: [], restored: [], kept: [] };
  cleanupError: string | undefined;
  cleanupCalls = 0;
  private waitingAtGate = 0;
  private gateWaiters: (() => void)[] = [];

  /** Resolves once an operation is held at the gate (at once if one already is). */
  atGate(): Promise<void> {
    if (this.waitingAtGate > 0) return Promise.resolve();
    return new Promise((r) => this.gateWaiters.push(r));
  }

  private async hold(): Promise<void> {
    if (!this.gate) return;
    this.waitingAtGate++;
    for (const w of this.gateWaiters.splice(0)) w();
    try {
      await this.gate;
    } finally {
      this.waitingAtGate--;
    }
  }

  async check(signal: AbortSignal): Promise<{ version: string }> {
    this.checkCalls++;
    if (this.checkDelayMs) await new Promise((r) => setTimeout(r, this.checkDelayMs));
    signal.throwIfAborted();
    if (this.checkError) throw new Error(this.checkError);
    return { version: "1.2.3" };
  }

  async backup(req: BackupRequest): Promise<EngineBackupResult> {
    req.onProgress?.({ phase: "dump", tablesDone: 0, tablesTotal: 2, bytes: 0, rows: 0, currentTable: "db1.t1" });
    const data = Buffer.alloc(this.dataBytes, 7);
    const obj = await req.sink.putObject("data.bin", Readable.from([data]), req.signal);
    req.onProgress?.({ phase: "dump", tablesDone: 1, tablesTotal: 2, bytes: data.length, rows: 100, currentTable: "db1.t2" });
    await this.hold();
    req.signal.throwIfAborted();
    req.onProgress?.({ phase: "dump", tablesDone: 2, tablesTotal: 2, bytes: data.length, rows: 150 });
    return {
      engineVersion: "1.2.3",
      method: "dump",
      databases: ["db1"],
      tables: [
        { database: "db1", name: "t1", engine: "MergeTree", rows: 100, bytes: data.length, dataObject: "data.bin" },
        { database: "db1", name: "t2", engine: "MergeTree", rows: 50, bytes: 0 },
      ],
      objects: [obj],
      details: {},
    };
  }

  async restore(req: RestoreRequest): Promise<RestoreResult> {
    this.restores.push(req.options);
    const stream = await req.source.getObject("data.bin", req.signal);
    let bytes = 0;
    for await (const c of stream as AsyncIterable<Buffer>) bytes += c.length;
    req.onProgress?.({ phase: "restore", tablesDone: 1, tablesTotal: 2, bytes, rows: 100 });
    await this.hold();
    req.signal.throwIfAborted();
    if (this.restoreError) throw new Error(this.restoreError);
    req.onProgress?.({ phase: "restore", tablesDone: 2, tablesTotal: 2, bytes, rows: 150 });
    return { databases: ["db1"], tables: [{ database: "db1", name: "t1", rows: 100 }, { database: "db1", name: "t2", rows: 50 }] };
  }

  async verify(req: VerifyRequest): Promise<VerifyResult> {
    const stream = await req.source.getObject("data.bin", req.signal);
    let bytes = 0;
    for await (const c of stream as AsyncIterable<Buffer>) bytes += c.length;
    req.onProgress?.({ phase: "verify", tablesDone: 1, tablesTotal: 1, bytes, rows: 100, currentTable: "db1.t1" });
    await this.hold();
    req.signal.throwIfAborted();
    return (
      this.verifyResult ?? {
        ok: true,
        tables: [{ database: "db1", name: "t1", objects: ["data.bin"], expectedRows: 100, rows: 100, bytes, uncompressedBytes: bytes, ok: true }],
        otherObjects: [],
      }
    );
  }

  async cleanupInterrupted(signal: AbortSignal): Promise<InterruptedCleanup> {
    this.cleanupCalls++;
    signal.throwIfAborted();
    if (this.cleanupError) throw new Error(this.cleanupError);
    return this.cleanup;
  }

  async close(): Promise<void> {}
}

/** A gate: `open()` lets held operations finish. */
export function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((r) => (open = r));
  return { promise, open };
}

export interface FakeRunner {
  runner: Runner;
  engine: FakeEngine;
  config: RunnerConfig;
  dir: string;
  /** Waits until the runner's operation has ended and every journal write (storage copies too) is done. */
  settle(): Promise<void>;
  /** settle(), then removes the storage directory. */
  cleanup(): Promise<void>;
}

export async function fakeRunner(opts: {
  token: string;
  logger: Logger;
  observer?: RunnerObserver;
  mode?: "scheduled" | "single";
  /** Storage directory (default: a new temp dir, removed by cleanup). */
  dir?: string;
  stateDir?: string;
  engine?: FakeEngine;
  /** Wraps the filesystem store (fault injection). */
  wrapStore?: (s: ObjectStore) => ObjectStore;
  /** Skip runner.init(). */
  noInit?: boolean;
}): Promise<FakeRunner> {
  const dir = opts.dir ?? (await mkdtemp(join(tmpdir(), "api-unit-")));
  const config = parseRunnerConfig({
    definition: {
      namespace: "shop",
      name: "orders",
      mode: opts.mode ?? "scheduled",
      clickhouse: { url: "http://127.0.0.1:9", username: "backup", password: FAKE_CH_PASSWORD },
      schedule: { cron: "0 0 1 1 *", timeZone: "Europe/Berlin" },
      ...(opts.mode === "single" ? { singleBackup: { target: "exports/one" } } : {}),
      ...(opts.stateDir ? { stateDir: opts.stateDir } : {}),
    },
    storage: { filesystem: { path: dir } },
    api: { token: opts.token },
  });
  const engine = opts.engine ?? new FakeEngine();
  const fsStore = createFilesystemStore({ root: dir });
  const runner = new Runner({
    config,
    store: opts.wrapStore ? opts.wrapStore(fsStore) : fsStore,
    engine,
    logger: opts.logger,
    ...(opts.observer ? { observer: opts.observer } : {}),
  });
  if (!opts.noInit) await runner.init();
  const settle = async (): Promise<void> => {
    await runner.idle();
    await runner.journal.flush();
  };
  return {
    runner,
    engine,
    config,
    dir,
    settle,
    cleanup: async () => {
      await settle();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
