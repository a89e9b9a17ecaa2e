// pkg/storage against a real MinIO (S3) process: streaming multipart uploads,
// abort without leftovers, credential errors, corruption detection, paging,
// and streams larger than one object split into several (putSplit, through
// the runner's StoreSink/StoreSource).
import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import {
  CreateMultipartUploadCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
} from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ChecksumMismatchError,
  createS3Store,
  createStore,
  InvalidKeyError,
  NotFoundError,
  putSplit,
  sha256Hex,
  StorageAbortedError,
  StorageAuthError,
  StorageError,
  type ObjectInfo,
  type S3Store,
  type S3StoreConfig,
} from "../pkg/storage/index.ts";
import { StoreSink, StoreSource } from "../pkg/runner/bridge.ts";
import type { StorageRunnerConfig } from "../pkg/apis/index.ts";
import { startMinio, type MinioServer } from "./env/index.ts";
import { buffer } from "node:stream/consumers";

const MiB = 1024 * 1024;

/** Deterministic pseudo-random bytes generated on the fly, chunk by chunk (never one big Buffer). */
async function* generate(total: number, seed = 7, chunkSize = 256 * 1024): AsyncGenerator<Uint8Array> {
  let x = seed >>> 0;
  for (let off = 0; off < total; off += chunkSize) {
    const n = Math.min(chunkSize, total - off);
    const buf = Buffer.allocUnsafe(n);
    for (let i = 0; i + 4 <= n; i += 4) {
      x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
      buf.writeUInt32LE(x, i);
    }
    for (let i = n - (n % 4); i < n; i++) buf[i] = 0xab;
    yield buf;
  }
}

async function sha256Of(it: AsyncIterable<unknown>): Promise<{ sha256: string; size: number }> {
  const h = createHash("sha256");
  let size = 0;
  for await (const c of it) {
    h.update(c as Uint8Array);
    size += (c as Uint8Array).byteLength;
  }
  return { sha256: h.digest("hex"), size };
}

const readAll = (stream: Readable): Promise<Buffer> => buffer(stream);
const collect = (it: AsyncIterable<ObjectInfo>): Promise<ObjectInfo[]> => Array.fromAsync(it);

/** Incomplete multipart uploads whose key starts with prefix (filtered here: MinIO only honours exact-key prefixes). */
async function multipartUploads(raw: S3Client, bucket: string, prefix = ""): Promise<{ key: string; id: string }[]> {
  const res = await raw.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
  expect(res.IsTruncated ?? false).toBe(false);
  return (res.Uploads ?? [])
    .map((u) => ({ key: u.Key ?? "", id: u.UploadId ?? "" }))
    .filter((u) => u.key.startsWith(prefix));
}

describe("S3 store on MinIO", () => {
  let minio: MinioServer;
  let raw: S3Client;
  let bucket: string;
  const stores: S3Store[] = [];

  function store(overrides: Partial<S3StoreConfig> = {}): S3Store {
    const s = createS3Store({
      endpoint: minio.endpoint,
      region: minio.region,
      bucket,
      prefix: "backups/test",
      accessKeyId: minio.accessKeyId,
      secretAccessKey: minio.secretAccessKey,
      partSizeBytes: 5 * MiB,
      queueSize: 2,
      maxAttempts: 3,
      ...overrides,
    });
    stores.push(s);
    return s;
  }

  beforeAll(async () => {
    minio = await startMinio();
    raw = minio.s3();
    bucket = await minio.createBucket();
  });

  afterAll(async () => {
    for (const s of stores) s.destroy();
    raw?.destroy();
    await minio?.stop();
  });

  it("describes itself without secrets", () => {
    const s = store();
    expect(s.kind).toBe("s3");
    expect(s.describe()).toBe(`s3://${bucket}/backups/test @ ${minio.endpoint}`);
    expect(s.describe()).not.toContain(minio.secretAccessKey);
  });

  it("check succeeds; a missing bucket is NotFoundError", async () => {
    await expect(store().check()).resolves.toBeUndefined();
    const err = await store({ bucket: "no-such-bucket-here" })
      .check()
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NotFoundError);
    expect((err as Error).message).toContain('bucket "no-such-bucket-here" does not exist');
  });

  it("put/get/head/list/delete round trip under the store prefix", async () => {
    const s = store({ prefix: "/rt/" });
    const data = Buffer.from("hello from the backup runner");
    const res = await s.put("b1/data.bin", Readable.from([data]), { contentType: "application/octet-stream" });
    expect(res).toEqual({ key: "b1/data.bin", size: data.length, sha256: sha256Hex(data) });
    // Stored at <prefix>/<key> in the bucket.
    const h = await raw.send(new HeadObjectCommand({ Bucket: bucket, Key: "rt/b1/data.bin" }));
    expect(h.ContentLength).toBe(data.length);
    expect(h.ContentType).toBe("application/octet-stream");

    expect(await readAll(await s.get("b1/data.bin", { expectedSha256: res.sha256, expectedSize: res.size }))).toEqual(data);
    const info = await s.head("b1/data.bin");
    expect(info?.size).toBe(data.length);
    expect(info?.lastModified).toBeInstanceOf(Date);
    expect(await s.head("b1/missing")).toBeUndefined();

    await s.put("b1/meta.json", (async function* () { yield Buffer.from("{}"); })());
    await s.put("b2/data.bin", Readable.from([Buffer.from("x")]));
    await s.put("empty", Readable.from([]));
    expect((await s.head("empty"))?.size).toBe(0);

    expect((await collect(s.list(""))).map((o) => o.key)).toEqual(["b1/data.bin", "b1/meta.json", "b2/data.bin", "empty"]);
    expect((await collect(s.list("b1/"))).map((o) => [o.key, o.size])).toEqual([
      ["b1/data.bin", data.length],
      ["b1/meta.json", 2],
    ]);
    expect((await collect(s.list("b"))).length).toBe(3);

    await s.delete(["b1/data.bin", "b1/meta.json", "never/existed"]);
    expect((await collect(s.list(""))).map((o) => o.key)).toEqual(["b2/data.bin", "empty"]);
    const err = await s.get("b1/data.bin").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NotFoundError);
    expect((err as Error).message).toMatch(/^get "b1\/data.bin": no such object/);
    await s.delete(["b2/data.bin", "empty"]);
    expect(await collect(s.list(""))).toEqual([]);
  });

  it("rejects path traversal keys before any request", async () => {
    const s = store();
    for (const key of ["../x", "/abs", "a/../../b", "a\\b", ""]) {
      await expect(s.put(key, Readable.from([Buffer.from("evil")]))).rejects.toBeInstanceOf(InvalidKeyError);
      await expect(s.get(key)).rejects.toBeInstanceOf(InvalidKeyError);
      await expect(s.delete([key])).rejects.toBeInstanceOf(InvalidKeyError);
    }
    await expect(collect(s.list("../"))).rejects.toBeInstanceOf(InvalidKeyError);
    expect(() => store({ prefix: "a/../b" })).toThrow(InvalidKeyError);
  });

  it("streams a multipart upload of > 3 parts; sha256 matches the generated data", async () => {
    const s = store({ prefix: "mp" });
    const total = 18 * MiB + 12_345; // 4 parts of 5 MiB
    const expected = await sha256Of(generate(total));
    let lastProgress = 0;
    const t0 = Date.now();
    const res = await s.put("big/data.bin", generate(total), { onProgress: (n) => (lastProgress = n) });
    const elapsed = Date.now() - t0;
    expect(res).toEqual({ key: "big/data.bin", size: total, sha256: expected.sha256 });
    expect(lastProgress).toBe(total);
    // It really was a multipart upload: the ETag of a multipart object ends in -<parts>.
    const h = await raw.send(new HeadObjectCommand({ Bucket: bucket, Key: "mp/big/data.bin" }));
    expect(h.ETag).toMatch(/-4"?$/);
    expect(h.ContentLength).toBe(total);
    const back = await sha256Of(await s.get("big/data.bin", { expectedSha256: res.sha256, expectedSize: res.size }));
    expect(back).toEqual(expected);
    expect(await multipartUploads(raw, bucket, "mp/")).toEqual([]);
    console.log(`multipart put of ${(total / MiB).toFixed(1)} MiB took ${elapsed} ms`);
  });

  it("an aborted upload rejects and leaves no object and no incomplete multipart upload", async () => {
    const s = store({ prefix: "abort" });
    const ac = new AbortController();
    const partSize = 5 * MiB;
    let produced = 0;
    async function* body(): AsyncGenerator<Uint8Array> {
      for await (const chunk of generate(200 * MiB)) {
        yield chunk;
        produced += chunk.byteLength;
        if (produced >= 2 * partSize + MiB && !ac.signal.aborted) {
          // ~2 parts cut: wait until the multipart upload exists on the server, then abort.
          const deadline = Date.now() + 30_000;
          while ((await multipartUploads(raw, bucket, "abort/")).length === 0) {
            if (Date.now() > deadline) throw new Error("multipart upload never started");
            await new Promise((r) => setTimeout(r, 50));
          }
          ac.abort(new Error("backup cancelled"));
        }
      }
    }
    const err = await s.put("x/aborted.bin", body(), { signal: ac.signal }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StorageAbortedError);
    expect((err as StorageError).message).toBe('put "x/aborted.bin": aborted');
    expect((err as Error).cause).toMatchObject({ message: "backup cancelled" });
    expect(produced).toBeLessThan(40 * MiB); // the body stopped being read promptly
    expect(await s.head("x/aborted.bin")).toBeUndefined();
    expect(await multipartUploads(raw, bucket)).toEqual([]);
  });

  it.each([0, 30])("an abort racing with completion (%i ms after the body ended) still leaves nothing", async (delayMs) => {
    const s = store({ prefix: `race${delayMs}` });
    // Hold CompleteMultipartUpload back a little, so the abort deterministically lands
    // after the whole body was read but before the upload is complete.
    s.client.middlewareStack.add(
      (next, context) => async (args) => {
        if (context.commandName === "CompleteMultipartUploadCommand") await new Promise((r) => setTimeout(r, 300));
        return next(args);
      },
      { step: "initialize", name: "slowComplete" },
    );
    const ac = new AbortController();
    async function* body(): AsyncGenerator<Uint8Array> {
      yield* generate(12 * MiB);
      setTimeout(() => ac.abort(new Error("late cancel")), delayMs);
    }
    const err = await s.put("late.bin", body(), { signal: ac.signal }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StorageAbortedError);
    expect(await s.head("late.bin")).toBeUndefined();
    expect(await multipartUploads(raw, bucket)).toEqual([]);
  });

  it("a failing body mid-multipart rejects with the cause and leaves nothing", async () => {
    const s = store({ prefix: "fail" });
    async function* body(): AsyncGenerator<Uint8Array> {
      yield* generate(12 * MiB);
      throw new Error("clickhouse connection lost");
    }
    const err = await s.put("x/failed.bin", body()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StorageError);
    expect((err as Error).message).toMatch(/^put "x\/failed.bin": .*clickhouse connection lost/);
    expect(await s.head("x/failed.bin")).toBeUndefined();
    expect(await multipartUploads(raw, bucket)).toEqual([]);
  });

  it("wrong credentials give StorageAuthError with a clear message and no secret", async () => {
    const badSecret = "this-is-the-wrong-secret-0123456789";
    const s = store({ secretAccessKey: badSecret, maxAttempts: 1 });
    for (const op of [
      () => s.check(),
      () => s.put("auth/x", Readable.from([Buffer.from("data")])),
      () => s.get("auth/x"),
      () => collect(s.list("")),
    ]) {
      const err = await op().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(StorageAuthError);
      const e = err as StorageAuthError;
      expect(e.message).toMatch(/credentials were rejected/);
      expect(e.message).toContain(bucket);
      expect(e.message).not.toContain(badSecret);
      expect(e.message).not.toContain(minio.secretAccessKey);
      expect(JSON.stringify(e)).not.toContain(badSecret);
      expect(e.retryable).toBe(false);
      expect(e.cause).toBeDefined();
    }
    const unknownKey = store({ accessKeyId: "nobody", secretAccessKey: badSecret, maxAttempts: 1 });
    const err = await unknownKey.put("auth/y", Readable.from([Buffer.from("data")])).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StorageAuthError);
    expect((err as Error).message).not.toContain(badSecret);
  });

  it("a corrupted object is detected by get with expectedSha256", async () => {
    const s = store({ prefix: "corrupt" });
    const res = await s.put("obj.bin", Readable.from([Buffer.from("the original backup data")]));
    // Overwrite behind the store's back (same size, different content).
    await raw.send(new PutObjectCommand({ Bucket: bucket, Key: "corrupt/obj.bin", Body: "the 0riginal backup data" }));
    const err = await readAll(await s.get("obj.bin", { expectedSha256: res.sha256 })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ChecksumMismatchError);
    const e = err as ChecksumMismatchError;
    expect(e.expected.sha256).toBe(res.sha256);
    expect(e.actual.sha256).toBe(sha256Hex("the 0riginal backup data"));
    expect(e.message).toMatch(/^get "obj.bin": checksum mismatch/);
    // Without expectations the data streams normally.
    expect((await readAll(await s.get("obj.bin"))).toString()).toBe("the 0riginal backup data");
  });

  it("list paginates (listPageSize) and returns every key in order", async () => {
    const s = store({ prefix: "paging", listPageSize: 2 });
    const keys = ["a/1", "a/2", "a/3", "b/1", "b/2", "c", "d/e/f"];
    for (const k of keys) await s.put(k, Readable.from([Buffer.from(k)]));
    let pages = 0;
    s.client.middlewareStack.add(
      (next, context) => async (args) => {
        if (context.commandName === "ListObjectsV2Command") pages++;
        return next(args);
      },
      { step: "initialize", name: "countListPages" },
    );
    const listed = await collect(s.list(""));
    expect(listed.map((o) => o.key)).toEqual(keys);
    expect(listed.map((o) => o.size)).toEqual(keys.map((k) => k.length));
    expect(pages).toBe(4);
    pages = 0;
    expect((await collect(s.list("a/"))).map((o) => o.key)).toEqual(["a/1", "a/2", "a/3"]);
    expect(pages).toBe(2);
  });

  it("deletes more than 1000 keys (DeleteObjects in chunks)", async () => {
    const s = store({ prefix: "many" });
    const keys = Array.from({ length: 1005 }, (_, i) => `k/${String(i).padStart(5, "0")}`);
    for (let i = 0; i < keys.length; i += 50) {
      await Promise.all(
        keys.slice(i, i + 50).map((k) => raw.send(new PutObjectCommand({ Bucket: bucket, Key: `many/${k}`, Body: "x" }))),
      );
    }
    expect((await collect(s.list("k/"))).length).toBe(1005);
    await s.delete([...keys, "k/missing"]);
    const left = await raw.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: "many/" }));
    expect(left.KeyCount ?? 0).toBe(0);
  });

  it("cleanupIncomplete aborts stale multipart uploads under the prefix only", async () => {
    const s = store({ prefix: "stale" });
    const a = await raw.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: "stale/x/part.bin" }));
    const b = await raw.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: "other/part.bin" }));
    expect(a.UploadId).toBeDefined();
    // Initiated just now: not older than an hour ago.
    expect(await s.cleanupIncomplete("", new Date(Date.now() - 3600_000))).toBe(0);
    expect(await s.cleanupIncomplete("x/", new Date(Date.now() + 60_000))).toBe(1);
    expect(await multipartUploads(raw, bucket, "stale/")).toEqual([]);
    expect(await multipartUploads(raw, bucket, "other/")).toEqual([{ key: "other/part.bin", id: b.UploadId }]);
    // Not ours to clean: tidy up with a store rooted at "other".
    expect(await store({ prefix: "other" }).cleanupIncomplete("", new Date(Date.now() + 60_000))).toBe(1);
  });

  it("get is abortable mid-stream", async () => {
    const s = store({ prefix: "getabort" });
    await s.put("big", generate(8 * MiB));
    const ac = new AbortController();
    const stream = await s.get("big", { signal: ac.signal });
    let n = 0;
    const err = await (async () => {
      for await (const c of stream) {
        n += (c as Buffer).length;
        if (n > MiB) ac.abort();
      }
    })().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StorageAbortedError);
    expect(n).toBeLessThan(8 * MiB);
  });

  it("createStore builds an S3 store from config", async () => {
    const s = createStore({
      s3: {
        endpoint: minio.endpoint,
        region: minio.region,
        bucket,
        prefix: "cfg",
        accessKeyId: minio.accessKeyId,
        secretAccessKey: minio.secretAccessKey,
      },
    }) as S3Store;
    stores.push(s);
    expect(s.kind).toBe("s3");
    const r = await s.put("k", Readable.from([Buffer.from("v")]));
    expect(r.sha256).toBe(sha256Hex("v"));
    await s.delete(["k"]);
  });

  describe("objects larger than partSize × maxParts (5 MiB × 3 = 15 MiB)", () => {
    // Not S3 in the bridge's eyes, so it offers no native target; the store is what is tested.
    const bridgeStorage = { filesystem: { path: "/unused" } } as StorageRunnerConfig;
    const name = "db.t.native.zst";
    const small = (prefix: string) => store({ prefix, partSizeBytes: 5 * MiB, maxParts: 3 });

    it("a 40 MiB stream is written as 3 objects and read back byte-identical through StoreSource.getObjects", async () => {
      const s = small("split");
      expect(s.maxObjectBytes).toBe(15 * MiB);
      const total = 40 * MiB;
      const expected = await sha256Of(generate(total, 11));
      let counted = 0;
      const sink = new StoreSink(s, "b1", bridgeStorage, (n) => (counted += n));
      const written = await sink.putObjects(name, generate(total, 11), new AbortController().signal);
      expect(written.map((w) => [w.name, w.size])).toEqual([
        [name, 15 * MiB],
        [`${name}.001`, 15 * MiB],
        [`${name}.002`, 10 * MiB],
      ]);
      expect(sink.written).toEqual(written);
      expect(counted).toBe(total);
      // Each piece is a multipart upload of at most 3 parts, and the names list in order.
      for (const [i, w] of written.entries()) {
        const h = await raw.send(new HeadObjectCommand({ Bucket: bucket, Key: `split/b1/${w.name}` }));
        expect(h.ContentLength).toBe(w.size);
        expect(h.ETag).toMatch(i < 2 ? /-3"?$/ : /-2"?$/);
      }
      expect((await collect(s.list("b1/"))).map((o) => o.key)).toEqual(written.map((w) => `b1/${w.name}`));
      expect(await multipartUploads(raw, bucket, "split/")).toEqual([]);

      const source = new StoreSource(s, "b1", written, bridgeStorage);
      const back = await sha256Of(await source.getObjects(written.map((w) => w.name), new AbortController().signal));
      expect(back).toEqual(expected);
      // One piece alone is a plain object: the first 15 MiB of the stream.
      const first = await sha256Of(await source.getObject(name, new AbortController().signal));
      expect(first).toEqual(await sha256Of(async function* () {
        let n = 0;
        for await (const c of generate(total, 11)) {
          if (n >= 15 * MiB) break;
          const take = Math.min(c.byteLength, 15 * MiB - n);
          n += take;
          yield c.subarray(0, take);
        }
      }()));

      // A piece overwritten with different bytes of the same length fails the read, naming that piece.
      const corrupt = Buffer.concat(await Array.fromAsync(generate(15 * MiB, 99)));
      await raw.send(new PutObjectCommand({ Bucket: bucket, Key: `split/b1/${name}.001`, Body: corrupt }));
      let streamed = 0;
      const err = await (async () => {
        for await (const c of await source.getObjects(written.map((w) => w.name), new AbortController().signal)) streamed += (c as Buffer).length;
      })().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ChecksumMismatchError);
      expect((err as Error).message.startsWith(`get "b1/${name}.001": checksum mismatch`)).toBe(true);
      expect((err as ChecksumMismatchError).actual).toEqual({ sha256: sha256Hex(corrupt), size: 15 * MiB });
      expect(streamed).toBeGreaterThanOrEqual(15 * MiB); // the first piece went through
      expect(streamed).toBeLessThanOrEqual(30 * MiB); // the third was never read
    });

    it("a put larger than partSize × maxParts fails with a terminal error before part maxParts + 1, leaving nothing", async () => {
      const s = small("toolarge");
      let parts = 0;
      s.client.middlewareStack.add(
        (next, context) => async (args) => {
          if (context.commandName === "UploadPartCommand") parts++;
          return next(args);
        },
        { step: "initialize", name: "countParts" },
      );
      const err = await s.put("x.bin", generate(15 * MiB + 1)).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(StorageError);
      expect((err as StorageError).retryable).toBe(false);
      expect((err as Error).message).toMatch(/^put "x.bin": the object is larger than 3 parts of 5242880 bytes/);
      expect(parts).toBeLessThanOrEqual(3);
      expect(await s.head("x.bin")).toBeUndefined();
      expect(await multipartUploads(raw, bucket, "toolarge/")).toEqual([]);
    });

    it("an abort in the second piece deletes the first and leaves no multipart upload", async () => {
      const s = small("splitabort");
      const ac = new AbortController();
      const err = await putSplit(s, "b/data", generate(100 * MiB), {
        signal: ac.signal,
        onProgress: (n) => {
          if (n >= 20 * MiB && !ac.signal.aborted) ac.abort(new Error("backup cancelled"));
        },
      }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(StorageAbortedError);
      expect(await collect(s.list(""))).toEqual([]);
      expect(await multipartUploads(raw, bucket, "splitabort/")).toEqual([]);
    });
  });

  it("unreachable endpoints give retryable errors", async () => {
    const s = store({ endpoint: "http://127.0.0.1:1", maxAttempts: 1 });
    const err = await s.check().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StorageError);
    expect(err).not.toBeInstanceOf(StorageAuthError);
    expect((err as StorageError).retryable).toBe(true);
    expect((err as Error).message).toMatch(/^check: /);
  });
});
