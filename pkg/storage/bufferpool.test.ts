import { describe, expect, it } from "vitest";
import type { S3Client } from "@aws-sdk/client-s3";
import { BufferPool, BufferPoolMisuseError, POISON_PATTERN } from "./bufferpool.ts";
import { multipartUpload } from "./multipart.ts";

describe("BufferPool", () => {
  it("reuses released buffers, also when released through a view", () => {
    const pool = new BufferPool(1024, 2);
    const a = pool.take();
    const b = pool.take();
    expect(a.length).toBe(1024);
    expect(pool.allocated).toBe(2);
    expect(pool.owns(a)).toBe(true);
    pool.release(a.subarray(10, 20));
    expect(pool.owns(a)).toBe(false);
    expect(pool.take()).toBe(a);
    pool.release(b);
    expect(pool.take()).toBe(b);
    expect(pool.allocated).toBe(2);
    expect(pool.released).toBe(2);
  });

  it("ignores foreign buffers (another pool's too) and double releases; keeps at most maxFree", () => {
    const pool = new BufferPool(64, 1);
    const other = new BufferPool(64, 4);
    pool.release(Buffer.alloc(64)); // not from a pool: nothing happens
    const o = other.take();
    pool.release(o); // another pool's: nothing happens, it stays out there
    expect(other.owns(o)).toBe(true);
    expect(pool.owns(o)).toBe(false);
    const a = pool.take();
    pool.release(a);
    pool.release(a); // a second release must not put it in the free list twice
    expect(pool.take()).toBe(a);
    expect(pool.take()).not.toBe(a);
    const [x, y] = [pool.take(), pool.take()];
    pool.release(x);
    pool.release(y); // beyond maxFree: left to the garbage collector, and no longer the pool's
    expect(pool.owns(y)).toBe(false);
    expect(pool.take()).toBe(x);
  });

  it("the releaser is a function of its own, to be handed to a consumer", () => {
    const pool = new BufferPool(16, 1);
    const { release } = pool;
    const a = pool.take();
    release(a);
    expect(pool.take()).toBe(a);
  });

  it("poisonOnRelease: a released buffer reads as the marker at once; a double release and a late write throw", () => {
    const pool = new BufferPool(100, 2, { poisonOnRelease: true });
    expect(pool.poisoned).toBe(true);
    const a = pool.take();
    a.fill(7);
    const view = a.subarray(10, 30); // what a stage that kept a view would read
    pool.release(a);
    expect(view.every((v, i) => v === POISON_PATTERN[(10 + i) % POISON_PATTERN.length])).toBe(true);
    expect(() => pool.release(view)).toThrow(BufferPoolMisuseError);
    expect(() => pool.release(a)).toThrow(/released twice/);
    // taken again: it still held the marker, so nobody wrote to it meanwhile
    expect(pool.take()).toBe(a);
    pool.release(a);
    a[99] = 1; // a late writer
    expect(() => pool.take()).toThrow(/written to after it was released/);
    // buffers beyond maxFree are remembered, so their second release is caught too
    const bufs = [pool.take(), pool.take(), pool.take()];
    for (const b of bufs) pool.release(b);
    expect(() => pool.release(bufs[2]!)).toThrow(BufferPoolMisuseError);
  });

  it("pools share no state: each knows only its own buffers", () => {
    const p1 = new BufferPool(32, 4, { poisonOnRelease: true });
    const p2 = new BufferPool(32, 4);
    const a = p1.take();
    const b = p2.take();
    b.fill(3);
    p1.release(b); // not p1's: untouched
    expect(b.every((v) => v === 3)).toBe(true);
    expect(p2.owns(b)).toBe(true);
    p2.release(a); // not p2's: a stays out in p1
    expect(p1.owns(a)).toBe(true);
  });
});

/** An S3 client that keeps a copy of every part it is sent. */
function fakeClient(parts: Map<number, Buffer>, puts: Buffer[]): S3Client {
  const send = async (cmd: { constructor: { name: string }; input: Record<string, unknown> }) => {
    await new Promise((r) => setImmediate(r));
    switch (cmd.constructor.name) {
      case "CreateMultipartUploadCommand":
        return { UploadId: "u1" };
      case "UploadPartCommand":
        parts.set(cmd.input["PartNumber"] as number, Buffer.from(cmd.input["Body"] as Buffer));
        return { ETag: `"${String(cmd.input["PartNumber"])}"` };
      case "PutObjectCommand":
        puts.push(Buffer.from(cmd.input["Body"] as Buffer));
        return {};
      default:
        return {};
    }
  };
  return { send } as unknown as S3Client;
}

describe("multipartUpload with pooled chunks", () => {
  it("hands each chunk back once it is copied; a producer reusing them at once corrupts nothing", async () => {
    // Poisoned: a chunk handed back is overwritten with the marker at once, so a part assembled
    // from it after its release would not match.
    const pool = new BufferPool(1000, 4, { poisonOnRelease: true });
    const total = 25_000 + 123;
    const expected = Buffer.alloc(total);
    for (let i = 0; i < total; i++) expected[i] = (i * 31 + (i >> 8)) & 0xff;
    // The producer refills blocks from the pool, so a released block is overwritten right away.
    async function* produce(): AsyncGenerator<Buffer> {
      for (let off = 0; off < total; off += 1000) {
        const b = pool.take();
        const n = Math.min(1000, total - off);
        expected.copy(b, 0, off, off + n);
        yield n === 1000 ? b : b.subarray(0, n);
      }
    }
    const parts = new Map<number, Buffer>();
    const r = await multipartUpload({ client: fakeClient(parts, []), bucket: "b", key: "k", body: produce(), partSize: 6000, queueSize: 2, release: pool.release });
    expect(r.parts).toBe(5);
    const got = Buffer.concat([...parts.entries()].sort((a, b) => a[0] - b[0]).map(([, b]) => b));
    expect(got.equals(expected)).toBe(true);
    // Every block went back: the producer never needed more than one.
    expect(pool.allocated).toBe(1);
    expect(pool.released).toBe(26);
  });

  it("hands nothing back without a releaser", async () => {
    const pool = new BufferPool(1000, 4);
    async function* produce(): AsyncGenerator<Buffer> {
      for (let i = 0; i < 5; i++) yield pool.take().fill(i);
    }
    const puts: Buffer[] = [];
    await multipartUpload({ client: fakeClient(new Map(), puts), bucket: "b", key: "k", body: produce(), partSize: 6000, queueSize: 2 });
    expect(puts[0]!.length).toBe(5000);
    expect(pool.released).toBe(0);
    expect(pool.allocated).toBe(5);
  });
});
