// ClickHouse's own compressed stream format, as sent with the HTTP `compress=1`
// parameter and accepted with `decompress=1`: a sequence of blocks
//   16 bytes  CityHash128 of the rest of the block
//    1 byte   method (0x82 LZ4, 0x90 ZSTD, 0x02 none)
//    4 bytes  compressed size, including these 9 header bytes (LE)
//    4 bytes  decompressed size (LE)
//    ...      compressed data
// The server compresses in its own threads, so a dump costs the runner no
// compression CPU. ClickHouse verifies every block's checksum on INSERT.
//
// What the runner must still check itself: that the stream was not cut in
// the middle of a block, and that the server did not append an exception to
// a response that had already started (old servers write it into the
// compressed stream, after the data). For that the last block is kept and
// decompressed at the end; LZ4 block decoding is a few lines (below).
import { Transform, type TransformCallback } from "node:stream";
import { zstdDecompressSync } from "node:zlib";
import { trailingException } from "./streams.ts";

const CHECKSUM = 16;
const HEADER = 9;
const METHOD_NONE = 0x02;
const METHOD_LZ4 = 0x82;
const METHOD_ZSTD = 0x90;
/** Far above ClickHouse's max_compress_block_size (1 MiB by default): a guard against garbage. */
const MAX_BLOCK = 256 * 1024 * 1024;

export class CompressedStreamError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CompressedStreamError";
  }
}

/** Decodes one LZ4 block (the raw block format, no frame) into exactly `size` bytes. */
export function lz4DecompressBlock(src: Buffer, size: number): Buffer {
  const dst = Buffer.allocUnsafe(size);
  let s = 0;
  let d = 0;
  const fail = (why: string): never => {
    throw new CompressedStreamError(`corrupt LZ4 block: ${why}`);
  };
  while (s < src.length) {
    const token = src[s++]!;
    let lit = token >> 4;
    if (lit === 15) {
      let b: number;
      do {
        if (s >= src.length) fail("literal length runs past the end");
        b = src[s++]!;
        lit += b;
      } while (b === 255);
    }
    if (s + lit > src.length || d + lit > size) fail("literals run past the end");
    src.copy(dst, d, s, s + lit);
    s += lit;
    d += lit;
    if (s >= src.length) break; // the last sequence has literals only
    if (s + 2 > src.length) fail("truncated match offset");
    const offset = src[s]! | (src[s + 1]! << 8);
    s += 2;
    if (offset === 0 || offset > d) fail("match offset out of range");
    let len = (token & 15) + 4;
    if ((token & 15) === 15) {
      let b: number;
      do {
        if (s >= src.length) fail("match length runs past the end");
        b = src[s++]!;
        len += b;
      } while (b === 255);
    }
    if (d + len > size) fail("match runs past the end");
    // Overlapping copies are how LZ4 encodes runs: copy byte by byte when they overlap.
    if (offset >= len) {
      dst.copy(dst, d, d - offset, d - offset + len);
      d += len;
    } else {
      for (let i = 0; i < len; i++, d++) dst[d] = dst[d - offset]!;
    }
  }
  if (d !== size) fail(`decoded ${d} bytes, header says ${size}`);
  return dst;
}

export function decompressBlock(block: Buffer): Buffer {
  const method = block[CHECKSUM]!;
  const size = block.readUInt32LE(CHECKSUM + 5);
  const data = block.subarray(CHECKSUM + HEADER);
  switch (method) {
    case METHOD_NONE:
      return data;
    case METHOD_LZ4:
      return lz4DecompressBlock(data, size);
    case METHOD_ZSTD:
      return zstdDecompressSync(data);
    default:
      throw new CompressedStreamError(`unknown ClickHouse compression method 0x${method.toString(16)}`);
  }
}

const HELD_STEP = 256 * 1024;

/** A block's bytes (checksum and header included) in a buffer reused for later blocks. */
interface HeldBlock {
  buf: Buffer;
  len: number;
}

/**
 * Passes a compressed ClickHouse stream through unchanged while following its
 * block structure. At the end it fails the stream if a block is incomplete or
 * if the last block's content ends in a server exception. `decompressedBytes`
 * is the size of the Native data inside.
 *
 * The current block and the two before it are copied into buffers of its
 * own rather than kept as views of the chunks: the chunks are passed on and
 * may go back to a pool once the last stage has read them.
 */
export class CompressedStreamCheck extends Transform {
  readonly #exceptionTag: string | undefined;
  #header = Buffer.alloc(CHECKSUM + HEADER);
  #headerLen = 0;
  #inBlock = false;
  #remaining = 0; // bytes of the current block still to come
  #cur: HeldBlock = { buf: Buffer.alloc(0), len: 0 };
  #last: HeldBlock | undefined;
  #prev: HeldBlock | undefined; // the block before the last (an exception may straddle two)
  decompressedBytes = 0;
  blocks = 0;

  constructor(exceptionTag: string | undefined) {
    super();
    this.#exceptionTag = exceptionTag;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    try {
      let off = 0;
      while (off < chunk.length) {
        if (!this.#inBlock) {
          const n = Math.min(chunk.length - off, this.#header.length - this.#headerLen);
          chunk.copy(this.#header, this.#headerLen, off, off + n);
          this.#headerLen += n;
          off += n;
          if (this.#headerLen < this.#header.length) break;
          const compressed = this.#header.readUInt32LE(CHECKSUM + 1);
          const decompressed = this.#header.readUInt32LE(CHECKSUM + 5);
          if (compressed < HEADER || compressed > MAX_BLOCK || decompressed > MAX_BLOCK) {
            throw new CompressedStreamError(`not a ClickHouse compressed stream (block of ${compressed} bytes)`);
          }
          this.decompressedBytes += decompressed;
          const size = CHECKSUM + compressed;
          if (this.#cur.buf.length < size) this.#cur.buf = Buffer.allocUnsafe(Math.ceil(size / HELD_STEP) * HELD_STEP);
          this.#header.copy(this.#cur.buf, 0);
          this.#cur.len = this.#header.length;
          this.#remaining = compressed - HEADER;
          this.#headerLen = 0;
          this.#inBlock = true;
        }
        const n = Math.min(chunk.length - off, this.#remaining);
        if (n > 0) {
          chunk.copy(this.#cur.buf, this.#cur.len, off, off + n);
          this.#cur.len += n;
        }
        this.#remaining -= n;
        off += n;
        if (this.#remaining === 0) {
          // rotate: the oldest held buffer is reused for the next block
          const free = this.#prev ?? { buf: Buffer.alloc(0), len: 0 };
          this.#prev = this.#last;
          this.#last = this.#cur;
          this.#cur = free;
          this.#inBlock = false;
          this.blocks++;
        }
      }
      cb(null, chunk);
    } catch (err: unknown) {
      cb(err as Error);
    }
  }

  override _flush(cb: TransformCallback): void {
    try {
      if (this.#inBlock || this.#headerLen > 0) throw new CompressedStreamError("the response ended in the middle of a compressed block");
      if (this.#last) {
        const parts = [this.#prev, this.#last].filter((b): b is HeldBlock => b !== undefined).map((b) => decompressBlock(b.buf.subarray(0, b.len)));
        const tail = Buffer.concat(parts);
        const err = trailingException(tail.subarray(Math.max(0, tail.length - 64 * 1024)), this.#exceptionTag);
        if (err) throw err;
      }
      cb();
    } catch (err: unknown) {
      cb(err as Error);
    }
  }
}
