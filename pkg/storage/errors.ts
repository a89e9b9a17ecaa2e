/**
 * Error hierarchy for pkg/storage.
 *
 * Every error thrown by a store (or emitted by a stream it returns) is a
 * StorageError. Messages look like `put "a/b": <detail>` and carry the original
 * error as `cause`. `retryable` tells the caller whether running the whole
 * operation again later may succeed (network errors, 5xx, throttling) or not
 * (4xx, bad keys, checksum mismatches, rejected credentials). Note that the S3
 * client already retries individual requests internally (maxAttempts), so a
 * retryable error means those retries were exhausted.
 */

export type StorageOp = "put" | "get" | "head" | "list" | "delete" | "check" | "cleanup";

export interface StorageErrorOptions {
  op: StorageOp;
  key?: string | undefined;
  retryable?: boolean | undefined;
  cause?: unknown;
}

function formatMessage(op: StorageOp, key: string | undefined, detail: string): string {
  return key === undefined ? `${op}: ${detail}` : `${op} ${JSON.stringify(key)}: ${detail}`;
}

export class StorageError extends Error {
  override name: string = "StorageError";
  readonly op: StorageOp;
  readonly key: string | undefined;
  readonly retryable: boolean;
  /** The message without the `op "key": ` prefix. */
  readonly detail: string;

  constructor(detail: string, opts: StorageErrorOptions) {
    super(formatMessage(opts.op, opts.key, detail), opts.cause === undefined ? undefined : { cause: opts.cause });
    this.op = opts.op;
    this.key = opts.key;
    this.retryable = opts.retryable ?? false;
    this.detail = detail;
  }
}

/** The object (or the bucket / root directory) does not exist. */
export class NotFoundError extends StorageError {
  override name: string = "NotFoundError";
  constructor(detail: string, opts: Omit<StorageErrorOptions, "retryable">) {
    super(detail, { ...opts, retryable: false });
  }
}

export interface ChecksumExpectation {
  sha256?: string | undefined;
  size?: number | undefined;
}

export interface ChecksumActual {
  sha256: string;
  size: number;
}

/** The content read does not match the expected SHA-256 and/or size. */
export class ChecksumMismatchError extends StorageError {
  override name: string = "ChecksumMismatchError";
  readonly expected: ChecksumExpectation;
  readonly actual: ChecksumActual;

  constructor(expected: ChecksumExpectation, actual: ChecksumActual, opts: Omit<StorageErrorOptions, "retryable" | "cause">) {
    const parts: string[] = [];
    if (expected.size !== undefined && expected.size !== actual.size) {
      parts.push(`size ${actual.size} != expected ${expected.size}`);
    }
    if (expected.sha256 !== undefined && expected.sha256.toLowerCase() !== actual.sha256) {
      parts.push(`sha256 ${actual.sha256} != expected ${expected.sha256.toLowerCase()}`);
    }
    super(`checksum mismatch (content is corrupt or not the expected object): ${parts.join(", ")}`, {
      ...opts,
      retryable: false,
    });
    this.expected = { ...expected };
    this.actual = { ...actual };
  }
}

/** The key is empty, absolute, contains `..`/`.`/empty segments, backslashes, NUL, ... */
export class InvalidKeyError extends StorageError {
  override name: string = "InvalidKeyError";
  constructor(detail: string, opts: Omit<StorageErrorOptions, "retryable">) {
    super(detail, { ...opts, retryable: false });
  }
}

/** The storage rejected the credentials (wrong key/secret, expired token, access denied). */
export class StorageAuthError extends StorageError {
  override name: string = "StorageAuthError";
  constructor(detail: string, opts: Omit<StorageErrorOptions, "retryable">) {
    super(detail, { ...opts, retryable: false });
  }
}

/** The operation was cancelled through its AbortSignal. `cause` is `signal.reason`. */
export class StorageAbortedError extends StorageError {
  override name: string = "StorageAbortedError";
  constructor(opts: Omit<StorageErrorOptions, "retryable">) {
    super("aborted", { ...opts, retryable: false });
  }
}

export function isStorageError(err: unknown): err is StorageError {
  return err instanceof StorageError;
}

/** True for StorageErrors marked retryable; false for everything else. */
export function isRetryableStorageError(err: unknown): boolean {
  return err instanceof StorageError && err.retryable;
}

/** Node system error codes that indicate a transient network / resource problem. */
const TRANSIENT_SYSTEM_CODES = new Set([
  "ECONNRESET",
  "ECONNREFUSED",
  "ECONNABORTED",
  "ETIMEDOUT",
  "EPIPE",
  "ENOTFOUND",
  "EAI_AGAIN",
  "ENETUNREACH",
  "ENETDOWN",
  "EHOSTUNREACH",
  "EHOSTDOWN",
  "ERR_STREAM_PREMATURE_CLOSE",
  "UND_ERR_SOCKET",
  "EAGAIN",
  "EBUSY",
  "EMFILE",
  "ENFILE",
]);

/** Best-effort: is this (non-HTTP) error a transient network or resource error? */
export function isTransientSystemError(err: unknown): boolean {
  if (typeof err !== "object" || err === null) return false;
  const code = (err as { code?: unknown }).code;
  if (typeof code === "string" && TRANSIENT_SYSTEM_CODES.has(code)) return true;
  const name = (err as { name?: unknown }).name;
  if (name === "TimeoutError") return true;
  const cause = (err as { cause?: unknown }).cause;
  return cause !== undefined && cause !== err && isTransientSystemError(cause);
}

/** `err.message` if it is an Error, else a string rendering. */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  if (typeof err === "string") return err;
  try {
    return JSON.stringify(err);
  } catch {
    return String(err);
  }
}
