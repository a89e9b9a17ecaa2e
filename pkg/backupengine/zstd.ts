// Multi-frame zstd in parallel, for engines that compress their own streams.
//
// One zstd stream is single-threaded (Node's nbWorkers option crashes the
// stream on Node 24), which caps a dump at one core. Here the input is cut
// into independent frames of `frameBytes`, compressed on libuv's thread pool
// `parallel` at a time and written in order. Concatenated frames are a valid
// zstd stream (`zstd -d` reads it), but Node's streaming decompressor stops
// after the first frame, so reading uses ZstdFramesDecompress, which finds the
// frame boundaries from the frame format (RFC 8878) and decompresses frames in
// parallel too. Memory is bounded by about parallel × frameBytes × 2 per stream.
import { Transform, type TransformCallback } from "node:stream";
import { constants as zc, createZstdCompress, createZstdDecompress, type ZstdCompress, type ZstdDecompress, type ZstdOptions } from "node:zlib";
import { BufferPool, BufferPoolMisuseError } from "../storage/bufferpool.ts";

export const DEFAULT_FRAME_BYTES = 4 * 1024 * 1024;
export const DEFAULT_PARALLEL = 3;

export interface ZstdFramesOptions {
  level: number;
  frameBytes?: number;
  parallel?: number;
  /**
   * The pool the input chunks come from, if they do: the compressor is their
   * last reader and hands each back to it (pool.release) once it has copied
   * it into a frame or compressed it. Frame buffers come from this pool too
   * when its size is frameBytes, so a producer that fills whole frames from
   * it (the dump's HTTP reader) has them compressed without a copy.
   */
  pool?: BufferPool | undefined;
  /**
   * Compressed frames are written into blocks of this pool (see FrameSlot);
   * its size must be outputBlockBytes(frameBytes). Default: a pool of its own
   * (`outputPool` of the stream). The output chunks are the consumer's to
   * hand back with outputPool.release once it has copied them; chunks that
   * did not come from the pool (zlib's own, small frames) are ignored there.
   */
  outputPool?: BufferPool | undefined;
  /**
   * Compress straight into the output pool's blocks by pointing node:zlib's
   * private output buffer at them (see zlibOutputTarget). Default true; it is
   * used only when node:zlib looks as expected. false forces the public
   * path: frames come out of zlib's own buffers (more garbage, same bytes).
   */
  zlibOutputBlocks?: boolean | undefined;
}

/** Size of an output block: a frame's worst case (ZSTD_compressBound) with room to spare. */
export function outputBlockBytes(frameBytes: number): number {
  return frameBytes + Math.ceil(frameBytes / 128) + 64 * 1024;
}

/** Ordered queue of results computed concurrently, drained from the head. */
class OrderedWork<T = Buffer> {
  readonly #queue: Promise<T>[] = [];
  get size(): number {
    return this.#queue.length;
  }
  add(p: Promise<T>): void {
    // Keep a rejection from being reported as unhandled before it is awaited in order.
    p.catch(() => undefined);
    this.#queue.push(p);
  }
  async shift(): Promise<T> {
    const p = this.#queue.shift();
    if (!p) throw new Error("OrderedWork: empty");
    return p;
  }
}

/**
 * zlib's output state (node:zlib internals, unchanged since the first Node
 * releases): a write compresses into `_outBuffer` from `_outOffset`, pushes
 * views of what it wrote, and allocates a fresh `_chunkSize` buffer once the
 * current one is full.
 */
interface ZlibOutputState {
  _outBuffer: Buffer;
  _outOffset: number;
  _chunkSize: number;
}

/** Points a zlib stream's output at a block of our own: the only code that touches node:zlib's private fields. */
interface OutputTarget {
  /** The next write compresses into `block` from its start. */
  into(block: Buffer): void;
}

/**
 * The one feature check for node:zlib's private output state: a target if
 * the stream has the fields as expected (a Buffer `_outBuffer`, a number
 * `_outOffset`, `_chunkSize` as configured), else undefined, and the caller
 * takes the public path (zlib's own output buffers). Should node:zlib ever
 * honour the fields differently, nothing breaks either: output that is not
 * in the block is passed on as it is (see oneViewOf).
 */
function zlibOutputTarget(z: ZstdCompress | ZstdDecompress, chunkSize: number): OutputTarget | undefined {
  const s = z as unknown as Partial<ZlibOutputState>;
  if (!(Buffer.isBuffer(s._outBuffer) && typeof s._outOffset === "number" && s._chunkSize === chunkSize)) return undefined;
  const state = s as ZlibOutputState;
  return {
    into(block: Buffer): void {
      state._outBuffer = block;
      state._outOffset = 0;
    },
  };
}

/**
 * One long-lived zstd stream that works on one frame at a time: the frame is
 * written, then flushed. Compressing, the flush is ZSTD_e_end, which ends
 * the frame and leaves the context ready for an independent next one:
 * cheaper than a one-shot zstdCompress per frame, which sets up a new
 * context each time and copies its output into one buffer at the end
 * (measured on 483 MiB: main-thread time 20 ms instead of 40-80 ms, and
 * about 10% less CPU in all). Decompressing, a zstd stream reads
 * concatenated frames in turn; a stream per frame instead allocated a new
 * context with its ~4 MiB window for every frame, memory that malloc kept
 * after it was freed (a 1 GiB restore's RSS crept up by 20-30 MiB while its
 * live memory stayed flat).
 *
 * With an output pool, each frame's output goes into a block of that pool
 * (zlib's output buffer is pointed at it before the frame) and comes out as
 * one view of it (oneViewOf), which the last reader downstream hands back.
 * Left to itself, zlib allocates a new output buffer for every frame or two;
 * compressing, that garbage, about as much as the compressed data, made V8
 * run a full mark-compact every ~150 ms of a dump (26 in a 1 GiB backup,
 * with this 5, and about 7% less wall time on 2 cores).
 */
class FrameSlot {
  readonly #z: ZstdCompress | ZstdDecompress;
  readonly #flushKind: number | undefined;
  readonly #out: { pool: BufferPool; target: OutputTarget } | undefined;
  #used = false;
  #parts: Buffer[] = [];
  #reject: ((err: Error) => void) | undefined;
  #failed: Error | undefined;

  /**
   * `flushKind`: what ends a frame (ZSTD_e_end to compress; the stream's
   * default to decompress). Without `outPool` (or when node:zlib does not
   * pass the feature check) frames come out of zlib's own buffers.
   */
  constructor(z: ZstdCompress | ZstdDecompress, chunkSize: number, flushKind?: number, outPool?: BufferPool) {
    this.#z = z;
    this.#flushKind = flushKind;
    const target = outPool ? zlibOutputTarget(this.#z, chunkSize) : undefined;
    this.#out = outPool && target ? { pool: outPool, target } : undefined;
    this.#z.on("data", (b: Buffer) => this.#parts.push(b));
    this.#z.on("error", (err: Error) => {
      this.#failed = err;
      this.#reject?.(err);
    });
  }

  /** True if frames go into blocks of the output pool (the fast path). */
  get pooled(): boolean {
    return this.#out !== undefined;
  }

  /** The frame's output, as views of the output block or zstd's own buffers. The slot is busy until it settles. */
  run(frame: Buffer): Promise<Buffer[]> {
    return new Promise<Buffer[]>((resolve, reject) => {
      if (this.#failed) return reject(this.#failed);
      this.#reject = reject;
      this.#used = true;
      let block: Buffer | undefined;
      if (this.#out) {
        block = this.#out.pool.take();
        this.#out.target.into(block);
      }
      const done = () => {
        this.#reject = undefined;
        // (on an error the block is left to the garbage collector: zlib may still hold it)
        if (this.#failed) return reject(this.#failed);
        const parts = this.#parts;
        this.#parts = [];
        try {
          resolve(block ? oneViewOf(block, parts, this.#out!.pool) : parts);
        } catch (err: unknown) {
          reject(err as Error); // a debug pool found the block released already
        }
      };
      this.#z.write(frame);
      if (this.#flushKind === undefined) this.#z.flush(done);
      else this.#z.flush(this.#flushKind, done);
    });
  }

  /** Ends the stream: rejects if it stopped inside a frame, or produced data no frame was waited for. */
  end(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (this.#failed) return reject(this.#failed);
      if (!this.#used) {
        // (zlib calls the end of a decompression that never had input "unexpected end of file")
        this.#z.destroy();
        return resolve();
      }
      this.#reject = reject;
      this.#z.once("end", () => {
        this.#reject = undefined;
        if (this.#parts.length > 0) reject(new ZstdFormatError("data after the last frame"));
        else resolve();
      });
      this.#z.end();
    });
  }

  destroy(): void {
    this.#z.destroy();
  }
}

/**
 * Frames that compress below this are copied out of their output block,
 * which goes straight back to the pool: stream buffers hold back by bytes
 * (64 KiB in Node 24), so thousands of tiny frames of very compressible data could
 * otherwise be queued, each holding a whole block.
 */
export const SMALL_FRAME_BYTES = 64 * 1024;

/**
 * The frame's output with at most one view of `block` (taken from `pool`):
 * its last reader hands the whole block back, so a second view of it would
 * be overwritten by a later frame while still queued. zlib writes a frame's
 * output contiguously from the start of the block (and spills into buffers
 * of its own only if the block fills up); small frames and any other
 * layout are copied out, and the block goes straight back to `pool`.
 */
export function oneViewOf(block: Buffer, parts: Buffer[], pool: BufferPool): Buffer[] {
  if (!parts.some((p) => p.buffer === block.buffer)) {
    pool.release(block);
    return parts;
  }
  let n = 0;
  let end = block.byteOffset;
  while (n < parts.length && parts[n]!.buffer === block.buffer && parts[n]!.byteOffset === end) {
    end += parts[n]!.length;
    n++;
  }
  const total = parts.reduce((a, p) => a + p.length, 0);
  if (n > 0 && total >= SMALL_FRAME_BYTES && !parts.slice(n).some((p) => p.buffer === block.buffer)) {
    return [block.subarray(0, end - block.byteOffset), ...parts.slice(n)];
  }
  const copy = Buffer.concat(parts, total);
  pool.release(block);
  return [copy];
}

export class ZstdFramesCompress extends Transform {
  /** The pool of the output blocks (given or its own): the consumer hands output chunks back with outputPool.release. */
  readonly outputPool: BufferPool;
  readonly #frameBytes: number;
  readonly #parallel: number;
  /** Where the input chunks come from, if given: handed back there once read. */
  readonly #inPool: BufferPool | undefined;
  /** Frame buffers: the input pool when its blocks are frames, else one of its own. */
  readonly #pool: BufferPool;
  readonly #slots: FrameSlot[];
  readonly #work = new OrderedWork<Buffer[]>();
  #buf: Buffer | undefined;
  #len = 0;
  #frames = 0;

  constructor(opts: ZstdFramesOptions) {
    super();
    this.#frameBytes = opts.frameBytes ?? DEFAULT_FRAME_BYTES;
    this.#parallel = Math.max(1, opts.parallel ?? DEFAULT_PARALLEL);
    // zlib's output buffer is a whole output block (a frame fits, in one main-thread callback or two).
    const outBytes = outputBlockBytes(this.#frameBytes);
    const zopts: ZstdOptions = { chunkSize: outBytes, params: { [zc.ZSTD_c_compressionLevel]: opts.level, [zc.ZSTD_c_checksumFlag]: 1 } };
    if (opts.outputPool && opts.outputPool.size !== outBytes) throw new RangeError(`ZstdFramesCompress: outputPool blocks must be ${outBytes} bytes`);
    // Blocks in use: `parallel` being compressed and a few queued downstream until the upload has copied them.
    this.outputPool = opts.outputPool ?? new BufferPool(outBytes, this.#parallel + 4);
    const outPool = opts.zlibOutputBlocks === false ? undefined : this.outputPool;
    this.#slots = Array.from({ length: this.#parallel }, () => new FrameSlot(createZstdCompress(zopts), outBytes, zc.ZSTD_e_end, outPool));
    // Frame buffers are reused once zstd is done with them: fresh 4 MiB
    // buffers cost page faults on first touch and full GCs.
    this.#inPool = opts.pool;
    this.#pool = opts.pool?.size === this.#frameBytes ? opts.pool : new BufferPool(this.#frameBytes, this.#parallel + 1);
  }

  /** True if frames are compressed straight into output pool blocks (node:zlib passed the feature check and it was not turned off). */
  get zlibOutputBlocks(): boolean {
    return this.#slots[0]!.pooled;
  }

  /** Compresses `frame`; `holder` (the frame or the buffer it is a view of) is handed back to `pool` afterwards. */
  #submit(frame: Buffer, holder: Buffer, pool: BufferPool | undefined): void {
    // Frame n goes to slot n % parallel: at most `parallel` frames are in
    // flight and they are drained in order, so that slot is free again.
    const p = this.#slots[this.#frames % this.#parallel]!.run(frame);
    // The holder goes back as soon as zstd is done with it; should that fail (a debug pool
    // that finds it released twice), the stream fails when the frame's turn comes.
    this.#work.add(p.finally(() => pool?.release(holder)));
    this.#frames++;
  }

  async #drain(max: number): Promise<void> {
    while (this.#work.size > max) for (const part of await this.#work.shift()) this.push(part);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    void (async () => {
      if (this.#len === 0 && chunk.length === this.#frameBytes) {
        // A whole frame (a producer filling blocks of the same pool): compressed as it is, no copy.
        await this.#drain(this.#parallel - 1);
        if (this.destroyed) return this.#inPool?.release(chunk); // never read
        this.#submit(chunk, chunk, this.#inPool);
        return;
      }
      let off = 0;
      while (off < chunk.length) {
        const buf = (this.#buf ??= this.#pool.take());
        const n = Math.min(chunk.length - off, this.#frameBytes - this.#len);
        chunk.copy(buf, this.#len, off, off + n);
        this.#len += n;
        off += n;
        if (this.#len === this.#frameBytes) {
          // Backpressure: never more than `parallel` frames in flight.
          await this.#drain(this.#parallel - 1);
          if (this.destroyed) break; // _destroy handed `buf` back: not to be read again
          this.#submit(buf, buf, this.#pool);
          this.#buf = undefined;
          this.#len = 0;
        }
      }
      // Its bytes are copied: the last reader of a pooled block hands it back.
      this.#inPool?.release(chunk);
    })().then(() => cb(), (err: unknown) => cb(err as Error));
  }

  override _flush(cb: TransformCallback): void {
    void (async () => {
      // An empty input still gets one (empty) frame, so every object is a valid zstd stream.
      if (this.#len > 0 || this.#frames === 0) {
        await this.#drain(this.#parallel - 1);
        if (this.destroyed) return;
        const buf = this.#buf ?? this.#pool.take();
        this.#submit(buf.subarray(0, this.#len), buf, this.#pool);
        this.#buf = undefined;
        this.#len = 0;
      }
      await this.#drain(0);
      for (const s of this.#slots) s.destroy();
    })().then(() => cb(), (err: unknown) => cb(err as Error));
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    for (const s of this.#slots) s.destroy();
    if (this.#buf) this.#pool.release(this.#buf);
    this.#buf = undefined;
    cb(err);
  }
}

const FRAME_MAGIC = 0xfd2fb528;

export class ZstdFormatError extends Error {
  constructor(message: string) {
    super(`zstd data is corrupt: ${message}`);
    this.name = "ZstdFormatError";
  }
}

/** Bytes received but not yet consumed, as a list of chunks; random reads without copying. */
class ByteQueue {
  #chunks: Buffer[] = [];
  #length = 0;
  // read cursor cache: chunk index and the absolute offset where it starts
  #ci = 0;
  #cstart = 0;

  get length(): number {
    return this.#length;
  }

  push(b: Buffer): void {
    if (b.length) {
      this.#chunks.push(b);
      this.#length += b.length;
    }
  }

  byte(i: number): number {
    if (i < this.#cstart) {
      this.#ci = 0;
      this.#cstart = 0;
    }
    while (i >= this.#cstart + this.#chunks[this.#ci]!.length) {
      this.#cstart += this.#chunks[this.#ci]!.length;
      this.#ci++;
    }
    return this.#chunks[this.#ci]![i - this.#cstart]!;
  }

  u32(i: number): number {
    return (this.byte(i) | (this.byte(i + 1) << 8) | (this.byte(i + 2) << 16) | (this.byte(i + 3) << 24)) >>> 0;
  }

  /**
   * Removes and returns the first n bytes as one Buffer (one copy at most):
   * a view of a chunk when they are all in one, else a copy, into `into`
   * (from its start) when it is given and large enough.
   */
  take(n: number, into?: Buffer, release?: (chunk: Uint8Array) => void): Buffer {
    const parts: Buffer[] = [];
    /** Chunks whose last byte this take consumes. */
    const done: Buffer[] = [];
    let need = n;
    while (need > 0) {
      const c = this.#chunks[0]!;
      if (c.length <= need) {
        parts.push(c);
        done.push(c);
        this.#chunks.shift();
        need -= c.length;
      } else {
        parts.push(c.subarray(0, need));
        this.#chunks[0] = c.subarray(need);
        need = 0;
      }
    }
    this.#length -= n;
    this.#ci = 0;
    this.#cstart = 0;
    let out: Buffer;
    if (parts.length === 1 && !release) out = parts[0]!;
    else if (!into || into.length < n) out = Buffer.concat(parts, n);
    else {
      let at = 0;
      for (const p of parts) at += p.copy(into, at);
      out = into.subarray(0, n);
    }
    // copied: the chunks' producer may have them back (a chunk is a view of its own block)
    if (release) for (const c of done) release(c);
    return out;
  }
}

/**
 * Incremental scanner of zstd frame boundaries (RFC 8878 frame and block
 * headers). State is kept between calls, so each byte is looked at once
 * however the frame arrives.
 */
export class ZstdFrameScanner {
  #pos = 0; // next unread structure, relative to the frame start
  #stage: "header" | "blocks" = "header";
  #checksum = false;

  /** Length of the complete frame at the start of `q`, or undefined if more bytes are needed. */
  scan(q: { length: number; byte(i: number): number; u32(i: number): number }, maxFrame: number): number | undefined {
    if (this.#stage === "header") {
      if (q.length < 4) return undefined;
      const magic = q.u32(0);
      if ((magic & 0xfffffff0) >>> 0 === 0x184d2a50) {
        if (q.length < 8) return undefined;
        const len = 8 + q.u32(4);
        if (len > maxFrame) throw new ZstdFormatError(`skippable frame of ${len} bytes`);
        return q.length >= len ? this.#done(len) : undefined;
      }
      if (magic !== FRAME_MAGIC) throw new ZstdFormatError(`bad frame magic 0x${magic.toString(16)}`);
      if (q.length < 5) return undefined;
      const fhd = q.byte(4);
      const fcsFlag = fhd >> 6;
      const single = (fhd >> 5) & 1;
      if ((fhd >> 3) & 1) throw new ZstdFormatError("reserved bit set in frame header");
      this.#checksum = ((fhd >> 2) & 1) === 1;
      const didBytes = [0, 1, 2, 4][fhd & 3]!;
      const fcsBytes = fcsFlag === 0 ? single : [0, 2, 4, 8][fcsFlag]!;
      this.#pos = 5 + (single ? 0 : 1) + didBytes + fcsBytes;
      this.#stage = "blocks";
    }
    for (;;) {
      if (this.#pos > maxFrame) throw new ZstdFormatError(`frame larger than ${maxFrame} bytes`);
      if (q.length < this.#pos + 3) return undefined;
      const h = q.byte(this.#pos) | (q.byte(this.#pos + 1) << 8) | (q.byte(this.#pos + 2) << 16);
      const last = h & 1;
      const type = (h >> 1) & 3;
      const size = h >>> 3;
      if (type === 3) throw new ZstdFormatError("reserved block type");
      const body = type === 1 ? 1 : size;
      if (this.#pos + 3 + body > maxFrame) throw new ZstdFormatError(`frame larger than ${maxFrame} bytes`);
      if (last) {
        const end = this.#pos + 3 + body + (this.#checksum ? 4 : 0);
        return q.length >= end ? this.#done(end) : undefined;
      }
      if (q.length < this.#pos + 3 + body) return undefined;
      this.#pos += 3 + body;
    }
  }

  #done(len: number): number {
    this.#pos = 0;
    this.#stage = "header";
    this.#checksum = false;
    return len;
  }
}

export interface ZstdFramesDecompressOptions {
  parallel?: number;
  /**
   * The writer's frame size, if known: output buffers are made a little
   * larger, so that a frame usually decompresses into one. Default
   * DEFAULT_FRAME_BYTES; larger frames work too, in several buffers.
   */
  frameBytes?: number | undefined;
  /** Largest compressed frame accepted (guards memory against corrupt input). */
  maxFrameBytes?: number;
  /**
   * Decompress frames into blocks of a pool (node:zlib's private output
   * buffer pointed at them, as ZstdFramesCompress does): the output chunks
   * are then the consumer's to hand back with `outputRelease` once it has
   * written them. Without it (or when node:zlib does not pass the feature
   * check), frames come out of zlib's own buffers, and releasing them is a
   * no-op. Tests: `poisonOnRelease` poisons the pool's released blocks.
   */
  outputPool?: boolean | { poisonOnRelease?: boolean | undefined } | undefined;
  /**
   * With an output pool: a decompressed frame goes down the pipeline as
   * views of at most this many bytes (default 512 KiB), and its block goes
   * back to the pool once every view has been handed back. Every stage of a
   * pipeline holds about one chunk, so smaller chunks keep fewer blocks out.
   */
  viewBytes?: number | undefined;
  /**
   * The input's chunks come from a pool (a decryption's output blocks): each
   * is handed back through this once its bytes have been copied into a
   * frame. Frames are then always copied, never decompressed in place.
   */
  inputRelease?: ((chunk: Uint8Array) => void) | undefined;
}

export class ZstdFramesDecompress extends Transform {
  readonly #parallel: number;
  readonly #maxFrame: number;
  readonly #outBytes: number;
  readonly #scanner = new ZstdFrameScanner();
  readonly #work = new OrderedWork<Buffer[]>();
  readonly #queue = new ByteQueue();
  readonly #outPool: BufferPool | undefined;
  /** Frames that arrive in several chunks are put together in these. */
  readonly #inPool: BufferPool;
  readonly #slots: FrameSlot[];
  #frames = 0;
  #dataFrames = 0;
  readonly #viewBytes: number;
  /** The views of each block that went out and are not back yet, by their offset. */
  readonly #outstanding = new Map<ArrayBufferLike, Set<number>>();
  readonly #inputRelease: ((chunk: Uint8Array) => void) | undefined;
  /**
   * Hands an output chunk back (once the consumer has written it): a block
   * goes back to the output pool once all its views are back. A no-op for
   * chunks that did not come from the pool, or without a pool.
   */
  readonly outputRelease: (chunk: Uint8Array) => void;

  constructor(opts: ZstdFramesDecompressOptions = {}) {
    super();
    this.#parallel = Math.max(1, opts.parallel ?? DEFAULT_PARALLEL);
    this.#maxFrame = opts.maxFrameBytes ?? 64 * 1024 * 1024;
    // (zlib starts a new output buffer when one is exactly full: the slack avoids a spare one per frame)
    this.#outBytes = Math.max(64 * 1024, opts.frameBytes ?? DEFAULT_FRAME_BYTES) + 64 * 1024;
    // Blocks in use: `parallel` being decompressed, and a few queued downstream until the socket has written them.
    const po = opts.outputPool;
    this.#outPool = po ? new BufferPool(this.#outBytes, this.#parallel + 6, { poisonOnRelease: typeof po === "object" && po.poisonOnRelease === true }) : undefined;
    this.#viewBytes = Math.max(4096, opts.viewBytes ?? 512 * 1024);
    this.#inputRelease = opts.inputRelease;
    this.outputRelease = this.#outPool ? (c) => this.#releaseView(c) : () => undefined;
    this.#slots = Array.from({ length: this.#parallel }, () => new FrameSlot(createZstdDecompress({ chunkSize: this.#outBytes }), this.#outBytes, undefined, this.#outPool));
    // (a frame's worst case; the pages of a block that smaller frames never touch are never resident)
    this.#inPool = new BufferPool(outputBlockBytes(opts.frameBytes ?? DEFAULT_FRAME_BYTES), this.#parallel + 1);
  }

  /** True if frames are decompressed straight into output pool blocks (a pool was asked for and node:zlib passed the feature check). */
  get zlibOutputBlocks(): boolean {
    return this.#slots[0]!.pooled;
  }

  /** Buffers the output pool allocated so far (0 without one): tests and diagnostics. */
  get outputBlocksAllocated(): number {
    return this.#outPool?.allocated ?? 0;
  }

  async #drain(max: number): Promise<void> {
    while (this.#work.size > max) for (const part of await this.#work.shift()) this.#pushPart(part);
  }

  /** A decompressed part: a pooled block goes out as views of at most viewBytes, counted until they are all back. */
  #pushPart(part: Buffer): void {
    const pool = this.#outPool;
    if (!pool || part.length <= this.#viewBytes || !pool.owns(part)) {
      this.push(part);
      return;
    }
    const views: Buffer[] = [];
    const offsets = new Set<number>();
    for (let o = 0; o < part.length; o += this.#viewBytes) {
      const v = part.subarray(o, o + this.#viewBytes);
      views.push(v);
      offsets.add(v.byteOffset);
    }
    this.#outstanding.set(part.buffer, offsets);
    for (const v of views) this.push(v);
  }

  #releaseView(c: Uint8Array): void {
    const offsets = this.#outstanding.get(c.buffer);
    if (!offsets) {
      this.#outPool!.release(c); // a block that went out whole (or not the pool's: a no-op)
      return;
    }
    if (!offsets.delete(c.byteOffset)) {
      if (this.#outPool!.poisoned) throw new BufferPoolMisuseError("ZstdFramesDecompress: a view was handed back twice, or is not one that went out");
      return;
    }
    if (offsets.size > 0) return;
    this.#outstanding.delete(c.buffer);
    this.#outPool!.release(c);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    if (chunk.length === 0) {
      this.#inputRelease?.(chunk);
      cb();
      return;
    }
    this.#queue.push(chunk);
    void (async () => {
      for (;;) {
        const n = this.#scanner.scan(this.#queue, this.#maxFrame);
        if (n === undefined) return;
        // Backpressure: never more than `parallel` frames in flight; frame n goes to slot n % parallel, which is free again.
        await this.#drain(this.#parallel - 1);
        // A frame in several chunks is copied into a pooled buffer, handed back once zstd is done with it.
        const buf = n <= this.#inPool.size ? this.#inPool.take() : undefined;
        const frame = this.#queue.take(n, buf, this.#inputRelease);
        // (a frame in one chunk is that chunk, and a larger one a copy of its own)
        const held = buf && frame.buffer === buf.buffer ? buf : undefined;
        if (buf && !held) this.#inPool.release(buf);
        if (frame.readUInt32LE(0) === FRAME_MAGIC) {
          const p = this.#slots[this.#dataFrames++ % this.#parallel]!.run(frame);
          this.#work.add(held ? p.finally(() => this.#inPool.release(held)) : p);
        } else if (held) this.#inPool.release(held);
        this.#frames++;
      }
    })().then(() => cb(), (err: unknown) => cb(err as Error));
  }

  override _flush(cb: TransformCallback): void {
    void (async () => {
      if (this.#queue.length > 0) throw new ZstdFormatError(`${this.#queue.length} bytes of an incomplete frame at the end`);
      if (this.#frames === 0) throw new ZstdFormatError("no frame");
      await this.#drain(0);
      // a stream that still waits for the rest of a frame fails here ("unexpected end of file")
      for (const s of this.#slots) await s.end();
    })().then(() => cb(), (err: unknown) => cb(err as Error));
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    for (const s of this.#slots) s.destroy();
    cb(err);
  }
}
