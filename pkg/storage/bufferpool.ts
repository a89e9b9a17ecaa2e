// Reusable data buffers for a stream pipeline, with explicit ownership.
//
// Why: a dump moves hundreds of MB/s through the runner. Allocating a fresh
// 1-4 MiB Buffer for every block costs page faults on first touch and, worse,
// makes V8 run a full mark-compact every few dozen MB of ArrayBuffer churn
// (measured: 15 full GCs for a 233 MiB upload fed fresh 1 MiB buffers, 2 when
// the same buffers were reused). A producer takes its blocks from a pool; the
// one stage that reads a block's bytes last - after copying them elsewhere,
// or once zstd is done with them - hands the block back with pool.release().
//
// Ownership is explicit: there is no process-wide registry. Each pool knows
// only its own buffers, and a stage can hand a block back only if it was
// given the pool (or a releaser bound to it, e.g. PutOptions.release) by
// whoever set up the pipeline. A stage that was given nothing cannot release
// anything; a pooled block that is never released is simply garbage
// collected, so a stage that does not know about pools stays correct.
//
// The rule that makes reuse safe: release a block only when nothing can
// still read it (its bytes were copied, and no stage before kept a view of
// it). A stage that breaks it would let the producer overwrite bytes that
// are then hashed and uploaded with a matching SHA-256. Tests turn on
// `poisonOnRelease`: a released block is overwritten at once with a marker
// pattern (so a late reader sees garbage however the timing goes, and a
// round trip fails), a block released twice throws, and a block taken again
// must still hold the pattern (a late writer is caught).

export interface BufferPoolOptions {
  /**
   * Debug mode for tests: overwrite a released buffer with POISON_PATTERN at
   * once, throw BufferPoolMisuseError on a second release of a buffer that is
   * not out, and check on take() that a free buffer was not written to after
   * its release. Costs a fill and a compare per buffer; never in production.
   */
  poisonOnRelease?: boolean | undefined;
}

/** What a poisoned pool writes into a released buffer (repeated): "RELEASED" with a non-ASCII byte, easy to spot in a dump. */
export const POISON_PATTERN: Readonly<Buffer> = Buffer.from("\xdeRELEASED\xad", "latin1");

/** A pooled buffer was released twice, or written to after its release (poisonOnRelease only). */
export class BufferPoolMisuseError extends Error {
  override name = "BufferPoolMisuseError";
}

interface Entry {
  buf: Buffer;
  out: boolean;
}

export class BufferPool {
  /** Size of every buffer of the pool. */
  readonly size: number;
  readonly #maxFree: number;
  readonly #free: Buffer[] = [];
  /** This pool's buffers (taken or free), by their memory. */
  readonly #entries = new WeakMap<ArrayBufferLike, Entry>();
  readonly #poison: Buffer | undefined;
  /** Buffers allocated so far (for tests and diagnostics). */
  allocated = 0;
  /** Buffers handed back so far (for tests and diagnostics). */
  released = 0;
  /**
   * Hands a buffer of this pool back (see release); a function of its own,
   * to give to a consumer (PutOptions.release) without giving it the pool.
   */
  readonly release: (b: Uint8Array) => void;

  /** `maxFree`: how many returned buffers are kept for reuse; more are left to the garbage collector. */
  constructor(size: number, maxFree: number, opts: BufferPoolOptions = {}) {
    if (!Number.isSafeInteger(size) || size <= 0) throw new RangeError(`BufferPool: bad size ${size}`);
    this.size = size;
    this.#maxFree = Math.max(0, maxFree);
    if (opts.poisonOnRelease) {
      this.#poison = Buffer.allocUnsafeSlow(size);
      this.#poison.fill(POISON_PATTERN);
    }
    this.release = (b) => this.#release(b);
  }

  /** True if this pool poisons released buffers (a debug pool). */
  get poisoned(): boolean {
    return this.#poison !== undefined;
  }

  /** A free buffer of `size` bytes (contents undefined), reused when one was handed back. */
  take(): Buffer {
    const b = this.#free.pop();
    if (b) {
      const e = this.#entries.get(b.buffer)!;
      if (this.#poison) {
        if (e.out) throw new BufferPoolMisuseError("BufferPool: a buffer in the free list is still out (released twice?)");
        if (!b.equals(this.#poison)) throw new BufferPoolMisuseError("BufferPool: a buffer was written to after it was released");
      }
      e.out = true;
      return b;
    }
    // Its own ArrayBuffer (never a slice of Node's shared pool), so it can be recognised on release.
    const buf = Buffer.allocUnsafeSlow(this.size);
    this.#entries.set(buf.buffer, { buf, out: true });
    this.allocated++;
    return buf;
  }

  /** True if `b` is (a view of) a buffer taken from this pool and not handed back yet. */
  owns(b: Uint8Array): boolean {
    return this.#entries.get(b.buffer)?.out === true;
  }

  /**
   * Hands a buffer of this pool (or any view of it) back. A no-op for
   * buffers that did not come from this pool. The caller must be the last
   * reader of the buffer's bytes. A second release of the same buffer is
   * ignored (with poisonOnRelease it throws BufferPoolMisuseError).
   */
  #release(b: Uint8Array): void {
    const e = this.#entries.get(b.buffer);
    if (!e) return;
    if (!e.out) {
      if (this.#poison) throw new BufferPoolMisuseError("BufferPool: a buffer was released twice");
      return; // keep one copy in the free list
    }
    e.out = false;
    this.released++;
    if (this.#poison) this.#poison.copy(e.buf);
    if (this.#free.length < this.#maxFree) this.#free.push(e.buf);
    else if (!this.#poison) this.#entries.delete(e.buf.buffer);
    // (a poisoned pool remembers buffers it drops, so that a late second release still throws)
  }
}

const CHUNK_RELEASE = Symbol("chbackup.chunkRelease");

/**
 * Marks a readable whose chunks are pooled (a decryption's output): its
 * consumer hands each chunk back with `release` once it has copied or written
 * it. Stages that pass chunks on unchanged may sit between the two; a
 * consumer that does not look for it lets the chunks go to the garbage
 * collector, which is correct too.
 */
export function withChunkRelease<T extends object>(stream: T, release: (chunk: Uint8Array) => void): T {
  Object.defineProperty(stream, CHUNK_RELEASE, { value: release });
  return stream;
}

/** The release function of a stream marked with withChunkRelease, if it is one. */
export function chunkReleaseOf(stream: object): ((chunk: Uint8Array) => void) | undefined {
  const r: unknown = (stream as Record<symbol, unknown>)[CHUNK_RELEASE];
  return typeof r === "function" ? (r as (chunk: Uint8Array) => void) : undefined;
}
