import { createHash } from "node:crypto";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { hashBody } from "./body.ts";
import { BufferPool } from "./bufferpool.ts";
import { sha256Hex } from "./checksum.ts";
import { StorageAbortedError, StorageError } from "./errors.ts";
import { createFilesystemStore, type FilesystemStore } from "./filesystem.ts";
import { pieceKey, putSplit } from "./split.ts";
import type { ObjectStore, PutResult } from "./types.ts";

/** Deterministic bytes: byte i of the stream (no period shorter than 16 MiB, so no two blocks are alike). */
function byteAt(i: number): number {
  return (i * 7 + (i >>> 8) * 13 + (i >>> 16) * 29) & 0xff;
}
function bytes(from: number, n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = byteAt(from + i);
  return b;
}
async function* chunked(total: number, chunkSize: number): AsyncGenerator<Uint8Array> {
  for (let off = 0; off < total; off += chunkSize) yield bytes(off, Math.min(chunkSize, total - off));
}

let dir: string;
let store: FilesystemStore;

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "storage-split-test-"));
  store = createFilesystemStore({ root: path.join(dir, "root") });
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/**
 * A store in memory that copies each chunk only after a turn of the event
 * loop (as a store whose writes are asynchronous does) and then hands it back
 * (opts.release), like the real stores. Meanwhile the body keeps being read
 * ahead, so a block handed back too early is overwritten before it is copied.
 */
function slowMemoryStore(maxObjectBytes: number): ObjectStore & { objects: Map<string, Buffer> } {
  const objects = new Map<string, Buffer>();
  return {
    ...store,
    objects,
    maxObjectBytes,
    async put(key, body, opts = {}) {
      const hashed = hashBody(body, { signal: opts.signal, onProgress: opts.onProgress, op: "put", key });
      const parts: Buffer[] = [];
      for await (const chunk of hashed.stream) {
        await new Promise((r) => setImmediate(r));
        parts.push(Buffer.from(chunk as Uint8Array));
        opts.release?.(chunk as Uint8Array);
      }
      objects.set(key, Buffer.concat(parts));
      return { key, size: hashed.stream.bytesSeen, sha256: hashed.stream.sha256! };
    },
  };
}

/** Every file under the store's root (relative, sorted). */
async function files(): Promise<string[]> {
  const entries = await readdir(path.join(dir, "root"), { recursive: true, withFileTypes: true }).catch(() => []);
  return entries
    .filter((e) => e.isFile())
    .map((e) => path.relative(path.join(dir, "root"), path.join(e.parentPath, e.name)))
    .sort();
}

/** Checks that each piece's file has the recorded size and SHA-256, and returns them concatenated. */
async function readPieces(written: PutResult[]): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (const w of written) {
    const data = await readFile(path.join(dir, "root", w.key));
    expect(data.length).toBe(w.size);
    expect(sha256Hex(data)).toBe(w.sha256);
    parts.push(data);
  }
  return Buffer.concat(parts);
}

describe("pieceKey", () => {
  it("names the first piece after the key and the others .001, .002, …", () => {
    expect(pieceKey("a/b.zst", 0)).toBe("a/b.zst");
    expect(pieceKey("a/b.zst", 1)).toBe("a/b.zst.001");
    expect(pieceKey("a/b.zst", 42)).toBe("a/b.zst.042");
    expect(pieceKey("a/b.zst", 998)).toBe("a/b.zst.998");
    expect(pieceKey("k", 999)).toBe("k.999000999");
    expect(pieceKey("k", 999_998)).toBe("k.999999998");
    expect(pieceKey("k", 999_999)).toBe("k.999999999000000999999");
    expect(() => pieceKey("k", -1)).toThrow(RangeError);
    expect(() => pieceKey("k", 1.5)).toThrow(RangeError);
  });

  it("names sort in piece order, past every change of width", () => {
    const indexes = [
      ...Array.from({ length: 1200 }, (_, i) => i),
      ...[9_999, 10_000, 99_999, 100_000, 999_997, 999_998, 999_999, 1_000_000, 10_000_000, 999_999_999_998, 999_999_999_999, 1e13, 2 ** 53 - 1],
    ];
    const names = indexes.map((i) => pieceKey("t/data.native.zst", i));
    expect(new Set(names).size).toBe(names.length);
    expect([...names].sort()).toEqual(names);
  });
});

describe("putSplit", () => {
  it.each([
    { total: 30, max: 10, chunk: 10, sizes: [10, 10, 10] }, // boundaries at chunk boundaries, exact multiple
    { total: 30, max: 10, chunk: 7, sizes: [10, 10, 10] }, // boundaries inside chunks, exact multiple
    { total: 31, max: 10, chunk: 7, sizes: [10, 10, 10, 1] },
    { total: 9, max: 10, chunk: 4, sizes: [9] },
    { total: 10, max: 10, chunk: 3, sizes: [10] },
    { total: 35, max: 10, chunk: 35, sizes: [10, 10, 10, 5] }, // one chunk spanning several pieces
    { total: 1000, max: 64, chunk: 100, sizes: [...Array<number>(15).fill(64), 40] },
  ])("$total bytes in chunks of $chunk, pieces of at most $max → $sizes", async ({ total, max, chunk, sizes }) => {
    let progress = 0;
    const written = await putSplit(store, "b/t.bin", chunked(total, chunk), { maxObjectBytes: max, onProgress: (n) => (progress = n) });
    expect(written.map((w) => w.size)).toEqual(sizes);
    expect(written.map((w) => w.key)).toEqual(sizes.map((_, i) => pieceKey("b/t.bin", i)));
    expect(await readPieces(written)).toEqual(bytes(0, total));
    expect(progress).toBe(total);
    expect(await files()).toEqual(written.map((w) => w.key).sort());
  });

  it("a 0-byte stream is one empty object at the key", async () => {
    const written = await putSplit(store, "b/empty", Readable.from([]), { maxObjectBytes: 10 });
    expect(written).toEqual([{ key: "b/empty", size: 0, sha256: sha256Hex("") }]);
    expect(await files()).toEqual(["b/empty"]);
    // Empty chunks are no data either.
    const w2 = await putSplit(store, "b/empty2", Readable.from([Buffer.alloc(0), Buffer.alloc(0)]), { maxObjectBytes: 10 });
    expect(w2.map((w) => w.size)).toEqual([0]);
  });

  it("empty chunks at a boundary do not make an empty trailing piece", async () => {
    const body = [bytes(0, 10), Buffer.alloc(0), bytes(10, 10), Buffer.alloc(0)];
    const written = await putSplit(store, "b/t", Readable.from(body), { maxObjectBytes: 10 });
    expect(written.map((w) => w.size)).toEqual([10, 10]);
  });

  it("reads a byte-mode Readable and string chunks", async () => {
    const written = await putSplit(store, "b/s", Readable.from(["hello ", "split ", "world"], { objectMode: false }), { maxObjectBytes: 4 });
    expect((await readPieces(written)).toString()).toBe("hello split world");
    expect(written.map((w) => w.size)).toEqual([4, 4, 4, 4, 1]);
  });

  it("uses the store's maxObjectBytes by default; Infinity (filesystem) is one object", async () => {
    expect(store.maxObjectBytes).toBe(Number.POSITIVE_INFINITY);
    const written = await putSplit(store, "b/one", chunked(100_000, 4096));
    expect(written.map((w) => [w.key, w.size])).toEqual([["b/one", 100_000]]);
    const capped: ObjectStore = { ...store, maxObjectBytes: 40_000 };
    const w2 = await putSplit(capped, "b/capped", chunked(100_000, 4096));
    expect(w2.map((w) => [w.key, w.size])).toEqual([
      ["b/capped", 40_000],
      ["b/capped.001", 40_000],
      ["b/capped.002", 20_000],
    ]);
  });

  it("rejects a bad maxObjectBytes", async () => {
    for (const bad of [0, -1, 1.5, Number.NaN]) {
      await expect(putSplit(store, "b/x", chunked(10, 5), { maxObjectBytes: bad })).rejects.toThrow(RangeError);
    }
  });

  it("pooled chunks split at a boundary are not handed back while their tail is still unwritten", async () => {
    // The producer reuses every block the store hands back and overwrites it at once: a block
    // returned too early (while its tail still waits for the next piece) would corrupt the data.
    const block = 64 * 1024;
    const pool = new BufferPool(block, 16, { poisonOnRelease: true });
    const total = 25 * block;
    async function* body(): AsyncGenerator<Uint8Array> {
      for (let off = 0; off < total; off += block) {
        const b = pool.take();
        bytes(off, block).copy(b);
        yield b;
      }
    }
    const mem = slowMemoryStore(2.5 * block);
    const written = await putSplit(mem, "b/pooled", body(), { release: pool.release });
    expect(written.length).toBe(10);
    const back = Buffer.concat(written.map((w) => mem.objects.get(w.key)!));
    expect(back.equals(bytes(0, total))).toBe(true);
    expect(written.map((w) => sha256Hex(mem.objects.get(w.key)!))).toEqual(written.map((w) => w.sha256));
    expect(pool.allocated).toBeLessThan(12); // blocks were handed back and reused
  });

  it("an abort mid-way rejects with StorageAbortedError and deletes the pieces written", async () => {
    const ac = new AbortController();
    let produced = 0;
    async function* body(): AsyncGenerator<Uint8Array> {
      for (;;) {
        const b = bytes(produced, 500);
        produced += b.length;
        yield b;
      }
    }
    const done: string[] = [];
    const counting: ObjectStore = {
      ...store,
      maxObjectBytes: 1_000,
      put: async (key, b, opts) => {
        const r = await store.put(key, b, opts);
        done.push(key);
        return r;
      },
    };
    const err = await putSplit(counting, "b/aborted", body(), {
      signal: ac.signal,
      // In the middle of the fourth piece.
      onProgress: (n) => (n >= 3_500 ? ac.abort(new Error("backup cancelled")) : undefined),
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StorageAbortedError);
    expect((err as Error).cause).toMatchObject({ message: "backup cancelled" });
    expect(done).toEqual(["b/aborted", "b/aborted.001", "b/aborted.002"]);
    expect(produced).toBeLessThan(10_000); // the body stopped being read
    expect(await files()).toEqual([]);
  });

  it("an abort between pieces deletes the pieces written", async () => {
    const ac = new AbortController();
    const capped: ObjectStore = {
      ...store,
      maxObjectBytes: 10,
      put: async (key, b, opts) => {
        const r = await store.put(key, b, opts);
        if (key.endsWith(".001")) ac.abort();
        return r;
      },
    };
    const err = await putSplit(capped, "b/between", chunked(50, 10), { signal: ac.signal }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StorageAbortedError);
    expect(await files()).toEqual([]);
  });

  it("a body that fails mid-way rejects with the cause and deletes the pieces written", async () => {
    async function* body(): AsyncGenerator<Uint8Array> {
      yield* chunked(2_500, 500);
      throw new Error("clickhouse connection lost");
    }
    const err = await putSplit(store, "b/failed", body(), { maxObjectBytes: 1_000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StorageError);
    expect((err as Error).message).toMatch(/^put "b\/failed(\.\d+)?": .*clickhouse connection lost/);
    expect(await files()).toEqual([]);
  });

  it("a body that fails exactly at a piece boundary rejects and deletes the pieces", async () => {
    async function* body(): AsyncGenerator<Uint8Array> {
      yield* chunked(2_000, 500);
      throw new Error("connection reset");
    }
    const err = await putSplit(store, "b/edge", body(), { maxObjectBytes: 1_000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StorageError);
    expect((err as Error).message).toMatch(/^put "b\/edge(\.\d+)?": .*connection reset/);
    expect(await files()).toEqual([]);
  });

  it("a failing put of a later piece deletes the earlier ones", async () => {
    const failing: ObjectStore = {
      ...store,
      maxObjectBytes: 10,
      put: (key, b, opts) => (key.endsWith(".002") ? Promise.reject(new StorageError("disk full", { op: "put", key })) : store.put(key, b, opts)),
    };
    const err = await putSplit(failing, "b/x", chunked(45, 10)).catch((e: unknown) => e);
    expect((err as Error).message).toBe('put "b/x.002": disk full');
    expect(await files()).toEqual([]);
  });

  it("streams: the body is read only as fast as the pieces are written", async () => {
    const MiB = 1024 * 1024;
    let produced = 0;
    let consumed = 0;
    let ahead = 0;
    async function* body(): AsyncGenerator<Uint8Array> {
      for (let i = 0; i < 256; i++) {
        ahead = Math.max(ahead, produced - consumed);
        produced += 256 * 1024;
        yield Buffer.alloc(256 * 1024, i);
      }
    }
    const capped: ObjectStore = { ...store, maxObjectBytes: 16 * MiB };
    const written = await putSplit(capped, "b/big", body(), { onProgress: (n) => (consumed = n) });
    expect(written.map((w) => w.size)).toEqual([16 * MiB, 16 * MiB, 16 * MiB, 16 * MiB]);
    expect(consumed).toBe(64 * MiB);
    expect(ahead).toBeLessThan(4 * MiB); // a few chunks, never a piece
    const h = createHash("sha256");
    for (let i = 0; i < 256; i++) h.update(Buffer.alloc(256 * 1024, i));
    expect(createHash("sha256").update(await readPieces(written)).digest("hex")).toBe(h.digest("hex"));
  });

  it("hands the store's release on, but never a copy it made itself", async () => {
    // Chunks of 700 bytes in pieces of 1000: every second chunk straddles a boundary.
    const chunks = Array.from({ length: 10 }, (_, i) => new Uint8Array(bytes(i * 700, 700))); // each its own memory
    const released: Uint8Array[] = [];
    const mem = slowMemoryStore(1000);
    const written = await putSplit(mem, "b/rel", Readable.from(chunks, { objectMode: true }), { release: (c) => released.push(c) });
    expect(Buffer.concat(written.map((w) => mem.objects.get(w.key)!)).equals(bytes(0, 7000))).toBe(true);
    // Every chunk of the body came back once (a straddling one through the view of its tail), nothing else did.
    expect(released).toHaveLength(10);
    expect(chunks.every((k) => released.filter((c) => c.buffer === k.buffer).length === 1)).toBe(true);
  });
});
