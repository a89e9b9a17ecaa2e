// CompressedStreamCheck on synthetic ClickHouse block streams (method 0x02,
// stored). The real LZ4 streams of 18.16 are covered by
// test/clickhouse-compressed.test.ts.
import { Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { BufferPool, releaseBuffer } from "../../storage/bufferpool.ts";
import { CompressedStreamCheck } from "./compressed.ts";

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
async function check(stream: Buffer, cuts: number[]): Promise<{ out: Buffer; c: CompressedStreamCheck }> {
  const pool = new BufferPool(stream.length + 1, 2);
  const c = new CompressedStreamCheck(undefined);
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
        releaseBuffer(chunk);
        chunk.fill(0x5a);
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
