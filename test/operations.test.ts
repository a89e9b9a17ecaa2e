// Operations that outlive or stop short of their runner, on real servers
// (ClickHouse 18.16, MinIO) with `backup-runner serve` as a process:
// cancel through the API (a restore and a backup), Ctrl-C of a command-line
// restore, kill -9 of the runner mid-restore (the restarted runner lists the
// restore as interrupted, with lastFailure, and cleans up what it left), and
// MinIO stopped (SIGSTOP) mid-restore (the restore fails within the idle
// timeout, naming the storage).
import { randomBytes } from "node:crypto";
import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { GetObjectCommand, ListObjectsV2Command, type S3Client } from "@aws-sdk/client-s3";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startClickHouse, startMinio, makeTempDir, removeDir, repoRoot, freePort, type ClickHouseServer, type MinioServer } from "./env/index.ts";
import { startProcess, waitUntil, type ManagedProcess } from "./env/proc.ts";
import { apiClient, pollJson } from "./helpers/api-http.ts";

const MAIN = join(repoRoot, "cmd", "backup-runner", "main.ts");
const ROWS = 6_000_000;
const PREFIX = "ops";

interface RunnerProc {
  url: string;
  proc: ManagedProcess;
  api: ReturnType<typeof apiClient>;
  log: () => Promise<string>;
}

describe("operations across runner processes (ClickHouse 18.16, MinIO)", () => {
  let ch: ClickHouseServer;
  let minio: MinioServer;
  let bucket: string;
  let s3: S3Client;
  let dir: string;
  let stateDir: string;
  let configPath: string;
  const token = randomBytes(16).toString("hex");
  let runner: RunnerProc | undefined;
  let backupId: string;
  let runs = 0;

  /** `idleTimeoutSeconds` short only where a stall is the point: it also bounds every query's answer. */
  async function writeConfig(path: string, state: string, idleTimeoutSeconds?: number): Promise<void> {
    const config = {
      definition: {
        namespace: "team-o",
        name: "ops",
        clickhouse: { url: ch.url, username: ch.username, password: ch.password, databases: { include: ["big"] }, ...(idleTimeoutSeconds ? { idleTimeoutSeconds } : {}) },
        schedule: { cron: "0 0 1 1 *", timeZone: "UTC" },
        suspend: true,
        stateDir: state,
      },
      storage: { s3: { endpoint: minio.endpoint, region: minio.region, bucket, prefix: PREFIX, forcePathStyle: true, accessKeyId: minio.accessKeyId, secretAccessKey: minio.secretAccessKey, partSizeMiB: 5 } },
      api: { token },
    };
    await writeFile(path, JSON.stringify(config), { mode: 0o600 });
  }

  /** What the kubelet would do: start `backup-runner serve` with the config and wait until it is ready. */
  async function startRunner(): Promise<RunnerProc> {
    const port = await freePort();
    const logFile = join(dir, `runner-${++runs}.log`);
    const proc = startProcess("backup-runner", process.execPath, [MAIN, "serve", "--config", configPath], {
      env: { RUNNER_LISTEN: `127.0.0.1:${port}`, LOG_LEVEL: "info", RUNNER_SHUTDOWN_GRACE_MS: "10000" },
      logFile,
    });
    const url = `http://127.0.0.1:${port}`;
    await waitUntil("runner ready", async () => (await fetch(`${url}/readyz`)).ok, { proc, timeoutMs: 60_000 });
    runner = { url, proc, api: apiClient(url, token), log: () => readFile(logFile, "utf8") };
    return runner;
  }

  const waitOp = (r: RunnerProc, id: string, timeoutMs = 120_000) => pollJson(() => r.api.get(`/api/v1/operations/${id}`), (j) => j.operation.state !== "running", timeoutMs, 100);
  /** Polls until the operation has moved rows (it is in the middle of its data). */
  const waitMoving = (r: RunnerProc, id: string) => pollJson(() => r.api.get(`/api/v1/operations/${id}`), (j) => j.operation.state !== "running" || j.operation.progress.rows > 0, 60_000, 20);
  const workTables = async () => (await ch.query<{ t: string }>("SELECT concat(database, '.', name) AS t FROM system.tables WHERE name LIKE '\\_chbackup\\_%'")).map((r) => r.t);
  const databases = async () => (await ch.query<{ name: string }>("SELECT name FROM system.databases")).map((r) => r.name);
  /** The journal files of the one runner identity using a state directory (`<stateDir>/journal/<owner id>/`). */
  const journalFiles = async (state: string) => {
    const [owner, ...others] = await readdir(join(state, "journal"));
    expect(others).toEqual([]);
    const d = join(state, "journal", owner!);
    return (await readdir(d)).map((n) => join(d, n));
  };
  const keys = async (prefix: string) => ((await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }))).Contents ?? []).map((c) => c.Key!);

  beforeAll(async () => {
    [ch, minio, dir] = await Promise.all([startClickHouse(), startMinio(), makeTempDir("ops")]);
    bucket = await minio.createBucket();
    s3 = minio.s3();
    stateDir = join(dir, "state");
    configPath = join(dir, "config.json");
    await writeConfig(configPath, stateDir);
    await ch.exec("CREATE DATABASE big");
    await ch.exec("CREATE TABLE big.t (id UInt64, s String, f Float64) ENGINE = MergeTree ORDER BY id");
    await ch.exec(`INSERT INTO big.t SELECT number, concat('row-', toString(rand64())), rand() / 7 FROM system.numbers LIMIT ${ROWS}`);
    await ch.exec("CREATE TABLE big.small (id UInt32) ENGINE = MergeTree ORDER BY id");
    await ch.exec("INSERT INTO big.small SELECT number FROM system.numbers LIMIT 1000");
    await ch.exec("CREATE VIEW big.v AS SELECT id FROM big.t WHERE id < 10");
    const r = await startRunner();
    const b = await r.api.post("/api/v1/backups");
    expect(b.status).toBe(202);
    const done = await waitOp(r, b.json.operation.id);
    expect(done.operation.state, done.operation.error).toBe("succeeded");
    backupId = done.operation.backupId;
  });
  afterAll(async () => {
    try {
      process.kill(minio.pid(), "SIGCONT");
    } catch {
      // not stopped
    }
    await runner?.proc.stop(15_000);
    s3?.destroy();
    await Promise.all([ch?.stop(), minio?.stop()]);
    await removeDir(dir);
  });

  it("DELETE /api/v1/operations/{id} cancels a restore: it ends cancelled and leaves no table, staging table or database behind", async () => {
    const r = runner!;
    const start = await r.api.post("/api/v1/restores", { backup: backupId, renameDatabases: { big: "big_cancel" }, existingTables: "fail" });
    expect(start.status).toBe(202);
    const id = start.json.operation.id;
    const moving = await waitMoving(r, id);
    expect(moving.operation.state, "the restore ended before it could be cancelled").toBe("running");
    const c = await r.api.del(`/api/v1/operations/${id}`);
    expect(c.status).toBe(202);
    expect(c.json.operation.id).toBe(id);
    const done = await waitOp(r, id, 30_000);
    expect(done.operation.state).toBe("cancelled");
    expect(done.operation.error).toContain("cancelled by API request");
    expect(await workTables()).toEqual([]);
    expect(await databases()).not.toContain("big_cancel");
    expect((await r.api.del(`/api/v1/operations/${id}`)).status).toBe(409);
    const st = (await r.api.get("/api/v1/status")).json;
    expect(st.lastFailure.restore).toMatchObject({ id, state: "cancelled" });
    // the journal copy next to the backup says so too (written after the operation ends, without holding it up)
    const copyState = async () => {
      const copy = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: `${PREFIX}/team-o/ops/${backupId}/restores/${id}.json` }));
      return JSON.parse(await copy.Body!.transformToString()).operation.state as string;
    };
    let last = "";
    await waitUntil("journal copy says cancelled", async () => (last = await copyState()) === "cancelled", { timeoutMs: 30_000, intervalMs: 100 }).catch((err: unknown) => {
      throw new Error(`journal copy: state ${last}`, { cause: err });
    });
  });

  it("DELETE cancels a backup: no manifest, none of its objects left", async () => {
    const r = runner!;
    const start = await r.api.post("/api/v1/backups");
    const id = start.json.operation.id;
    const moving = await pollJson(() => r.api.get(`/api/v1/operations/${id}`), (j) => j.operation.state !== "running" || j.operation.progress.bytes > 0, 60_000, 20);
    expect(moving.operation.state).toBe("running");
    expect((await r.api.del(`/api/v1/operations/${id}`)).status).toBe(202);
    const done = await waitOp(r, id, 30_000);
    expect(done.operation.state).toBe("cancelled");
    expect(await keys(`${PREFIX}/team-o/ops/${done.operation.backupId}/`)).toEqual([]);
    expect((await r.api.get("/api/v1/backups")).json.backups.map((b: { id: string }) => b.id)).toEqual([backupId]);
  });

  it("Ctrl-C (SIGINT) during a command-line restore cancels it: exit 1 with a message, nothing left behind", async () => {
    const cliState = join(dir, "cli-state");
    const cliConfig = join(dir, "cli.json");
    await writeConfig(cliConfig, cliState);
    const child = execa(process.execPath, [MAIN, "restore", "--backup", backupId, "--rename", "big=big_cli", "--config", cliConfig], { reject: false, env: { LOG_LEVEL: "info" } });
    try {
      // wait until the restore has created its staging table, i.e. data is moving
      await waitUntil("restore under way", async () => (await workTables()).length > 0, { timeoutMs: 60_000, intervalMs: 20 });
      child.kill("SIGINT");
      const res = await child;
      expect(res.exitCode).toBe(1);
      const out = JSON.parse(res.stdout.trim().split("\n").pop()!) as { state: string; kind: string };
      expect(out).toMatchObject({ kind: "restore", state: "cancelled" });
      expect(res.stderr).toContain("backup-runner: restore cancelled (SIGINT)");
      expect(await workTables()).toEqual([]);
      expect(await databases()).not.toContain("big_cli");
      // journaled in the command's state directory too
      const files = await journalFiles(cliState);
      expect(files).toHaveLength(1);
      expect(JSON.parse(await readFile(files[0]!, "utf8")).operation.state).toBe("cancelled");
    } finally {
      child.kill("SIGKILL");
    }
  });

  it("kill -9 of the runner mid-restore: the restarted runner lists the restore as interrupted (lastFailure, logged once) and removes what it left", async () => {
    const r = runner!;
    const start = await r.api.post("/api/v1/restores", { backup: backupId, renameDatabases: { big: "big_killed" }, existingTables: "fail" });
    const id = start.json.operation.id;
    const moving = await waitMoving(r, id);
    expect(moving.operation.state, "the restore ended before the kill").toBe("running");
    // the journal on the runner's volume follows the progress (at most a second behind)
    // (its first write is not awaited by the runner: look for the file until it is there)
    let file: string | undefined;
    const journal = async () => JSON.parse(await readFile(file!, "utf8"));
    await waitUntil(
      "progress journaled",
      async () => {
        file ??= (await journalFiles(stateDir)).find((n) => n.endsWith(`-${id}.json`));
        return file !== undefined && (await journal()).operation.progress.rows > 0;
      },
      { timeoutMs: 30_000, intervalMs: 20 },
    );
    await r.proc.kill();
    const journaled = await journal();
    expect(journaled.operation.state, "the restore ended before the kill").toBe("running");
    expect(journaled.operation.progress.rows).toBeGreaterThan(0);
    // killed in the middle of its data: its staging table is still there
    const leftBehind = await workTables();
    expect(leftBehind.length).toBeGreaterThan(0);

    const again = await startRunner();
    const op = (await again.api.get(`/api/v1/operations/${id}`)).json.operation;
    expect(op).toMatchObject({ id, kind: "restore", state: "interrupted", backupId });
    expect(op.error).toMatch(/^interrupted: the runner stopped/);
    expect(op.progress.rows).toBeGreaterThan(0);
    expect(op.endedAt).not.toBeNull();
    expect((await again.api.get(`/api/v1/restores/${id}`)).json.operation.state).toBe("interrupted");
    const list = (await again.api.get("/api/v1/operations")).json.operations as { id: string; state: string }[];
    expect(list.find((o) => o.id === id)?.state).toBe("interrupted");
    const st = (await again.api.get("/api/v1/status")).json;
    expect(st.lastFailure.restore).toMatchObject({ id, state: "interrupted" });
    // what it left (staging tables), if anything, is gone once the restarted runner is ready; the target is not half-filled
    expect(await workTables()).toEqual([]);
    const killed = await ch.query<{ c: string }>("SELECT toString(count()) AS c FROM system.tables WHERE database = 'big_killed' AND name = 't'");
    if (killed[0]?.c === "1") expect((await ch.query<{ c: string }>("SELECT toString(count()) AS c FROM big_killed.t"))[0]!.c).toBe(String(ROWS));
    const log = await again.log();
    expect(log.split("\n").filter((l) => l.includes("an operation was interrupted") && l.includes(id))).toHaveLength(1);
    const cleanup = log.split("\n").find((l) => l.includes("cleaned up after interrupted restores"));
    expect(cleanup).toBeDefined();
    for (const t of leftBehind) expect(JSON.parse(cleanup!).removed).toContain(t);
    expect(st.interruptedRestoreCleanup.removed).toEqual(expect.arrayContaining(leftBehind));

    // a second restart does not report it again, but still lists it
    await again.proc.stop(15_000);
    const third = await startRunner();
    expect((await third.api.get(`/api/v1/operations/${id}`)).json.operation.state).toBe("interrupted");
    expect((await third.log()).includes("an operation was interrupted")).toBe(false);
    await ch.exec("DROP DATABASE IF EXISTS big_killed");
  });

  it("MinIO stopped (SIGSTOP) mid-restore: the restore fails within the idle timeout (3 s), naming the storage", async () => {
    // A runner whose idle timeout is 3 s (the other tests keep the default, so a slow moment is not a stall).
    await runner?.proc.stop(15_000);
    await writeConfig(configPath, stateDir, 3);
    const r = await startRunner();
    const start = await r.api.post("/api/v1/restores", { backup: backupId, renameDatabases: { big: "big_stall" }, existingTables: "fail" });
    const id = start.json.operation.id;
    const moving = await waitMoving(r, id);
    expect(moving.operation.state, "the restore ended before MinIO was stopped").toBe("running");
    process.kill(minio.pid(), "SIGSTOP");
    const stoppedAt = Date.now();
    let done;
    try {
      done = await waitOp(r, id, 30_000);
    } finally {
      process.kill(minio.pid(), "SIGCONT");
    }
    const took = Date.now() - stoppedAt;
    expect(done.operation.state).toBe("failed");
    expect(done.operation.error).toMatch(/storage stalled/);
    expect(took).toBeLessThan(10_000);
    expect(await workTables()).toEqual([]);
    expect(await databases()).not.toContain("big_stall");
  });
});
