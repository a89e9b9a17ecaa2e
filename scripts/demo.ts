// npm run demo: the whole story on one machine, with no external service.
//
// ClickHouse is chDB (ClickHouse 26.x inside this process, npm package chdb),
// backups go to a directory, and the real runner service (the code behind
// `backup-runner serve`) takes scheduled backups with label retention and
// serves its HTTP API. The demo asks that API for the catalog and for a
// restore, and checks the restored data against the source.
//
// The engine is the real ClickHouse engine; only its client is chDB's instead
// of an HTTP one. chdb/connection cannot take binary INSERT bodies, so that
// client sends streamed INSERTs through a FIFO that chDB reads
// (test/env/chdb.ts): a restore is streamed, never spooled. (On the backup
// side chdb/connection hands each SELECT result over as one buffer, about
// 20 MiB of Native here; against a ClickHouse server it is streamed.)
//
// Before the restore the runner is restarted with the schedule suspended, as
// an operator would: otherwise a tick between the DROP and the restore could
// back up the damaged database, and that backup would become "latest".
import { DemoError, check, createDemo, runDemo } from "./demo-kit.ts";
import { randomBytes } from "node:crypto";
import { createWriteStream, existsSync, readFileSync } from "node:fs";
import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { parseRunnerConfigText, type RunnerConfig, type RunnerConfigInput } from "../pkg/apis/index.ts";
import { createClickHouseEngine } from "../pkg/backupengine/clickhouse/index.ts";
import { startApiServer, type ApiServer } from "../pkg/runner/api/server.ts";
import { RunnerMetrics } from "../pkg/runner/api/metrics.ts";
import { createRunner } from "../pkg/runner/app.ts";
import { createLogger } from "../pkg/runner/logging.ts";
import type { Operation } from "../pkg/runner/runner.ts";
import { RunnerService } from "../pkg/runner/service.ts";
import { startChdb, type ChdbEngine } from "../test/env/chdb.ts";
import { freePort, isPortOpen, makeTempDir, removeDir } from "../test/env/proc.ts";

/** Every 3 seconds (node-cron: the first of six fields is seconds). */
const CRON = "*/3 * * * * *";
const TIME_ZONE = "UTC";
const RETENTION = { hourly: 24, daily: 7 } as const;
const ROWS = 1_000_000;
/** Scheduled backups to wait for; more (up to MAX_BACKUPS) only if retention has deleted none yet (an hour boundary in between). */
const WANT_BACKUPS = 3;
const MAX_BACKUPS = 8;
const BACKUPS_TIMEOUT_MS = 60_000;
const RESTORE_TIMEOUT_MS = 60_000;
const GRACE_MS = 10_000;

const { interrupted, say, step, int, secs, sleep, onSignals } = createDemo();
const mib = (n: number) => (n >= 1024 * 1024 ? `${(n / 1024 / 1024).toFixed(1)} MiB` : `${(n / 1024).toFixed(1)} KiB`);

interface Figures {
  rows: number;
  checksum: string;
  viewRows: number;
  tables: string[];
}

async function figures(ch: ChdbEngine): Promise<Figures> {
  const [r] = await ch.query<{ c: string; h: string }>(
    "SELECT toString(count()) AS c, toString(sum(cityHash64(id, customer, amount, status, created, note))) AS h FROM demo.orders",
  );
  const [v] = await ch.query<{ c: string }>("SELECT toString(count()) AS c FROM demo.big_orders");
  const tables = await ch.query<{ name: string; engine: string }>("SELECT name, engine FROM system.tables WHERE database = 'demo' ORDER BY name");
  return { rows: Number(r?.c), checksum: r?.h ?? "", viewRows: Number(v?.c), tables: tables.map((t) => `${t.name} (${t.engine})`) };
}

interface BackupRow {
  id: string;
  startedAt: string;
  trigger: string;
  bytes: number;
  rows: number;
  tables: number;
  labels: string[];
}

/** The runner's HTTP API, as a client outside the process would use it. */
class Api {
  readonly base: string;
  readonly #token: string;
  constructor(base: string, token: string) {
    this.base = base;
    this.#token = token;
  }
  async call<T>(method: string, path: string, body?: unknown): Promise<{ status: number; json: T; location: string | null }> {
    const res = await fetch(`${this.base}${path}`, {
      method,
      headers: { Authorization: `Bearer ${this.#token}`, ...(body === undefined ? {} : { "Content-Type": "application/json" }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(10_000),
    });
    const text = await res.text();
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      throw new DemoError(`${method} ${path}: HTTP ${res.status}, not JSON: ${text.slice(0, 200)}`);
    }
    return { status: res.status, json: json as T, location: res.headers.get("location") };
  }
  async expect<T>(status: number, method: string, path: string, body?: unknown): Promise<{ json: T; location: string | null }> {
    const r = await this.call<T>(method, path, body);
    if (r.status !== status) throw new DemoError(`${method} ${path}: HTTP ${r.status} (wanted ${status}): ${JSON.stringify(r.json)}`);
    return r;
  }
}

/** One runner process's worth: service (schedule, catalog, retention) plus its HTTP API, as `backup-runner serve` wires them. */
interface Serving {
  service: RunnerService;
  server: ApiServer;
  api: Api;
  stop(): Promise<void>;
}

async function serve(config: RunnerConfig, ch: ChdbEngine, logger: ReturnType<typeof createLogger>, onFinished: (op: Operation) => void): Promise<Serving> {
  const metrics = new RunnerMetrics({ defaultMetrics: false });
  const fromMetrics = metrics.observer();
  // The engine is the real ClickHouse engine; only its client is chDB's (cmd/backup-runner builds an HTTP one from the url).
  const engine = createClickHouseEngine(config.definition.clickhouse, { logger, client: ch.engineClient() });
  const runner = createRunner({
    config,
    logger,
    engine,
    observer: {
      ...fromMetrics,
      operationFinished: (op) => {
        fromMetrics.operationFinished?.(op);
        onFinished(op);
      },
    },
  });
  const service = new RunnerService({ runner, logger });
  const server = await startApiServer({ service, metrics, logger, token: config.api.token, host: config.api.host, port: config.api.port });
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    // the order of cmd/backup-runner on SIGTERM
    await server.stopAccepting();
    await service.stop(GRACE_MS);
    await server.close(5000);
    await engine.close();
  };
  try {
    await service.start();
  } catch (err) {
    await stop();
    throw err;
  }
  return { service, server, api: new Api(server.url, config.api.token), stop };
}

async function main(): Promise<number> {
  const started = Date.now();
  const offSignals = onSignals();
  const tmp = await makeTempDir("demo");
  const logPath = join(tmp, "runner.log");
  const logStream = createWriteStream(logPath, { flags: "a" });
  const logger = createLogger({ level: "info", stream: logStream, defaultMeta: { component: "backup-runner" } });
  let ch: ChdbEngine | undefined;
  let serving: Serving | undefined;
  try {
    // ── ClickHouse and the data ────────────────────────────────────────────
    step("Start ClickHouse: chDB, in this process, data in a temp dir");
    const chdb = await startChdb({ dir: join(tmp, "chdb") });
    ch = chdb;
    say(`   ClickHouse ${chdb.version} (chDB) at ${chdb.dir}`);

    step(`Create sample data: database demo, MergeTree table demo.orders with ${int(ROWS)} rows, and a view`);
    let t = Date.now();
    await chdb.exec("CREATE DATABASE demo");
    await chdb.exec(
      "CREATE TABLE demo.orders (id UInt64, customer UInt32, amount Decimal(18, 2), status LowCardinality(String), created DateTime('UTC'), note String) ENGINE = MergeTree ORDER BY id",
    );
    await chdb.exec(
      `INSERT INTO demo.orders SELECT number, number % 5000, toDecimal64(number % 100000, 2) / 100, ['new', 'paid', 'shipped', 'returned'][number % 4 + 1], toDateTime('2026-01-01 00:00:00', 'UTC') + number * 7, concat('order ', toString(number)) FROM numbers(${ROWS})`,
    );
    await chdb.exec("CREATE VIEW demo.big_orders AS SELECT * FROM demo.orders WHERE amount > 900");
    const source = await figures(chdb);
    const [disk] = await chdb.query<{ b: string }>("SELECT toString(sum(bytes_on_disk)) AS b FROM system.parts WHERE database = 'demo' AND active");
    say(`   tables: ${source.tables.join(", ")}; ${mib(Number(disk?.b))} on disk; loaded in ${secs(Date.now() - t)}`);
    say(`source: demo.orders has ${source.rows} rows, checksum ${source.checksum}; view demo.big_orders has ${source.viewRows} rows`);

    // ── The runner ─────────────────────────────────────────────────────────
    step("Write the runner config (what the controller puts into the runner's Secret)");
    const storagePath = join(tmp, "storage");
    const configPath = join(tmp, "config.json");
    await mkdir(storagePath); // the filesystem storage is a directory that exists (a mounted volume in a cluster)
    const input: RunnerConfigInput = {
      definition: {
        namespace: "demo",
        name: "orders",
        // Required by the schema; never dialled: the engine gets the in-process chDB client.
        clickhouse: { url: "http://chdb.invalid:8123", databases: { include: ["demo"] } },
        mode: "scheduled",
        schedule: { cron: CRON, timeZone: TIME_ZONE },
        retention: { ...RETENTION },
      },
      storage: { filesystem: { path: storagePath } },
      api: { token: randomBytes(24).toString("base64url"), host: "127.0.0.1", port: await freePort() },
    };
    await writeFile(configPath, JSON.stringify(input, null, 2), { mode: 0o600 });
    const config = parseRunnerConfigText(await readFile(configPath, "utf8"), configPath);
    say(`   ${configPath}`);
    say(`   storage: filesystem ${storagePath}`);
    say(`   schedule: "${CRON}" (${TIME_ZONE}), that is every 3 seconds`);
    say(`   retention: ${JSON.stringify(RETENTION)}`);
    say("   A backup holds a label when it is the FIRST backup of that period: the first backup of an hour holds");
    say("   \"hourly\", the first of a day \"daily\"; each label stays on its newest 24 (hourly) or 7 (daily) holders.");
    say("   A backup left without a label is deleted, except the newest backup, which is always kept. Backups 3 s");
    say("   apart share their hour (unless one crosses the full hour), so only the first one holds labels, and each");
    say("   later one is deleted as soon as a newer backup exists.");
    say(`   api: http://${config.api.host}:${config.api.port}, bearer token of ${config.api.token.length} characters`);

    step("Start the runner service and its HTTP API (as `backup-runner serve` does)");
    const finished: Operation[] = [];
    const startRunner = (cfg: RunnerConfig) => serve(cfg, chdb, logger, (op) => finished.push(op));
    serving = await startRunner(config);
    const ready = await fetch(`${serving.server.url}/readyz`, { signal: AbortSignal.timeout(10_000) });
    const readyBody = (await ready.json()) as { ready: boolean; checks: Record<string, string>; engineVersion: string | null };
    check(ready.status === 200 && readyBody.ready, `GET /readyz: ${ready.status} ${JSON.stringify(readyBody)}`);
    say(`   GET /readyz -> ${ready.status}, checks ${JSON.stringify(readyBody.checks)}, ClickHouse ${readyBody.engineVersion}`);
    say("   The catalog is empty, so the schedule counts as missed and the first backup starts right away (trigger \"missed\").");

    step(`Wait for ${WANT_BACKUPS} scheduled backups`);
    t = Date.now();
    const backupsTaken = () => finished.filter((o) => o.kind === "backup");
    const deletedIds = () => backupsTaken().flatMap((o) => ((o.result?.["deleted"] as string[] | undefined) ?? []));
    /** What the catalog must hold: every backup taken, minus what retention deleted. */
    const catalogIds = () => {
      const gone = new Set(deletedIds());
      return backupsTaken()
        .filter((o) => o.state === "succeeded" && o.backupId !== undefined && !gone.has(o.backupId))
        .map((o) => o.backupId!)
        .sort();
    };
    let printed = 0;
    for (;;) {
      const taken = backupsTaken();
      for (; printed < taken.length; printed++) {
        const op = taken[printed]!;
        if (op.state !== "succeeded") throw new DemoError(`scheduled backup ${op.backupId ?? op.id} ${op.state}: ${op.error ?? "(no error)"}`);
        const r = op.result ?? {};
        const labels = (r["labels"] as string[] | undefined) ?? [];
        const deleted = (r["deleted"] as string[] | undefined) ?? [];
        say(
          `   backup ${printed + 1}: ${op.backupId} by the schedule (trigger ${op.trigger}), ${int(Number(r["rows"]))} rows, ${mib(Number(r["bytes"]))}, ` +
            `${secs(op.durationMs ?? 0)}, labels [${labels.join(", ")}]; retention deleted: ${deleted.length ? deleted.join(", ") : "none"}`,
        );
      }
      if (taken.length >= WANT_BACKUPS && deletedIds().length > 0) break;
      if (taken.length >= MAX_BACKUPS) throw new DemoError(`${taken.length} backups taken but retention deleted none`);
      if (Date.now() - t > BACKUPS_TIMEOUT_MS) throw new DemoError(`only ${taken.length} scheduled backups after ${secs(BACKUPS_TIMEOUT_MS)}`);
      await sleep(100);
    }
    const taken = backupsTaken().map((o) => o.backupId!);
    const deleted = deletedIds();
    say(`   ${taken.length} backups in ${secs(Date.now() - t)}`);

    step("The catalog, from GET /api/v1/backups (newest first)");
    const { json: list } = await serving.api.expect<{ backups: BackupRow[] }>(200, "GET", "/api/v1/backups");
    say(`   ${"id".padEnd(24)}  ${"trigger".padEnd(8)}  ${"rows".padStart(9)}  ${"size".padStart(9)}  labels`);
    for (const b of list.backups) {
      const labels = b.labels.length ? b.labels.join(", ") : b.id === list.backups[0]?.id ? "(none; kept as the newest)" : "(none)";
      say(`   ${b.id.padEnd(24)}  ${b.trigger.padEnd(8)}  ${String(b.rows).padStart(9)}  ${mib(b.bytes).padStart(9)}  ${labels}`);
    }
    const listed = list.backups.map((b) => b.id);
    const expected = catalogIds();
    check(
      [...listed].sort().join() === expected.join(),
      `catalog ${listed.join(", ")} is not the backups taken minus the deleted ones (${expected.join(", ")})`,
    );
    const onDisk = (await readdir(join(storagePath, "demo", "orders"))).filter((n) => !n.startsWith(".")).sort();
    check(onDisk.join() === expected.join(), `storage holds ${onDisk.join(", ")}, the catalog ${expected.join(", ")}`);
    say(`   retention deleted ${deleted.length} of ${taken.length} backups: ${deleted.join(", ")} (no label, and a newer backup exists)`);
    say(`   storage ${join(storagePath, "demo", "orders")} holds exactly the ${onDisk.length} catalog backups`);

    step("Suspend the schedule before restoring: restart the runner with definition.suspend = true");
    say("   (otherwise the next tick could back up the damaged database, and that backup would become \"latest\")");
    await serving.stop();
    serving = undefined;
    const late = backupsTaken().slice(taken.length);
    for (const op of late) say(`   a scheduled backup that had just started ended ${op.state} by the shutdown${op.state === "aborted" ? " and left nothing behind" : ""}`);
    const suspendedInput = { ...input, definition: { ...input.definition, suspend: true } };
    await writeFile(configPath, JSON.stringify(suspendedInput, null, 2), { mode: 0o600 });
    serving = await startRunner(parseRunnerConfigText(await readFile(configPath, "utf8"), configPath));
    const { json: status } = await serving.api.expect<{ schedule: { suspended: boolean } | null; nextRun: string | null; backups: number }>(200, "GET", "/api/v1/status");
    check(status.schedule?.suspended === true && status.nextRun === null, `GET /api/v1/status: schedule not suspended: ${JSON.stringify(status)}`);
    const { json: again } = await serving.api.expect<{ backups: BackupRow[] }>(200, "GET", "/api/v1/backups");
    const relisted = again.backups.map((b) => b.id).sort();
    check(relisted.join() === catalogIds().join(), `the restarted runner lists ${relisted.join(", ")}, expected ${catalogIds().join(", ")}`);
    say(`   GET /api/v1/status: schedule suspended, next run none, ${status.backups} backups (catalog rebuilt from the storage)`);

    step("Disaster: DROP DATABASE demo");
    await chdb.exec("DROP DATABASE demo SYNC");
    const [left] = await chdb.query<{ c: string }>("SELECT toString(count()) AS c FROM system.databases WHERE name = 'demo'");
    check(left?.c === "0", "database demo still exists");
    say("   database demo is gone");

    step('Restore through the API: POST /api/v1/restores {"backup":"latest"}');
    const latest = again.backups[0];
    check(latest !== undefined, "no backup to restore");
    const { json: accepted, location } = await serving.api.expect<{ operation: { id: string; backupId: string | null } }>(202, "POST", "/api/v1/restores", { backup: "latest" });
    check(location === `/api/v1/restores/${accepted.operation.id}`, `Location ${location}`);
    check(accepted.operation.backupId === latest.id, `"latest" resolved to ${accepted.operation.backupId}, the newest backup is ${latest.id}`);
    say(`   202 Accepted, Location: ${location} (restore of ${accepted.operation.backupId}, the newest backup)`);
    say("   (the runner streams each table from the storage through zstd into chDB, which reads the INSERT from a FIFO)");
    t = Date.now();
    type RestoreView = { operation: { state: string; durationMs: number | null; error: string | null; progress: { bytes: number }; result: Record<string, unknown> | null } };
    let op: RestoreView["operation"];
    for (;;) {
      op = (await serving.api.expect<RestoreView>(200, "GET", location)).json.operation;
      if (op.state !== "running") break;
      if (Date.now() - t > RESTORE_TIMEOUT_MS) throw new DemoError(`restore still running after ${secs(RESTORE_TIMEOUT_MS)}`);
      await sleep(200);
    }
    check(op.state === "succeeded", `restore ${op.state}: ${op.error ?? "(no error)"}`);
    say(
      `   GET ${location} -> succeeded in ${secs(op.durationMs ?? 0)}: ${int(Number(op.result?.["rows"]))} rows into ${op.result?.["tables"]} tables, ` +
        `${mib(op.progress.bytes)} read from the storage`,
    );

    step("Verify the restored data against the source");
    const restored = await figures(chdb);
    say(`restored: demo.orders has ${restored.rows} rows, checksum ${restored.checksum}; view demo.big_orders has ${restored.viewRows} rows`);
    say(`   tables: ${restored.tables.join(", ")}`);
    check(restored.rows === ROWS && restored.rows === source.rows, `restored ${restored.rows} rows, the source had ${source.rows}`);
    check(restored.checksum === source.checksum, `restored checksum ${restored.checksum} differs from the source's ${source.checksum}`);
    check(restored.viewRows === source.viewRows, `the view shows ${restored.viewRows} rows, it showed ${source.viewRows}`);
    check(restored.tables.join() === source.tables.join(), `tables ${restored.tables.join(", ")} differ from ${source.tables.join(", ")}`);
    say("OK: restored data equals the source");
    say(`summary: ${taken.length} scheduled backups, retention deleted ${deleted.length}, catalog held ${expected.length}, restored ${latest.id}`);

    step("Shut down");
    const port = config.api.port;
    await serving.stop();
    serving = undefined;
    check(!(await isPortOpen(port)), `port ${port} still accepts connections`);
    ch = undefined;
    await chdb.stop();
    await new Promise<void>((r) => logStream.end(r));
    await removeDir(tmp);
    check(!existsSync(tmp), `${tmp} still exists`);
    say(`   runner service stopped, API closed (port ${port} refuses connections), chDB closed, ${tmp} removed`);
    say(`done in ${secs(Date.now() - started)}`);
  } catch (err) {
    const msg = err instanceof DemoError ? err.message : err instanceof Error ? (err.stack ?? err.message) : String(err);
    process.stderr.write(`[demo] FAILED: ${msg}\n`);
    await serving?.stop().catch(() => {});
    await ch?.stop().catch(() => {});
    await new Promise<void>((r) => logStream.end(r));
    try {
      const tail = readFileSync(logPath, "utf8").trim().split("\n").slice(-15).join("\n");
      if (tail) process.stderr.write(`[demo] the runner's log ended with:\n${tail}\n`);
    } catch {
      // no log
    }
    await removeDir(tmp).catch(() => {});
    process.stderr.write(`[demo] cleaned up; ${tmp} removed\n`);
    return interrupted.signal.aborted ? 130 : 1;
  } finally {
    offSignals();
  }
  return 0;
}

runDemo(main);
