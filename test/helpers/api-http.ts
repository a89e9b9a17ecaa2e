// HTTP helpers for the API tests. Requests go through node:http with the
// path sent exactly as given (fetch would normalise "..", "%2e%2e" away
// before the server could see them), plus a Prometheus text checker.
import { request } from "node:http";

export interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  /** Parsed JSON body, or undefined if it is not JSON. */
  json: any;
}

export interface RawRequest {
  method?: string;
  /** Sent verbatim as the request target. */
  path: string;
  headers?: Record<string, string>;
  /** JSON-encoded unless a string or Buffer. */
  body?: unknown;
  token?: string;
}

export function rawRequest(baseUrl: string, r: RawRequest): Promise<RawResponse> {
  const u = new URL(baseUrl);
  const headers: Record<string, string> = { ...(r.headers ?? {}) };
  if (r.token !== undefined) headers["Authorization"] = `Bearer ${r.token}`;
  let body: Buffer | undefined;
  if (r.body !== undefined) {
    body = Buffer.isBuffer(r.body) ? r.body : Buffer.from(typeof r.body === "string" ? r.body : JSON.stringify(r.body));
    if (!Object.keys(headers).some((k) => k.toLowerCase() === "content-type") && typeof r.body !== "string" && !Buffer.isBuffer(r.body)) {
      headers["Content-Type"] = "application/json";
    }
    headers["Content-Length"] = String(body.length);
  }
  return new Promise((resolve, reject) => {
    const req = request({ host: u.hostname, port: u.port, method: r.method ?? "GET", path: r.path, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("error", reject);
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
      });
    });
    req.on("error", reject);
    req.end(body);
  });
}

/** A client bound to one server and token. */
export function apiClient(baseUrl: string, token: string) {
  return {
    get: (path: string) => rawRequest(baseUrl, { path, token }),
    post: (path: string, body?: unknown) => rawRequest(baseUrl, { method: "POST", path, token, ...(body === undefined ? {} : { body }) }),
    del: (path: string) => rawRequest(baseUrl, { method: "DELETE", path, token }),
    raw: (r: RawRequest) => rawRequest(baseUrl, r),
  };
}

/** Polls GET `path` until `done(json)` holds; returns the last response body. */
export async function pollJson(get: () => Promise<RawResponse>, done: (json: any) => boolean, timeoutMs = 60_000, everyMs = 100): Promise<any> {
  const deadline = Date.now() + timeoutMs;
  let last: RawResponse | undefined;
  while (Date.now() < deadline) {
    last = await get();
    if (last.status === 200 && done(last.json)) return last.json;
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms; last response ${last?.status}: ${last?.text}`);
}

const SAMPLE_LINE = /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? [-+0-9.eEInfNa]+$/;

/** Checks Prometheus text format line by line; returns the samples by "name{labels}". */
export function parsePrometheusText(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  const lines = text.split("\n");
  for (const [i, line] of lines.entries()) {
    if (line === "" || line.startsWith("#")) continue;
    if (!SAMPLE_LINE.test(line)) throw new Error(`line ${i + 1} is not a Prometheus sample: ${JSON.stringify(line)}`);
    const sp = line.lastIndexOf(" ");
    samples.set(line.slice(0, sp), Number(line.slice(sp + 1)));
  }
  return samples;
}
