// S3 store configuration: defaults, validation, and the SDK client built from it.
import { S3Client, type S3ClientConfig } from "@aws-sdk/client-s3";
import type { Logger } from "winston";
import { normalizeStorePrefix } from "../keys.ts";

const MiB = 1024 * 1024;
export const MIN_PART_SIZE = 5 * MiB;
export const MAX_PART_SIZE = 5 * 1024 * MiB;
export const DEFAULT_PART_SIZE = 16 * MiB;
export const DEFAULT_QUEUE_SIZE = 4;
export const DEFAULT_MAX_ATTEMPTS = 5;
/** S3 allows at most 10,000 parts per multipart upload: the largest object a put can write is partSizeBytes × maxParts. */
export const MAX_PARTS = 10_000;
/** S3's limit on the size of one object (5 TiB). */
export const MAX_OBJECT_SIZE = 5 * 1024 * 1024 * MiB;

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
  /** Multipart part size, default 16 MiB, min 5 MiB. Max object size is partSizeBytes × maxParts (at most 5 TiB). */
  partSizeBytes?: number | undefined;
  /**
   * Most parts one multipart upload may have, default (and at most) 10,000,
   * S3's limit. Lower it for testing and for S3-compatible servers with lower
   * limits. With partSizeBytes it gives the store's maxObjectBytes.
   */
  maxParts?: number | undefined;
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

/** The validated settings a store works with. */
export interface ResolvedS3Config {
  bucket: string;
  /** Normalized key prefix inside the bucket ("" for none). */
  prefix: string;
  partSize: number;
  maxParts: number;
  /** partSize × maxParts, capped at MAX_OBJECT_SIZE. */
  maxObjectBytes: number;
  queueSize: number;
  maxAttempts: number;
  listPageSize: number;
  connectionTimeout: number;
  socketTimeout: number;
  /** Human-readable location for logs and errors, without secrets. */
  where: string;
  /** Secret values that must never appear in a message. */
  secrets: string[];
}

function positiveInt(name: string, value: number | undefined, def: number, min: number, max: number): number {
  const v = value ?? def;
  if (!Number.isSafeInteger(v) || v < min || v > max) {
    throw new RangeError(`s3 store: ${name} must be an integer in [${min}, ${max}], got ${value}`);
  }
  return v;
}

/** The endpoint without userinfo, query or fragment: safe to log. */
export function safeEndpoint(endpoint: string): string {
  try {
    const u = new URL(endpoint);
    return `${u.protocol}//${u.host}${u.pathname === "/" ? "" : u.pathname}`;
  } catch {
    return "<invalid endpoint>";
  }
}

/** Validates `cfg` and fills in the defaults; throws TypeError / RangeError / InvalidKeyError. */
export function resolveS3Config(cfg: S3StoreConfig): ResolvedS3Config {
  if (typeof cfg.bucket !== "string" || cfg.bucket === "") throw new TypeError("s3 store: bucket is required");
  if (typeof cfg.region !== "string" || cfg.region === "") throw new TypeError("s3 store: region is required");
  if ((cfg.accessKeyId === undefined) !== (cfg.secretAccessKey === undefined)) {
    throw new TypeError("s3 store: accessKeyId and secretAccessKey must be given together");
  }
  const bucket = cfg.bucket;
  const prefix = normalizeStorePrefix(cfg.prefix);
  const partSize = positiveInt("partSizeBytes", cfg.partSizeBytes, DEFAULT_PART_SIZE, MIN_PART_SIZE, MAX_PART_SIZE);
  const maxParts = positiveInt("maxParts", cfg.maxParts, MAX_PARTS, 1, MAX_PARTS);
  return {
    bucket,
    prefix,
    partSize,
    maxParts,
    maxObjectBytes: Math.min(partSize * maxParts, MAX_OBJECT_SIZE),
    queueSize: positiveInt("queueSize", cfg.queueSize, DEFAULT_QUEUE_SIZE, 1, 64),
    maxAttempts: positiveInt("maxAttempts", cfg.maxAttempts, DEFAULT_MAX_ATTEMPTS, 1, 100),
    listPageSize: positiveInt("listPageSize", cfg.listPageSize, 1000, 1, 1000),
    connectionTimeout: positiveInt("connectionTimeoutMs", cfg.connectionTimeoutMs, 10_000, 0, 3_600_000),
    socketTimeout: positiveInt("socketTimeoutMs", cfg.socketTimeoutMs, 300_000, 0, 86_400_000),
    where: `s3://${bucket}${prefix === "" ? "" : `/${prefix}`}${
      cfg.endpoint === undefined ? ` (region ${cfg.region})` : ` @ ${safeEndpoint(cfg.endpoint)}`
    }`,
    secrets: [cfg.secretAccessKey, cfg.sessionToken].filter((s): s is string => typeof s === "string" && s.length >= 4),
  };
}

/** The SDK client for `cfg`, with data bodies sent as UNSIGNED-PAYLOAD. */
export function createS3Client(cfg: S3StoreConfig, r: ResolvedS3Config): S3Client {
  const clientConfig: S3ClientConfig = {
    region: cfg.region,
    forcePathStyle: cfg.forcePathStyle ?? cfg.endpoint !== undefined,
    maxAttempts: r.maxAttempts,
    retryMode: "standard",
    requestHandler: { connectionTimeout: r.connectionTimeout, socketTimeout: r.socketTimeout },
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
  return client;
}
