// Small HTTP helpers on node:http: JSON responses, error bodies, bounded body
// reading and path parsing that refuses anything path-traversal-shaped.
import type { IncomingMessage, ServerResponse } from "node:http";

/** An error answered as `{ "error": { code, message, field? } }`. */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly field: string | undefined;
  readonly headers: Record<string, string>;
  constructor(status: number, code: string, message: string, opts: { field?: string | undefined; headers?: Record<string, string> } = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.field = opts.field;
    this.headers = opts.headers ?? {};
  }
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = `${JSON.stringify(body)}\n`;
  res.writeHead(status, {
    "Content-Type": "application/json; charset=utf-8",
    "Content-Length": String(Buffer.byteLength(text)),
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    ...headers,
  });
  res.end(text);
}

export function sendError(res: ServerResponse, err: ApiError): void {
  const error: { code: string; message: string; field?: string } = { code: err.code, message: err.message };
  if (err.field !== undefined) error.field = err.field;
  sendJson(res, err.status, { error }, err.headers);
}

/**
 * Splits the raw request target into decoded path segments. Refuses (400)
 * encoded slashes and backslashes, "." and ".." segments (raw or encoded),
 * NUL and other control characters and malformed percent-encoding, so no
 * segment can ever name something outside its route.
 */
export function parsePath(rawPath: string): string[] {
  if (!rawPath.startsWith("/")) throw new ApiError(400, "bad_path", "the request path must start with /");
  if (/%(2f|5c|00)/i.test(rawPath) || rawPath.includes("\\")) throw new ApiError(400, "bad_path", "encoded slashes, backslashes and NUL are not allowed in the path");
  const raw = rawPath.slice(1).split("/");
  const segments: string[] = [];
  for (const r of raw) {
    let seg: string;
    try {
      seg = decodeURIComponent(r);
    } catch {
      throw new ApiError(400, "bad_path", "malformed percent-encoding in the path");
    }
    if (seg === "." || seg === ".." || /[\u0000-\u001f\u007f/\\]/.test(seg)) throw new ApiError(400, "bad_path", "the path must not contain . or .. segments or control characters");
    segments.push(seg);
  }
  return segments;
}

/** "application/json" with optional parameters (charset=utf-8). */
export function isJsonContentType(value: string | undefined): boolean {
  if (!value) return false;
  const [type, ...params] = value.split(";").map((s) => s.trim().toLowerCase());
  if (type !== "application/json") return false;
  return params.every((p) => !p.startsWith("charset=") || p === "charset=utf-8" || p === 'charset="utf-8"');
}

/**
 * Reads a JSON body of at most `limit` bytes. A declared Content-Length over
 * the limit is refused before reading; a body that grows over it is refused
 * as soon as it does: reading stops and nothing more is kept (the connection
 * is closed after the 413, see the server).
 */
export async function readJsonBody(req: IncomingMessage, limit: number): Promise<unknown> {
  if (!isJsonContentType(req.headers["content-type"])) {
    throw new ApiError(415, "unsupported_media_type", "the body must be JSON (Content-Type: application/json)");
  }
  const text = decodeUtf8(await readBody(req, limit));
  if (text.trim() === "") throw new ApiError(400, "invalid_json", "the body is empty; send a JSON object");
  return parseJson(text);
}

/**
 * A body that may be left out (POST /api/v1/backups, .../verify): no body or
 * an empty one gives undefined; anything else must be JSON like in
 * readJsonBody.
 */
export async function readOptionalJsonBody(req: IncomingMessage, limit: number): Promise<unknown> {
  const length = req.headers["content-length"];
  if (length === "0" || (length === undefined && req.headers["transfer-encoding"] === undefined)) return undefined;
  const body = await readBody(req, limit);
  if (body.length === 0) return undefined;
  if (!isJsonContentType(req.headers["content-type"])) {
    throw new ApiError(415, "unsupported_media_type", "the body must be JSON (Content-Type: application/json), or empty");
  }
  const text = decodeUtf8(body);
  if (text.trim() === "") return undefined;
  return parseJson(text);
}

function decodeUtf8(body: Buffer): string {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(body);
  } catch {
    throw new ApiError(400, "invalid_json", "the body is not valid UTF-8");
  }
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new ApiError(400, "invalid_json", "the body is not valid JSON");
  }
}

async function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const tooLarge = () => new ApiError(413, "payload_too_large", `the body must be at most ${limit} bytes`, { headers: { Connection: "close" } });
  const declared = req.headers["content-length"];
  if (declared !== undefined && Number(declared) > limit) throw tooLarge();
  const body = await new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const cleanup = () => {
      req.off("data", onData);
      req.off("end", onEnd);
      req.off("error", onError);
      req.off("close", onClose);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        // Stop reading and drop what was read; the 413 closes the connection.
        cleanup();
        chunks.length = 0;
        req.pause();
        reject(tooLarge());
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => {
      cleanup();
      resolve(Buffer.concat(chunks, size));
    };
    const onError = () => {
      cleanup();
      reject(new ApiError(400, "bad_request", "the request body could not be read", { headers: { Connection: "close" } }));
    };
    const onClose = () => {
      if (req.complete) return;
      cleanup();
      reject(new ApiError(400, "bad_request", "the request body was cut short", { headers: { Connection: "close" } }));
    };
    req.on("data", onData);
    req.on("end", onEnd);
    req.on("error", onError);
    req.on("close", onClose);
  });
  return body;
}
