// Bridges between the runner's storage layout and the engine's sink/source.
import { PassThrough, Transform, pipeline, type Readable } from "node:stream";
import { finished } from "node:stream/promises";
import { pieceKey, putSplit, type ObjectStore } from "../storage/index.ts";
import type { BackupSink, BackupSource, NativeS3Target, PutObjectOptions, WrittenObject } from "../backupengine/types.ts";
import type { StorageRunnerConfig } from "../apis/index.ts";

/** Builds `nativeS3Target` for a directory of the store, when the storage is S3 with static credentials. */
export function nativeTargetFor(storage: StorageRunnerConfig, dir: string): ((name: string) => NativeS3Target | undefined) | undefined {
  const s3 = storage.s3;
  if (!s3 || !s3.accessKeyId || !s3.secretAccessKey) return undefined;
  const key = (name: string) => [s3.prefix, dir, name].filter((p) => p).join("/");
  const base = s3.endpoint?.replace(/\/+$/, "");
  return (name) => ({
    url: base
      ? s3.forcePathStyle
        ? `${base}/${s3.bucket}/${key(name)}`
        : `${base.replace("://", `://${s3.bucket}.`)}/${key(name)}`
      : `https://${s3.bucket}.s3.${s3.region}.amazonaws.com/${key(name)}`,
    accessKeyId: s3.accessKeyId!,
    secretAccessKey: s3.secretAccessKey!,
  });
}

export class StoreSink implements BackupSink {
  readonly written: WrittenObject[] = [];
  readonly #store: ObjectStore;
  readonly #dir: string;
  readonly #onBytes: ((n: number) => void) | undefined;
  readonly nativeS3Target?: (name: string) => NativeS3Target | undefined;

  constructor(store: ObjectStore, dir: string, storage: StorageRunnerConfig, onBytes?: (n: number) => void) {
    this.#store = store;
    this.#dir = dir;
    this.#onBytes = onBytes;
    const t = nativeTargetFor(storage, dir);
    if (t) this.nativeS3Target = t;
  }

  async putObject(name: string, body: AsyncIterable<Uint8Array> | NodeJS.ReadableStream, signal: AbortSignal, opts?: PutObjectOptions): Promise<WrittenObject> {
    let last = 0;
    const r = await this.#store.put(`${this.#dir}/${name}`, body, {
      signal,
      release: opts?.release,
      onProgress: (bytes) => {
        this.#onBytes?.(bytes - last);
        last = bytes;
      },
    });
    const obj = { name, size: r.size, sha256: r.sha256 };
    this.written.push(obj);
    return obj;
  }

  /**
   * Streams one logical object of any size: as `name` when it fits into one
   * object of the store (store.maxObjectBytes), else as `name`, `name.001`,
   * `name.002`, … (pieceKey), each at most that size. Resolves with the
   * pieces in order; on failure none of them is left (see putSplit).
   */
  async putObjects(name: string, body: AsyncIterable<Uint8Array> | NodeJS.ReadableStream, signal: AbortSignal, opts?: PutObjectOptions): Promise<WrittenObject[]> {
    let last = 0;
    const results = await putSplit(this.#store, `${this.#dir}/${name}`, body, {
      signal,
      release: opts?.release,
      maxObjectBytes: this.#store.maxObjectBytes,
      onProgress: (bytes) => {
        this.#onBytes?.(bytes - last);
        last = bytes;
      },
    });
    const objs = results.map((r, i) => ({ name: pieceKey(name, i), size: r.size, sha256: r.sha256 }));
    this.written.push(...objs);
    return objs;
  }

  /**
   * Deletes objects this backup wrote (missing ones are fine) and drops them
   * from `written`. Runs even when `signal` has fired: it is used to clean up.
   */
  async removeObjects(names: readonly string[], _signal: AbortSignal): Promise<void> {
    if (names.length === 0) return;
    await this.#store.delete(names.map((n) => `${this.#dir}/${n}`));
    const gone = new Set(names);
    for (let i = this.written.length - 1; i >= 0; i--) if (gone.has(this.written[i]!.name)) this.written.splice(i, 1);
  }
}

/** Reads objects of a backup, verifying each against the manifest's size and SHA-256. */
export class StoreSource implements BackupSource {
  readonly #store: ObjectStore;
  readonly #dir: string;
  readonly #objects: Map<string, WrittenObject>;
  readonly #onBytes: ((n: number) => void) | undefined;
  readonly nativeS3Target?: (name: string) => NativeS3Target | undefined;

  constructor(store: ObjectStore, dir: string, objects: readonly WrittenObject[], storage: StorageRunnerConfig, onBytes?: (n: number) => void) {
    this.#store = store;
    this.#dir = dir;
    this.#onBytes = onBytes;
    this.#objects = new Map(objects.map((o) => [o.name, o]));
    const t = nativeTargetFor(storage, dir);
    if (t) this.nativeS3Target = t;
  }

  async getObject(name: string, signal: AbortSignal): Promise<Readable> {
    const obj = this.#objects.get(name);
    if (!obj) throw new Error(`object "${name}" is not part of the backup in ${this.#dir}`);
    const stream = await this.#store.get(`${this.#dir}/${name}`, { signal, expectedSha256: obj.sha256, expectedSize: obj.size });
    const onBytes = this.#onBytes;
    if (!onBytes) return stream;
    const counter = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        onBytes(chunk.length);
        cb(null, chunk);
      },
    });
    // pipeline() forwards errors (a checksum mismatch at the end) and destroys both sides on failure.
    return pipeline(stream, counter, () => undefined);
  }

  /**
   * The pieces of one logical object (StoreSink.putObjects) as one stream:
   * each piece is opened when the one before it has ended and verified
   * against the manifest's size and SHA-256, so a mismatch fails the stream
   * with an error naming that piece. Rejects at once if a name is not part of
   * the backup or the first piece cannot be opened.
   */
  async getObjects(names: readonly string[], signal: AbortSignal): Promise<Readable> {
    const [first, ...rest] = names;
    if (first === undefined) throw new Error(`no objects to read in ${this.#dir}`);
    for (const n of names) {
      if (!this.#objects.has(n)) throw new Error(`object "${n}" is not part of the backup in ${this.#dir}`);
    }
    if (rest.length === 0) return this.getObject(first, signal);
    const out = new PassThrough();
    let cur = await this.getObject(first, signal);
    // A consumer that stops early destroys `out`: the piece being read goes too (its file / connection).
    out.once("close", () => {
      if (!cur.destroyed) cur.destroy();
    });
    (async () => {
      for (let i = 0; ; i++) {
        // pipe() (not pipeline()) so that nothing stays attached to `out` once a piece has ended.
        cur.pipe(out, { end: false });
        await finished(cur, { writable: false }); // rejects with the piece's error (a checksum mismatch at its end)
        const next = rest[i];
        if (next === undefined) break;
        if (out.destroyed) return;
        cur = await this.getObject(next, signal);
        if (out.destroyed) {
          cur.destroy();
          return;
        }
      }
      out.end();
    })().catch((err: unknown) => {
      if (!cur.destroyed) cur.destroy();
      out.destroy(err instanceof Error ? err : new Error(String(err)));
    });
    return out;
  }
}
