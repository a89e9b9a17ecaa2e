import { createHash, type Hash } from "node:crypto";
import { finished, Transform, type Readable, type TransformCallback } from "node:stream";
import { ChecksumMismatchError, StorageAbortedError, StorageError, type StorageOp } from "./errors.ts";

const SHA256_HEX = /^[0-9a-f]{64}$/;

export interface ChecksumStreamOptions {
  /** If set, the stream errors with ChecksumMismatchError at the end when the content's SHA-256 (hex) differs. */
  expectedSha256?: string | undefined;
  /** If set, the stream errors with ChecksumMismatchError at the end when the content's size differs. */
  expectedSize?: number | undefined;
  /** Called after every chunk with the cumulative number of bytes that passed through. */
  onProgress?: ((bytes: number) => void) | undefined;
  /** For error messages. */
  op?: StorageOp | undefined;
  key?: string | undefined;
  /**
   * Hand the chunks on one by one, as they came (a readable side in object
   * mode that holds at most `chunksAhead` of them). A byte-mode stream read
   * with `for await` concatenates whatever it has buffered into a new
   * buffer: a copy, and pooled chunks (see bufferpool.ts) that can no longer
   * be handed back. For consumers that iterate; not for piping.
   */
  chunksAhead?: number | undefined;
}

/**
 * Pass-through byte stream that computes the SHA-256 and size of everything
 * that flows through it, without buffering. After the stream has ended,
 * `sha256` (hex) and `size` hold the result. With `expectedSha256` and/or
 * `expectedSize` it verifies at flush time and errors with a
 * ChecksumMismatchError instead of ending normally.
 */
export class ChecksumStream extends Transform {
  #hash: Hash = createHash("sha256");
  #size = 0;
  #sha256: string | undefined;
  readonly #expectedSha256: string | undefined;
  readonly #expectedSize: number | undefined;
  readonly #onProgress: ((bytes: number) => void) | undefined;
  readonly #op: StorageOp;
  readonly #key: string | undefined;

  constructor(opts: ChecksumStreamOptions = {}) {
    super(opts.chunksAhead === undefined ? {} : { readableObjectMode: true, readableHighWaterMark: Math.max(1, opts.chunksAhead) });
    const expected = opts.expectedSha256?.toLowerCase();
    if (expected !== undefined && !SHA256_HEX.test(expected)) {
      throw new TypeError(`expectedSha256 must be 64 hex characters, got ${JSON.stringify(opts.expectedSha256)}`);
    }
    if (opts.expectedSize !== undefined && !(Number.isSafeInteger(opts.expectedSize) && opts.expectedSize >= 0)) {
      throw new TypeError(`expectedSize must be a non-negative integer, got ${opts.expectedSize}`);
    }
    this.#expectedSha256 = expected;
    this.#expectedSize = opts.expectedSize;
    this.#onProgress = opts.onProgress;
    this.#op = opts.op ?? "get";
    this.#key = opts.key;
  }

  /**
   * Bytes seen so far (final size once the stream has ended). Deliberately not
   * called `size`/`length`/`byteLength`: lib-storage's Upload would take such a
   * property of its Body as the total content length.
   */
  get bytesSeen(): number {
    return this.#size;
  }

  /** Hex SHA-256 of the content; undefined until the stream has flushed. */
  get sha256(): string | undefined {
    return this.#sha256;
  }

  override _transform(chunk: unknown, encoding: BufferEncoding, callback: TransformCallback): void {
    let buf: Uint8Array;
    if (chunk instanceof Uint8Array) buf = chunk;
    else if (typeof chunk === "string") buf = Buffer.from(chunk, encoding);
    else {
      callback(new TypeError(`expected bytes, got ${typeof chunk}`));
      return;
    }
    this.#hash.update(buf);
    this.#size += buf.byteLength;
    if (this.#onProgress !== undefined) {
      try {
        this.#onProgress(this.#size);
      } catch (err) {
        callback(err as Error);
        return;
      }
    }
    callback(null, buf);
  }

  override _flush(callback: TransformCallback): void {
    const actual = this.#hash.digest("hex");
    this.#sha256 = actual;
    const sizeBad = this.#expectedSize !== undefined && this.#expectedSize !== this.#size;
    const hashBad = this.#expectedSha256 !== undefined && this.#expectedSha256 !== actual;
    if (sizeBad || hashBad) {
      callback(
        new ChecksumMismatchError(
          { sha256: this.#expectedSha256, size: this.#expectedSize },
          { sha256: actual, size: this.#size },
          { op: this.#op, key: this.#key },
        ),
      );
      return;
    }
    callback();
  }
}

/** Hex SHA-256 of an in-memory buffer (tests, small metadata). */
export function sha256Hex(data: Uint8Array | string): string {
  return createHash("sha256").update(data).digest("hex");
}

export interface VerifiedReadableOptions {
  expectedSha256?: string | undefined;
  expectedSize?: number | undefined;
  signal?: AbortSignal | undefined;
  op: StorageOp;
  key: string;
  /** Turns an error of the source stream into a StorageError. */
  mapError: (err: unknown) => StorageError;
}

/**
 * Wraps a backend's raw read stream: the returned stream passes the bytes
 * through (with backpressure), verifies expectedSha256/expectedSize at the
 * end, turns source errors into StorageErrors, errors with
 * StorageAbortedError if the signal fires, and destroys the source (releasing
 * the file descriptor / HTTP connection) when the consumer destroys the
 * returned stream early.
 */
export function verifiedReadable(source: Readable, opts: VerifiedReadableOptions): ChecksumStream {
  const out = new ChecksumStream({
    expectedSha256: opts.expectedSha256,
    expectedSize: opts.expectedSize,
    op: opts.op,
    key: opts.key,
  });
  const { signal } = opts;
  const onAbort = (): void => {
    out.destroy(new StorageAbortedError({ op: opts.op, key: opts.key, cause: signal?.reason }));
  };
  finished(source, (err) => {
    if (err) out.destroy(err instanceof StorageError ? err : opts.mapError(err));
  });
  out.once("close", () => {
    signal?.removeEventListener("abort", onAbort);
    if (!source.destroyed) source.destroy();
  });
  if (signal !== undefined) {
    if (signal.aborted) onAbort();
    else signal.addEventListener("abort", onAbort, { once: true });
  }
  source.pipe(out);
  return out;
}
