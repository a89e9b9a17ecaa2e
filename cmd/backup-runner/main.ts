// backup-runner: thin entry point. Loads config, wires, starts; logic is in pkg/.
import { readFile } from "node:fs/promises";
import { parseRunnerConfigText, ConfigError } from "../../pkg/apis/index.ts";
import { parseCommand, parseListen, USAGE, UsageError, type Command } from "../../pkg/runner/cli.ts";
import { createLogger } from "../../pkg/runner/logging.ts";
import { createRunner } from "../../pkg/runner/app.ts";
import { RunnerService } from "../../pkg/runner/service.ts";
import { describeError } from "../../pkg/runner/errors.ts";
import { formatVerifyReport } from "../../pkg/runner/report.ts";
import type { Operation } from "../../pkg/runner/runner.ts";
import type { VerifyResult } from "../../pkg/backupengine/types.ts";
import { AgeIdentities } from "../../pkg/encryption/identity.ts";

const GRACE_MS = Number(process.env["RUNNER_SHUTDOWN_GRACE_MS"] ?? 25_000);

async function main(argv: string[]): Promise<number> {
  let command: Command;
  try {
    command = parseCommand(argv);
  } catch (err: unknown) {
    process.stderr.write(`${err instanceof UsageError ? err.message : String(err)}\n`);
    return 2;
  }
  if (command.cmd === "help") {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const logger = createLogger({ level: process.env["LOG_LEVEL"] ?? "info", defaultMeta: { component: "backup-runner" } });
  const path = command.config ?? process.env["RUNNER_CONFIG"] ?? "/etc/backup-runner/config.json";
  let config;
  try {
    config = parseRunnerConfigText(await readFile(path, "utf8"), path);
  } catch (err: unknown) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
    } else {
      process.stderr.write(`cannot read runner config ${path}: ${(err as NodeJS.ErrnoException).code ?? describeError(err)}\n`);
    }
    return 2;
  }
  // The API server and metrics are only loaded by `serve`; one-off commands stay lean.
  const api = command.cmd === "serve" ? await import("../../pkg/runner/api/server.ts") : undefined;
  const metrics = command.cmd === "serve" ? new (await import("../../pkg/runner/api/metrics.ts")).RunnerMetrics() : undefined;
  let runner;
  try {
    runner = createRunner({ config, logger, ...(metrics ? { observer: metrics.observer() } : {}) });
  } catch (err: unknown) {
    // The config passed the schema but the engine or the store refused it: a config error too.
    process.stderr.write(`invalid runner config ${path}: ${describeError(err)}\n`);
    return 2;
  }
  const abort = new AbortController();
  let signals = 0;
  let received: NodeJS.Signals | undefined;
  const onSignal = (sig: NodeJS.Signals) => {
    signals++;
    received ??= sig;
    logger.warn("signal received; shutting down", { signal: sig });
    abort.abort(new Error(`received ${sig}`));
    if (signals > 1) process.exit(130);
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);

  if (command.cmd === "serve") {
    if (!api || !metrics) throw new Error("internal: API modules not loaded");
    let listen: { host: string; port: number } = { host: config.api.host, port: config.api.port };
    try {
      if (process.env["RUNNER_LISTEN"]) listen = parseListen(process.env["RUNNER_LISTEN"]);
    } catch (err: unknown) {
      process.stderr.write(`${describeError(err)}\n`);
      return 2;
    }
    const service = new RunnerService({ runner, logger });
    const server = await api.startApiServer({ service, metrics, logger, token: config.api.token, ...listen });
    // Start-up retries while storage or the database is unreachable (the runner is not ready meanwhile); only a signal ends it.
    const starting = service.start(abort.signal).catch((err: unknown) => {
      if (!abort.signal.aborted) logger.error("runner start failed", { error: describeError(err) });
    });
    await new Promise<void>((resolve) => abort.signal.addEventListener("abort", () => resolve(), { once: true }));
    await starting;
    await server.stopAccepting();
    await service.stop(GRACE_MS);
    await server.close(5000);
    logger.info("stopped", {});
    return 0;
  }

  if (command.cmd === "list") {
    await runner.catalog.rebuild(abort.signal);
    const decision = runner.retentionDecision();
    for (const e of runner.catalog.list()) {
      process.stdout.write(`${JSON.stringify({ id: e.manifest.id, state: "complete", startedAt: e.manifest.startedAt, method: e.manifest.method, bytes: e.manifest.totalBytes, rows: e.manifest.totalRows, labels: decision.labels.get(e.manifest.id) ?? [], pinned: e.pinned, baseBackupId: e.manifest.baseBackupId, owner: e.manifest.owner ?? null, foreign: !runner.isOwn(e) })}\n`);
    }
    for (const u of runner.catalog.unreadable()) {
      process.stdout.write(`${JSON.stringify({ id: u.id, state: "unreadable", startedAt: u.time.toISOString(), error: u.error, pinned: u.pinned })}\n`);
    }
    return 0;
  }

  let identities: AgeIdentities | undefined;
  if ((command.cmd === "restore" || command.cmd === "verify") && command.identity !== undefined) {
    try {
      identities = await AgeIdentities.fromFile(command.identity);
    } catch (err: unknown) {
      process.stderr.write(`backup-runner: ${describeError(err)}\n`);
      return 2;
    }
  }
  let started: { operation: Operation; finished: Promise<Operation> };
  if (command.cmd === "verify") {
    if (command.from) {
      started = runner.startTargetVerify(command.from, "cli", identities);
    } else {
      await runner.catalog.rebuild(abort.signal);
      started = runner.startVerify(command.backup!, "cli", identities);
    }
  } else if (command.cmd === "backup") {
    const target = command.target ?? config.definition.singleBackup?.target;
    if (!target) {
      process.stderr.write("backup --once needs --target PATH or definition.singleBackup.target in the config\n");
      return 2;
    }
    started = runner.startSingleBackup(target);
  } else {
    const opts = {
      databases: command.databases.length ? command.databases : undefined,
      tables: command.tables.length ? command.tables : undefined,
      renameDatabases: Object.keys(command.rename).length ? command.rename : undefined,
      existingTables: command.existing,
      ...(command.allowUnstagedDrop ? { allowUnstagedDrop: true } : {}),
      ...(command.mergeShards ? { mergeShards: true } : {}),
    };
    if (command.from) {
      started = runner.startTargetRestore(command.from, opts, "cli", identities);
    } else {
      await runner.catalog.rebuild(abort.signal);
      started = runner.startRestore({ backup: command.backup!, ...opts, identities }, "cli");
    }
  }
  // Ctrl-C cancels the operation, SIGTERM aborts it (shutdown); either way it stops cleanly and ends with its state.
  abort.signal.addEventListener(
    "abort",
    () => {
      if (received === "SIGINT") {
        try {
          runner.cancel(started.operation.id, "SIGINT (Ctrl-C)");
        } catch {
          // already ended
        }
      } else {
        void runner.shutdown(GRACE_MS);
      }
    },
    { once: true },
  );
  const op = await started.finished;
  await runner.journal.flush(10_000);
  if (op.kind === "verify") return reportVerify(op);
  process.stdout.write(`${JSON.stringify({ operation: op.id, kind: op.kind, state: op.state, backupId: op.backupId, durationMs: op.durationMs, result: op.result, error: op.error })}\n`);
  if (op.state === "cancelled" || op.state === "aborted") process.stderr.write(`backup-runner: ${op.kind} ${op.state}${received ? ` (${received})` : ""}: ${op.error ?? ""}\n`);
  return op.state === "succeeded" ? 0 : 1;
}

/** Prints verify's table; 0 when the backup is whole, 1 naming what is not (or why verify could not run). */
function reportVerify(op: Operation): number {
  const r = op.result as (Partial<VerifyResult> & { backupId?: string }) | undefined;
  if (r?.tables && r.otherObjects) process.stdout.write(formatVerifyReport(op.backupId ?? r.backupId ?? "?", { tables: r.tables, otherObjects: r.otherObjects }));
  if (op.state === "succeeded") {
    if (r?.contentChecked === false) process.stdout.write(`backup ${op.backupId}: every stored object is whole (size and SHA-256); it is encrypted, so its content needs --identity to be checked\n`);
    else process.stdout.write(`backup ${op.backupId} is whole\n`);
    return 0;
  }
  const what = op.state === "failed" ? "verify failed" : `verify ${op.state}`;
  process.stderr.write(`backup-runner: ${what}: ${op.error ?? "unknown error"}\n`);
  return 1;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`backup-runner: ${describeError(err)}\n`);
    process.exit(1);
  },
);
