import { describe, expect, it } from "vitest";
import type { S3Client } from "@aws-sdk/client-s3";
import { BufferPool, isPooled, releaseBuffer } from "./bufferpool.ts";
import { multipartUpload } from "./multipart.ts";

describe("BufferPool", () => {
  it("reuses released buffers, also when released through a view", () => {
    const pool = new BufferPool(1024, 2);
    const a = pool.take();
    const b = pool.take();
    expect(a.length).toBe(1024);
    expect(pool.allocated).toBe(2);
    expect(isPooled(a)).toBe(true);
    releaseBuffer(a.subarray(10, 20));
    expect(isPooled(a)).toBe(false);
    expect(pool.take()).toBe(a);
    releaseBuffer(b);
    expect(pool.take()).toBe(b);
    expect(pool.allocated).toBe(2);
  });

  it("ignores foreign buffers and double releases; keeps at most maxFree", () => {
    const pool = new BufferPool(64, 1);
    releaseBuffer(Buffer.alloc(64)); // not from a pool: nothing happens
    const a = pool.take();
    releaseBuffer(a);
    releaseBuffer(a); // a second release must not put it in the free list twice
    expect(pool.take()).toBe(a);
    expect(pool.take()).not.toBe(a);
    const [x, y] = [pool.take(), pool.take()];
    releaseBuffer(x);
    releaseBuffer(y); // beyond maxFree: left to the garbage collector, and no longer pooled
    expect(isPooled(y)).toBe(false);
    expect(pool.take()).toBe(x);
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
    const pool = new BufferPool(1000, 4);
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
    const r = await multipartUpload({ client: fakeClient(parts, []), bucket: "b", key: "k", body: produce(), partSize: 6000, queueSize: 2 });
    expect(r.parts).toBe(5);
    const got = Buffer.concat([...parts.entries()].sort((a, b) => a[0] - b[0]).map(([, b]) => b));
    expect(got.equals(expected)).toBe(true);
    // Every block went back: the producer never needed more than one.
    expect(pool.allocated).toBe(1);
  });
});
