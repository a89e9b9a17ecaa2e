// Turning whatever @clickhouse/client (or the network) throws into an
// EngineError that says which statement failed, what ClickHouse said, and
// whether trying again may help. Nothing here ever shows a secret.
import { EngineError } from "../types.ts";
import { redact, truncate } from "./sql.ts";

/** ClickHouse error codes for authentication problems. */
const AUTH_CODES = new Set([192, 193, 194, 195, 516]);

/** ClickHouse error codes worth retrying (overload, timeouts, network, keeper, shutdown). */
const RETRYABLE_CODES = new Set([
  3, // UNEXPECTED_END_OF_FILE
  159, // TIMEOUT_EXCEEDED
  164, // READONLY (replica temporarily read-only)
  202, // TOO_MANY_SIMULTANEOUS_QUERIES
  203, // NO_FREE_CONNECTION
  209, // SOCKET_TIMEOUT
  210, // NETWORK_ERROR
  236, // ABORTED
  241, // MEMORY_LIMIT_EXCEEDED
  242, // TABLE_IS_READ_ONLY
  252, // TOO_MANY_PARTS
  279, // ALL_CONNECTION_TRIES_FAILED
  285, // TOO_FEW_LIVE_REPLICAS
  319, // UNKNOWN_STATUS_OF_INSERT
  425, // SYSTEM_ERROR
  439, // CANNOT_SCHEDULE_TASK
  473, // DEADLOCK_AVOIDED
  499, // S3_ERROR (unless access is denied, see below)
  999, // KEEPER_EXCEPTION
]);

const NETWORK_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENETDOWN",
  "EHOSTDOWN",
  "EAI_AGAIN",
  "ENOTFOUND",
  "UND_ERR_SOCKET",
  "ERR_STREAM_PREMATURE_CLOSE",
]);

function errCode(err: unknown): string | undefined {
  if (typeof err !== "object" || err === null) return undefined;
  const c = (err as { code?: unknown }).code;
  if (typeof c === "string" && NETWORK_CODES.has(c)) return c;
  if (err instanceof AggregateError) for (const e of err.errors) if (errCode(e)) return errCode(e);
  return undefined;
}

/** The ClickHouse error code of an error, from the client's parsed error or the message text. */
export function clickhouseCode(err: unknown): number | undefined {
  if (typeof err === "object" && err !== null) {
    const c = (err as { code?: unknown }).code;
    if (typeof c === "string" && /^\d+$/.test(c)) return Number(c);
  }
  const m = /Code: (\d+)/.exec(messageOf(err));
  return m ? Number(m[1]) : undefined;
}

export function messageOf(err: unknown): string {
  if (err instanceof Error) return err.message || err.name;
  return String(err);
}

/**
 * The useful part of a ClickHouse error text: without the stack trace, the
 * "e.what() = ..." suffix of old servers, or the version suffix.
 */
export function cleanServerMessage(msg: string): string {
  let m = msg;
  const st = m.indexOf(", Stack trace");
  if (st >= 0) m = m.slice(0, st);
  const st2 = m.indexOf("\nStack trace");
  if (st2 >= 0) m = m.slice(0, st2);
  m = m.replace(/, e\.what\(\) = [\w:]+\s*$/, "");
  m = m.replace(/^Code: \d+, e\.displayText\(\) = (DB::Exception: )?/, "");
  m = m.replace(/^Code: \d+\. (DB::Exception: )?/, "");
  m = m.replace(/\s*\(version [^)]*\)\s*$/, "");
  return m.trim();
}

export function isAbortError(err: unknown): boolean {
  return err instanceof Error && (err.name === "AbortError" || /aborted a request/i.test(err.message));
}

export interface WrapContext {
  /** What was being done ("listing tables", "dumping db.t"). */
  what: string;
  /** The statement, redacted and shortened into the message. */
  query?: string | undefined;
  username: string;
  /** Values that must never appear in a message. */
  secrets: readonly string[];
}

/** Wraps an error from ClickHouse or the network into an EngineError. */
export function wrapError(original: unknown, ctx: WrapContext): EngineError {
  if (original instanceof EngineError) return original;
  const raw = messageOf(original);
  // keep the original error as the cause unless its text holds a secret
  const err = redact(raw, ctx.secrets) === raw ? original : Object.assign(new Error(redact(raw, ctx.secrets)), { code: (original as { code?: unknown }).code });
  const code = clickhouseCode(original);
  const netCode = errCode(original);
  const safe = (s: string) => redact(s, ctx.secrets);
  const q = ctx.query !== undefined ? ` [query: ${truncate(safe(ctx.query))}]` : "";
  const server = safe(cleanServerMessage(raw));
  if (code !== undefined && AUTH_CODES.has(code)) {
    return new EngineError(`ClickHouse authentication failed for user ${ctx.username}: ${server} (code ${code})`, { cause: err, retryable: false });
  }
  if (netCode) {
    return new EngineError(`ClickHouse unreachable while ${ctx.what}: ${server} (${netCode})${q}`, { cause: err, retryable: true });
  }
  if (/^Timeout error\.?$/.test(raw) || /socket hang up|other side closed|aborted$/i.test(raw)) {
    return new EngineError(`ClickHouse connection failed while ${ctx.what}: ${server}${q}`, { cause: err, retryable: true });
  }
  if (code !== undefined) {
    let retryable = RETRYABLE_CODES.has(code);
    if (code === 499 && /ACCESS_DENIED|AccessDenied|InvalidAccessKeyId|SignatureDoesNotMatch|NoSuchBucket|\b403\b/.test(raw)) retryable = false;
    return new EngineError(`ClickHouse error while ${ctx.what}: ${server} (code ${code})${q}`, { cause: err, retryable });
  }
  // Not a ClickHouse error and not a known network failure (a proxy's error
  // page, an unexpected response): trying again may help.
  return new EngineError(`ClickHouse request failed while ${ctx.what}: ${server}${q}`, { cause: err, retryable: true });
}

export { abortReason } from "../../concurrency/pool.ts";
