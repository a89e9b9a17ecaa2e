import { createHash } from "node:crypto";
import { mkdtemp, readdir, readFile, rm, stat, utimes, writeFile, mkdir, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { BufferPool } from "./bufferpool.ts";
import { sha256Hex } from "./checksum.ts";
import {
  ChecksumMismatchError,
  InvalidKeyError,
  NotFoundError,
  StorageAbortedError,
  StorageError,
} from "./errors.ts";
import { createFilesystemStore, type FilesystemStore } from "./filesystem.ts";
import { createStore } from "./index.ts";
import type { ObjectInfo } from "./types.ts";
import { buffer } from "node:stream/consumers";

const readAll = (stream: Readable): Promise<Buffer> => buffer(stream);
const collect = (it: AsyncIterable<ObjectInfo>): Promise<ObjectInfo[]> => Array.fromAsync(it);

/** Every file (recursively) under dir, relative, sorted. */
async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => e.isFile())
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)))
    .sort();
}

/** Deterministic pseudo-random chunks, generated on the fly. */
async function* generate(total: number, chunkSize = 64 * 1024, seed = 1): AsyncGenerator<Uint8Array> {
  let x = seed;
  for (let off = 0; off < total; off += chunkSize) {
    const n = Math.min(chunkSize, total - off);
    const buf = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) {
      x = (x * 1103515245 + 12345) & 0x7fffffff;
      buf[i] = x & 0xff;
    }
    yield buf;
  }
}

async function sha256Of(it: AsyncIterable<Uint8Array>): Promise<string> {
  const h = createHash("sha256");
  for await (const c of it) h.update(c);
  return h.digest("hex");
}

let dir: string;
let store: FilesystemStore;

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "storage-fs-test-"));
  store = createFilesystemStore({ root: path.join(dir, "root") });
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("filesystem store", () => {
  it("describes itself", () => {
    expect(store.kind).toBe("filesystem");
    expect(store.describe()).toBe(`file://${path.join(dir, "root")}`);
  });

  it("put/get/head/list/delete round trip", async () => {
    const data = Buffer.from("hello, backup");
    const res = await store.put("backups/b1/data.bin", Readable.from([data]));
    expect(res).toEqual({ key: "backups/b1/data.bin", size: data.length, sha256: sha256Hex(data) });
    expect(await readFile(path.join(dir, "root/backups/b1/data.bin"))).toEqual(data);

    expect(await readAll(await store.get("backups/b1/data.bin"))).toEqual(data);
    const info = await store.head("backups/b1/data.bin");
    expect(info?.size).toBe(data.length);
    expect(info?.lastModified).toBeInstanceOf(Date);
    expect(await store.head("backups/b1/missing")).toBeUndefined();
    expect(await store.head("backups/b1")).toBeUndefined(); // a directory is not an object

    await store.put("backups/b1/meta.json", (async function* () { yield Buffer.from("{}"); })());
    await store.put("backups/b2/data.bin", Readable.from([Buffer.from("x")]));
    await store.put("other", Readable.from([Buffer.from("y")]));

    expect((await collect(store.list(""))).map((o) => o.key)).toEqual([
      "backups/b1/data.bin",
      "backups/b1/meta.json",
      "backups/b2/data.bin",
      "other",
    ]);
    expect((await collect(store.list("backups/b1/"))).map((o) => [o.key, o.size])).toEqual([
      ["backups/b1/data.bin", data.length],
      ["backups/b1/meta.json", 2],
    ]);
    // Plain string prefix semantics, like S3.
    expect((await collect(store.list("backups/b"))).length).toBe(3);
    expect((await collect(store.list("oth"))).map((o) => o.key)).toEqual(["other"]);
    expect(await collect(store.list("nope/"))).toEqual([]);

    await store.delete(["backups/b1/data.bin", "backups/b1/meta.json", "does/not/exist", "backups"]);
    expect((await collect(store.list(""))).map((o) => o.key)).toEqual(["backups/b2/data.bin", "other"]);
    await expect(store.get("backups/b1/data.bin")).rejects.toBeInstanceOf(NotFoundError);
    // Empty directories left by the delete are pruned; the root stays.
    await expect(stat(path.join(dir, "root/backups/b1"))).rejects.toMatchObject({ code: "ENOENT" });
    await store.delete([]);
  });

  it("lists in lexicographic key order (S3 order)", async () => {
    for (const k of ["a/b", "a-c", "a0", "b", "a/a/z"]) await store.put(k, Readable.from([Buffer.from(k)]));
    expect((await collect(store.list(""))).map((o) => o.key)).toEqual(["a-c", "a/a/z", "a/b", "a0", "b"]);
  });

  it("overwrites atomically", async () => {
    await store.put("k", Readable.from([Buffer.from("one")]));
    await store.put("k", Readable.from([Buffer.from("two")]));
    expect((await readAll(await store.get("k"))).toString()).toBe("two");
    expect(await filesUnder(store.root)).toEqual(["k"]);
  });

  it("streams a large generated body; sha256 equals the data's sha256", async () => {
    const total = 5 * 1024 * 1024 + 123;
    const progress: number[] = [];
    const res = await store.put("big.bin", generate(total), { onProgress: (n) => progress.push(n) });
    expect(res.size).toBe(total);
    expect(res.sha256).toBe(await sha256Of(generate(total)));
    expect(progress.at(-1)).toBe(total);
    const back = await store.get("big.bin", { expectedSha256: res.sha256, expectedSize: res.size });
    expect(await sha256Of(back)).toBe(res.sha256);
  });

  it("hands pooled chunks back once written; a producer reusing them at once corrupts nothing", async () => {
    // (poisoned: a chunk handed back is overwritten with a marker at once, a second release throws)
    const pool = new BufferPool(4096, 64, { poisonOnRelease: true });
    const expected = Buffer.concat(await Array.fromAsync(generate(200 * 4096 - 100, 4096)));
    async function* produce(): AsyncGenerator<Buffer> {
      for (let off = 0; off < expected.length; off += 4096) {
        const b = pool.take();
        const n = expected.copy(b, 0, off, off + 4096);
        yield b.subarray(0, n);
      }
    }
    const res = await store.put("pooled.bin", produce(), { release: pool.release });
    expect((await readAll(await store.get("pooled.bin", { expectedSha256: res.sha256 }))).equals(expected)).toBe(true);
    // 200 chunks, each handed back once; in flight at most what the stream buffers hold (64 KiB each side in Node 24)
    expect(pool.released).toBe(200);
    expect(pool.allocated).toBeLessThanOrEqual(40);
  });

  it("puts an empty object", async () => {
    const res = await store.put("empty", Readable.from([]));
    expect(res).toEqual({ key: "empty", size: 0, sha256: sha256Hex("") });
    expect((await readAll(await store.get("empty", { expectedSha256: sha256Hex(""), expectedSize: 0 }))).length).toBe(0);
  });

  it("detects a corrupted file on get with expectedSha256", async () => {
    const res = await store.put("c/obj", Readable.from([Buffer.from("original content")]));
    await writeFile(path.join(store.root, "c/obj"), "originaX content"); // same size, different bytes
    const stream = await store.get("c/obj", { expectedSha256: res.sha256, expectedSize: res.size });
    const err = await readAll(stream).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ChecksumMismatchError);
    expect((err as ChecksumMismatchError).actual.sha256).toBe(sha256Hex("originaX content"));
    expect((err as ChecksumMismatchError).message).toMatch(/^get "c\/obj": checksum mismatch/);
    // Size-only expectation
    const err2 = await readAll(await store.get("c/obj", { expectedSize: 3 })).catch((e: unknown) => e);
    expect(err2).toBeInstanceOf(ChecksumMismatchError);
  });

  it("abort mid-put leaves no final file and no temp file", async () => {
    const ac = new AbortController();
    let sent = 0;
    async function* slowBody(): AsyncGenerator<Uint8Array> {
      for (;;) {
        yield Buffer.alloc(64 * 1024, 7);
        sent++;
        if (sent === 20) ac.abort(new Error("shutdown"));
        await new Promise((r) => setImmediate(r));
      }
    }
    const err = await store.put("a/b/aborted.bin", slowBody(), { signal: ac.signal }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StorageAbortedError);
    expect((err as StorageAbortedError).message).toBe('put "a/b/aborted.bin": aborted');
    expect(await filesUnder(store.root)).toEqual([]);
    expect(await store.head("a/b/aborted.bin")).toBeUndefined();
  });

  it("a failing body leaves nothing behind and the error is a StorageError with the cause", async () => {
    async function* failing(): AsyncGenerator<Uint8Array> {
      yield Buffer.alloc(1000);
      throw new Error("source exploded");
    }
    const err = await store.put("x/y", failing()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StorageError);
    expect((err as StorageError).message).toMatch(/^put "x\/y": source exploded/);
    expect((err as Error).cause).toMatchObject({ message: "source exploded" });
    expect(await filesUnder(store.root)).toEqual([]);
  });

  it("rejects an already aborted signal without touching the disk", async () => {
    const ac = new AbortController();
    ac.abort();
    await expect(store.put("k", Readable.from([Buffer.from("x")]), { signal: ac.signal })).rejects.toBeInstanceOf(
      StorageAbortedError,
    );
    await expect(stat(store.root)).rejects.toMatchObject({ code: "ENOENT" });
  });

  it.each(["../x", "/abs", "a/../../b", "a\\..\\b", "a\0b", "", "a//b"])("rejects key %j in every operation", async (key) => {
    await expect(store.put(key, Readable.from([Buffer.from("evil")]))).rejects.toBeInstanceOf(InvalidKeyError);
    await expect(store.get(key)).rejects.toBeInstanceOf(InvalidKeyError);
    await expect(store.head(key)).rejects.toBeInstanceOf(InvalidKeyError);
    await expect(store.delete(["ok", key])).rejects.toBeInstanceOf(InvalidKeyError);
    // Nothing was written anywhere, inside or outside the root.
    expect(await filesUnder(dir)).toEqual([]);
  });

  it("rejects traversal in list prefixes", async () => {
    await expect(collect(store.list("../"))).rejects.toBeInstanceOf(InvalidKeyError);
    await expect(collect(store.list("/etc"))).rejects.toBeInstanceOf(InvalidKeyError);
  });

  it("get of a missing key is NotFoundError", async () => {
    const err = await store.get("nope/nothing").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NotFoundError);
    expect((err as NotFoundError).message).toMatch(/^get "nope\/nothing": no such object/);
    await store.put("dir/file", Readable.from([Buffer.from("x")]));
    await expect(store.get("dir")).rejects.toBeInstanceOf(NotFoundError);
    await expect(store.get("dir/file/below")).rejects.toBeInstanceOf(NotFoundError);
  });

  it("list ignores temp files and symlinks; cleanupIncomplete removes old temp files only", async () => {
    await store.put("b/real", Readable.from([Buffer.from("x")]));
    const oldTmp = path.join(store.root, "b/real.tmp-aaaa");
    const newTmp = path.join(store.root, "b/other.tmp-bbbb");
    await writeFile(oldTmp, "partial");
    await writeFile(newTmp, "partial");
    const past = new Date(Date.now() - 3600_000);
    await utimes(oldTmp, past, past);
    await mkdir(path.join(dir, "outside"));
    await writeFile(path.join(dir, "outside/secret"), "s");
    await symlink(path.join(dir, "outside"), path.join(store.root, "b/link"));

    expect((await collect(store.list(""))).map((o) => o.key)).toEqual(["b/real"]);
    expect(await store.cleanupIncomplete("", new Date(Date.now() - 60_000))).toBe(1);
    expect((await filesUnder(store.root)).sort()).toEqual(["b/other.tmp-bbbb", "b/real"]);
    expect(await store.cleanupIncomplete("b/", new Date(Date.now() + 60_000))).toBe(1);
    expect(await filesUnder(store.root)).toEqual(["b/real"]);
  });

  it("a failed put leaves none of the directories it created (a failed backup's <id>/data/<db>/)", async () => {
    await store.put("ns/def/keep", Readable.from([Buffer.from("x")]));
    async function* failing(): AsyncGenerator<Uint8Array> {
      yield Buffer.alloc(1024, 1);
      throw Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" });
    }
    const err = await store.put("ns/def/20261124T031000Z-a1b2c3/data/shop/orders.native.zst", failing()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StorageError);
    expect((err as Error).message).toContain("ENOSPC");
    expect(await readdir(path.join(store.root, "ns/def"))).toEqual(["keep"]);
    // a directory that holds something else stays
    await store.put("ns/def/20261124T031000Z-a1b2c3/inprogress.json", Readable.from([Buffer.from("{}")]));
    await store.put("ns/def/20261124T031000Z-a1b2c3/data/shop/t", failing()).catch(() => undefined);
    expect(await readdir(path.join(store.root, "ns/def/20261124T031000Z-a1b2c3"))).toEqual(["inprogress.json"]);
  });

  it("puts into a directory that concurrent deletes keep pruning all succeed (what a backup sees when the engine removes an object it will write again)", async () => {
    // Each round: the only object of a fresh <id>/data/dbN/ is deleted, which prunes dbN/ once it is empty,
    // while four puts go into dbN/: mkdir -p, fsync of the new directories and the temp file's open all race
    // with the rmdir. (Before the retry covered mkdir -p too, about one round in 20 lost a put here.)
    const base = "ns/def/20261201T134953Z-63f11f";
    await store.put(`${base}/inprogress.json`, Readable.from([Buffer.from("{}")]));
    const failures: string[] = [];
    const rounds = 200;
    for (let round = 0; round < rounds; round++) {
      const victim = `${base}/data/db${round}/victim`;
      await store.put(victim, Readable.from([Buffer.from("v")]));
      const puts = [0, 1, 2, 3].map((i) => store.put(`${base}/data/db${round}/t${i}`, Readable.from([Buffer.from(`r${round}`)])).catch((e: unknown) => failures.push(String(e))));
      await Promise.all([store.delete([victim]), ...puts]);
    }
    expect(failures).toEqual([]);
    const names = (await collect(store.list(`${base}/data/`))).map((o) => o.key);
    expect(names).toHaveLength(rounds * 4);
    expect(names.some((k) => k.includes("victim"))).toBe(false);
  });

  it("cleanupIncomplete removes old empty directories under the prefix, not recent ones nor the root", async () => {
    const old = path.join(store.root, "ns/def/20261124T031000Z-a1b2c3/data/shop");
    const recent = path.join(store.root, "ns/def/20261124T041000Z-d4e5f6/data/shop");
    await mkdir(old, { recursive: true });
    await mkdir(recent, { recursive: true });
    await store.put("ns/def/20261124T051000Z-aaaaaa/manifest.json", Readable.from([Buffer.from("{}")]));
    const past = new Date(Date.now() - 3600_000);
    for (let d = old; d !== path.join(store.root, "ns/def"); d = path.dirname(d)) await utimes(d, past, past);
    expect(await store.cleanupIncomplete("ns/def/", new Date(Date.now() - 60_000))).toBe(0);
    expect((await readdir(path.join(store.root, "ns/def"))).sort()).toEqual(["20261124T041000Z-d4e5f6", "20261124T051000Z-aaaaaa"]);
    // with a cutoff in the future the recent one goes too; the directory holding a file stays
    await store.cleanupIncomplete("ns/def/", new Date(Date.now() + 60_000));
    expect(await readdir(path.join(store.root, "ns/def"))).toEqual(["20261124T051000Z-aaaaaa"]);
    expect((await stat(store.root)).isDirectory()).toBe(true);
  });

  it("list stops with StorageAbortedError when the signal fires", async () => {
    for (let i = 0; i < 5; i++) await store.put(`d${i}/f`, Readable.from([Buffer.from("x")]));
    const ac = new AbortController();
    const seen: string[] = [];
    const err = await (async () => {
      for await (const o of store.list("", { signal: ac.signal })) {
        seen.push(o.key);
        ac.abort();
      }
    })().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StorageAbortedError);
    expect(seen).toEqual(["d0/f"]);
    const ac2 = new AbortController();
    ac2.abort();
    await expect(collect(store.list("", { signal: ac2.signal }))).rejects.toBeInstanceOf(StorageAbortedError);
  });

  it("get is abortable", async () => {
    await store.put("big", generate(2 * 1024 * 1024));
    const ac = new AbortController();
    const stream = await store.get("big", { signal: ac.signal });
    let n = 0;
    const err = await (async () => {
      for await (const c of stream) {
        n += (c as Buffer).length;
        ac.abort();
      }
    })().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StorageAbortedError);
    expect(n).toBeLessThan(2 * 1024 * 1024);
  });

  it("check: ok for a writable directory, NotFoundError when missing", async () => {
    await expect(store.check()).rejects.toBeInstanceOf(NotFoundError);
    await store.put("k", Readable.from([Buffer.from("x")]));
    await expect(store.check()).resolves.toBeUndefined();
    await writeFile(path.join(dir, "file"), "x");
    const notDir = createFilesystemStore({ root: path.join(dir, "file") });
    await expect(notDir.check()).rejects.toBeInstanceOf(StorageError);
  });

  it("createStore builds a filesystem store", async () => {
    const s = createStore({ filesystem: { path: path.join(dir, "via-config") } });
    expect(s.kind).toBe("filesystem");
    const r = await s.put("a", Readable.from([Buffer.from("z")]));
    expect(r.sha256).toBe(sha256Hex("z"));
    expect(() => createStore({} as never)).toThrow(TypeError);
  });
});
