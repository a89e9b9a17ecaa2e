// CompressedStreamCheck on synthetic ClickHouse block streams (method 0x02,
// stored, and LZ4 made by a small compressor below), and the LZ4 block
// decoder. The real LZ4 streams of 18.16 are covered by
// test/clickhouse-compressed.test.ts and test/native-walk.test.ts (which
// also prints the decoder's speed on real data).
import { Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { BufferPool } from "../../storage/bufferpool.ts";
import { CompressedStreamCheck, CompressedStreamError, lz4DecompressBlock, type CompressedStreamCheckOptions } from "./compressed.ts";
import { NativeFormatError, NativeWalker } from "./nativewalk.ts";

/** One block of ClickHouse's compressed format, stored without compression. */
function storedBlock(data: Buffer): Buffer {
  const h = Buffer.alloc(16 + 9);
  h.fill(0xab, 0, 16); // the checksum is the server's business (it checks it on INSERT)
  h[16] = 0x02;
  h.writeUInt32LE(9 + data.length, 17);
  h.writeUInt32LE(data.length, 21);
  return Buffer.concat([h, data]);
}

/**
 * Feeds `stream` in blocks of a pool, cut at `cuts`, the way the dump's HTTP
 * reader does, and releases every chunk as soon as it is passed on: a block
 * is refilled with other data at once, so a check that kept views of the
 * chunks would see garbage.
 */
async function check(stream: Buffer, cuts: number[], opts?: CompressedStreamCheckOptions): Promise<{ out: Buffer; c: CompressedStreamCheck }> {
  // a debug pool: a released block is overwritten with a marker at once
  const pool = new BufferPool(stream.length + 1, 2, { poisonOnRelease: true });
  const c = new CompressedStreamCheck(undefined, opts);
  const pts = [...new Set(cuts.map((x) => x % (stream.length + 1)))].sort((a, b) => a - b);
  async function* produce(): AsyncGenerator<Buffer> {
    let prev = 0;
    for (const p of [...pts, stream.length]) {
      if (p <= prev) continue;
      const b = pool.take();
      stream.copy(b, 0, prev, p);
      yield b.subarray(0, p - prev);
      prev = p;
    }
  }
  const out: Buffer[] = [];
  await pipeline(
    produce(),
    c,
    new Writable({
      write(chunk: Buffer, _e, cb) {
        out.push(Buffer.from(chunk));
        pool.release(chunk);
        cb();
      },
    }),
  );
  return { out: Buffer.concat(out), c };
}

const exception = "Code: 395, e.displayText() = DB::Exception: Value passed to 'throwIf' function is non zero, e.what() = DB::Exception\n";

describe("CompressedStreamCheck", () => {
  it("passes any block stream through unchanged and counts the data inside, however it is cut", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.integer({ min: 0, max: 3000 }), { minLength: 1, maxLength: 6 }), fc.array(fc.nat(), { maxLength: 10 }), async (sizes, cuts) => {
        const datas = sizes.map((n, i) => Buffer.alloc(n, i + 1));
        const stream = Buffer.concat(datas.map(storedBlock));
        const { out, c } = await check(stream, cuts);
        expect(out.equals(stream)).toBe(true);
        expect(c.decompressedBytes).toBe(sizes.reduce((a, b) => a + b, 0));
        expect(c.blocks).toBe(sizes.length);
      }),
      { numRuns: 50 },
    );
  });

  it("finds a server exception at the end, also across two blocks, with the chunks reused meanwhile", async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: exception.length - 1 }), fc.array(fc.nat(), { maxLength: 8 }), async (split, cuts) => {
        const text = Buffer.from(exception);
        const stream = Buffer.concat([
          storedBlock(Buffer.alloc(5000, 7)),
          storedBlock(Buffer.concat([Buffer.alloc(300, 8), text.subarray(0, split)])),
          storedBlock(text.subarray(split)),
        ]);
        await expect(check(stream, cuts)).rejects.toThrow(/throwIf/);
      }),
      { numRuns: 30 },
    );
  });

  it("fails a stream cut inside a block", async () => {
    const stream = Buffer.concat([storedBlock(Buffer.alloc(100, 1)), storedBlock(Buffer.alloc(100, 2))]);
    await expect(check(stream.subarray(0, stream.length - 10), [50])).rejects.toThrow(/middle of a compressed block/);
  });
});

/**
 * A greedy LZ4 block compressor (hash of 4 bytes, no frame): enough to make
 * valid blocks with long literals, long matches and overlapping matches.
 */
function lz4Compress(src: Buffer): Buffer {
  const out: number[] = [];
  const table = new Map<number, number>();
  const n = src.length;
  const len = (v: number) => {
    for (; v >= 255; v -= 255) out.push(255);
    out.push(v);
  };
  const sequence = (from: number, to: number, offset: number, mlen: number) => {
    const lit = to - from;
    const m = mlen - 4;
    out.push((Math.min(lit, 15) << 4) | (offset ? Math.min(m, 15) : 0));
    if (lit >= 15) len(lit - 15);
    for (let i = from; i < to; i++) out.push(src[i]!);
    if (!offset) return;
    out.push(offset & 0xff, offset >> 8);
    if (m >= 15) len(m - 15);
  };
  let anchor = 0;
  let i = 0;
  while (i + 12 <= n) {
    const key = src.readUInt32LE(i);
    const cand = table.get(key);
    table.set(key, i);
    if (cand !== undefined && i - cand <= 65535) {
      let m = 4;
      while (i + m < n - 5 && src[cand + m] === src[i + m]) m++;
      sequence(anchor, i, i - cand, m);
      i += m;
      anchor = i;
    } else {
      i++;
    }
  }
  sequence(anchor, n, 0, 0);
  return Buffer.from(out);
}

/** One block of ClickHouse's compressed format, LZ4. */
function lz4Block(data: Buffer): Buffer {
  const c = lz4Compress(data);
  const h = Buffer.alloc(16 + 9);
  h.fill(0xcd, 0, 16);
  h[16] = 0x82;
  h.writeUInt32LE(9 + c.length, 17);
  h.writeUInt32LE(data.length, 21);
  return Buffer.concat([h, c]);
}

/** Data LZ4 has work with: runs (overlapping matches of period 1..9), repeats from far back, random bytes. */
const compressible = fc
  .array(
    fc.oneof(
      fc.record({ k: fc.constant("run" as const), period: fc.integer({ min: 1, max: 9 }), n: fc.integer({ min: 1, max: 400 }), seed: fc.nat() }),
      fc.record({ k: fc.constant("repeat" as const), back: fc.nat(), n: fc.integer({ min: 4, max: 600 }) }),
      fc.record({ k: fc.constant("random" as const), bytes: fc.uint8Array({ maxLength: 300 }) }),
    ),
    { maxLength: 30 },
  )
  .map((parts) => {
    const out: number[] = [];
    for (const p of parts) {
      if (p.k === "run") {
        for (let i = 0; i < p.n; i++) out.push((p.seed + (i % p.period) * 37) & 0xff);
      } else if (p.k === "repeat") {
        if (out.length === 0) continue;
        const from = p.back % out.length;
        for (let i = 0; i < p.n; i++) out.push(out[from + (i % (out.length - from))]!);
      } else {
        out.push(...p.bytes);
      }
    }
    return Buffer.from(out);
  });

describe("lz4DecompressBlock", () => {
  it("decodes what LZ4 encodes, into a fresh buffer or a reused larger one", () => {
    const dst = Buffer.alloc(64 * 1024, 0x77);
    fc.assert(
      fc.property(compressible, (data) => {
        const c = lz4Compress(data);
        expect(lz4DecompressBlock(c, data.length).equals(data)).toBe(true);
        if (data.length <= dst.length) {
          const d = lz4DecompressBlock(c, data.length, dst);
          expect(d.buffer).toBe(dst.buffer);
          expect(d.equals(data)).toBe(true);
        }
      }),
      { numRuns: 300 },
    );
  });

  it("decodes long literals, long matches and long runs of every short period", () => {
    const parts: Buffer[] = [Buffer.from(Array.from({ length: 5000 }, (_, i) => (i * 7919) % 251))];
    for (let period = 1; period <= 40; period++) parts.push(Buffer.from(Array.from({ length: 3000 + period }, (_, i) => (i % period) * 3)));
    parts.push(parts[0]!);
    const data = Buffer.concat(parts);
    const c = lz4Compress(data);
    expect(c.length).toBeLessThan(data.length / 5);
    expect(lz4DecompressBlock(c, data.length).equals(data)).toBe(true);
  });

  it("throws CompressedStreamError on corrupt or cut blocks, and writes nothing outside the output", () => {
    fc.assert(
      fc.property(compressible, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }), fc.nat(), (data, edits, cut) => {
        const c = lz4Compress(data);
        const bad = Buffer.from(c);
        for (const [at, b] of edits) bad[at % bad.length] = b;
        const guard = Buffer.alloc(data.length + 64, 0x5a);
        for (const input of [bad, c.subarray(0, cut % (c.length + 1))]) {
          try {
            const d = lz4DecompressBlock(input, data.length, guard);
            expect(d.length).toBe(data.length);
          } catch (err) {
            expect(err).toBeInstanceOf(CompressedStreamError);
          }
          expect(guard.subarray(data.length).every((x) => x === 0x5a)).toBe(true);
        }
        // a size that disagrees with the data
        expect(() => lz4DecompressBlock(c, data.length + 1)).toThrow(CompressedStreamError);
      }),
      { numRuns: 300 },
    );
  });
});

describe("CompressedStreamCheck with onDecoded", () => {
  /** A Native stream of `blocks` blocks of `rows` rows: one UInt32 and one String column. */
  function native(blocks: number, rows: number): Buffer {
    const parts: Buffer[] = [];
    for (let b = 0; b < blocks; b++) {
      const strings = Array.from({ length: rows }, (_, i) => Buffer.from(`row ${i} of block ${b} `.repeat(i % 4)));
      const u32 = Buffer.alloc(4 * rows);
      for (let i = 0; i < rows; i++) u32.writeUInt32LE(i, 4 * i);
      parts.push(Buffer.from([2, rows & 0x7f | (rows >= 128 ? 0x80 : 0), ...(rows >= 128 ? [rows >> 7] : [])]));
      parts.push(Buffer.from("\x01n\x06UInt32", "latin1"), u32, Buffer.from("\x01s\x06String", "latin1"));
      for (const s of strings) parts.push(Buffer.from([s.length]), s);
    }
    return Buffer.concat(parts);
  }

  /** Cuts `data` into compressed blocks at `sizes` (cycled), alternating LZ4 and stored blocks. */
  function compressed(data: Buffer, sizes: number[]): Buffer {
    const out: Buffer[] = [];
    for (let off = 0, i = 0; off < data.length; i++) {
      const n = Math.max(1, sizes[i % sizes.length]!);
      const piece = data.subarray(off, off + n);
      out.push(i % 3 === 2 ? storedBlock(piece) : lz4Block(piece));
      off += n;
    }
    return Buffer.concat(out);
  }

  it("hands every block's data to the callback, in order, whatever the cuts", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.integer({ min: 1, max: 5000 }), { minLength: 1, maxLength: 5 }), fc.array(fc.nat(), { maxLength: 10 }), async (sizes, cuts) => {
        const data = native(3, 120);
        const stream = compressed(data, sizes);
        const seen: Buffer[] = [];
        const walker = new NativeWalker();
        const { out, c } = await check(stream, cuts, {
          onDecoded: (d) => {
            seen.push(Buffer.from(d));
            walker.push(d);
            d.fill(0xee); // the buffer is reused: nothing may depend on it after the callback
          },
        });
        walker.end();
        expect(out.equals(stream)).toBe(true);
        expect(Buffer.concat(seen).equals(data)).toBe(true);
        expect(c.decompressedBytes).toBe(data.length);
        expect(walker.rows).toBe(360);
      }),
      { numRuns: 40 },
    );
  });

  it("still reports a server exception at the end when the callback failed on it, and the callback's error otherwise", async () => {
    const data = native(2, 50);
    const text = Buffer.from(exception);
    const withException = Buffer.concat([compressed(data, [700]), lz4Block(text)]);
    const walker = new NativeWalker();
    await expect(check(withException, [100], { onDecoded: (d) => walker.push(d) })).rejects.toThrow(/throwIf/);
    // garbage that is no exception: the callback's own error, at the end
    const garbage = Buffer.concat([compressed(data, [700]), lz4Block(Buffer.from("\x05garbage garbage garbage"))]);
    const w2 = new NativeWalker();
    let calls = 0;
    await expect(
      check(Buffer.concat([garbage, compressed(data, [300])]), [100], {
        onDecoded: (d) => {
          calls++;
          w2.push(d);
        },
      }),
    ).rejects.toThrow(NativeFormatError);
    expect(calls).toBe(Math.ceil(data.length / 700) + 1); // no callbacks after the failure
  });

  it("fails at once on a corrupt LZ4 block", async () => {
    const stream = Buffer.from(lz4Block(Buffer.alloc(10000, 3)));
    stream.writeUInt32LE(20000, 21); // decompressed size
    await expect(check(stream, [], { onDecoded: () => {} })).rejects.toThrow(CompressedStreamError);
  });
});
