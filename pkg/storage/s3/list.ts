// list (paginated ListObjectsV2) and delete (DeleteObjects in batches).
import { DeleteObjectsCommand, ListObjectsV2Command } from "@aws-sdk/client-s3";
import { StorageAbortedError } from "../errors.ts";
import type { ListOptions, ObjectInfo } from "../types.ts";
import type { S3Context } from "./context.ts";

const DELETE_BATCH = 1000;

export async function* list(ctx: S3Context, p: string, opts: ListOptions = {}): AsyncGenerator<ObjectInfo> {
  const s3Prefix = ctx.fullPrefix(p, "list");
  const { signal } = opts;
  let token: string | undefined;
  do {
    if (signal?.aborted) throw new StorageAbortedError({ op: "list", key: p, cause: signal.reason });
    let res;
    try {
      res = await ctx.client.send(
        new ListObjectsV2Command({
          Bucket: ctx.bucket,
          ...(s3Prefix === "" ? {} : { Prefix: s3Prefix }),
          ...(token === undefined ? {} : { ContinuationToken: token }),
          MaxKeys: ctx.listPageSize,
        }),
        signal === undefined ? {} : { abortSignal: signal },
      );
    } catch (err) {
      throw ctx.toStorageError("list", p, err, signal);
    }
    for (const obj of res.Contents ?? []) {
      const k = obj.Key;
      // Skip "directory marker" objects created by some consoles.
      if (k === undefined || k.endsWith("/")) continue;
      yield { key: ctx.relKey(k), size: obj.Size ?? 0, lastModified: obj.LastModified };
    }
    token = res.IsTruncated === true ? res.NextContinuationToken : undefined;
  } while (token !== undefined && token !== "");
}

export async function del(ctx: S3Context, keys: readonly string[]): Promise<void> {
  const { relKey } = ctx;
  const fulls = [...new Set(keys.map((k) => ctx.fullKey(k, "delete")))];
  for (let i = 0; i < fulls.length; i += DELETE_BATCH) {
    const batch = fulls.slice(i, i + DELETE_BATCH);
    let res;
    try {
      res = await ctx.client.send(
        new DeleteObjectsCommand({ Bucket: ctx.bucket, Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true } }),
      );
    } catch (err) {
      throw ctx.toStorageError("delete", batch.length === 1 ? relKey(batch[0] ?? "") : undefined, err);
    }
    const failures = (res.Errors ?? []).filter((e) => e.Code !== "NoSuchKey");
    const first = failures[0];
    if (first !== undefined) {
      const summary = failures
        .slice(0, 5)
        .map((e) => `${JSON.stringify(relKey(e.Key ?? ""))}: ${e.Code ?? "Error"} ${e.Message ?? ""}`.trim())
        .join("; ");
      const synthetic = Object.assign(new Error(`${failures.length} object(s) could not be deleted: ${summary}`), {
        name: first.Code ?? "DeleteObjectsError",
        Code: first.Code,
      });
      throw ctx.toStorageError("delete", failures.length === 1 ? relKey(first.Key ?? "") : undefined, synthetic);
    }
  }
}
