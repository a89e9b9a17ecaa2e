// The backup-runner binary: bad config exits 2 listing fields without
// secrets; SIGTERM mid-backup aborts cleanly (multipart aborted, no manifest)
// within a bounded time.
import { randomBytes } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { ListMultipartUploadsCommand, ListObjectsV2Command } from "@aws-sdk/client-s3";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startClickHouse, startMinio, makeTempDir, removeDir, repoRoot, type ClickHouseServer, type MinioServer } from "./env/index.ts";

const MAIN = join(repoRoot, "cmd", "backup-runner", "main.ts");

describe("backup-runner command", () => {
  let ch: ClickHouseServer;
  let minio: MinioServer;
  let bucket: string;
  let dir: string;
  beforeAll(async () => {
    [ch, minio, dir] = await Promise.all([startClickHouse(), startMinio(), makeTempDir("cli")]);
    bucket = await minio.createBucket();
    await ch.exec("CREATE DATABASE big");
    await ch.exec("CREATE TABLE big.t (id UInt64, s String, f Float64) ENGINE = MergeTree ORDER BY id");
    await ch.exec("INSERT INTO big.t SELECT number, concat('row-', toString(rand64())), rand() / 7 FROM system.numbers LIMIT 6000000");
  });
  afterAll(async () => {
    await ch?.stop();
    await minio?.stop();
    await removeDir(dir);
  });

  it("exits 2 on a bad config, naming every bad field and no secret", async () => {
    const path = join(dir, "bad.json");
    await writeFile(path, JSON.stringify({ definition: { namespace: "a", name: "b", clickhouse: { url: "nope", password: "hunter2hunter2" } }, storage: { s3: { bucket: "x" } }, api: { token: "tok" } }));
    const r = await execa(process.execPath, [MAIN, "backup", "--once", "--target", "x", "--config", path], { reject: false });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain("definition.clickhouse.url");
    expect(r.stderr).toContain("storage.s3.bucket");
    expect(r.stderr).toContain("api.token");
    expect(r.stderr).not.toContain("hunter2hunter2");
    const usage = await execa(process.execPath, [MAIN, "frobnicate"], { reject: false });
    expect(usage.exitCode).toBe(2);
    expect(usage.stderr).toContain("Usage:");
  });

  it("aborts a running backup on SIGTERM: exits promptly, no manifest, no multipart upload left", async () => {
    const path = join(dir, "config.json");
    const secret = minio.secretAccessKey;
    await writeFile(
      path,
      JSON.stringify({
        definition: { namespace: "cli", name: "big", clickhouse: { url: ch.url, username: ch.username, password: ch.password, databases: { include: ["big"] }, compressionLevel: 9 }, mode: "single", singleBackup: { target: "sigterm" } },
        storage: { s3: { endpoint: minio.endpoint, region: minio.region, bucket, forcePathStyle: true, accessKeyId: minio.accessKeyId, secretAccessKey: secret, partSizeMiB: 5 } },
        api: { token: randomBytes(16).toString("hex") },
      }),
    );
    const child = execa(process.execPath, [MAIN, "backup", "--once", "--config", path], { reject: false, env: { LOG_LEVEL: "info" } });
    const s3 = minio.s3();
    try {
      // Wait until the upload is under way (a multipart upload exists), then SIGTERM.
      let uploading = false;
      for (let i = 0; i < 300 && !uploading; i++) {
        await new Promise((r) => setTimeout(r, 50));
        const mp = await s3.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
        uploading = (mp.Uploads ?? []).length > 0;
      }
      expect(uploading).toBe(true);
      const t = Date.now();
      child.kill("SIGTERM");
      const r = await child;
      const elapsed = Date.now() - t;
      expect(elapsed).toBeLessThan(15_000);
      expect(r.exitCode).toBe(1);
      const result = JSON.parse(r.stdout.trim().split("\n").pop()!) as { state: string };
      expect(result.state).toBe("aborted");
      expect(r.stderr).toContain("signal received");
      expect(r.stderr).not.toContain(secret);
      expect(r.stderr).not.toContain(ch.password);
      const objs = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: "sigterm/" }));
      expect((objs.Contents ?? []).map((o) => o.Key)).toEqual([]);
      const mp = await s3.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
      expect(mp.Uploads ?? []).toEqual([]);
    } finally {
      s3.destroy();
      child.kill("SIGKILL");
    }
  });
});

describe("backup-runner command: no silent configuration", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await makeTempDir("cli-strict");
  });
  afterAll(async () => {
    await removeDir(dir);
  });

  it("exits 2 on misspelt fields and on an empty retention in scheduled mode, naming each field", async () => {
    const base = {
      definition: { namespace: "a", name: "b", clickhouse: { url: "http://127.0.0.1:9", password: "hunter2hunter2" }, schedule: { cron: "0 * * * *" } },
      storage: { s3: { bucket: "bucket", accessKeyId: "ak", secretAccessKey: "sk-secret-value" } },
      api: { token: "0123456789abcdef0123" },
    };
    const cases: [string, unknown, string[]][] = [
      ["misspelt", { ...base, definition: { ...base.definition, retension: { daily: 7 } }, storage: { s3: { ...base.storage.s3, encrpytion: "aws:kms" } } }, ["definition.retension: unknown field", "storage.s3.encrpytion: unknown field"]],
      ["empty retention", { ...base, definition: { ...base.definition, retention: {} } }, ["definition.retention: must keep at least one label"]],
      ["all-zero retention", { ...base, definition: { ...base.definition, retention: { hourly: 0, daily: 0 } } }, ["definition.retention: must keep at least one label"]],
    ];
    for (const [name, config, expected] of cases) {
      const path = join(dir, `${name.replace(/\W+/g, "-")}.json`);
      await writeFile(path, JSON.stringify(config));
      const r = await execa(process.execPath, [MAIN, "serve", "--config", path], { reject: false, timeout: 60_000, env: { RUNNER_LISTEN: "127.0.0.1:0" } });
      expect(r.exitCode, name).toBe(2);
      for (const e of expected) expect(r.stderr, name).toContain(e);
      expect(r.stderr).not.toContain("hunter2hunter2");
      expect(r.stderr).not.toContain("sk-secret-value");
    }
  });
});
