// Reusable data buffers for a stream pipeline.
//
// Why: a dump moves hundreds of MB/s through the runner. Allocating a fresh
// 1-4 MiB Buffer for every block costs page faults on first touch and, worse,
// makes V8 run a full mark-compact every few dozen MB of ArrayBuffer churn
// (measured: 15 full GCs for a 233 MiB upload fed fresh 1 MiB buffers, 2 when
// the same buffers were reused). A producer takes its blocks from a pool; the
// stage that reads a block's bytes last - after copying them elsewhere, or
// once zstd is done with them - hands the block back with releaseBuffer().
//
// The rule that makes this safe: only call releaseBuffer() on a chunk when
// nothing else can still read it (it was copied, and no earlier stage kept a
// view of it). Any other buffer passed to releaseBuffer() is ignored, and a
// pooled block that is never released is simply garbage collected, so a
// stage that does not know about pools stays correct.

interface Owner {
  pool: BufferPool;
  buf: Buffer;
  out: boolean;
}

const owners = new WeakMap<ArrayBufferLike, Owner>();

export class BufferPool {
  /** Size of every buffer of the pool. */
  readonly size: number;
  readonly #maxFree: number;
  readonly #free: Buffer[] = [];
  /** Buffers allocated so far (for tests and diagnostics). */
  allocated = 0;

  /** `maxFree`: how many returned buffers are kept for reuse; more are left to the garbage collector. */
  constructor(size: number, maxFree: number) {
    if (!Number.isSafeInteger(size) || size <= 0) throw new RangeError(`BufferPool: bad size ${size}`);
    this.size = size;
    this.#maxFree = Math.max(0, maxFree);
  }

  /** A free buffer of `size` bytes (contents undefined), reused when one was handed back. */
  take(): Buffer {
    const b = this.#free.pop();
    if (b) {
      owners.get(b.buffer)!.out = true;
      return b;
    }
    // Its own ArrayBuffer (never a slice of Node's shared pool), so it can be recognised on release.
    const buf = Buffer.allocUnsafeSlow(this.size);
    owners.set(buf.buffer, { pool: this, buf, out: true });
    this.allocated++;
    return buf;
  }

  /** @internal */
  put(o: Owner): void {
    if (!o.out) return; // released twice: keep one copy in the free list
    o.out = false;
    if (this.#free.length < this.#maxFree) this.#free.push(o.buf);
    else owners.delete(o.buf.buffer);
  }
}

/** True if `b` is (a view of) a buffer taken from a pool and not handed back yet. */
export function isPooled(b: Uint8Array): boolean {
  return owners.get(b.buffer)?.out === true;
}

/**
 * Hands a pooled buffer (or any view of it) back to its pool. A no-op for
 * buffers that did not come from a pool. The caller must be the last reader
 * of the buffer's bytes.
 */
export function releaseBuffer(b: Uint8Array): void {
  const o = owners.get(b.buffer);
  if (o) o.pool.put(o);
}
