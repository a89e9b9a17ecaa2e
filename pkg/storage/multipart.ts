// Streaming multipart upload with a fixed pool of part buffers.
//
// Why not @aws-sdk/lib-storage's Upload: measured on a 122 MiB stream, a third
// of the runner's CPU went to lib-storage's Buffer.concat of every part into a
// freshly allocated buffer (plus the page faults of touching that new memory
// each time). Here a part is assembled by copying each incoming chunk once
// into one of queueSize + 1 reusable buffers, so memory is exactly
// (queueSize + 1) × partSize and nothing is re-allocated per part.
//
// Semantics kept from the previous implementation: an object smaller than one
// part is a single PutObject; on any failure or abort, parts in flight are
// awaited, the multipart upload is aborted, and only then does the call
// reject, so no incomplete upload is left behind once it has rejected.
//
// An upload has at most `maxParts` parts. Data beyond partSize × maxParts
// fails the upload (PartLimitError) before part maxParts + 1 is cut; callers
// that may write more split the stream into several objects (split.ts).
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  PutObjectCommand,
  UploadPartCommand,
  type CompletedPart,
  type S3Client,
} from "@aws-sdk/client-s3";
import { MAX_PARTS } from "./s3/config.ts";

export interface MultipartOptions {
  client: S3Client;
  bucket: string;
  key: string;
  body: AsyncIterable<Uint8Array>;
  partSize: number;
  /** Most parts the upload may have; default (and S3's limit) 10,000. */
  maxParts?: number | undefined;
  queueSize: number;
  contentType?: string | undefined;
  signal?: AbortSignal | undefined;
  /** Called with the upload id as soon as the multipart upload exists. */
  onUploadId?: (id: string) => void;
  /** Called with each chunk of `body` once it is copied into a part: see PutOptions.release. */
  release?: ((chunk: Uint8Array) => void) | undefined;
}

/** The body is larger than partSize × maxParts: the upload cannot hold it. Not retryable. */
export class PartLimitError extends Error {
  override name = "PartLimitError";
  readonly maxParts: number;
  readonly partSize: number;
  constructor(maxParts: number, partSize: number) {
    super(
      `the object is larger than ${maxParts} parts of ${partSize} bytes (${maxParts * partSize} bytes), the most one multipart upload may hold; ` +
        "write it as several objects (putSplit) or raise the part size",
    );
    this.maxParts = maxParts;
    this.partSize = partSize;
  }
}

/** Size of the buffer an upload starts with; it moves to a whole part buffer once the data outgrows it. */
export const FIRST_BUFFER_BYTES = 64 * 1024;

export async function multipartUpload(o: MultipartOptions): Promise<{ uploadId: string | undefined; parts: number }> {
  const { client, bucket, key, partSize, queueSize } = o;
  const maxParts = o.maxParts ?? MAX_PARTS;
  const send = { ...(o.signal ? { abortSignal: o.signal } : {}) };
  const pool: Buffer[] = [];
  const take = () => pool.pop() ?? Buffer.allocUnsafe(partSize);
  // The first part starts small: most objects (manifests, markers, journals,
  // small tables) are far smaller than a part, and a part buffer of 8 MiB
  // each was dead weight until V8's next full collection.
  let cur: Buffer = Buffer.allocUnsafe(Math.min(partSize, FIRST_BUFFER_BYTES));
  let len = 0;
  let uploadId: string | undefined;
  let partNumber = 0;
  const parts: CompletedPart[] = [];
  const inflight = new Set<Promise<void>>();
  let failure: unknown;

  const submit = (buf: Buffer, n: number) => {
    const number = ++partNumber;
    const id = uploadId!;
    const p = client
      .send(new UploadPartCommand({ Bucket: bucket, Key: key, UploadId: id, PartNumber: number, Body: buf.subarray(0, n), ContentLength: n }), send)
      .then(
        (r) => {
          parts.push({ PartNumber: number, ETag: r.ETag });
        },
        (err: unknown) => {
          failure ??= err;
        },
      )
      .finally(() => {
        pool.push(buf);
        inflight.delete(p);
      });
    inflight.add(p);
  };

  const start = async () => {
    const r = await client.send(
      new CreateMultipartUploadCommand({ Bucket: bucket, Key: key, ...(o.contentType ? { ContentType: o.contentType } : {}) }),
      send,
    );
    if (!r.UploadId) throw new Error("CreateMultipartUpload returned no UploadId");
    uploadId = r.UploadId;
    o.onUploadId?.(uploadId);
  };

  try {
    for await (const raw of o.body) {
      const chunk = Buffer.isBuffer(raw) ? raw : Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
      let off = 0;
      while (off < chunk.length) {
        // Every allowed part is cut and there is more: fail before part maxParts + 1.
        if (partNumber >= maxParts) throw new PartLimitError(maxParts, partSize);
        if (len === cur.length && len < partSize) {
          // more than the small first buffer holds: on to a whole part buffer
          const full = take();
          cur.copy(full, 0, 0, len);
          cur = full;
        }
        const n = Math.min(chunk.length - off, cur.length - len);
        chunk.copy(cur, len, off, off + n);
        len += n;
        off += n;
        if (len === partSize) {
          if (!uploadId) await start();
          submit(cur, len);
          while (inflight.size >= queueSize && failure === undefined) await Promise.race(inflight);
          if (failure !== undefined) throw failure;
          cur = take();
          len = 0;
        }
      }
      // Copied into the part: the producer may have the chunk back (see PutOptions.release).
      o.release?.(raw);
    }
    if (!uploadId) {
      // Smaller than one part: a single PUT.
      await client.send(
        new PutObjectCommand({ Bucket: bucket, Key: key, Body: cur.subarray(0, len), ContentLength: len, ...(o.contentType ? { ContentType: o.contentType } : {}) }),
        send,
      );
      return { uploadId: undefined, parts: 0 };
    }
    if (len > 0) submit(cur, len);
    while (inflight.size > 0) await Promise.race(inflight);
    if (failure !== undefined) throw failure;
    parts.sort((a, b) => (a.PartNumber ?? 0) - (b.PartNumber ?? 0));
    await client.send(new CompleteMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: uploadId, MultipartUpload: { Parts: parts } }), send);
    return { uploadId, parts: parts.length };
  } catch (err: unknown) {
    // Let parts in flight settle, then abort the upload, then reject.
    while (inflight.size > 0) await Promise.race(inflight);
    if (uploadId) {
      await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: uploadId })).catch(() => undefined);
    }
    throw Object.assign(err instanceof Error ? err : new Error(String(err)), { uploadId });
  }
}
