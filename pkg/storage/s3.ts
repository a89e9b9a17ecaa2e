import {
  AbortMultipartUploadCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  S3Client,
  type S3ClientConfig,
} from "@aws-sdk/client-s3";
import { Readable } from "node:stream";
import type { Logger } from "winston";
import { hashBody, type PutBody } from "./body.ts";
import { verifiedReadable } from "./checksum.ts";
import {
  errorMessage,
  isTransientSystemError,
  NotFoundError,
  StorageAbortedError,
  StorageAuthError,
  StorageError,
  type StorageOp,
} from "./errors.ts";
import { multipartUpload } from "./multipart.ts";
import { assertValidKey, assertValidPrefix, MAX_KEY_BYTES, normalizeStorePrefix } from "./keys.ts";
import type { GetOptions, ListOptions, ObjectInfo, ObjectStore, PutOptions, PutResult } from "./types.ts";

const MiB = 1024 * 1024;
export const MIN_PART_SIZE = 5 * MiB;
export const MAX_PART_SIZE = 5 * 1024 * MiB;
export const DEFAULT_PART_SIZE = 16 * MiB;
export const DEFAULT_QUEUE_SIZE = 4;
export const DEFAULT_MAX_ATTEMPTS = 5;
/** S3 allows at most 10,000 parts per multipart upload: the largest object a put can write is partSizeBytes × 10,000. */
export const MAX_PARTS = 10_000;
const DELETE_BATCH = 1000;

export interface S3StoreConfig {
  /** Custom endpoint (MinIO, Ceph RGW, ...), e.g. "http://127.0.0.1:9000". Omit for AWS. */
  endpoint?: string | undefined;
  region: string;
  bucket: string;
  /** Key prefix inside the bucket ("backups/prod"); leading/trailing slashes are ignored. */
  prefix?: string | undefined;
  /** Path-style addressing (needed by MinIO and most S3-compatible servers). Default: true if `endpoint` is set. */
  forcePathStyle?: boolean | undefined;
  /** Static credentials. If omitted, the AWS SDK default provider chain is used (env, IRSA web identity, IMDS...). */
  accessKeyId?: string | undefined;
  secretAccessKey?: string | undefined;
  sessionToken?: string | undefined;
  /** Multipart part size, default 16 MiB, min 5 MiB. Max object size is partSizeBytes × 10,000. */
  partSizeBytes?: number | undefined;
  /**
   * Parts uploaded concurrently, default 4. Memory per put is bounded and
   * independent of the object size: exactly queueSize + 1 reusable part
   * buffers (see multipart.ts).
   */
  queueSize?: number | undefined;
  /** Attempts per HTTP request (SDK "standard" retry mode with exponential backoff), default 5. */
  maxAttempts?: number | undefined;
  /** Keys per ListObjectsV2 page (1..1000), default 1000. */
  listPageSize?: number | undefined;
  /** TCP connect timeout, default 10 s. */
  connectionTimeoutMs?: number | undefined;
  /**
   * Socket idle timeout, default 5 min. Note that a download whose consumer
   * applies backpressure for longer than this fails with a retryable error.
   * 0 disables it.
   */
  socketTimeoutMs?: number | undefined;
  /**
   * SDK flexible checksums. "WHEN_REQUIRED" is the compatibility setting for
   * older S3-compatible servers that reject the CRC32 headers the SDK sends by
   * default. Defaults to the SDK default ("WHEN_SUPPORTED").
   */
  requestChecksumCalculation?: "WHEN_SUPPORTED" | "WHEN_REQUIRED" | undefined;
  responseChecksumValidation?: "WHEN_SUPPORTED" | "WHEN_REQUIRED" | undefined;
  logger?: Logger | undefined;
}

export interface S3Store extends ObjectStore {
  readonly kind: "s3";
  readonly bucket: string;
  /** Normalized key prefix inside the bucket ("" for none). */
  readonly prefix: string;
  /** The underlying client (for advanced uses and tests). */
  readonly client: S3Client;
  /** Aborts incomplete multipart uploads under `prefix` initiated before `olderThan`; returns how many. */
  cleanupIncomplete(prefix: string, olderThan: Date): Promise<number>;
  /** Closes the client's sockets. */
  destroy(): void;
}

const AUTH_ERROR_NAMES = new Set([
  "InvalidAccessKeyId",
  "SignatureDoesNotMatch",
  "AccessDenied",
  "ExpiredToken",
  "InvalidToken",
  "TokenRefreshRequired",
  "Forbidden",
  "InvalidClientTokenId",
  "UnrecognizedClientException",
  "AccountProblem",
  "AllAccessDisabled",
  "InvalidSecurity",
  "InvalidAccessKey",
]);

const NOT_FOUND_NAMES = new Set(["NoSuchKey", "NotFound", "NoSuchBucket"]);

const THROTTLE_OR_TRANSIENT_NAMES = new Set([
  "SlowDown",
  "Throttling",
  "ThrottlingException",
  "ThrottledException",
  "RequestThrottled",
  "RequestThrottledException",
  "TooManyRequestsException",
  "RequestLimitExceeded",
  "BandwidthLimitExceeded",
  "RequestTimeout",
  "RequestTimeoutException",
  "TimeoutError",
  "InternalError",
  "ServiceUnavailable",
  "XMinioServerNotInitialized",
]);

interface SdkErrorShape {
  name?: unknown;
  Code?: unknown;
  $metadata?: { httpStatusCode?: number | undefined } | undefined;
  $retryable?: unknown;
}

function positiveInt(name: string, value: number | undefined, def: number, min: number, max: number): number {
  const v = value ?? def;
  if (!Number.isSafeInteger(v) || v < min || v > max) {
    throw new RangeError(`s3 store: ${name} must be an integer in [${min}, ${max}], got ${value}`);
  }
  return v;
}

/** The endpoint without userinfo, query or fragment: safe to log. */
function safeEndpoint(endpoint: string): string {
  try {
    const u = new URL(endpoint);
    return `${u.protocol}//${u.host}${u.pathname === "/" ? "" : u.pathname}`;
  } catch {
    return "<invalid endpoint>";
  }
}

/**
 * Object store on S3 or an S3-compatible server (MinIO, Ceph RGW).
 *
 * put streams the body through a SHA-256 transform into multipartUpload
 * (`queueSize` parts in flight, each part a Buffer so the SDK can retry it,
 * part buffers reused), so memory per put is (queueSize + 1) × partSize
 * regardless of object size.
 */
export function createS3Store(cfg: S3StoreConfig): S3Store {
  if (typeof cfg.bucket !== "string" || cfg.bucket === "") throw new TypeError("s3 store: bucket is required");
  if (typeof cfg.region !== "string" || cfg.region === "") throw new TypeError("s3 store: region is required");
  if ((cfg.accessKeyId === undefined) !== (cfg.secretAccessKey === undefined)) {
    throw new TypeError("s3 store: accessKeyId and secretAccessKey must be given together");
  }
  const bucket = cfg.bucket;
  const prefix = normalizeStorePrefix(cfg.prefix);
  const partSize = positiveInt("partSizeBytes", cfg.partSizeBytes, DEFAULT_PART_SIZE, MIN_PART_SIZE, MAX_PART_SIZE);
  const queueSize = positiveInt("queueSize", cfg.queueSize, DEFAULT_QUEUE_SIZE, 1, 64);
  const maxAttempts = positiveInt("maxAttempts", cfg.maxAttempts, DEFAULT_MAX_ATTEMPTS, 1, 100);
  const listPageSize = positiveInt("listPageSize", cfg.listPageSize, 1000, 1, 1000);
  const connectionTimeout = positiveInt("connectionTimeoutMs", cfg.connectionTimeoutMs, 10_000, 0, 3_600_000);
  const socketTimeout = positiveInt("socketTimeoutMs", cfg.socketTimeoutMs, 300_000, 0, 86_400_000);
  const logger = cfg.logger;
  const secrets = [cfg.secretAccessKey, cfg.sessionToken].filter((s): s is string => typeof s === "string" && s.length >= 4);

  const where = `s3://${bucket}${prefix === "" ? "" : `/${prefix}`}${
    cfg.endpoint === undefined ? ` (region ${cfg.region})` : ` @ ${safeEndpoint(cfg.endpoint)}`
  }`;

  const clientConfig: S3ClientConfig = {
    region: cfg.region,
    forcePathStyle: cfg.forcePathStyle ?? cfg.endpoint !== undefined,
    maxAttempts,
    retryMode: "standard",
    requestHandler: { connectionTimeout, socketTimeout },
  };
  if (cfg.endpoint !== undefined) clientConfig.endpoint = cfg.endpoint;
  if (cfg.accessKeyId !== undefined && cfg.secretAccessKey !== undefined) {
    clientConfig.credentials = {
      accessKeyId: cfg.accessKeyId,
      secretAccessKey: cfg.secretAccessKey,
      ...(cfg.sessionToken === undefined ? {} : { sessionToken: cfg.sessionToken }),
    };
  }
  if (cfg.requestChecksumCalculation !== undefined) clientConfig.requestChecksumCalculation = cfg.requestChecksumCalculation;
  if (cfg.responseChecksumValidation !== undefined) clientConfig.responseChecksumValidation = cfg.responseChecksumValidation;
  const client = new S3Client(clientConfig);
  // Data bodies are sent with UNSIGNED-PAYLOAD: otherwise SigV4 hashes every
  // part a second time (put already computes the object's SHA-256 in the
  // stream for the manifest, and reads verify it). Each part still carries the
  // SDK's CRC32 checksum, which the server verifies on receipt.
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const req = args.request as { headers?: Record<string, string> };
      if ((context.commandName === "UploadPartCommand" || context.commandName === "PutObjectCommand") && req.headers) {
        req.headers["x-amz-content-sha256"] = "UNSIGNED-PAYLOAD";
      }
      return next(args);
    },
    { step: "build", name: "unsignedPayload" },
  );

  function scrub(text: string): string {
    let out = text;
    for (const s of secrets) out = out.split(s).join("***");
    return out;
  }

  function toStorageError(op: StorageOp, key: string | undefined, err: unknown, signal?: AbortSignal): StorageError {
    if (err instanceof StorageError) return err;
    if (signal?.aborted) return new StorageAbortedError({ op, key, cause: signal.reason });
    const e = (typeof err === "object" && err !== null ? err : {}) as SdkErrorShape;
    const status = e.$metadata?.httpStatusCode;
    const name = typeof e.Code === "string" ? e.Code : typeof e.name === "string" ? e.name : "Error";
    const msg = scrub(errorMessage(err));
    const detail = `${name}${status === undefined ? "" : ` (HTTP ${status})`}${msg && msg !== name ? `: ${msg}` : ""}`;
    if (name === "CredentialsProviderError") {
      return new StorageAuthError(`no S3 credentials could be loaded for ${where}: ${msg}`, { op, key, cause: err });
    }
    if (name === "AccessDenied") {
      return new StorageAuthError(
        `access denied: the S3 credentials were rejected by ${where} for this request (wrong credentials, or no permission on bucket "${bucket}") [${detail}]`,
        { op, key, cause: err },
      );
    }
    if (AUTH_ERROR_NAMES.has(name) || status === 401 || status === 403) {
      return new StorageAuthError(
        `the S3 credentials were rejected by ${where}: check the access key ID and secret access key (or whether the session token expired) [${detail}]`,
        { op, key, cause: err },
      );
    }
    if (name === "NoSuchBucket") {
      return new NotFoundError(`bucket "${bucket}" does not exist at ${where} [${detail}]`, { op, key, cause: err });
    }
    if (NOT_FOUND_NAMES.has(name) || status === 404) {
      return new NotFoundError(`no such object [${detail}]`, { op, key, cause: err });
    }
    const retryable =
      status !== undefined
        ? status >= 500 || status === 429 || THROTTLE_OR_TRANSIENT_NAMES.has(name)
        : THROTTLE_OR_TRANSIENT_NAMES.has(name) || isTransientSystemError(err) || e.$retryable !== undefined;
    return new StorageError(`${detail} (${where})`, { op, key, retryable, cause: err });
  }

  function fullKey(key: string, op: StorageOp): string {
    assertValidKey(key, op);
    const full = prefix === "" ? key : `${prefix}/${key}`;
    if (Buffer.byteLength(full, "utf8") > MAX_KEY_BYTES) {
      throw new StorageError(`key with store prefix is longer than ${MAX_KEY_BYTES} bytes`, { op, key });
    }
    return full;
  }

  function fullPrefix(p: string, op: StorageOp): string {
    assertValidPrefix(p, op);
    return prefix === "" ? p : `${prefix}/${p}`;
  }

  function relKey(full: string): string {
    return prefix === "" ? full : full.slice(prefix.length + 1);
  }

  async function abortMultipart(fullKeyName: string, uploadId: string): Promise<void> {
    try {
      await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: fullKeyName, UploadId: uploadId }));
    } catch (err) {
      const e = err as SdkErrorShape;
      if (e.name === "NoSuchUpload" || e.$metadata?.httpStatusCode === 404) return;
      throw err;
    }
  }

  async function put(key: string, body: PutBody, opts: PutOptions = {}): Promise<PutResult> {
    const full = fullKey(key, "put");
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
        body: hashed.stream,
        partSize,
        queueSize,
        contentType: opts.contentType,
        signal,
        onUploadId: (id) => {
          uploadId = id;
        },
      });
      multipart = r.uploadId !== undefined;
    } catch (err) {
      hashed.destroy(err instanceof Error ? err : new Error(String(err)));
      // The upload was aborted before rejecting; if that request itself
      // failed, try once more so nothing is left behind.
      if (uploadId !== undefined) {
        const id = uploadId;
        await abortMultipart(full, id).catch((abortErr: unknown) => {
          logger?.warn("storage: could not abort multipart upload; cleanupIncomplete will remove it", {
            store: where,
            key,
            uploadId: id,
            error: scrub(errorMessage(abortErr)),
          });
        });
      }
      throw toStorageError("put", key, err, signal);
    }
    if (signal?.aborted) {
      // The signal fired after the body was fully read (while the last parts /
      // CompleteMultipartUpload were in flight): honour it, leave no object.
      await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: full })).catch((err: unknown) => {
        logger?.warn("storage: could not delete object of aborted put", { store: where, key, error: scrub(errorMessage(err)) });
      });
      throw new StorageAbortedError({ op: "put", key, cause: signal.reason });
    }
    const sha256 = hashed.stream.sha256;
    if (sha256 === undefined) throw new StorageError("internal: body stream ended without a checksum", { op: "put", key });
    const size = hashed.stream.bytesSeen;
    logger?.debug("storage: put complete", { store: where, key, size, sha256, multipart });
    return { key, size, sha256 };
  }

  async function get(key: string, opts: GetOptions = {}): Promise<Readable> {
    const full = fullKey(key, "get");
    const { signal } = opts;
    if (signal?.aborted) throw new StorageAbortedError({ op: "get", key, cause: signal.reason });
    let body: unknown;
    try {
      const res = await client.send(new GetObjectCommand({ Bucket: bucket, Key: full }), signal === undefined ? {} : { abortSignal: signal });
      body = res.Body;
    } catch (err) {
      throw toStorageError("get", key, err, signal);
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
      mapError: (err) => toStorageError("get", key, err, signal),
    });
  }

  async function head(key: string): Promise<ObjectInfo | undefined> {
    const full = fullKey(key, "head");
    try {
      const res = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: full }));
      return { key, size: res.ContentLength ?? 0, lastModified: res.LastModified };
    } catch (err) {
      const mapped = toStorageError("head", key, err);
      if (mapped instanceof NotFoundError && !mapped.detail.startsWith("bucket")) return undefined;
      throw mapped;
    }
  }

  async function* list(p: string, opts: ListOptions = {}): AsyncGenerator<ObjectInfo> {
    const s3Prefix = fullPrefix(p, "list");
    const { signal } = opts;
    let token: string | undefined;
    do {
      if (signal?.aborted) throw new StorageAbortedError({ op: "list", key: p, cause: signal.reason });
      let res;
      try {
        res = await client.send(
          new ListObjectsV2Command({
            Bucket: bucket,
            ...(s3Prefix === "" ? {} : { Prefix: s3Prefix }),
            ...(token === undefined ? {} : { ContinuationToken: token }),
            MaxKeys: listPageSize,
          }),
          signal === undefined ? {} : { abortSignal: signal },
        );
      } catch (err) {
        throw toStorageError("list", p, err, signal);
      }
      for (const obj of res.Contents ?? []) {
        const k = obj.Key;
        // Skip "directory marker" objects created by some consoles.
        if (k === undefined || k.endsWith("/")) continue;
        yield { key: relKey(k), size: obj.Size ?? 0, lastModified: obj.LastModified };
      }
      token = res.IsTruncated === true ? res.NextContinuationToken : undefined;
    } while (token !== undefined && token !== "");
  }

  async function del(keys: readonly string[]): Promise<void> {
    const fulls = [...new Set(keys.map((k) => fullKey(k, "delete")))];
    for (let i = 0; i < fulls.length; i += DELETE_BATCH) {
      const batch = fulls.slice(i, i + DELETE_BATCH);
      let res;
      try {
        res = await client.send(
          new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true } }),
        );
      } catch (err) {
        throw toStorageError("delete", batch.length === 1 ? relKey(batch[0] ?? "") : undefined, err);
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
        const mapped = toStorageError("delete", failures.length === 1 ? relKey(first.Key ?? "") : undefined, synthetic);
        throw mapped;
      }
    }
  }

  async function check(signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) throw new StorageAbortedError({ op: "check", cause: signal.reason });
    try {
      await client.send(new HeadBucketCommand({ Bucket: bucket }), signal === undefined ? {} : { abortSignal: signal });
    } catch (err) {
      const mapped = toStorageError("check", undefined, err, signal);
      if (mapped instanceof NotFoundError) {
        throw new NotFoundError(`bucket "${bucket}" does not exist at ${where}`, { op: "check", cause: err });
      }
      throw mapped;
    }
  }

  async function cleanupIncomplete(p: string, olderThan: Date): Promise<number> {
    const s3Prefix = fullPrefix(p, "cleanup");
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
        throw toStorageError("cleanup", p, err);
      }
      for (const u of res.Uploads ?? []) {
        if (u.Key === undefined || u.UploadId === undefined || !u.Key.startsWith(s3Prefix)) continue;
        if (u.Initiated !== undefined && u.Initiated.getTime() >= olderThan.getTime()) continue;
        try {
          await abortMultipart(u.Key, u.UploadId);
        } catch (err) {
          throw toStorageError("cleanup", relKey(u.Key), err);
        }
        aborted++;
        logger?.info("storage: aborted stale multipart upload", {
          store: where,
          key: relKey(u.Key),
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

  return {
    kind: "s3",
    bucket,
    prefix,
    client,
    describe: () => where,
    put,
    get,
    head,
    list,
    delete: del,
    check,
    cleanupIncomplete,
    destroy: () => client.destroy(),
  };
}

/** Aborts incomplete multipart uploads under `prefix` (relative to the store prefix) initiated before `olderThan`. */
export function abortIncompleteUploads(store: S3Store, prefix: string, olderThan: Date): Promise<number> {
  return store.cleanupIncomplete(prefix, olderThan);
}
