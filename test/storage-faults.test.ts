// Storage faults on real servers (ClickHouse 18.16, MinIO, a filesystem):
// a multi-table backup onto a full filesystem reports ENOSPC (not "The
// operation was aborted") and leaves no directory behind; /readyz fails for
// storage that is full or read-only; `serve` started while MinIO and
// ClickHouse are down is alive and not ready (saying why), never exits, and
// becomes ready and backs up once they are back.
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, readdir, readFile, writeFile, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import { Writable } from "node:stream";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { parseRunnerConfig, type RunnerConfig } from "../pkg/apis/index.ts";
import { createRunner } from "../pkg/runner/app.ts";
import { createLogger } from "../pkg/runner/logging.ts";
import { startClickHouse, startMinio, makeTempDir, removeDir, repoRoot, freePort, type ClickHouseServer, type MinioServer } from "./env/index.ts";
import { startProcess, waitUntil, type ManagedProcess } from "./env/proc.ts";
import { apiClient, pollJson, rawRequest } from "./helpers/api-http.ts";

const run = promisify(execFile);

/** Writes to files whose path contains `match` fail with ENOSPC after the first one (a disk filling up). */
const failWrites = vi.hoisted(() => ({ match: undefined as string | undefined, failed: 0 }));
vi.mock("node:fs/promises", async (importOriginal) => {
  const orig = await importOriginal<typeof import("node:fs/promises")>();
  const open = async (...args: Parameters<typeof orig.open>): Promise<FileHandle> => {
    const fh = await orig.open(...args);
    const file = String(args[0]);
    if (failWrites.match === undefined || !file.includes(failWrites.match)) return fh;
    let writes = 0;
    return new Proxy(fh, {
      get(target, prop, receiver) {
        if (prop === "write") {
          return async (...w: unknown[]) => {
            if (++writes > 1) {
              failWrites.failed++;
              throw Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC", errno: -28, syscall: "write" });
            }
            return (target.write as (...a: unknown[]) => Promise<unknown>)(...w);
          };
        }
        const v: unknown = Reflect.get(target, prop, receiver);
        return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
  };
  return { ...orig, open, default: { ...orig, open } };
});
const MAIN = join(repoRoot, "cmd", "backup-runner", "main.ts");

/** Mounts a tmpfs (needs root); false when that is not possible here. */
async function mountTmpfs(dir: string, options: string): Promise<boolean> {
  await mkdir(dir, { recursive: true });
  try {
    await run("mount", ["-t", "tmpfs", "-o", options, "tmpfs", dir]);
    return true;
  } catch {
    return false;
  }
}

function logLines() {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString("utf8").split("\n")) if (l.trim()) lines.push(l);
      cb();
    },
  });
  return { lines, logger: createLogger({ stream, level: "info" }) };
}

describe("storage faults (ClickHouse 18.16)", () => {
  let ch: ClickHouseServer;
  let dir: string;
  const mounts: string[] = [];

  const fsConfig = (path: string): RunnerConfig =>
    parseRunnerConfig({
      definition: {
        namespace: "team-f",
        name: "full",
        clickhouse: { url: ch.url, username: ch.username, password: ch.password, databases: { include: ["fat"] } },
        schedule: { cron: "0 0 1 1 *", timeZone: "UTC" },
      },
      storage: { filesystem: { path } },
      api: { token: randomBytes(16).toString("hex") },
    });

  beforeAll(async () => {
    [ch, dir] = await Promise.all([startClickHouse(), makeTempDir("faults")]);
    await ch.exec("CREATE DATABASE fat");
    // three tables of random text, each several MiB even after zstd: two stream at once
    for (const t of ["a", "b", "c"]) {
      await ch.exec(`CREATE TABLE fat.${t} (id UInt64, s String) ENGINE = MergeTree ORDER BY id`);
      await ch.exec(`INSERT INTO fat.${t} SELECT number, concat(toString(rand64()), toString(rand64()), toString(rand64())) FROM system.numbers LIMIT 300000`);
    }
  });
  afterAll(async () => {
    for (const m of mounts) await run("umount", [m]).catch(() => undefined);
    await ch?.stop();
    await removeDir(dir);
  });

  it("a multi-table backup onto a full filesystem (2 MiB tmpfs) fails with ENOSPC, leaves no directory, and /readyz said storage is full", async (ctx) => {
    const mnt = join(dir, "tmpfs");
    if (!(await mountTmpfs(mnt, "size=2m"))) ctx.skip();
    mounts.push(mnt);
    const { lines, logger } = logLines();
    const runner = createRunner({ config: fsConfig(mnt), logger });
    await runner.init();
    const health = await runner.health();
    expect(health.storage).toMatch(/storage is full: \d+\.\d MiB free in .* \(less than 16\.0 MiB\)/);
    expect(health.engine).toBe("ok");
    const op = await runner.startBackup("api").finished;
    expect(op.state).toBe("failed");
    expect(op.error).toMatch(/ENOSPC/);
    expect(op.error).not.toMatch(/operation was aborted/i);
    const failed = lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l["message"] === "operation failed");
    expect(String(failed?.["error"])).toMatch(/ENOSPC/);
    // nothing of the failed backup is left, not even empty directories
    const left = await readdir(join(mnt, "team-f", "full")).catch(() => [] as string[]);
    expect(left).toEqual([]);
  });

  it("ENOSPC on the second table while the first streams (the disk's writes fail for it) is the reported cause", async () => {
    // A full disk without a mount: the file writes of table fat.b fail with ENOSPC after its first
    // block, while fat.a is streaming (two tables at once), as the kernel would fail them.
    const root = join(dir, "simulated");
    const { logger } = logLines();
    failWrites.match = "/fat/b.";
    try {
      const runner = createRunner({ config: fsConfig(root), logger });
      await runner.init();
      const op = await runner.startBackup("api").finished;
      expect(op.state).toBe("failed");
      expect(op.error).toMatch(/put "team-f\/full\/[^"]+\/data\/fat\/b\.[^"]*": ENOSPC/);
      expect(op.error).not.toMatch(/operation was aborted/i);
      expect(failWrites.failed).toBeGreaterThan(0);
    } finally {
      failWrites.match = undefined;
    }
    expect(await readdir(join(root, "team-f", "full")).catch(() => [] as string[])).toEqual([]);
  });

  it("/readyz: a read-only filesystem is not ready, naming why", async (ctx) => {
    const mnt = join(dir, "ro");
    if (!(await mountTmpfs(mnt, "ro,size=64m"))) ctx.skip();
    mounts.push(mnt);
    const runner = createRunner({ config: fsConfig(mnt), logger: createLogger({ silent: true }) });
    const h = await runner.health();
    expect(h.storage).toMatch(/read-only|EROFS/i);
  });
});

describe("serve without storage or ClickHouse at start", () => {
  let ch: ClickHouseServer;
  let minio: MinioServer;
  let dir: string;
  let proc: ManagedProcess | undefined;

  beforeAll(async () => {
    [ch, minio, dir] = await Promise.all([startClickHouse(), startMinio(), makeTempDir("nostorage")]);
  });
  afterAll(async () => {
    await proc?.stop(15_000);
    await Promise.all([ch?.stop(), minio?.stop()]);
    await removeDir(dir);
  });

  it("starts, is alive and not ready with the reason, retries, never exits; ready once both are back, then backs up on schedule", async () => {
    const bucket = await minio.createBucket();
    const token = randomBytes(16).toString("hex");
    const configPath = join(dir, "config.json");
    await writeFile(
      configPath,
      JSON.stringify({
        definition: {
          namespace: "team-n",
          name: "late",
          clickhouse: { url: ch.url, username: ch.username, password: ch.password },
          // a yearly schedule and an empty catalog: the missed run is taken once the runner is ready
          schedule: { cron: "0 0 1 1 *", timeZone: "UTC" },
          stateDir: join(dir, "state"),
        },
        storage: { s3: { endpoint: minio.endpoint, region: minio.region, bucket, forcePathStyle: true, accessKeyId: minio.accessKeyId, secretAccessKey: minio.secretAccessKey } },
        api: { token },
      }),
      { mode: 0o600 },
    );
    await minio.kill();
    await ch.kill();
    const port = await freePort();
    const logFile = join(dir, "runner.log");
    proc = startProcess("backup-runner", process.execPath, [MAIN, "serve", "--config", configPath], { env: { RUNNER_LISTEN: `127.0.0.1:${port}`, LOG_LEVEL: "info" }, logFile });
    const url = `http://127.0.0.1:${port}`;
    const api = apiClient(url, token);
    await waitUntil("healthz", async () => (await fetch(`${url}/healthz`)).ok, { proc, timeoutMs: 60_000 });

    // once the first attempt has failed, the reason is its error
    await waitUntil("a first failed attempt", async () => (await rawRequest(url, { path: "/readyz" })).json.checks.runner.includes("storage: "), { proc, timeoutMs: 30_000 });
    const down = await rawRequest(url, { path: "/readyz" });
    expect(down.status).toBe(503);
    expect(down.json.failed).toEqual(expect.arrayContaining(["runner", "storage", "engine"]));
    expect(down.json.checks.runner).toMatch(/^not ready: loading the backup catalog from storage: .*(ECONNREFUSED|connect)/);
    expect(down.text).not.toContain(minio.secretAccessKey);
    expect(down.text).not.toContain(ch.password);
    expect((await api.get("/api/v1/backups")).status).toBe(503);
    expect((await api.get("/api/v1/status")).json.ready).toBe(false);
    // it keeps retrying, and stays up
    await waitUntil("a few retries", async () => (await readFile(logFile, "utf8")).split("cannot load the catalog from storage; retrying").length > 3, { proc, timeoutMs: 30_000 });
    expect(proc.exited()).toBe(false);

    // storage back: the catalog loads; ClickHouse is still down, so not ready yet, with that reason
    await minio.start();
    const cleaning = await pollJson(
      () => rawRequest(url, { path: "/readyz" }).then((r) => ({ ...r, status: 200 })),
      (j) => typeof j.checks?.runner === "string" && j.checks.runner.includes("cleaning up after interrupted restores"),
      60_000,
      250,
    );
    expect(cleaning.ready).toBe(false);
    expect(cleaning.checks.storage).toBe("ok");
    expect((await api.get("/api/v1/backups")).status).toBe(200);
    expect(proc.exited()).toBe(false);

    await ch.start();
    const up = await pollJson(() => rawRequest(url, { path: "/readyz" }), (j) => j.ready === true, 60_000, 250);
    expect(up.checks).toEqual({ runner: "ok", storage: "ok", engine: "ok" });
    // schedules as usual: the missed run is taken
    const listed = await pollJson(() => api.get("/api/v1/backups"), (j) => j.backups.length === 1, 60_000, 250);
    expect(listed.backups[0].trigger).toBe("missed");
    expect(proc.exited()).toBe(false);
    const log = await readFile(logFile, "utf8");
    for (const secret of [minio.secretAccessKey, ch.password, token]) expect(log).not.toContain(secret);
  });
});
