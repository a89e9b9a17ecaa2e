// Bridges between the runner's storage layout and the engine's sink/source.
import { Transform, pipeline, type Readable } from "node:stream";
import type { ObjectStore } from "../storage/index.ts";
import type { BackupSink, BackupSource, NativeS3Target, WrittenObject } from "../backupengine/types.ts";
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

  async putObject(name: string, body: AsyncIterable<Uint8Array> | NodeJS.ReadableStream, signal: AbortSignal): Promise<WrittenObject> {
    let last = 0;
    const r = await this.#store.put(`${this.#dir}/${name}`, body, {
      signal,
      onProgress: (bytes) => {
        this.#onBytes?.(bytes - last);
        last = bytes;
      },
    });
    const obj = { name, size: r.size, sha256: r.sha256 };
    this.written.push(obj);
    return obj;
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
}
