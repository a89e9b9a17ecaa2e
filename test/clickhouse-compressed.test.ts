// The lz4 compression of the dump method against the real 18.16 server:
// ClickHouse's compressed block stream (HTTP compress=1) is decoded exactly
// by our LZ4 block decoder, a server exception appended mid-stream is caught,
// a cut stream is caught, and a runner backup/restore with lz4 round-trips.
import { Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startClickHouse, startMinio, type ClickHouseServer, type MinioServer } from "./env/index.ts";
import { CompressedStreamCheck, decompressBlock } from "../pkg/backupengine/clickhouse/compressed.ts";
import { httpSelect } from "../pkg/backupengine/clickhouse/httpselect.ts";
import { BufferPool } from "../pkg/storage/bufferpool.ts";
import { makeRunner, runnerConfig, s3Storage, tableChecksum } from "./helpers/runner.ts";

async function fetchAll(ch: ClickHouseServer, query: string, settings: Record<string, number> = {}): Promise<Buffer> {
  const c = ch.client();
  try {
    const r = await c.exec({ query, clickhouse_settings: settings as never });
    const parts: Buffer[] = [];
    for await (const chunk of r.stream as Readable) parts.push(chunk as Buffer);
    return Buffer.concat(parts);
  } finally {
    await c.close();
  }
}

function splitBlocks(buf: Buffer): Buffer[] {
  const blocks: Buffer[] = [];
  for (let off = 0; off < buf.length; ) {
    const size = 16 + buf.readUInt32LE(off + 17);
    blocks.push(buf.subarray(off, off + size));
    off += size;
  }
  return blocks;
}

describe("ClickHouse compressed streams (18.16)", () => {
  let ch: ClickHouseServer;
  let minio: MinioServer;
  beforeAll(async () => {
    [ch, minio] = await Promise.all([startClickHouse(), startMinio()]);
    await ch.exec("CREATE DATABASE z");
    await ch.exec("CREATE TABLE z.t (id UInt64, s String, f Float64, a Array(UInt32)) ENGINE = MergeTree ORDER BY id");
    await ch.exec("INSERT INTO z.t SELECT number, concat('v', toString(number % 777)), number / 3, [number % 5, 7] FROM system.numbers LIMIT 1500000");
  });
  afterAll(async () => {
    await ch?.stop();
    await minio?.stop();
  });

  it("decodes every LZ4 block of a compress=1 response to exactly the plain Native stream", async () => {
    const plain = await fetchAll(ch, "SELECT * FROM z.t ORDER BY id FORMAT Native");
    const compressed = await fetchAll(ch, "SELECT * FROM z.t ORDER BY id FORMAT Native", { compress: 1 });
    expect(compressed.length).toBeLessThan(plain.length);
    const blocks = splitBlocks(compressed);
    expect(blocks.length).toBeGreaterThan(3);
    expect(Buffer.concat(blocks.map(decompressBlock)).equals(plain)).toBe(true);
    // The check passes the stream through unchanged and counts the Native bytes.
    const check = new CompressedStreamCheck(undefined);
    const out: Buffer[] = [];
    await pipeline(Readable.from([compressed.subarray(0, 1000), compressed.subarray(1000)]), check, new Writable({ write: (c: Buffer, _e, cb) => (out.push(c), cb()) }));
    expect(Buffer.concat(out).equals(compressed)).toBe(true);
    expect(check.decompressedBytes).toBe(plain.length);
  });

  it("fails on a server exception written into a compressed response that already started", async () => {
    const c = ch.client();
    try {
      const r = await c.exec({
        query: "SELECT number, throwIf(number = 2500000) FROM system.numbers LIMIT 4000000 FORMAT Native",
        clickhouse_settings: { compress: 1 } as never,
      });
      await expect(pipeline(r.stream as Readable, new CompressedStreamCheck(undefined), new Writable({ write: (_c, _e, cb) => cb() }))).rejects.toThrow(/Code: 395/);
    } finally {
      await c.close();
    }
  });

  it("the dump's raw-socket reader gets exactly what the client gets, plain and compressed", async () => {
    const ep = { url: ch.url, username: ch.username, password: ch.password, timeoutMs: 60_000 };
    const cases: Record<string, number>[] = [{}, { compress: 1 }];
    for (const settings of cases) {
      const viaClient = await fetchAll(ch, "SELECT * FROM z.t ORDER BY id FORMAT Native", settings);
      const pool = new BufferPool(256 * 1024, 4);
      const r = await httpSelect(ep, "SELECT * FROM z.t ORDER BY id FORMAT Native", settings, AbortSignal.timeout(60_000), { pool });
      const parts: Buffer[] = [];
      const sink = new Writable({ write: (c: Buffer, _e, cb) => (parts.push(Buffer.from(c)), pool.release(c), cb()) });
      if ("compress" in settings) await pipeline(r.stream, new CompressedStreamCheck(undefined), sink);
      else await pipeline(r.stream, sink);
      expect(Buffer.concat(parts).equals(viaClient)).toBe(true);
      expect(pool.allocated).toBeLessThanOrEqual(4);
    }
    // a server error before the data is the server's error
    const err = await httpSelect(ep, "SELECT * FROM z.missing FORMAT Native", {}, AbortSignal.timeout(60_000)).catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/Code: 60.*z\.missing/s);
  });

  it("the raw-socket reader passes an exception written into a started compressed response on to the check", async () => {
    const ep = { url: ch.url, username: ch.username, password: ch.password, timeoutMs: 60_000 };
    const r = await httpSelect(ep, "SELECT number, throwIf(number = 2500000) FROM system.numbers LIMIT 4000000 FORMAT Native", { compress: 1 }, AbortSignal.timeout(60_000));
    await expect(pipeline(r.stream, new CompressedStreamCheck(undefined), new Writable({ write: (_c, _e, cb) => cb() }))).rejects.toThrow(/Code: 395/);
  });

  it("fails on a stream cut in the middle of a block", async () => {
    const compressed = await fetchAll(ch, "SELECT * FROM z.t FORMAT Native", { compress: 1 });
    await expect(
      pipeline(Readable.from([compressed.subarray(0, compressed.length - 100)]), new CompressedStreamCheck(undefined), new Writable({ write: (_c, _e, cb) => cb() })),
    ).rejects.toThrow(/middle of a compressed block/);
  });

  it("backs up and restores through the runner with compression lz4", async () => {
    const bucket = await minio.createBucket();
    const config = runnerConfig({ clickhouse: ch, storage: s3Storage(minio, bucket), databases: ["z"] });
    config.definition.clickhouse.compression = "lz4";
    const runner = makeRunner(config);
    await runner.init();
    const op = await runner.startBackup("api").finished;
    expect(op.error).toBeUndefined();
    const m = runner.catalog.get(op.backupId!)!.manifest;
    expect(m.objects.map((o) => o.name)).toEqual(["data/z/t.native.lz4"]);
    expect((m.details as { compression: { codec: string } }).compression.codec).toBe("lz4");
    const before = await tableChecksum(ch, "z.t");
    const r = await runner.startRestore({ backup: op.backupId!, renameDatabases: { z: "z2" }, existingTables: "fail" }).finished;
    expect(r.error).toBeUndefined();
    expect(await tableChecksum(ch, "z2.t")).toEqual(before);
  });
});
