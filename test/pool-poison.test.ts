// Buffer ownership on the real data path: the dump's buffer pools poison
// every block handed back (ClickHouseEngineDeps.debugPoolPoison: overwritten
// with a marker at once, a second release or a write after release throws).
// ClickHouse 18.16 -> zstd (and lz4) -> MinIO (5 MiB parts, 3 per object, so a table
// is split into several objects) and the filesystem -> verify -> restore into
// a renamed database: every table comes back with the same checksum. A sink
// that reads chunks after handing them back stores the marker under a
// matching SHA-256: the backup "succeeds", and verify and restore fail.
import { PassThrough, type Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import winston from "winston";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clickhouseRunnerConfig } from "../pkg/apis/clickhouse.ts";
import { storageRunnerConfig, type StorageRunnerConfig } from "../pkg/apis/storagelocation.ts";
import { createClickHouseEngine } from "../pkg/backupengine/clickhouse/index.ts";
import type { BackupSink, EngineBackupResult, PutObjectOptions, WrittenObject } from "../pkg/backupengine/types.ts";
import { StoreSink, StoreSource } from "../pkg/runner/bridge.ts";
import { DecryptingSource, EncryptingSink, manifestEncryption } from "../pkg/runner/encryption.ts";
import { AgeIdentities } from "../pkg/encryption/identity.ts";
import { generateX25519Identity, identityToRecipient } from "age-encryption";
import { createFilesystemStore, createS3Store, type ObjectStore } from "../pkg/storage/index.ts";
import { makeTempDir, removeDir, startClickHouse, startMinio, type ClickHouseServer, type MinioServer } from "./env/index.ts";
import { tableChecksum } from "./helpers/runner.ts";

const logger = winston.createLogger({ silent: true });
const MiB = 1024 * 1024;

/**
 * A sink with the bug the pools guard against: it hands each chunk back
 * (PutObjectOptions.release) as soon as it gets it, and reads it after that
 * (it copies it for the store). Without poison the copy would usually still
 * hold the right bytes - the block is rarely reused that fast - and the bug
 * would go unnoticed until a busy day.
 */
class ReleasesEarly implements BackupSink {
  readonly #inner: StoreSink;
  constructor(inner: StoreSink) {
    this.#inner = inner;
  }
  putObject(name: string, body: AsyncIterable<Uint8Array> | NodeJS.ReadableStream, signal: AbortSignal, opts?: PutObjectOptions): Promise<WrittenObject> {
    return this.#inner.putObject(name, early(body, opts?.release), signal);
  }
  putObjects(name: string, body: AsyncIterable<Uint8Array> | NodeJS.ReadableStream, signal: AbortSignal, opts?: PutObjectOptions): Promise<WrittenObject[]> {
    return this.#inner.putObjects(name, early(body, opts?.release), signal);
  }
  removeObjects(names: readonly string[], signal: AbortSignal): Promise<void> {
    return this.#inner.removeObjects(names, signal);
  }
}

function early(body: AsyncIterable<Uint8Array> | NodeJS.ReadableStream, release: ((c: Uint8Array) => void) | undefined): Readable {
  // chunk by chunk, as they came (a byte-mode stream read with for-await would concatenate them)
  const chunks = new PassThrough({ objectMode: true, highWaterMark: 2 });
  const out = new PassThrough({ objectMode: true, highWaterMark: 2 });
  pipeline(body as Readable, chunks).catch((err: unknown) => out.destroy(err as Error));
  void (async () => {
    for await (const c of chunks as AsyncIterable<Uint8Array>) {
      release?.(c); // wrong: the chunk is read below
      if (!out.write(Buffer.from(c))) await new Promise((r) => out.once("drain", r));
    }
    out.end();
  })().catch((err: unknown) => out.destroy(err as Error));
  return out;
}

describe("dump with poisoned buffer pools: ClickHouse 18.16 -> zstd -> MinIO and filesystem -> restore", () => {
  let ch: ClickHouseServer;
  let minio: MinioServer;
  let bucket: string;
  let tmp: string;
  const tables = ["pz.big", "pz.mixed", "pz.small", "pz.empty"];
  const before = new Map<string, { rows: number; sum: string }>();

  beforeAll(async () => {
    [ch, minio, tmp] = await Promise.all([startClickHouse(), startMinio(), makeTempDir("pool-poison")]);
    bucket = await minio.createBucket();
    await ch.exec("CREATE DATABASE pz");
    await ch.exec("CREATE TABLE pz.big (id UInt64, a String, b String) ENGINE = MergeTree ORDER BY id");
    // about 45 MB of Native that compresses poorly: many 4 MiB frames, several 15 MiB objects on MinIO
    await ch.exec(
      "INSERT INTO pz.big SELECT number, hex(cityHash64(number)), concat(hex(cityHash64(number, 1)), hex(cityHash64(number, 2)), hex(cityHash64(number, 3))) FROM system.numbers LIMIT 500000",
    );
    await ch.exec("CREATE TABLE pz.mixed (id UInt32, n Nullable(String), tags Array(String), d Date) ENGINE = MergeTree ORDER BY id");
    await ch.exec(
      "INSERT INTO pz.mixed SELECT number, if(number % 3 = 0, NULL, toString(number)), arrayMap(x -> toString(x), range(number % 5)), toDate('2024-01-01') + number % 300 FROM system.numbers LIMIT 20000",
    );
    await ch.exec("CREATE TABLE pz.small (k String, v Int64) ENGINE = Log");
    await ch.exec("INSERT INTO pz.small VALUES ('a', 1), ('b', -2), ('c', 3)");
    await ch.exec("CREATE TABLE pz.empty (id UInt64) ENGINE = MergeTree ORDER BY id");
    for (const t of tables) before.set(t, await tableChecksum(ch, t));
  }, 180_000);

  afterAll(async () => {
    await ch?.stop();
    await minio?.stop();
    if (tmp) await removeDir(tmp);
  });

  const engine = (debugPoolPoison: boolean, compression: "zstd" | "lz4" = "zstd") =>
    createClickHouseEngine(
      clickhouseRunnerConfig.parse({ url: ch.url, username: ch.username, password: ch.password, compression, databases: { include: ["pz"] } }),
      { logger, debugPoolPoison },
    );

  const stores = (): Record<"filesystem" | "minio", { store: ObjectStore; storage: StorageRunnerConfig }> => ({
    filesystem: { store: createFilesystemStore({ root: `${tmp}/fs` }), storage: storageRunnerConfig.parse({ filesystem: { path: `${tmp}/fs` } }) },
    minio: {
      store: createS3Store({
        endpoint: minio.endpoint,
        region: minio.region,
        bucket,
        forcePathStyle: true,
        accessKeyId: minio.accessKeyId,
        secretAccessKey: minio.secretAccessKey,
        partSizeBytes: 5 * MiB,
        maxParts: 3,
      }),
      // (no credentials here: only the native method would use them)
      storage: storageRunnerConfig.parse({ s3: { endpoint: minio.endpoint, bucket, forcePathStyle: true, partSizeMiB: 5, maxParts: 3 } }),
    },
  });

  async function verifyAndRestore(store: ObjectStore, storage: StorageRunnerConfig, dir: string, backup: EngineBackupResult, into: string) {
    const e = engine(true);
    const source = new StoreSource(store, dir, backup.objects, storage);
    const verified = await e.verify!({ signal: AbortSignal.timeout(120_000), source, backup, logger });
    const restored = await e
      .restore({ signal: AbortSignal.timeout(120_000), source, backup, logger, options: { renameDatabases: { pz: into }, existingTables: "fail" } })
      .catch((err: unknown) => err as Error);
    return { verified, restored };
  }

  // zstd: the storage hands back zstd's output blocks; lz4: the HTTP reader's blocks, passed through unchanged
  for (const [where, compression] of [["filesystem", "zstd"], ["minio", "zstd"], ["minio", "lz4"]] as const) {
    it(`${where}, ${compression}: every table round-trips with the same checksum`, async () => {
      const { store, storage } = stores()[where];
      const dir = `ok-${where}-${compression}`;
      const sink = new StoreSink(store, dir, storage);
      const backup = await engine(true, compression).backup({ backupId: dir, signal: AbortSignal.timeout(120_000), sink, logger });
      const big = backup.tables.find((t) => t.name === "big")!;
      expect(big.rows).toBe(500_000);
      if (where === "minio") expect(big.dataObjects?.length ?? 1).toBeGreaterThanOrEqual(2); // split: putSplit passed the release on
      const into = `pz_${where}_${compression}`;
      const { verified, restored } = await verifyAndRestore(store, storage, dir, backup, into);
      expect(verified.ok, JSON.stringify(verified.tables.filter((t) => !t.ok))).toBe(true);
      expect(restored).not.toBeInstanceOf(Error);
      for (const t of tables) expect(await tableChecksum(ch, t.replace("pz.", `${into}.`)), t).toEqual(before.get(t));
    }, 240_000);
  }

  // Encrypted: the age sink's ciphertext blocks, and on restore the decryption's plaintext blocks, which the
  // decompressor (zstd) or the INSERT's socket (lz4) hands back, all poisoned.
  for (const compression of ["zstd", "lz4"] as const) {
    it(`minio, ${compression}, encrypted with age: every table round-trips with the same checksum`, async () => {
      const { store, storage } = stores().minio;
      const dir = `age-${compression}`;
      const identity = await generateX25519Identity();
      const sink = new EncryptingSink(new StoreSink(store, dir, storage), [await identityToRecipient(identity)], { poisonOnRelease: true });
      const backup = await engine(true, compression).backup({ backupId: dir, signal: AbortSignal.timeout(120_000), sink, logger });
      expect(backup.objects.filter((o) => o.name.includes("big")).every((o) => o.name.includes(".age"))).toBe(true);
      const manifest = { encryption: manifestEncryption([await identityToRecipient(identity)]) };
      const source = new DecryptingSource(new StoreSource(store, dir, backup.objects, storage), await AgeIdentities.parse(identity, "test"), manifest, { poisonOnRelease: true });
      const verified = await engine(true, compression).verify!({ signal: AbortSignal.timeout(120_000), source, backup, logger });
      expect(verified.ok, JSON.stringify(verified.tables.filter((t) => !t.ok))).toBe(true);
      expect(verified.tables.find((t) => t.name === "big")!.rows).toBe(500_000); // the content was read: rows walked
      const into = `pz_age_${compression}`;
      await engine(true, compression).restore({ signal: AbortSignal.timeout(120_000), source, backup, logger, options: { renameDatabases: { pz: into }, existingTables: "fail" } });
      for (const t of tables) expect(await tableChecksum(ch, t.replace("pz.", `${into}.`)), t).toEqual(before.get(t));
    }, 240_000);
  }

  it("a sink that reads chunks after handing them back: the backup holds the marker under a matching SHA-256; verify and restore fail", async () => {
    const { store, storage } = stores().filesystem;
    const dir = "early";
    const backup = await engine(true).backup({ backupId: dir, signal: AbortSignal.timeout(120_000), sink: new ReleasesEarly(new StoreSink(store, dir, storage)), logger });
    // The backup itself "succeeds": the rows were counted before zstd, and every object's SHA-256 is that of the bytes stored.
    expect(backup.tables.find((t) => t.name === "big")!.rows).toBe(500_000);
    const obj = backup.objects.find((o) => o.name.includes("big"))!;
    const stored = Buffer.concat(await (await store.get(`${dir}/${obj.name}`, { expectedSha256: obj.sha256, expectedSize: obj.size })).toArray());
    expect(stored.includes("RELEASED")).toBe(true); // the poison the pool wrote into every block handed back
    const { verified, restored } = await verifyAndRestore(store, storage, dir, backup, "pz_early");
    expect(verified.ok).toBe(false);
    expect(verified.tables.find((t) => t.name === "big")!.ok).toBe(false);
    expect(restored).toBeInstanceOf(Error);
  }, 240_000);
});
