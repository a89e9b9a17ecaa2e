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
import { compressedBlockChecksumOk } from "./cityhash.ts";
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

/** Literal runs and non-overlapping matches up to this length are copied byte by byte (a native copy costs more). */
const SHORT_COPY = 24;

/**
 * Decodes one LZ4 block (the raw block format, no frame) into exactly `size`
 * bytes: into `dst` when given and large enough (reused for the next block by
 * the caller), else into a new Buffer. Returns the `size` bytes decoded (dst
 * itself, or a view of it). Corrupt input throws CompressedStreamError; no
 * read or write goes outside src or the first `size` bytes of the output.
 */
export function lz4DecompressBlock(src: Buffer, size: number, dst?: Buffer): Buffer {
  const out = dst !== undefined && dst.length >= size ? dst : Buffer.allocUnsafe(size);
  const n = src.length;
  let s = 0;
  let d = 0;
  const fail = (why: string): never => {
    throw new CompressedStreamError(`corrupt LZ4 block: ${why}`);
  };
  while (s < n) {
    const token = src[s++]!;
    let lit = token >>> 4;
    if (lit === 15) {
      let b: number;
      do {
        if (s >= n) fail("literal length runs past the end");
        b = src[s++]!;
        lit += b;
      } while (b === 255);
    }
    if (lit > 0) {
      if (s + lit > n || d + lit > size) fail("literals run past the end");
      if (lit <= SHORT_COPY) {
        for (const e = s + lit; s < e; ) out[d++] = src[s++]!;
      } else {
        src.copy(out, d, s, s + lit);
        s += lit;
        d += lit;
      }
    }
    if (s >= n) break; // the last sequence has literals only
    if (s + 2 > n) fail("truncated match offset");
    const offset = src[s]! | (src[s + 1]! << 8);
    s += 2;
    if (offset === 0 || offset > d) fail("match offset out of range");
    let len = (token & 15) + 4;
    if ((token & 15) === 15) {
      let b: number;
      do {
        if (s >= n) fail("match length runs past the end");
        b = src[s++]!;
        len += b;
      } while (b === 255);
    }
    if (d + len > size) fail("match runs past the end");
    let m = d - offset;
    if (offset >= len) {
      // no overlap
      if (len <= SHORT_COPY) {
        for (const e = d + len; d < e; ) out[d++] = out[m++]!;
      } else {
        out.copyWithin(d, m, m + len);
        d += len;
      }
    } else if (offset === 1) {
      out.fill(out[m]!, d, d + len);
      d += len;
    } else if (len <= SHORT_COPY) {
      // a short overlapping run: byte by byte repeats the last `offset` bytes
      for (const e = d + len; d < e; ) out[d++] = out[m++]!;
    } else {
      // a long overlapping run with a period of `offset` bytes: copy in spans that double
      // (each span is a whole number of periods, so a copy never reads what it writes)
      let span = offset;
      while (len > 0) {
        const k = Math.min(span, len);
        out.copyWithin(d, d - span, d - span + k);
        d += k;
        len -= k;
        span *= 2;
      }
    }
  }
  if (d !== size) fail(`decoded ${d} bytes, header says ${size}`);
  return out.length === size ? out : out.subarray(0, size);
}

/** The data of one compressed block (checksum and header included). */
export function decompressBlock(block: Buffer): Buffer {
  return decompressBlockInto(block, undefined);
}

/** decompressBlock, decoding LZ4 into `dst` when it is large enough (see lz4DecompressBlock). */
export function decompressBlockInto(block: Buffer, dst: Buffer | undefined): Buffer {
  const method = block[CHECKSUM]!;
  const size = block.readUInt32LE(CHECKSUM + 5);
  const data = block.subarray(CHECKSUM + HEADER);
  switch (method) {
    case METHOD_NONE:
      if (data.length !== size) throw new CompressedStreamError(`stored block of ${data.length} bytes, header says ${size}`);
      return data;
    case METHOD_LZ4:
      return lz4DecompressBlock(data, size, dst);
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
 *
 * With `onDecoded`, every block is decoded as soon as it is complete and its
 * data handed to the callback (to walk the Native data inside, for example).
 * The buffer is reused for the next block: the callback must be done with it
 * when it returns. A corrupt block then fails the stream at once. An error
 * thrown by the callback is held until the end and the rest of the stream
 * passes without callbacks: an exception that the server appended after the
 * data reaches the callback as garbage, and the check at the end must get to
 * report the exception itself.
 */
export interface CompressedStreamCheckOptions {
  onDecoded?: ((data: Buffer) => void) | undefined;
  /**
   * Check every block's CityHash128 checksum (slow: for verify, which has no
   * server to do it; ClickHouse checks them itself on every INSERT).
   */
  verifyChecksums?: boolean | undefined;
}

/** How much output buffer is kept for decoding (ClickHouse blocks are at most max_compress_block_size, 1 MiB by default). */
const DECODE_STEP = 1024 * 1024;

export class CompressedStreamCheck extends Transform {
  readonly #exceptionTag: string | undefined;
  #header = Buffer.alloc(CHECKSUM + HEADER);
  #headerLen = 0;
  #inBlock = false;
  #remaining = 0; // bytes of the current block still to come
  #cur: HeldBlock = { buf: Buffer.alloc(0), len: 0 };
  #last: HeldBlock | undefined;
  #prev: HeldBlock | undefined; // the block before the last (an exception may straddle two)
  readonly #onDecoded: ((data: Buffer) => void) | undefined;
  #decoded: Buffer | undefined;
  #callbackError: unknown;
  #callbackFailed = false;
  decompressedBytes = 0;
  blocks = 0;

  constructor(exceptionTag: string | undefined, opts: CompressedStreamCheckOptions = {}) {
    super();
    this.#exceptionTag = exceptionTag;
    this.#onDecoded = opts.onDecoded;
    this.#verifyChecksums = opts.verifyChecksums === true;
  }

  readonly #verifyChecksums: boolean;

  /** Decodes the block just completed (`#last`) and hands it to the callback. */
  #decodeLast(): void {
    const b = this.#last!;
    const block = b.buf.subarray(0, b.len);
    const size = block.readUInt32LE(CHECKSUM + 5);
    if (block[CHECKSUM] === METHOD_LZ4 && (this.#decoded === undefined || this.#decoded.length < size)) {
      this.#decoded = Buffer.allocUnsafe(Math.ceil(Math.max(size, 1) / DECODE_STEP) * DECODE_STEP);
    }
    const data = decompressBlockInto(block, this.#decoded);
    if (this.#callbackFailed) return;
    try {
      this.#onDecoded!(data);
    } catch (err: unknown) {
      this.#callbackFailed = true;
      this.#callbackError = err;
    }
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
          if (this.#verifyChecksums && !compressedBlockChecksumOk(this.#last.buf.subarray(0, this.#last.len))) {
            throw new CompressedStreamError(`block ${this.blocks} (${this.#last.len} bytes) does not match its CityHash128 checksum: the data is corrupt`);
          }
          if (this.#onDecoded) this.#decodeLast();
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
      if (this.#callbackFailed) throw this.#callbackError;
      cb();
    } catch (err: unknown) {
      cb(err as Error);
    }
  }
}
