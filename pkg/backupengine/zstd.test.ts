import { randomBytes } from "node:crypto";
import { Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { zstdCompressSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { BufferPool, releaseBuffer } from "../storage/bufferpool.ts";
import { oneViewOf, outputBlockBytes, SMALL_FRAME_BYTES, ZstdFramesCompress, ZstdFramesDecompress, ZstdFrameScanner, ZstdFormatError } from "./zstd.ts";

async function collect(src: Readable, ...stages: NodeJS.ReadWriteStream[]): Promise<Buffer> {
  const out: Buffer[] = [];
  await pipeline([src, ...stages, new Writable({ write(c: Buffer, _e, cb) { out.push(c); cb(); } })] as never);
  return Buffer.concat(out);
}

/** Splits a buffer into chunks of random sizes, like a network stream. */
function chunked(buf: Buffer, seed: number): Readable {
  const parts: Buffer[] = [];
  let x = seed;
  for (let off = 0; off < buf.length; ) {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    const n = 1 + (x % 70_000);
    parts.push(buf.subarray(off, off + n));
    off += n;
  }
  return Readable.from(parts);
}

function sample(n: number): Buffer {
  // compressible but not trivial: repeated text with random bytes mixed in
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = i % 97 < 80 ? 65 + ((i * 7) % 26) : Math.floor(Math.random() * 256);
  return b;
}

describe("multi-frame zstd", () => {
  it("round-trips through the framed compressor and decompressor with odd chunking", async () => {
    const data = sample(5 * 1024 * 1024 + 123);
    const z = await collect(chunked(data, 1), new ZstdFramesCompress({ level: 1, frameBytes: 1024 * 1024, parallel: 3 }));
    const back = await collect(chunked(z, 7), new ZstdFramesDecompress({ parallel: 2 }));
    expect(back.equals(data)).toBe(true);
    // told the frame size, or a smaller one (frames then decompress into several buffers)
    for (const frameBytes of [1024 * 1024, 100_000]) {
      expect((await collect(chunked(z, 9), new ZstdFramesDecompress({ parallel: 3, frameBytes }))).equals(data)).toBe(true);
    }
    // Several frames were written (what lets both sides work in parallel).
    let frames = 0;
    for (let i = z.indexOf(Buffer.from([0x28, 0xb5, 0x2f, 0xfd])); i >= 0; i = z.indexOf(Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), i + 4)) frames++;
    expect(frames).toBeGreaterThanOrEqual(6);
  });

  it("reads single-frame streams and skippable frames", async () => {
    const data = randomBytes(300_000);
    const single = zstdCompressSync(data);
    expect((await collect(chunked(single, 3), new ZstdFramesDecompress())).equals(data)).toBe(true);
    const skippable = Buffer.concat([Buffer.from([0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 1, 2, 3]), single]);
    expect((await collect(chunked(skippable, 5), new ZstdFramesDecompress())).equals(data)).toBe(true);
  });

  it("rejects garbage, truncated data and oversized frames", async () => {
    await expect(collect(Readable.from([Buffer.alloc(100, 7)]), new ZstdFramesDecompress())).rejects.toThrow(ZstdFormatError);
    const z = zstdCompressSync(randomBytes(100_000));
    await expect(collect(Readable.from([z.subarray(0, z.length - 10)]), new ZstdFramesDecompress())).rejects.toThrow(/incomplete frame/);
    await expect(collect(Readable.from([z]), new ZstdFramesDecompress({ maxFrameBytes: 1000 }))).rejects.toThrow(/larger than/);
    await expect(collect(Readable.from([]), new ZstdFramesDecompress())).rejects.toThrow(/no frame/);
    // An empty input compresses to one empty frame, which decompresses to nothing.
    const empty = await collect(Readable.from([]), new ZstdFramesCompress({ level: 1 }));
    expect(empty.length).toBeGreaterThan(0);
    expect((await collect(Readable.from([empty]), new ZstdFramesDecompress())).length).toBe(0);
  });

  it("finds frame boundaries for any data, level and frame size (property)", async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 200_000 }), fc.integer({ min: -3, max: 6 }), fc.integer({ min: 1000, max: 70_000 }), fc.integer(), async (arr, level, frameBytes, seed) => {
        const data = Buffer.from(arr);
        const z = await collect(chunked(data, seed), new ZstdFramesCompress({ level, frameBytes, parallel: 2 }));
        const back = await collect(chunked(z, seed + 1), new ZstdFramesDecompress({ parallel: 2 }));
        expect(back.equals(data)).toBe(true);
      }),
      { numRuns: 40 },
    );
  });

  it("compresses whole pooled blocks in place, hands each back only when zstd is done with it", async () => {
    const frameBytes = 64 * 1024;
    const data = sample(20 * frameBytes + 5000);
    const pool = new BufferPool(frameBytes, 8);
    // The producer refills released blocks at once: a block handed back too early would corrupt a frame.
    async function* produce(): AsyncGenerator<Buffer> {
      for (let off = 0; off < data.length; off += frameBytes) {
        const b = pool.take();
        const n = Math.min(frameBytes, data.length - off);
        data.copy(b, 0, off, off + n);
        yield n === frameBytes ? b : b.subarray(0, n);
      }
    }
    const z = await collect(Readable.from(produce(), { highWaterMark: 1 }), new ZstdFramesCompress({ level: 1, frameBytes, parallel: 3, pool }));
    expect((await collect(chunked(z, 11), new ZstdFramesDecompress())).equals(data)).toBe(true);
    // 21 blocks went through a handful of buffers: every one came back.
    expect(pool.allocated).toBeLessThanOrEqual(7);
    // Chunks that are not whole frames are copied and handed back right away.
    const pool2 = new BufferPool(1000, 64);
    async function* small(): AsyncGenerator<Buffer> {
      for (let off = 0; off < data.length; off += 1000) {
        const b = pool2.take();
        const n = data.copy(b, 0, off, Math.min(data.length, off + 1000));
        yield b.subarray(0, n);
      }
    }
    const z2 = await collect(Readable.from(small(), { highWaterMark: 1 }), new ZstdFramesCompress({ level: 1, frameBytes, parallel: 2 }));
    expect((await collect(Readable.from([z2]), new ZstdFramesDecompress())).equals(data)).toBe(true);
    // 1316 chunks; in flight at most what the compressor's writable side buffers while zstd works (64 KiB)
    expect(pool2.allocated).toBeLessThan(150);
    releaseBuffer(Buffer.alloc(1)); // foreign buffers are ignored
  });

  it("writes every frame into a reused output block, one view each, handed back by its last reader", async () => {
    const frameBytes = 512 * 1024;
    for (const data of [sample(30 * frameBytes + 777), randomBytes(8 * frameBytes + 5), Buffer.alloc(200 * frameBytes)]) {
      const outputPool = new BufferPool(outputBlockBytes(frameBytes), 16);
      const got: Buffer[] = [];
      let x = 1;
      // Like the upload: copy each chunk, then hand it back - sometimes only after a while,
      // so blocks are reused while later frames are compressed. Early reuse would corrupt the copy.
      const sink = new Writable({
        write(c: Buffer, _e, cb) {
          got.push(Buffer.from(c));
          x = (x * 1103515245 + 12345) & 0x7fffffff;
          setTimeout(() => {
            releaseBuffer(c);
            cb();
          }, x % 3);
        },
      });
      await pipeline(chunked(data, 5), new ZstdFramesCompress({ level: 1, frameBytes, parallel: 3, outputPool }), sink);
      const z = Buffer.concat(got);
      expect((await collect(chunked(z, 13), new ZstdFramesDecompress({ frameBytes }))).equals(data)).toBe(true);
      // One chunk per frame, out of a handful of blocks: zlib wrote into them (if node:zlib
      // stopped honouring its output buffer, every frame would come from fresh memory again).
      // Zeros compress to a few bytes a frame: copied out, the block reused at once.
      expect(got.length).toBe(Math.ceil(data.length / frameBytes));
      expect(got.slice(0, -1).every((c) => c.length >= SMALL_FRAME_BYTES)).toBe(data[0] !== 0);
      expect(outputPool.allocated).toBeGreaterThan(0);
      expect(outputPool.allocated).toBeLessThanOrEqual(8);
    }
    expect(() => new ZstdFramesCompress({ level: 1, frameBytes, outputPool: new BufferPool(frameBytes, 1) })).toThrow(/outputPool/);
  });

  it("gives at most one view of an output block", () => {
    const size = SMALL_FRAME_BYTES * 2;
    const pool = new BufferPool(size, 4);
    const block = pool.take();
    const other = Buffer.alloc(10, 1);
    block.fill(2);
    // contiguous from the start, then zlib's own buffer: merged into one view, the rest kept
    const a = oneViewOf(block, [block.subarray(0, 30), block.subarray(30, size), other]);
    expect(a.map((b) => b.length)).toEqual([size, 10]);
    expect(a[0]!.buffer).toBe(block.buffer);
    // a small frame: copied, the block handed back
    const small = oneViewOf(block, [block.subarray(0, 30)]);
    expect(small[0]!.buffer).not.toBe(block.buffer);
    expect(small[0]!.equals(Buffer.alloc(30, 2))).toBe(true);
    expect(pool.take()).toBe(block);
    // the block unused: handed straight back
    const b = oneViewOf(block, [other]);
    expect(b).toEqual([other]);
    expect(pool.take()).toBe(block);
    // any other layout: copied out, the block handed back
    const c = oneViewOf(block, [block.subarray(10, 20), other, block.subarray(20, 30)]);
    expect(c).toHaveLength(1);
    expect(c[0]!.buffer).not.toBe(block.buffer);
    expect(c[0]!.length).toBe(30);
    expect(pool.take()).toBe(block);
  });

  it("scanner reports the exact frame length", () => {
    const z = zstdCompressSync(randomBytes(50_000));
    const q = { length: z.length, byte: (i: number) => z[i]!, u32: (i: number) => z.readUInt32LE(i) };
    expect(new ZstdFrameScanner().scan(q, 1 << 20)).toBe(z.length);
  });
});
