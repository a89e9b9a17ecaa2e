import { InvalidKeyError, type StorageOp } from "./errors.ts";

/** S3's limit on the length of a full object key (UTF-8 bytes); the store prefix counts too. */
export const MAX_KEY_BYTES = 1024;

/** Infix of the filesystem backend's in-progress files; reserved in keys of both backends. */
export const TEMP_INFIX = ".tmp-";

/**
 * Returns the reason `key` is not an acceptable object key, or undefined if it is.
 *
 * Keys are `/`-separated relative paths. Rejected (in both backends, so that a
 * key layout that works on one works on the other and path traversal is
 * impossible): empty keys, absolute keys (`/x`), empty segments (`a//b`, `a/`),
 * `.` and `..` segments, backslashes, NUL and other control characters,
 * Windows drive prefixes (`C:`), segments containing `.tmp-` (reserved for the
 * filesystem backend's temp files), and keys longer than 1024 UTF-8 bytes.
 */
export function keyProblem(key: unknown): string | undefined {
  if (typeof key !== "string") return "key must be a string";
  if (key.length === 0) return "key is empty";
  if (key.startsWith("/")) return "key must be relative, not absolute";
  if (key.includes("\\")) return "key must not contain backslashes";
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(key)) return "key must not contain NUL or control characters";
  if (/^[A-Za-z]:/.test(key)) return "key must not start with a drive letter";
  if (Buffer.byteLength(key, "utf8") > MAX_KEY_BYTES) return `key is longer than ${MAX_KEY_BYTES} bytes`;
  for (const segment of key.split("/")) {
    if (segment === "") return "key must not contain empty segments (leading, trailing or double slashes)";
    if (segment === "..") return "key must not contain '..' segments";
    if (segment === ".") return "key must not contain '.' segments";
    if (segment.includes(TEMP_INFIX)) return `key segments must not contain '${TEMP_INFIX}' (reserved for in-progress uploads)`;
  }
  return undefined;
}

/** Throws InvalidKeyError unless `key` is acceptable (see keyProblem). */
export function assertValidKey(key: unknown, op: StorageOp): asserts key is string {
  const problem = keyProblem(key);
  if (problem !== undefined) {
    throw new InvalidKeyError(problem, { op, key: typeof key === "string" ? key : String(key) });
  }
}

/**
 * Validates a list/cleanup prefix. The empty string means "everything". A
 * prefix is matched as a plain string prefix of keys (S3 semantics; `a/b`
 * matches `a/b/c` and `a/bc`); a trailing `/` is allowed. Otherwise the same
 * rules as keys apply, except that the last segment may be partial.
 */
export function assertValidPrefix(prefix: unknown, op: StorageOp): asserts prefix is string {
  if (typeof prefix !== "string") {
    throw new InvalidKeyError("prefix must be a string", { op, key: String(prefix) });
  }
  if (prefix === "") return;
  const body = prefix.endsWith("/") ? prefix.slice(0, -1) : prefix;
  const problem = keyProblem(body);
  if (problem !== undefined) {
    throw new InvalidKeyError(problem.replace(/^key/, "prefix"), { op, key: prefix });
  }
}

/**
 * Normalizes a store-level prefix from configuration (S3 `prefix`): strips
 * leading/trailing slashes; "" for none. Throws InvalidKeyError for traversal.
 */
export function normalizeStorePrefix(prefix: string | undefined): string {
  const trimmed = (prefix ?? "").replace(/^\/+/, "").replace(/\/+$/, "");
  if (trimmed === "") return "";
  assertValidKey(trimmed, "check");
  return trimmed;
}
