// One logical stream written as a sequence of objects, each at most
// maxObjectBytes: S3 caps one multipart upload at maxParts parts (10,000) of a
// fixed size, so without splitting a table larger than partSize × maxParts
// would fail only after all of it had been uploaded.
//
// The pieces are written one after the other, streaming: a piece's bytes go
// straight into the store's put (whose part buffers are the only copy held),
// and the next piece starts where the previous one stopped, at any byte
// offset. Reading the pieces in order and concatenating them gives the
// stream back (`cat key key.*` works too: the names sort in order).
import { PassThrough } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { PutBody } from "./body.ts";
import { errorMessage, isTransientSystemError, StorageAbortedError, StorageError } from "./errors.ts";
import type { ObjectStore, PutOptions, PutResult } from "./types.ts";

export interface PutSplitOptions extends PutOptions {
  /**
   * Largest piece in bytes (a positive integer, or Infinity for a single
   * object). Default: the store's maxObjectBytes. `onProgress` gets the
   * bytes consumed over all pieces.
   */
  maxObjectBytes?: number | undefined;
}

/**
 * The key of piece `index` of a split object: `key` itself for piece 0, then
 * `key.001` … `key.998`. Later pieces carry the escape `999` and twice as many
 * digits (`key.999000999` … `key.999999998`, then `key.999999999` followed by
 * twelve digits, and so on), so that every name sorts after the ones before
 * it, plain string order, however many pieces there are.
 */
export function pieceKey(key: string, index: number): string {
  if (!Number.isSafeInteger(index) || index < 0) throw new RangeError(`piece index must be a non-negative integer, got ${index}`);
  if (index === 0) return key;
  let escape = "";
  for (let width = 3; ; width *= 2) {
    const allNines = 10 ** width - 1; // reserved as the escape to the next width
    if (index < allNines) return `${key}.${escape}${String(index).padStart(width, "0")}`;
    escape += "9".repeat(width);
  }
}

/**
 * Writes `body` to `store` as pieces of at most `maxObjectBytes` bytes, named
 * by pieceKey (`key`, `key.001`, …), one after the other; resolves with each
 * piece's key, size and SHA-256, in order. A stream of up to maxObjectBytes
 * (including an empty one) is one object at `key`; a stream of exactly
 * n × maxObjectBytes is n pieces (no empty trailing piece).
 *
 * On failure or abort (StorageAbortedError once the signal has fired), the
 * body stops being read, the pieces already written are deleted, and only
 * then does it reject; the failed piece itself leaves nothing (see put). If
 * that delete fails too, the pieces are left for the caller's cleanup of the
 * incomplete directory, and the original error is still the one thrown.
 */
export async function putSplit(store: ObjectStore, key: string, body: PutBody, opts: PutSplitOptions = {}): Promise<PutResult[]> {
  const max = opts.maxObjectBytes ?? store.maxObjectBytes ?? Number.POSITIVE_INFINITY;
  if (!(max === Number.POSITIVE_INFINITY || (Number.isSafeInteger(max) && max > 0))) {
    throw new RangeError(`putSplit: maxObjectBytes must be a positive integer or Infinity, got ${max}`);
  }
  const { signal, onProgress, contentType, release } = opts;
  if (signal?.aborted) throw new StorageAbortedError({ op: "put", key, cause: signal.reason });
  if (max === Number.POSITIVE_INFINITY) return [await store.put(key, body, { signal, onProgress, contentType, release })];

  // The body's chunks one by one, as they came: a byte-mode stream read with
  // `for await` would concatenate what it has buffered (a copy, and pooled
  // blocks that could no longer be handed back, see PutOptions.release).
  // (Object mode on both sides, so that read-ahead is counted in chunks: two on each side.)
  const chunks = new PassThrough({ objectMode: true, highWaterMark: 2 });
  pipeline(body, chunks, signal === undefined ? {} : { signal }).catch(() => {}); // errors surface through `chunks`
  // (and through the iteration below: `chunks` may be destroyed after the pipeline let go of it, which must not be an uncaught 'error')
  chunks.on("error", () => undefined);
  const source = chunks[Symbol.asyncIterator]() as AsyncIterator<Uint8Array | string>;
  let pending: Uint8Array | undefined;
  let ended = false;
  /** Heads of split chunks, copied here: the store's release of them goes no further. */
  const copies = new WeakSet<Uint8Array>();
  const releasePiece = release === undefined ? undefined : (c: Uint8Array) => (copies.has(c) ? undefined : release(c));

  /** The next non-empty chunk (the rest of a split one first); undefined at the end of the body. */
  async function next(): Promise<Uint8Array | undefined> {
    if (pending !== undefined) {
      const p = pending;
      pending = undefined;
      return p;
    }
    while (!ended) {
      const r = await source.next();
      if (r.done === true) {
        ended = true;
        break;
      }
      const c = typeof r.value === "string" ? Buffer.from(r.value) : r.value;
      if (c.byteLength > 0) return c;
    }
    return undefined;
  }

  /** The body's next `max` bytes (fewer at its end). */
  async function* piece(): AsyncGenerator<Uint8Array> {
    let room = max;
    while (room > 0) {
      const c = await next();
      if (c === undefined) return;
      if (c.byteLength <= room) {
        room -= c.byteLength;
        yield c;
      } else {
        // The chunk straddles the boundary. Its head goes out as a copy: the
        // store hands back (opts.release) what it was given once it has
        // copied it, and that must not return the buffer the tail is still in.
        // (The copy is no chunk of the producer's: it is not handed to `release`.)
        pending = c.subarray(room);
        const head = Buffer.from(c.subarray(0, room));
        copies.add(head);
        room = 0;
        yield head;
      }
    }
  }

  const written: PutResult[] = [];
  let offset = 0;
  let index = 0;
  try {
    for (; ; index++) {
      if (index > 0) {
        // Is there more? (Peeking here means a body of exactly n × max bytes gives n pieces, not an empty n + 1st.)
        const c = await next();
        if (c === undefined) break;
        pending = c;
      }
      if (signal?.aborted) throw new StorageAbortedError({ op: "put", key: pieceKey(key, index), cause: signal.reason });
      const base = offset;
      const r = await store.put(pieceKey(key, index), piece(), {
        signal,
        contentType,
        release: releasePiece,
        ...(onProgress === undefined ? {} : { onProgress: (n: number) => onProgress(base + n) }),
      });
      written.push(r);
      offset += r.size;
    }
    return written;
  } catch (err: unknown) {
    chunks.destroy(); // stops reading the body (pipeline destroys it)
    if (written.length > 0) await store.delete(written.map((w) => w.key)).catch(() => undefined);
    if (err instanceof StorageError) throw err;
    // The body failed between two pieces (inside a piece, put has wrapped it already).
    const at = pieceKey(key, index);
    if (signal?.aborted) throw new StorageAbortedError({ op: "put", key: at, cause: signal.reason });
    throw new StorageError(errorMessage(err), { op: "put", key: at, retryable: isTransientSystemError(err), cause: err });
  }
}
