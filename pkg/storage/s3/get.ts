// Reads: get (verified stream), head, and the bucket reachability check.
import { GetObjectCommand, HeadBucketCommand, HeadObjectCommand } from "@aws-sdk/client-s3";
import { Readable } from "node:stream";
import { verifiedReadable } from "../checksum.ts";
import { NotFoundError, StorageAbortedError, StorageError } from "../errors.ts";
import type { GetOptions, ObjectInfo } from "../types.ts";
import type { S3Context } from "./context.ts";

export async function get(ctx: S3Context, key: string, opts: GetOptions = {}): Promise<Readable> {
  const full = ctx.fullKey(key, "get");
  const { signal } = opts;
  if (signal?.aborted) throw new StorageAbortedError({ op: "get", key, cause: signal.reason });
  let body: unknown;
  try {
    const res = await ctx.client.send(new GetObjectCommand({ Bucket: ctx.bucket, Key: full }), signal === undefined ? {} : { abortSignal: signal });
    body = res.Body;
  } catch (err) {
    throw ctx.toStorageError("get", key, err, signal);
  }
  if (!(body instanceof Readable)) {
    throw new StorageError("unexpected response body type from the S3 client", { op: "get", key });
  }
  return verifiedReadable(body, {
    expectedSha256: opts.expectedSha256,
    expectedSize: opts.expectedSize,
    signal,
    op: "get",
    key,
    mapError: (err) => ctx.toStorageError("get", key, err, signal),
  });
}

export async function head(ctx: S3Context, key: string): Promise<ObjectInfo | undefined> {
  const full = ctx.fullKey(key, "head");
  try {
    const res = await ctx.client.send(new HeadObjectCommand({ Bucket: ctx.bucket, Key: full }));
    return { key, size: res.ContentLength ?? 0, lastModified: res.LastModified };
  } catch (err) {
    const mapped = ctx.toStorageError("head", key, err);
    if (mapped instanceof NotFoundError && !mapped.detail.startsWith("bucket")) return undefined;
    throw mapped;
  }
}

export async function check(ctx: S3Context, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) throw new StorageAbortedError({ op: "check", cause: signal.reason });
  try {
    await ctx.client.send(new HeadBucketCommand({ Bucket: ctx.bucket }), signal === undefined ? {} : { abortSignal: signal });
  } catch (err) {
    const mapped = ctx.toStorageError("check", undefined, err, signal);
    if (mapped instanceof NotFoundError) {
      throw new NotFoundError(`bucket "${ctx.bucket}" does not exist at ${ctx.where}`, { op: "check", cause: err });
    }
    throw mapped;
  }
}
