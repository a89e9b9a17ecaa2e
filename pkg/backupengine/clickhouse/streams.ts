// Stream pieces of the dump method: byte counting, detection of an exception
// that ClickHouse wrote into a response body that had already started (it
// cannot change the HTTP status by then), and a small worker pool.
import { Transform, type TransformCallback } from "node:stream";
import { createZstdDecompress } from "node:zlib";
import { extractErrorAtTheEndOfChunk } from "@clickhouse/client";
import { ZstdFramesDecompress } from "../zstd.ts";
import type { DumpDetails, DumpTable } from "./details.ts";

/** Counts bytes passing through. */
export class ByteCounter extends Transform {
  bytes = 0;
  readonly #onBytes: ((delta: number) => void) | undefined;
  constructor(onBytes?: (delta: number) => void) {
    super();
    this.#onBytes = onBytes;
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length;
    this.#onBytes?.(chunk.length);
    cb(null, chunk);
  }
}

/** How much of the end of a response is held back to look for an exception. */
export const TRAILER_WINDOW = 64 * 1024;

// 18.x-19.x: "Code: 395, e.displayText() = DB::Exception: ..., e.what() = DB::Exception\n"
const OLD_TRAILER = /Code: \d+, e\.displayText\(\) = [\s\S]*, e\.what\(\) = [\w:]+\n?$/;
// 20.x-25.x: "Code: 395. DB::Exception: .... (TYPE) (version 23.8.1.1)\n"
const NEW_TRAILER = /Code: \d+\. DB::Exception: [\s\S]*\(version [^)\n]*\)\n?$/;

/**
 * Finds an exception that ClickHouse appended to a streamed response after
 * the data had started. Servers from 25.11 announce a random tag in the
 * X-ClickHouse-Exception-Tag header and frame the exception with it (exact);
 * older ones append the exception text, which is recognised by its exact
 * shape at the very end of the stream.
 */
export function trailingException(tail: Buffer, exceptionTag: string | undefined): Error | undefined {
  if (exceptionTag) {
    const marker = Buffer.from(`${exceptionTag}\r\n__exception__\r\n`);
    if (tail.length >= marker.length && tail.subarray(tail.length - marker.length).equals(marker)) {
      return extractErrorAtTheEndOfChunk(tail, exceptionTag);
    }
    return undefined;
  }
  const text = tail.toString("latin1");
  const at = text.lastIndexOf("Code: ");
  if (at < 0) return undefined;
  // scan back over earlier "Code: " occurrences (nested exception texts)
  for (let from = at; from >= 0; from = text.lastIndexOf("Code: ", from - 1)) {
    const candidate = text.slice(from);
    if (OLD_TRAILER.test(candidate) || NEW_TRAILER.test(candidate)) {
      return new Error(Buffer.from(candidate, "latin1").toString("utf8").trim());
    }
    if (from === 0) break;
  }
  return undefined;
}

/** Size of the blocks passed on: HTTP responses arrive in chunks of a few KB, and zstd works much faster on large blocks. */
export const BLOCK_SIZE = 1024 * 1024;

/**
 * Passes data through, holding back the last TRAILER_WINDOW bytes (and at
 * most one more chunk) until the end; fails the stream instead of passing an
 * exception text on as data. Chunks are passed on as they came, without
 * copying (the framed zstd compressor gathers them into frames itself).
 * The chunks held back to the end are copied into one, and handed to
 * `release` (the producer's pool), as they were never passed on.
 */
export class TrailingExceptionCheck extends Transform {
  #bufs: Buffer[] = [];
  #len = 0;
  readonly #tag: string | undefined;
  readonly #release: ((chunk: Uint8Array) => void) | undefined;
  constructor(exceptionTag: string | undefined, release?: (chunk: Uint8Array) => void) {
    super();
    this.#tag = exceptionTag;
    this.#release = release;
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.#bufs.push(chunk);
    this.#len += chunk.length;
    // Release whole chunks from the front while what stays covers the window.
    let i = 0;
    let len = this.#len;
    while (i < this.#bufs.length && len - this.#bufs[i]!.length >= TRAILER_WINDOW) {
      len -= this.#bufs[i]!.length;
      this.push(this.#bufs[i]);
      i++;
    }
    if (i > 0) {
      this.#bufs = this.#bufs.slice(i);
      this.#len = len;
    }
    cb();
  }
  override _flush(cb: TransformCallback): void {
    const all = Buffer.concat(this.#bufs, this.#len);
    // copied: the held chunks (never passed on) go back to their pool, if they came from one
    try {
      if (this.#release) for (const b of this.#bufs) this.#release(b);
    } catch (err: unknown) {
      return cb(err as Error); // a debug pool found a misuse
    }
    this.#bufs = [];
    const err = trailingException(all.subarray(Math.max(0, all.length - TRAILER_WINDOW)), this.#tag);
    if (err) return cb(err);
    cb(null, all.length > 0 ? all : undefined);
  }
}

/**
 * Remembers which part of a stream pipeline failed first. When one stage
 * fails, pipeline() destroys all the others with the same error, so only the
 * first failure says where the problem is (the database, the storage, or the
 * engine itself).
 */
export class FailureTracker<Origin extends string> {
  first: { origin: Origin; err: unknown } | undefined;
  note(origin: Origin, err: unknown): void {
    this.first ??= { origin, err };
  }
  watch(origin: Origin, ...streams: NodeJS.EventEmitter[]): void {
    for (const s of streams) s.once("error", (err: unknown) => this.note(origin, err));
  }
}


/** No data moved through a stream for longer than the idle timeout; says which side stopped. */
export class StallError extends Error {
  readonly retryable = true;
  /** The side that stopped: the one that sends the data ("upstream") or the one that takes it ("downstream"). */
  readonly stalled: string;
  constructor(stalled: string, idleMs: number, what: string) {
    super(`${stalled} stalled: no data moved for ${Number((idleMs / 1000).toFixed(1))} s while ${what}`);
    this.name = "StallError";
    this.stalled = stalled;
  }
}

/**
 * A pass-through that fails the pipeline when nothing moves for `idleMs`.
 * Placed between the side that produces data and the side that consumes
 * it, it can tell which one stopped: if the consumer asked for more since
 * the last chunk came in, the producer is named; if it did not (or all the
 * input is in and the consumer has not taken it), the consumer is named.
 * Backpressure passes through it as through any Transform.
 */
export class IdleWatch extends Transform {
  readonly #idleMs: number;
  readonly #names: { upstream: string; downstream: string; what: string };
  #last = Date.now();
  #consumerWaiting = false;
  #timer: NodeJS.Timeout | undefined;

  constructor(idleMs: number, names: { upstream: string; downstream: string; what: string }) {
    super();
    this.#idleMs = idleMs;
    this.#names = names;
    if (idleMs > 0) {
      this.#timer = setInterval(() => this.#check(), Math.max(50, Math.min(1000, idleMs / 4)));
      this.#timer.unref();
    }
    const stop = () => {
      if (this.#timer) clearInterval(this.#timer);
      this.#timer = undefined;
    };
    // watched until the consumer has read everything (or the stream is destroyed)
    this.once("close", stop);
    this.once("end", stop);
  }

  #check(): void {
    if (Date.now() - this.#last < this.#idleMs) return;
    const producerStopped = this.#consumerWaiting && !this.writableEnded;
    const side = producerStopped ? this.#names.upstream : this.#names.downstream;
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    this.destroy(new StallError(side, this.#idleMs, this.#names.what));
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.#last = Date.now();
    this.#consumerWaiting = false;
    cb(null, chunk);
  }

  override _read(size: number): void {
    // the consumer asked for more: progress on its side
    this.#last = Date.now();
    this.#consumerWaiting = true;
    super._read(size);
  }
}

/**
 * The decompressor of a table's zstd object, for restore and verify: our
 * own multi-frame objects (the backup records frameBytes, and the table was
 * not stored in another codec) are decompressed into pooled blocks, with
 * `release` handing each output chunk back once the consumer is done with it;
 * anything else is one zstd stream (release undefined). `inputRelease`: the
 * source's chunks are pooled (a decryption's) and go back once copied.
 */
export function dumpZstdDecompressor(
  details: Pick<DumpDetails, "compression">,
  table: Pick<DumpTable, "codec">,
  opts: { poison?: boolean | undefined; inputRelease?: ((chunk: Uint8Array) => void) | undefined } = {},
): { stream: Transform; release: ((chunk: Uint8Array) => void) | undefined } {
  const frameBytes = details.compression.frameBytes;
  if (frameBytes === undefined || table.codec) return { stream: createZstdDecompress(), release: undefined };
  const d = new ZstdFramesDecompress({ frameBytes, outputPool: { poisonOnRelease: opts.poison === true }, inputRelease: opts.inputRelease });
  return { stream: d, release: d.outputRelease };
}
