// `backup-runner verify` on real servers: backups of ClickHouse 18.16 in
// MinIO, verified by the command with ClickHouse out of reach (its URL
// points at a closed port): a whole backup exits 0 with a table per table;
// a truncated object, an object corrupted with its SHA-256 and size
// rewritten in the manifest, and a table object replaced by a valid but
// empty one (zstd, and lz4 where ClickHouse 18.16 itself once sent empty
// bodies) each exit 1 naming that table and no other.
import { randomBytes, createHash } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { zstdCompressSync } from "node:zlib";
import { CopyObjectCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseRunnerConfig, type RunnerConfig } from "../pkg/apis/index.ts";
import type { Manifest } from "../pkg/runner/manifest.ts";
import { startClickHouse, startMinio, makeTempDir, removeDir, repoRoot, type ClickHouseServer, type MinioServer } from "./env/index.ts";
import { makeRunner } from "./helpers/runner.ts";

const MAIN = join(repoRoot, "cmd", "backup-runner", "main.ts");
const PREFIX = "verify";
const TABLES = ["vshop.orders", "vshop.customers", "vshop.tiny"];

describe("backup-runner verify (ClickHouse 18.16 backups in MinIO, no ClickHouse needed)", () => {
  let ch: ClickHouseServer;
  let minio: MinioServer;
  let bucket: string;
  let dir: string;
  let s3: S3Client;

  const config = (over: { compression?: "zstd" | "lz4"; clickhouseUrl?: string } = {}): RunnerConfig =>
    parseRunnerConfig({
      definition: {
        namespace: "team-v",
        name: "verify",
        clickhouse: { url: over.clickhouseUrl ?? ch.url, username: ch.username, password: ch.password, databases: { include: ["vshop"] }, compression: over.compression ?? "zstd" },
        schedule: { cron: "0 0 1 1 *", timeZone: "UTC" },
      },
      storage: {
        s3: { endpoint: minio.endpoint, region: minio.region, bucket, prefix: PREFIX, forcePathStyle: true, accessKeyId: minio.accessKeyId, secretAccessKey: minio.secretAccessKey, partSizeMiB: 5 },
      },
      api: { token: randomBytes(16).toString("hex") },
    });

  /** The command as a user runs it, with ClickHouse unreachable. */
  async function verify(args: string[], compression: "zstd" | "lz4" = "zstd") {
    const path = join(dir, `cli-${compression}.json`);
    await writeFile(path, JSON.stringify(config({ compression, clickhouseUrl: "http://127.0.0.1:9" })), { mode: 0o600 });
    return execa(process.execPath, [MAIN, "verify", ...args, "--config", path], { reject: false, timeout: 120_000, env: { LOG_LEVEL: "warn" } });
  }

  async function read(key: string): Promise<Buffer> {
    return Buffer.from(await (await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }))).Body!.transformToByteArray());
  }
  async function put(key: string, body: Buffer): Promise<void> {
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
  }
  /** Copies a single-backup target to a new one, so each damage has its own backup. */
  async function copyTarget(from: string, to: string): Promise<void> {
    const listed = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: `${PREFIX}/${from}/` }));
    for (const o of listed.Contents ?? []) {
      await s3.send(new CopyObjectCommand({ Bucket: bucket, CopySource: `${bucket}/${o.Key}`, Key: o.Key!.replace(`${PREFIX}/${from}/`, `${PREFIX}/${to}/`) }));
    }
  }
  const manifestOf = async (target: string) => JSON.parse((await read(`${PREFIX}/${target}/manifest.json`)).toString("utf8")) as Manifest;
  const dataObject = (m: Manifest, table: string) => m.tables.find((t) => `${t.database}.${t.name}` === table)!.dataObject!;
  /** Replaces a table's object and rewrites its size and SHA-256 in the manifest: only the data itself can tell. */
  async function replaceWithChecksums(target: string, table: string, body: Buffer): Promise<void> {
    const m = await manifestOf(target);
    const name = dataObject(m, table);
    await put(`${PREFIX}/${target}/${name}`, body);
    const o = m.objects.find((x) => x.name === name)!;
    o.size = body.length;
    o.sha256 = createHash("sha256").update(body).digest("hex");
    await put(`${PREFIX}/${target}/manifest.json`, Buffer.from(JSON.stringify(m, null, 2)));
  }
  function expectNamesOnly(stderr: string, table: string): void {
    expect(stderr).toContain(table);
    for (const other of TABLES.filter((t) => t !== table)) expect(stderr).not.toContain(other);
  }

  beforeAll(async () => {
    [ch, minio, dir] = await Promise.all([startClickHouse(), startMinio(), makeTempDir("verify")]);
    bucket = await minio.createBucket();
    s3 = minio.s3();
    await ch.exec("CREATE DATABASE vshop");
    await ch.exec("CREATE TABLE vshop.orders (id UInt64, customer UInt32, note String, amount Float64) ENGINE = MergeTree ORDER BY id");
    await ch.exec("CREATE TABLE vshop.customers (id UInt32, name String) ENGINE = MergeTree ORDER BY id");
    await ch.exec("CREATE TABLE vshop.tiny (k String, v UInt8) ENGINE = TinyLog");
    await ch.exec("CREATE VIEW vshop.big AS SELECT * FROM vshop.orders WHERE amount > 100");
    await ch.exec("INSERT INTO vshop.orders SELECT number, number % 997, concat('order ', toString(rand64())), number / 3 FROM system.numbers LIMIT 300000");
    await ch.exec("INSERT INTO vshop.customers SELECT number, concat('customer ', toString(number)) FROM system.numbers LIMIT 2000");
    await ch.exec("INSERT INTO vshop.tiny VALUES ('a', 1), ('b', 2), ('c', 3)");
    // One-off backups (single targets), made by the real engine, once per compression.
    for (const compression of ["zstd", "lz4"] as const) {
      const runner = makeRunner(config({ compression }));
      const op = await runner.startSingleBackup(`good-${compression}`).finished;
      expect(op.state, op.error).toBe("succeeded");
    }
  });
  afterAll(async () => {
    s3?.destroy();
    await ch?.stop();
    await minio?.stop();
    await removeDir(dir);
  });

  it("a whole backup: exit 0 and one line per table with rows and bytes, while ClickHouse is unreachable", async () => {
    for (const compression of ["zstd", "lz4"] as const) {
      const r = await verify(["--from", `good-${compression}`], compression);
      expect(r.exitCode, r.stderr).toBe(0);
      const lines = r.stdout.split("\n");
      expect(lines[1]).toMatch(/^TABLE\s+ROWS EXPECTED\s+ROWS FOUND\s+STORED BYTES\s+UNCOMPRESSED BYTES\s+RESULT$/);
      expect(r.stdout).toMatch(/vshop\.orders\s+300,000\s+300,000\s+[\d,]+\s+[\d,]+\s+OK/);
      expect(r.stdout).toMatch(/vshop\.customers\s+2,000\s+2,000\s+[\d,]+\s+[\d,]+\s+OK/);
      expect(r.stdout).toMatch(/vshop\.tiny\s+3\s+3\s+[\d,]+\s+[\d,]+\s+OK/);
      expect(r.stdout).toContain("is whole");
      expect(r.stdout).not.toContain("vshop.big"); // a view has no data
      expect(r.stderr).not.toContain(minio.secretAccessKey);
    }
  });

  it("a catalog backup by --backup latest", async () => {
    const runner = makeRunner(config());
    await runner.init();
    const op = await runner.startBackup("api").finished;
    expect(op.state, op.error).toBe("succeeded");
    const r = await verify(["--backup", "latest"]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toContain(`backup ${op.backupId}`);
    expect((await verify(["--backup", "20200101T000000Z-abcdef"])).exitCode).toBe(1);
  });

  it("a truncated object: exit 1 naming that table", async () => {
    await copyTarget("good-zstd", "truncated");
    const m = await manifestOf("truncated");
    const key = `${PREFIX}/truncated/${dataObject(m, "vshop.orders")}`;
    const body = await read(key);
    await put(key, body.subarray(0, Math.floor(body.length / 2)));
    const r = await verify(["--from", "truncated"]);
    expect(r.exitCode).toBe(1);
    expect(r.stdout).toMatch(/vshop\.orders .*DAMAGED/);
    expect(r.stdout).toMatch(/vshop\.customers .*OK/);
    expect(r.stderr).toContain("is not whole");
    expectNamesOnly(r.stderr, "vshop.orders");
  });

  it("an object corrupted with its SHA-256 and size rewritten in the manifest: exit 1 naming that table", async () => {
    await copyTarget("good-zstd", "corrupted");
    const m = await manifestOf("corrupted");
    const body = Buffer.from(await read(`${PREFIX}/corrupted/${dataObject(m, "vshop.customers")}`));
    for (let i = Math.floor(body.length / 3); i < Math.floor(body.length / 3) + 16; i++) body[i] = body[i]! ^ 0x5a;
    await replaceWithChecksums("corrupted", "vshop.customers", body);
    const r = await verify(["--from", "corrupted"]);
    expect(r.exitCode).toBe(1);
    expect(r.stdout).toMatch(/vshop\.customers .*DAMAGED/);
    expectNamesOnly(r.stderr, "vshop.customers");
  });

  // 16 changed bytes inside values, with the object's SHA-256 rewritten: the walk alone could pass them, the
  // blocks' CityHash128 checksums (checked by verify as ClickHouse would on restore) do not.
  it("lz4: an object corrupted with its SHA-256 and size rewritten in the manifest: exit 1 naming that table", async () => {
    await copyTarget("good-lz4", "corrupted-lz4");
    const m = await manifestOf("corrupted-lz4");
    const body = Buffer.from(await read(`${PREFIX}/corrupted-lz4/${dataObject(m, "vshop.orders")}`));
    for (let i = Math.floor(body.length / 3); i < Math.floor(body.length / 3) + 16; i++) body[i] = body[i]! ^ 0x5a;
    await replaceWithChecksums("corrupted-lz4", "vshop.orders", body);
    const r = await verify(["--from", "corrupted-lz4"], "lz4");
    expect(r.exitCode).toBe(1);
    expectNamesOnly(r.stderr, "vshop.orders");
  });

  it("a table object replaced by a valid but empty one: exit 1 naming that table (zstd and lz4)", async () => {
    await copyTarget("good-zstd", "empty-zstd");
    await replaceWithChecksums("empty-zstd", "vshop.tiny", zstdCompressSync(Buffer.alloc(0)));
    const z = await verify(["--from", "empty-zstd"]);
    expect(z.exitCode).toBe(1);
    expect(z.stdout).toMatch(/vshop\.tiny\s+3\s+0\s.*DAMAGED/);
    expectNamesOnly(z.stderr, "vshop.tiny");

    await copyTarget("good-lz4", "empty-lz4");
    await replaceWithChecksums("empty-lz4", "vshop.orders", Buffer.alloc(0));
    const l = await verify(["--from", "empty-lz4"], "lz4");
    expect(l.exitCode).toBe(1);
    expect(l.stdout).toMatch(/vshop\.orders\s+300,000\s+0\s.*DAMAGED/);
    expectNamesOnly(l.stderr, "vshop.orders");
  });

  it("names every damaged table at once", async () => {
    await copyTarget("good-zstd", "all-three");
    const m = await manifestOf("all-three");
    const key = `${PREFIX}/all-three/${dataObject(m, "vshop.orders")}`;
    await put(key, (await read(key)).subarray(0, 100));
    await replaceWithChecksums("all-three", "vshop.tiny", zstdCompressSync(Buffer.alloc(0)));
    const r = await verify(["--from", "all-three"]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain("vshop.orders");
    expect(r.stderr).toContain("vshop.tiny");
    expect(r.stderr).not.toContain("vshop.customers");
  });
});
