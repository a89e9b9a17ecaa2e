// Client-side encryption with age on real servers (issue #17): ClickHouse
// 18.16 and chDB, MinIO and filesystem storage. Every data object is an age
// file; a restore with an identity of one of the recipients gives the same
// checksums, one with a wrong identity or none fails before it changes
// anything; the reference `age` CLI and `zstd -d` turn an object into Native
// that ClickHouse 18.16 inserts; a flipped byte fails verify and restore; and
// no identity shows up in the runner's logs, manifests, API answers or errors.
import { execFileSync } from "node:child_process";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Writable } from "node:stream";
import { GetObjectCommand, ListObjectsV2Command, S3Client } from "@aws-sdk/client-s3";
import type { ClickHouseClient } from "@clickhouse/client";
import { generateX25519Identity, identityToRecipient } from "age-encryption";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clickhouseRunnerConfig, parseRunnerConfig, recipientFingerprint, type RunnerConfig, type RunnerConfigInput } from "../pkg/apis/index.ts";
import { createClickHouseEngine } from "../pkg/backupengine/clickhouse/index.ts";
import { AgeIdentities } from "../pkg/encryption/identity.ts";
import { RunnerMetrics } from "../pkg/runner/api/metrics.ts";
import { startApiServer, type ApiServer } from "../pkg/runner/api/server.ts";
import { createRunner } from "../pkg/runner/app.ts";
import { createLogger } from "../pkg/runner/logging.ts";
import type { Runner } from "../pkg/runner/runner.ts";
import { RunnerService } from "../pkg/runner/service.ts";
import { chdbEngineClient, makeTempDir, removeDir, repoRoot, startChdb, startClickHouse, startMinio, type ChdbEngine, type ClickHouseServer, type MinioServer } from "./env/index.ts";
import { apiClient, pollJson, rawRequest } from "./helpers/api-http.ts";
import { s3Storage, tableChecksum } from "./helpers/runner.ts";

const MAIN = join(repoRoot, "cmd", "backup-runner", "main.ts");
const TOKEN = "encryption-token-0123456789abcdef";

/** Every log line of every runner in this file, for the key-material check. */
const logText: string[] = [];
const logger = createLogger({
  level: "debug",
  stream: new Writable({
    write(chunk: Buffer, _enc, cb) {
      logText.push(chunk.toString("utf8"));
      cb();
    },
  }),
});
/** Everything else that leaves the runner: errors, API answers, manifests, CLI output. */
const seen: string[] = [];

interface Db {
  exec(sql: string): Promise<void>;
  checksum(table: string): Promise<{ rows: number; sum: string }>;
  tables(): Promise<string[]>;
}

describe("client-side encryption with age", () => {
  let ch: ClickHouseServer;
  let chdb: ChdbEngine;
  let chdbClient: { client: ClickHouseClient; close: () => Promise<void> };
  let minio: MinioServer;
  let bucket: string;
  let tmp: string;
  let team: { identity: string; recipient: string; file: string };
  let breakGlass: { identity: string; recipient: string; file: string };
  let wrong: { identity: string; recipient: string; file: string };
  let identityDir: string;
  const allIdentities = () => [team.identity, breakGlass.identity, wrong.identity];

  const ids = (file: string) => AgeIdentities.fromFile(file);

  const server18: () => Db = () => ({
    exec: (sql) => ch.exec(sql),
    checksum: (t) => tableChecksum(ch, t),
    tables: async () => (await ch.query<{ n: string }>("SELECT concat(database, '.', name) AS n FROM system.tables WHERE database NOT IN ('system') ORDER BY n")).map((r) => r.n),
  });
  const chdbDb: () => Db = () => ({
    exec: (sql) => chdb.exec(sql),
    checksum: async (t) => {
      const [r] = await chdb.query<{ c: string; h: string }>(`SELECT toString(count()) AS c, toString(sum(cityHash64(*))) AS h FROM ${t}`);
      return { rows: Number(r?.c ?? 0), sum: r?.h ?? "" };
    },
    tables: async () =>
      (await chdb.query<{ n: string }>("SELECT concat(database, '.', name) AS n FROM system.tables WHERE database NOT IN ('system', 'INFORMATION_SCHEMA', 'information_schema') ORDER BY n")).map((r) => r.n),
  });

  function config(opts: { name: string; storage: RunnerConfigInput["storage"]; clickhouse: { url: string; username?: string; password?: string }; databases: string[]; withIdentityDir?: boolean }): RunnerConfig {
    return parseRunnerConfig({
      definition: {
        namespace: "team-enc",
        name: opts.name,
        clickhouse: { ...opts.clickhouse, databases: { include: opts.databases } },
        schedule: { cron: "0 0 1 1 *", timeZone: "UTC" },
        encryption: { recipients: [team.recipient, breakGlass.recipient], ...(opts.withIdentityDir ? { identityDir } : {}) },
      },
      storage: opts.storage,
      api: { token: TOKEN, host: "127.0.0.1", port: 8080 },
    });
  }

  async function newKey(name: string, viaCli: boolean) {
    const file = join(tmp, `${name}.txt`);
    if (viaCli) {
      // age-keygen's own file: comments, the public key, the identity
      execFileSync("age-keygen", ["-o", file], { stdio: "pipe" });
      const identity = (await readFile(file, "utf8")).split("\n").find((l) => l.startsWith("AGE-SECRET-KEY-1"))!;
      return { identity, recipient: await identityToRecipient(identity), file };
    }
    const identity = await generateX25519Identity();
    await writeFile(file, `# ${name}\n${identity}\n`, { mode: 0o600 });
    return { identity, recipient: await identityToRecipient(identity), file };
  }

  beforeAll(async () => {
    tmp = await makeTempDir("encryption");
    [ch, minio, chdb] = await Promise.all([startClickHouse(), startMinio(), startChdb()]);
    bucket = await minio.createBucket();
    chdbClient = chdbEngineClient(chdb.dir, tmp);
    team = await newKey("team", true);
    breakGlass = await newKey("break-glass", false);
    wrong = await newKey("wrong", false);
    identityDir = join(tmp, "identities");
    await mkdir(identityDir);
    await writeFile(join(identityDir, "key.txt"), await readFile(team.file));
    await writeFile(join(identityDir, "wrong.txt"), await readFile(wrong.file));

    await ch.exec("CREATE DATABASE enc");
    await ch.exec("CREATE TABLE enc.orders (id UInt64, customer String, amount Float64, tags Array(String), created DateTime) ENGINE = MergeTree ORDER BY id");
    await ch.exec(
      "INSERT INTO enc.orders SELECT number, concat('c', toString(number % 997)), (number % 10000) / 7, [toString(number % 3), 'x'], toDateTime('2024-01-01 00:00:00') + number FROM system.numbers LIMIT 150000",
    );
    await ch.exec("CREATE TABLE enc.tiny (k String, v UInt8) ENGINE = Log");
    await ch.exec("INSERT INTO enc.tiny VALUES ('a', 1), ('b', 2), ('c', 3)");
    await ch.exec("CREATE VIEW enc.paid AS SELECT id FROM enc.orders WHERE amount > 100");
    await chdb.exec("CREATE DATABASE encc");
    await chdb.exec("CREATE TABLE encc.events (id UInt64, kind LowCardinality(String), at DateTime64(3), m Map(String, UInt32)) ENGINE = MergeTree ORDER BY id");
    await chdb.exec("INSERT INTO encc.events SELECT number, ['a', 'b', 'c'][number % 3 + 1], toDateTime64('2025-01-01 00:00:00', 3) + number, map('n', toUInt32(number)) FROM numbers(120000)");
  }, 240_000);

  afterAll(async () => {
    await chdbClient?.close();
    await Promise.all([ch?.stop(), minio?.stop(), chdb?.stop()]);
    if (tmp) await removeDir(tmp);
  });

  /**
   * The whole story on one runner: a backup whose data objects are age files
   * for both recipients, restores that fail without an identity and with a
   * wrong one (the database untouched, no staging table left), a restore
   * with either right identity that brings back the backed-up checksums, and
   * verify with and without an identity.
   */
  async function story(runner: Runner, db: Db, tables: string[], change: string) {
    const op = await runner.startBackup("api").finished;
    expect(op.state, op.error).toBe("succeeded");
    const entry = runner.latest()!;
    const m = entry.manifest;
    seen.push(JSON.stringify(m));
    expect(m.encryption).toEqual({ format: "age", recipients: [{ fingerprint: recipientFingerprint(team.recipient) }, { fingerprint: recipientFingerprint(breakGlass.recipient) }] });
    const dataObjects = m.tables.flatMap((t) => t.dataObjects ?? (t.dataObject ? [t.dataObject] : []));
    expect(dataObjects.length).toBe(tables.length);
    for (const o of dataObjects) expect(o).toMatch(/\.native\.zst\.age$/);
    expect(m.objects.map((o) => o.name).sort()).toEqual([...dataObjects].sort());
    const atBackup = Object.fromEntries(await Promise.all(tables.map(async (t) => [t, await db.checksum(t)] as const)));

    // After the backup the data changes: a restore that went through would change it back.
    await db.exec(change);
    const changed = Object.fromEntries(await Promise.all(tables.map(async (t) => [t, await db.checksum(t)] as const)));
    const objectsBefore = await db.tables();
    const untouched = async () => {
      expect(await db.tables()).toEqual(objectsBefore);
      for (const t of tables) expect(await db.checksum(t), t).toEqual(changed[t]);
    };

    const none = await runner.startRestore({ backup: "latest", existingTables: "drop" }, "api").finished;
    seen.push(none.error ?? "");
    expect(none.state).toBe("failed");
    expect(none.error).toContain(`backup ${m.id} is encrypted with age and a restore needs an identity`);
    expect(none.error).toContain(recipientFingerprint(team.recipient));
    expect(none.error).toContain(recipientFingerprint(breakGlass.recipient));
    expect(none.error).toContain("nothing was changed");
    await untouched();

    const bad = await runner.startRestore({ backup: "latest", existingTables: "drop", identities: await ids(wrong.file) }, "api").finished;
    seen.push(bad.error ?? "");
    expect(bad.state).toBe("failed");
    expect(bad.error).toContain(`recipient fingerprint ${recipientFingerprint(wrong.recipient)}) is not one of its recipients`);
    expect(bad.error).toContain(recipientFingerprint(team.recipient));
    expect(bad.error).toContain("nothing was changed");
    await untouched();

    const good = await runner.startRestore({ backup: "latest", existingTables: "drop", identities: await ids(breakGlass.file) }, "api").finished;
    seen.push(JSON.stringify(good));
    expect(good.state, good.error).toBe("succeeded");
    for (const t of tables) expect(await db.checksum(t), t).toEqual(atBackup[t]);

    const v = await runner.startVerify("latest", "api", await ids(team.file)).finished;
    seen.push(JSON.stringify(v));
    expect(v.state, v.error).toBe("succeeded");
    expect(v.result).toMatchObject({ ok: true, encrypted: true, contentChecked: true });
    const vt = (v.result as { tables: { rows: number; expectedRows: number }[] }).tables;
    for (const t of vt) expect(t.rows).toBe(t.expectedRows);
    const vn = await runner.startVerify("latest", "api").finished;
    seen.push(JSON.stringify(vn));
    expect(vn.state, vn.error).toBe("succeeded");
    expect(vn.result).toMatchObject({ ok: true, encrypted: true, contentChecked: false });
    return { manifest: m, dir: runner.catalog.dir(m.id), atBackup };
  }

  it("ClickHouse 18.16, filesystem: the story, then age -d | zstd -d gives Native that 18.16 inserts, then a flipped byte fails verify and restore", async () => {
    const root = join(tmp, "fs18");
    const cfg = config({ name: "fs18", storage: { filesystem: { path: root } }, clickhouse: { url: ch.url, username: ch.username, password: ch.password }, databases: ["enc"] });
    const runner = createRunner({ config: cfg, logger });
    await runner.init();
    const { manifest, dir, atBackup } = await story(runner, server18(), ["enc.orders", "enc.tiny"], "INSERT INTO enc.orders SELECT number + 1000000, 'late', 1, [], now() FROM system.numbers LIMIT 10");

    // The reference CLI opens what the runner wrote: age -d | zstd -d is Native that ClickHouse 18.16 inserts.
    const orders = manifest.tables.find((t) => t.name === "orders")!.dataObject!;
    const file = join(root, dir, orders);
    expect((await readFile(file)).subarray(0, 22).toString("latin1")).toBe("age-encryption.org/v1\n");
    const native = join(tmp, "orders.native");
    await execa("sh", ["-c", 'age -d -i "$1" "$2" | zstd -d -q -o "$3"', "sh", team.file, file, native]);
    await ch.exec("CREATE TABLE enc.orders_cli AS enc.orders");
    const res = await fetch(`${ch.url}/?query=${encodeURIComponent("INSERT INTO enc.orders_cli FORMAT Native")}`, {
      method: "POST",
      body: await readFile(native),
      headers: { Authorization: `Basic ${Buffer.from(`${ch.username}:${ch.password}`).toString("base64")}` },
    });
    expect(res.status, await res.text()).toBe(200);
    expect(await tableChecksum(ch, "enc.orders_cli")).toEqual(atBackup["enc.orders"]);
    await ch.exec("DROP TABLE enc.orders_cli");

    // The command line: --identity for restore and verify.
    const cfgPath = join(tmp, "fs18.json");
    await writeFile(cfgPath, JSON.stringify(cfg), { mode: 0o600 });
    const cli = (...args: string[]) => execa(process.execPath, [MAIN, ...args, "--config", cfgPath], { reject: false, timeout: 120_000, env: { LOG_LEVEL: "info" } });
    const vCli = await cli("verify", "--backup", "latest", "--identity", team.file);
    seen.push(vCli.stdout, vCli.stderr);
    expect(vCli.exitCode, vCli.stderr).toBe(0);
    expect(vCli.stdout).toMatch(/enc\.orders\s+150,000\s+150,000/);
    const vNone = await cli("verify", "--backup", "latest");
    seen.push(vNone.stdout, vNone.stderr);
    expect(vNone.exitCode, vNone.stderr).toBe(0);
    expect(vNone.stdout).toContain("OK (stored bytes only: encrypted, no identity)");
    expect(vNone.stdout).toContain("its content needs --identity");
    const rCli = await cli("restore", "--backup", "latest", "--rename", "enc=enc_cli", "--identity", team.file);
    seen.push(rCli.stdout, rCli.stderr);
    expect(rCli.exitCode, rCli.stderr).toBe(0);
    expect(await tableChecksum(ch, "enc_cli.orders")).toEqual(atBackup["enc.orders"]);
    await ch.exec("DROP DATABASE enc_cli");

    // A flipped byte in the middle of the encrypted object.
    const before = await tableChecksum(ch, "enc.orders");
    const bytes = await readFile(file);
    bytes[Math.floor(bytes.length / 2)]! ^= 0x04;
    await writeFile(file, bytes);
    const v = await runner.startVerify("latest", "api", await ids(team.file)).finished;
    seen.push(JSON.stringify(v));
    expect(v.state).toBe("failed");
    expect(v.error).toMatch(/enc\.orders \(.*(fails authentication: the data was changed|checksum mismatch)/);
    expect(v.error).not.toContain("enc.tiny");
    const vn = await runner.startVerify("latest", "api").finished;
    expect(vn.state).toBe("failed");
    expect(vn.error).toMatch(/enc\.orders \(.*checksum mismatch/);
    const r = await runner.startRestore({ backup: "latest", existingTables: "drop", identities: await ids(team.file) }, "api").finished;
    seen.push(JSON.stringify(r));
    expect(r.state).toBe("failed");
    expect(r.error).toMatch(/fails authentication: the data was changed|checksum mismatch/);
    expect(await tableChecksum(ch, "enc.orders")).toEqual(before);
    expect((await server18().tables()).filter((t) => t.includes("_chbackup_"))).toEqual([]);
  });

  it("ClickHouse 18.16, lz4: the encrypted object is ClickHouse's compressed Native, which 18.16 inserts with decompress=1; verify and restore with an identity", async () => {
    const root = join(tmp, "fs18lz4");
    const base = config({ name: "fs18lz4", storage: { filesystem: { path: root } }, clickhouse: { url: ch.url, username: ch.username, password: ch.password }, databases: ["enc"] });
    const cfg = parseRunnerConfig({ ...base, definition: { ...base.definition, clickhouse: { ...base.definition.clickhouse, compression: "lz4" } } });
    const runner = createRunner({ config: cfg, logger });
    await runner.init();
    const before = await tableChecksum(ch, "enc.orders");
    const op = await runner.startBackup("api").finished;
    expect(op.state, op.error).toBe("succeeded");
    const m = runner.latest()!.manifest;
    seen.push(JSON.stringify(m));
    const orders = m.tables.find((t) => t.name === "orders")!.dataObject!;
    expect(orders).toBe("data/enc/orders.native.lz4.age");
    const v = await runner.startVerify("latest", "api", await ids(breakGlass.file)).finished;
    expect(v.state, v.error).toBe("succeeded");
    expect(v.result).toMatchObject({ ok: true, contentChecked: true });
    const r = await runner.startRestore({ backup: "latest", existingTables: "fail", renameDatabases: { enc: "enc_lz4" }, identities: await ids(team.file) }, "api").finished;
    expect(r.state, r.error).toBe("succeeded");
    expect(await tableChecksum(ch, "enc_lz4.orders")).toEqual(before);
    // by hand: age -d gives ClickHouse's compressed blocks, which the HTTP interface takes with decompress=1
    const compressed = join(tmp, "orders.native.lz4");
    await execa("age", ["-d", "-i", team.file, "-o", compressed, join(root, runner.catalog.dir(m.id), orders)]);
    await ch.exec("CREATE TABLE enc_lz4.orders_cli AS enc.orders");
    const res = await fetch(`${ch.url}/?decompress=1&query=${encodeURIComponent("INSERT INTO enc_lz4.orders_cli FORMAT Native")}`, {
      method: "POST",
      body: await readFile(compressed),
      headers: { Authorization: `Basic ${Buffer.from(`${ch.username}:${ch.password}`).toString("base64")}` },
    });
    expect(res.status, await res.text()).toBe(200);
    expect(await tableChecksum(ch, "enc_lz4.orders_cli")).toEqual(before);
    await ch.exec("DROP DATABASE enc_lz4");
  });

  it("ClickHouse 18.16, MinIO, through the HTTP API: identityFile names a file of the identity directory; nothing of a key in any answer", async () => {
    const cfg = config({
      name: "api18",
      storage: s3Storage(minio, bucket, "enc"),
      clickhouse: { url: ch.url, username: ch.username, password: ch.password },
      databases: ["enc"],
      withIdentityDir: true,
    });
    const metrics = new RunnerMetrics();
    const runner = createRunner({ config: cfg, logger, observer: metrics.observer() });
    const service = new RunnerService({ runner, logger });
    let server: ApiServer | undefined;
    try {
      server = await startApiServer({ service, metrics, logger, token: TOKEN, host: "127.0.0.1", port: 0 });
      const api = apiClient(server.url, TOKEN);
      const get = async (path: string) => {
        const r = await api.get(path);
        seen.push(r.text);
        return r;
      };
      await service.start(); // the missed scheduled backup
      const st = await pollJson(() => get("/api/v1/status"), (j) => j.current === null && j.lastSuccess.backup !== null, 60_000, 100);
      expect(st.lastSuccess.backup.state).toBe("succeeded");
      expect(st.encryption).toEqual({ format: "age", recipients: [{ fingerprint: recipientFingerprint(team.recipient) }, { fingerprint: recipientFingerprint(breakGlass.recipient) }], identityDir });
      const list = (await get("/api/v1/backups")).json;
      const id = list.backups[0].id as string;
      expect(list.backups[0].encryption).toEqual({ format: "age", recipients: [{ fingerprint: recipientFingerprint(team.recipient) }, { fingerprint: recipientFingerprint(breakGlass.recipient) }] });
      const shown = (await get(`/api/v1/backups/${id}`)).json;
      expect(shown.manifest.tables.find((t: { name: string }) => t.name === "orders").dataObject).toBe("data/enc/orders.native.zst.age");

      // The data in the bucket is age, not zstd.
      const s3 = new S3Client({ endpoint: minio.endpoint, region: minio.region, forcePathStyle: true, credentials: { accessKeyId: minio.accessKeyId, secretAccessKey: minio.secretAccessKey } });
      const key = `enc/${runner.catalog.dir(id)}/data/enc/orders.native.zst.age`;
      const head = Buffer.from(await (await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key, Range: "bytes=0-21" }))).Body!.transformToByteArray());
      expect(head.toString("latin1")).toBe("age-encryption.org/v1\n");
      const listed = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: "enc/" }));
      for (const o of listed.Contents ?? []) {
        if (o.Key!.endsWith(".json")) seen.push(await (await s3.send(new GetObjectCommand({ Bucket: bucket, Key: o.Key! }))).Body!.transformToString());
      }

      const post = async (path: string, body: unknown) => {
        const r = await api.post(path, body);
        seen.push(r.text);
        return r;
      };
      const run = async (path: string, body: unknown, follow: (opId: string) => string) => {
        const r = await post(path, body);
        expect(r.status, r.text).toBe(202);
        return (await pollJson(() => get(follow(r.json.operation.id)), (j) => j.operation.state !== "running", 120_000, 100)).operation;
      };
      // the key itself in the request is refused, without being echoed
      const inline = await post("/api/v1/restores", { backup: "latest", identityFile: team.identity });
      expect(inline.status).toBe(400);
      expect(inline.json.error.message).toMatch(/must name an identity file, not hold the key/);
      const outside = await post("/api/v1/restores", { backup: "latest", identityFile: "../team.txt" });
      expect(outside.status).toBe(400);
      const missing = await post("/api/v1/restores", { backup: "latest", identityFile: "nope.txt" });
      expect(missing.status).toBe(400);
      expect(missing.json.error.code).toBe("invalid_identity");

      const before = await tableChecksum(ch, "enc.orders");
      const noKey = await run("/api/v1/restores", { backup: "latest", renameDatabases: { enc: "enc_api" } }, (o) => `/api/v1/restores/${o}`);
      expect(noKey.state).toBe("failed");
      expect(noKey.error).toContain("needs an identity");
      const wrongKey = await run("/api/v1/restores", { backup: "latest", renameDatabases: { enc: "enc_api" }, identityFile: "wrong.txt" }, (o) => `/api/v1/restores/${o}`);
      expect(wrongKey.state).toBe("failed");
      expect(wrongKey.error).toContain("is not one of its recipients");
      expect((await server18().tables()).filter((t) => t.startsWith("enc_api."))).toEqual([]);
      const ok = await run("/api/v1/restores", { backup: "latest", renameDatabases: { enc: "enc_api" }, identityFile: "key.txt" }, (o) => `/api/v1/restores/${o}`);
      expect(ok.state, ok.error).toBe("succeeded");
      expect(await tableChecksum(ch, "enc_api.orders")).toEqual(before);
      await ch.exec("DROP DATABASE enc_api");

      const v = await run(`/api/v1/backups/${id}/verify`, { identityFile: "key.txt" }, (o) => `/api/v1/operations/${o}`);
      expect(v.state, v.error).toBe("succeeded");
      expect(v.result).toMatchObject({ ok: true, contentChecked: true });
      const vn = await run(`/api/v1/backups/${id}/verify`, undefined, (o) => `/api/v1/operations/${o}`);
      expect(vn.state, vn.error).toBe("succeeded");
      expect(vn.result).toMatchObject({ ok: true, contentChecked: false });
      await get("/api/v1/status");
      await get("/api/v1/operations");
      seen.push((await rawRequest(server.url, { path: "/metrics" })).text);
    } finally {
      await server?.close(1000);
      await service.stop(5000);
    }
  });

  it("chDB (ClickHouse 26.x), MinIO and filesystem: the story", async () => {
    const engine = () => createClickHouseEngine(clickhouseRunnerConfig.parse({ url: "http://chdb.invalid:8123", databases: { include: ["encc"] } }), { logger, client: chdbClient.client });
    for (const [name, storage] of [
      ["chdb-s3", s3Storage(minio, bucket, "encc")],
      ["chdb-fs", { filesystem: { path: join(tmp, "fschdb") } }],
    ] as const) {
      const cfg = config({ name, storage, clickhouse: { url: "http://chdb.invalid:8123" }, databases: ["encc"] });
      const runner = createRunner({ config: cfg, logger, engine: engine() });
      await runner.init();
      await story(runner, chdbDb(), ["encc.events"], `INSERT INTO encc.events SELECT number + 5000000, 'z', now(), map() FROM numbers(7)`);
    }
  });

  it("no identity in any log line, manifest, API answer, error, metric or command output", async () => {
    expect(logText.length).toBeGreaterThan(20);
    expect(seen.length).toBeGreaterThan(20);
    const all = [...logText, ...seen].join("\n");
    for (const identity of allIdentities()) {
      const secretPart = identity.slice("AGE-SECRET-KEY-1".length);
      for (const needle of [identity, secretPart, secretPart.toLowerCase(), secretPart.slice(0, 20)]) {
        expect(all.toUpperCase().includes(needle.toUpperCase()), "key material found").toBe(false);
      }
    }
    expect(all).not.toMatch(/AGE-SECRET-KEY-1[0-9A-Z]/i);
    // The recipients themselves are public, but the manifests record fingerprints only.
    for (const m of seen.filter((s) => s.includes('"format":1') || s.includes('"format": 1'))) expect(m).not.toContain(team.recipient);
  });
});
