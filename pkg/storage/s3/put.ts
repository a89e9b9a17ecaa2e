// put: the body, hashed in the stream, into a (multipart) upload.
import { DeleteObjectCommand } from "@aws-sdk/client-s3";
import { hashBody, type PutBody } from "../body.ts";
import { errorMessage, StorageAbortedError, StorageError } from "../errors.ts";
import { multipartUpload } from "../multipart.ts";
import type { PutOptions, PutResult } from "../types.ts";
import { abortMultipart } from "./cleanup.ts";
import type { S3Context } from "./context.ts";

export async function put(ctx: S3Context, key: string, body: PutBody, opts: PutOptions = {}): Promise<PutResult> {
  const { client, bucket, logger, where } = ctx;
  const full = ctx.fullKey(key, "put");
  const { signal } = opts;
  if (signal?.aborted) throw new StorageAbortedError({ op: "put", key, cause: signal.reason });
  const hashed = hashBody(body, { signal, onProgress: opts.onProgress, op: "put", key });
  let uploadId: string | undefined;
  let multipart = false;
  try {
    // Abort design: when the signal fires, hashBody's pipeline destroys the
    // body stream; multipartUpload stops cutting parts, waits for the parts
    // in flight, sends AbortMultipartUpload and only then rejects, so no
    // multipart upload is left behind once put rejects.
    const r = await multipartUpload({
      client,
      bucket,
      key: full,
      // Not destroyed when a failed part ends the upload's loop: the catch below destroys it (and so the
      // body) with the upload's own error, so the body's producer learns why, not just "aborted".
      body: hashed.stream.iterator({ destroyOnReturn: false }),
      partSize: ctx.partSize,
      maxParts: ctx.maxParts,
      queueSize: ctx.queueSize,
      contentType: opts.contentType,
      signal,
      release: opts.release,
      onUploadId: (id) => {
        uploadId = id;
      },
    });
    multipart = r.uploadId !== undefined;
  } catch (err) {
    const failure = ctx.toStorageError("put", key, err, signal);
    hashed.destroy(failure);
    // The upload was aborted before rejecting; if that request itself
    // failed, try once more so nothing is left behind.
    if (uploadId !== undefined) {
      const id = uploadId;
      await abortMultipart(ctx, full, id).catch((abortErr: unknown) => {
        logger?.warn("storage: could not abort multipart upload; cleanupIncomplete will remove it", {
          store: where,
          key,
          uploadId: id,
          error: ctx.scrub(errorMessage(abortErr)),
        });
      });
    }
    throw failure;
  }
  if (signal?.aborted) {
    // The signal fired after the body was fully read (while the last parts /
    // CompleteMultipartUpload were in flight): honour it, leave no object.
    await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: full })).catch((err: unknown) => {
      logger?.warn("storage: could not delete object of aborted put", { store: where, key, error: ctx.scrub(errorMessage(err)) });
    });
    throw new StorageAbortedError({ op: "put", key, cause: signal.reason });
  }
  const sha256 = hashed.stream.sha256;
  if (sha256 === undefined) throw new StorageError("internal: body stream ended without a checksum", { op: "put", key });
  const size = hashed.stream.bytesSeen;
  logger?.debug("storage: put complete", { store: where, key, size, sha256, multipart });
  return { key, size, sha256 };
}
