// The S3 store, assembled from its parts in ./s3/: config.ts (settings and
// the SDK client), errors.ts (SDK errors → StorageErrors), context.ts (keys
// under the store prefix), put.ts, get.ts (get, head, check), list.ts (list,
// delete) and cleanup.ts (incomplete multipart uploads).
import type { S3Client } from "@aws-sdk/client-s3";
import type { ObjectStore } from "./types.ts";
import { cleanupIncomplete } from "./s3/cleanup.ts";
import { createS3Context } from "./s3/context.ts";
import { check, get, head } from "./s3/get.ts";
import { del, list } from "./s3/list.ts";
import { put } from "./s3/put.ts";
import type { S3StoreConfig } from "./s3/config.ts";

export {
  DEFAULT_MAX_ATTEMPTS,
  DEFAULT_PART_SIZE,
  DEFAULT_QUEUE_SIZE,
  MAX_OBJECT_SIZE,
  MAX_PART_SIZE,
  MAX_PARTS,
  MIN_PART_SIZE,
  type S3StoreConfig,
} from "./s3/config.ts";

export interface S3Store extends ObjectStore {
  readonly kind: "s3";
  readonly bucket: string;
  /** Normalized key prefix inside the bucket ("" for none). */
  readonly prefix: string;
  /** partSizeBytes × maxParts, at most 5 TiB: the largest object one put can write. */
  readonly maxObjectBytes: number;
  /** The underlying client (for advanced uses and tests). */
  readonly client: S3Client;
  /** Aborts incomplete multipart uploads under `prefix` initiated before `olderThan`; returns how many. */
  cleanupIncomplete(prefix: string, olderThan: Date): Promise<number>;
  /** Closes the client's sockets. */
  destroy(): void;
}

/**
 * Object store on S3 or an S3-compatible server (MinIO, Ceph RGW).
 *
 * put streams the body through a SHA-256 transform into multipartUpload
 * (`queueSize` parts in flight, each part a Buffer so the SDK can retry it,
 * part buffers reused), so memory per put is (queueSize + 1) × partSize
 * regardless of object size. One object has at most `maxParts` parts; larger
 * streams are written as several objects with putSplit (split.ts).
 */
export function createS3Store(cfg: S3StoreConfig): S3Store {
  const ctx = createS3Context(cfg);
  return {
    kind: "s3",
    bucket: ctx.bucket,
    prefix: ctx.prefix,
    maxObjectBytes: ctx.maxObjectBytes,
    client: ctx.client,
    describe: () => ctx.where,
    put: (key, body, opts) => put(ctx, key, body, opts),
    get: (key, opts) => get(ctx, key, opts),
    head: (key) => head(ctx, key),
    list: (prefix, opts) => list(ctx, prefix, opts),
    delete: (keys) => del(ctx, keys),
    check: (signal) => check(ctx, signal),
    cleanupIncomplete: (prefix, olderThan) => cleanupIncomplete(ctx, prefix, olderThan),
    destroy: () => ctx.client.destroy(),
  };
}

/** Aborts incomplete multipart uploads under `prefix` (relative to the store prefix) initiated before `olderThan`. */
export function abortIncompleteUploads(store: S3Store, prefix: string, olderThan: Date): Promise<number> {
  return store.cleanupIncomplete(prefix, olderThan);
}
