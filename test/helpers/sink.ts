// A directory-backed BackupSink/BackupSource for engine tests: streams each
// object to a file while hashing it, verifies the hash when reading back,
// records what happened to every put (ok / aborted / failed), and can hand
// out a native S3 target in a MinIO bucket.
import { createHash } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, rename, rm, stat } from "node:fs/promises";
import { dirname, join, resolve, sep } from "node:path";
import { Readable, Transform, type TransformCallback } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { BackupSink, BackupSource, NativeS3Target, WrittenObject } from "../../pkg/backupengine/types.ts";

export interface NativeS3Location {
  endpoint: string;
  bucket: string;
  prefix: string;
  accessKeyId: string;
  secretAccessKey: string;
}

export interface PutRecord {
  name: string;
  status: "running" | "ok" | "aborted" | "failed";
  size: number;
  error?: unknown;
}

export class DirSink implements BackupSink, BackupSource {
  readonly dir: string;
  readonly native: NativeS3Location | undefined;
  readonly puts: PutRecord[] = [];
  readonly objects = new Map<string, WrittenObject>();
  /** Called as bytes of an object are written (fault injection hooks). */
  onBytes: ((name: string, total: number) => void) | undefined;

  constructor(dir: string, native?: NativeS3Location) {
    this.dir = dir;
    this.native = native;
  }

  #path(name: string): string {
    const p = resolve(this.dir, name);
    if (!p.startsWith(resolve(this.dir) + sep)) throw new Error(`object name escapes the backup directory: ${name}`);
    return p;
  }

  async putObject(name: string, body: AsyncIterable<Uint8Array> | NodeJS.ReadableStream, signal: AbortSignal): Promise<WrittenObject> {
    const rec: PutRecord = { name, status: "running", size: 0 };
    this.puts.push(rec);
    const path = this.#path(name);
    const tmp = `${path}.partial`;
    await mkdir(dirname(path), { recursive: true });
    const hash = createHash("sha256");
    const self = this;
    const tap = new Transform({
      transform(chunk: Buffer, _enc, cb: TransformCallback) {
        hash.update(chunk);
        rec.size += chunk.length;
        self.onBytes?.(name, rec.size);
        cb(null, chunk);
      },
    });
    const src = body instanceof Readable ? body : Readable.from(body as AsyncIterable<Uint8Array>);
    try {
      await pipeline(src, tap, createWriteStream(tmp), { signal });
      await rename(tmp, path);
    } catch (err) {
      rec.status = signal.aborted ? "aborted" : "failed";
      rec.error = err;
      await rm(tmp, { force: true });
      throw err;
    }
    rec.status = "ok";
    const obj = { name, size: rec.size, sha256: hash.digest("hex") };
    this.objects.set(name, obj);
    return obj;
  }

  async getObject(name: string, signal: AbortSignal): Promise<Readable> {
    const path = this.#path(name);
    await stat(path);
    const expected = this.objects.get(name)?.sha256;
    const hash = createHash("sha256");
    const verify = new Transform({
      transform(chunk: Buffer, _enc, cb: TransformCallback) {
        hash.update(chunk);
        cb(null, chunk);
      },
      flush(cb: TransformCallback) {
        const got = hash.digest("hex");
        if (expected && got !== expected) cb(new Error(`sha256 mismatch for ${name}: expected ${expected}, got ${got}`));
        else cb();
      },
    });
    const file = createReadStream(path, { signal });
    file.on("error", (err) => verify.destroy(err));
    return file.pipe(verify);
  }

  /** The pieces of one logical object as one stream, each piece verified. */
  async getObjects(names: readonly string[], signal: AbortSignal): Promise<Readable> {
    for (const n of names) await stat(this.#path(n));
    const self = this;
    return Readable.from(
      (async function* () {
        for (const n of names) yield* await self.getObject(n, signal);
      })(),
    );
  }

  nativeS3Target(name: string): NativeS3Target | undefined {
    if (!this.native) return undefined;
    const n = this.native;
    return {
      url: `${n.endpoint}/${n.bucket}/${[n.prefix, name].filter(Boolean).join("/")}`,
      accessKeyId: n.accessKeyId,
      secretAccessKey: n.secretAccessKey,
    };
  }

  /** Full path of an object on disk. */
  pathOf(name: string): string {
    return join(this.dir, name);
  }
}
