// Incomplete multipart uploads: abort one, or sweep the stale ones under a prefix.
import { AbortMultipartUploadCommand, ListMultipartUploadsCommand } from "@aws-sdk/client-s3";
import type { S3Context } from "./context.ts";
import type { SdkErrorShape } from "./errors.ts";

/** Aborts one multipart upload; an upload that no longer exists is fine. */
export async function abortMultipart(ctx: S3Context, fullKeyName: string, uploadId: string): Promise<void> {
  try {
    await ctx.client.send(new AbortMultipartUploadCommand({ Bucket: ctx.bucket, Key: fullKeyName, UploadId: uploadId }));
  } catch (err) {
    const e = err as SdkErrorShape;
    if (e.name === "NoSuchUpload" || e.$metadata?.httpStatusCode === 404) return;
    throw err;
  }
}

/** Aborts incomplete multipart uploads under `p` (store-relative) initiated before `olderThan`; returns how many. */
export async function cleanupIncomplete(ctx: S3Context, p: string, olderThan: Date): Promise<number> {
  const { client, bucket, logger, where } = ctx;
  const s3Prefix = ctx.fullPrefix(p, "cleanup");
  let keyMarker: string | undefined;
  let uploadIdMarker: string | undefined;
  let aborted = 0;
  for (;;) {
    let res;
    try {
      res = await client.send(
        // No Prefix on the request: MinIO only honours a Prefix that is an
        // exact object key, so the prefix is applied client-side below.
        new ListMultipartUploadsCommand({
          Bucket: bucket,
          ...(keyMarker === undefined ? {} : { KeyMarker: keyMarker }),
          ...(uploadIdMarker === undefined ? {} : { UploadIdMarker: uploadIdMarker }),
        }),
      );
    } catch (err) {
      throw ctx.toStorageError("cleanup", p, err);
    }
    for (const u of res.Uploads ?? []) {
      if (u.Key === undefined || u.UploadId === undefined || !u.Key.startsWith(s3Prefix)) continue;
      if (u.Initiated !== undefined && u.Initiated.getTime() >= olderThan.getTime()) continue;
      try {
        await abortMultipart(ctx, u.Key, u.UploadId);
      } catch (err) {
        throw ctx.toStorageError("cleanup", ctx.relKey(u.Key), err);
      }
      aborted++;
      logger?.info("storage: aborted stale multipart upload", {
        store: where,
        key: ctx.relKey(u.Key),
        uploadId: u.UploadId,
        initiated: u.Initiated?.toISOString(),
      });
    }
    if (res.IsTruncated !== true) break;
    const nextKey = res.NextKeyMarker;
    const nextId = res.NextUploadIdMarker;
    if ((nextKey ?? "") === "" || (nextKey === keyMarker && nextId === uploadIdMarker)) break;
    keyMarker = nextKey;
    uploadIdMarker = nextId;
  }
  return aborted;
}
