import type { Readable } from "node:stream";

export interface ObjectInfo {
  /** Key relative to the store's prefix / root. */
  key: string;
  size: number;
  lastModified?: Date | undefined;
}

export interface PutResult {
  key: string;
  size: number;
  /** Hex SHA-256 of the bytes read from the body (computed in the stream). */
  sha256: string;
}

export interface PutOptions {
  signal?: AbortSignal | undefined;
  contentType?: string | undefined;
  /**
   * Called with the cumulative number of bytes consumed from `body` so far.
   * For S3 this runs ahead of what has been acknowledged by the server by at
   * most the buffered parts (about partSize × (queueSize + 1)).
   */
  onProgress?: ((bytes: number) => void) | undefined;
  /**
   * The body's producer reuses its chunks (e.g. blocks of a BufferPool,
   * `release: pool.release`): the store calls this with each chunk, exactly
   * once, when it has copied the chunk (S3: into a part buffer) or written
   * it (filesystem) and will never read it again. The chunk's bytes may be
   * overwritten as soon as it returns. Without it the store hands nothing
   * back. Only the store releases: no stage between the producer and the
   * store may keep a view of a chunk it passed on.
   */
  release?: ((chunk: Uint8Array) => void) | undefined;
}

export interface GetOptions {
  signal?: AbortSignal | undefined;
  expectedSha256?: string | undefined;
  expectedSize?: number | undefined;
}

export interface ListOptions {
  signal?: AbortSignal | undefined;
}

export type StoreKind = "s3" | "filesystem";

export interface ObjectStore {
  readonly kind: StoreKind;
  /** Human-readable location for logs and errors, never a secret (e.g. "s3://bucket/prefix @ http://127.0.0.1:9000"). */
  describe(): string;
  /**
   * The largest object one put can write, in bytes (S3: partSizeBytes ×
   * maxParts, at most 5 TiB; filesystem: Infinity). A put whose body is
   * larger fails; putSplit (split.ts) writes a stream of any size as several
   * objects of at most this size.
   */
  readonly maxObjectBytes: number;
  /**
   * Streams body to key; computes SHA-256 and size in the stream. If the
   * signal has fired by the time put would resolve, it rejects with
   * StorageAbortedError (an object committed concurrently with the abort is
   * deleted again). On any failure no new object at `key` exists afterwards
   * (multipart aborted / temp file removed; a previous object at `key` is left
   * as it was). On success an existing object at `key` is replaced atomically.
   */
  put(key: string, body: AsyncIterable<Uint8Array> | NodeJS.ReadableStream, opts?: PutOptions): Promise<PutResult>;
  /**
   * Readable stream of the object. With expectedSha256/expectedSize the stream
   * errors (ChecksumMismatchError) at the end instead of ending normally if the
   * content differs. Missing key -> NotFoundError. Errors emitted by the stream
   * are StorageErrors too.
   */
  get(key: string, opts?: GetOptions): Promise<Readable>;
  /** Size and mtime of the object; undefined if it does not exist. */
  head(key: string): Promise<ObjectInfo | undefined>;
  /**
   * All objects whose key starts with `prefix` (plain string prefix, S3
   * semantics; "" lists everything), recursively, in lexicographic key order,
   * paginated internally.
   */
  list(prefix: string, opts?: ListOptions): AsyncIterable<ObjectInfo>;
  /** Batch delete (S3 DeleteObjects in chunks of 1000); missing keys are fine. */
  delete(keys: readonly string[]): Promise<void>;
  /** Cheap reachability check for readiness probes (e.g. HeadBucket / stat dir). Throws a StorageError on failure. */
  check(signal?: AbortSignal): Promise<void>;
  /**
   * Removes leftovers of failed/interrupted puts under `prefix` that started
   * before `olderThan` (S3: incomplete multipart uploads; filesystem: temp
   * files). Returns how many were removed.
   */
  cleanupIncomplete?(prefix: string, olderThan: Date): Promise<number>;
}
