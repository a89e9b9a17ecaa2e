// Maps S3 SDK errors onto the StorageError hierarchy, with secrets scrubbed.
import {
  errorMessage,
  isTransientSystemError,
  NotFoundError,
  StorageAbortedError,
  StorageAuthError,
  StorageError,
  type StorageOp,
} from "../errors.ts";
import { PartLimitError } from "../multipart.ts";

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

/** What the SDK's errors look like, as far as the mapping cares. */
export interface SdkErrorShape {
  name?: unknown;
  Code?: unknown;
  $metadata?: { httpStatusCode?: number | undefined } | undefined;
  $retryable?: unknown;
}

export type ToStorageError = (op: StorageOp, key: string | undefined, err: unknown, signal?: AbortSignal) => StorageError;

export interface S3ErrorMapper {
  /** `text` with every secret replaced by `***`. */
  scrub(text: string): string;
  /** The StorageError for an SDK (or other) error; StorageErrors pass through unchanged. */
  toStorageError: ToStorageError;
}

export function createErrorMapper(o: { where: string; bucket: string; secrets: readonly string[] }): S3ErrorMapper {
  const { where, bucket, secrets } = o;

  function scrub(text: string): string {
    let out = text;
    for (const s of secrets) out = out.split(s).join("***");
    return out;
  }

  function toStorageError(op: StorageOp, key: string | undefined, err: unknown, signal?: AbortSignal): StorageError {
    if (err instanceof StorageError) return err;
    if (signal?.aborted) return new StorageAbortedError({ op, key, cause: signal.reason });
    if (err instanceof PartLimitError) return new StorageError(`${err.message} (${where})`, { op, key, retryable: false, cause: err });
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

  return { scrub, toStorageError };
}
