// The data of a restore, sent to ClickHouse's HTTP interface with node:http.
//
// Why not @clickhouse/client for this one request: the client pipes the body
// into its request, so nobody learns when the socket is done with a chunk.
// A restore's zstd frames are decompressed into pooled 4 MiB blocks
// (ZstdFramesDecompress with an output pool), and a block can go back to its
// pool only once its bytes are in the kernel: here each chunk is written with
// its own callback, which node:http calls once the socket has written it,
// and that callback hands it back (`release`). Without the pool, every frame
// came out of a fresh 4 MiB buffer that lived long enough to reach V8's old
// space and went only at the next full collection, so a restore's memory held
// about 64 MiB of dead frames (V8 collects when external memory has grown
// that much). See README, Performance.
//
// Only what an INSERT needs: one POST per connection (Connection: close),
// Basic auth, settings as URL parameters, the body in chunked encoding, and
// the server's error (parsed as @clickhouse/client does) when it refuses the
// data, also when it answers before it has read all of it.
import { request as httpRequest, type ClientRequest, type IncomingMessage } from "node:http";
import { request as httpsRequest } from "node:https";
import type { Readable } from "node:stream";
import { parseError } from "@clickhouse/client";
import { abortReason } from "../../concurrency/pool.ts";
import type { HttpEndpoint } from "./httpselect.ts";

export interface HttpInsertOptions {
  /**
   * Called with each body chunk once the socket has written it (or once the
   * request has failed, when nothing will read it any more): the chunk's
   * producer may then reuse it (see storage/bufferpool.ts).
   */
  release?: ((chunk: Uint8Array) => void) | undefined;
}

const MAX_ERROR_BODY = 1024 * 1024;
/** After a write fails, how long to wait for the answer the server may have sent first (its error says more than EPIPE). */
const ANSWER_GRACE_MS = 2000;

/**
 * POSTs `query` (an INSERT ... FORMAT ...) with `body` as its data and
 * resolves once the server has answered 2xx. Rejects with the server's error
 * when it refuses the data, or with the network error; either way `body` is
 * destroyed with the error. Aborting `signal` closes the connection, which
 * makes ClickHouse cancel the INSERT.
 *
 * `body` is read chunk by chunk in flowing mode (never concatenated), with
 * backpressure from the socket.
 */
export function httpInsert(
  ep: HttpEndpoint,
  query: string,
  settings: Readonly<Record<string, string | number | boolean>>,
  body: Readable,
  signal: AbortSignal,
  opts: HttpInsertOptions = {},
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal.aborted) {
      body.destroy();
      reject(abortReason(signal));
      return;
    }
    const u = new URL(ep.url);
    const params = new URLSearchParams();
    params.set("query", query);
    for (const [k, v] of Object.entries(settings)) params.set(k, String(v));
    const tls = u.protocol === "https:";
    const release = opts.release;
    let settled = false;
    /** The server's answer, once complete: undefined for 2xx, else its error. */
    let answer: { err: Error | undefined } | undefined;
    let onAnswer: (() => void) | undefined;
    let writeError: Error | undefined;

    const finish = (err: Error | undefined) => {
      if (settled) return;
      settled = true;
      signal.removeEventListener("abort", onAbort);
      if (err) {
        if (!body.destroyed) body.destroy(err);
        if (!req.destroyed) req.destroy();
        reject(err);
      } else resolve();
    };
    const onAbort = () => finish(abortReason(signal));
    signal.addEventListener("abort", onAbort, { once: true });

    const options = {
      method: "POST",
      host: u.hostname.replace(/^\[(.*)\]$/, "$1"),
      port: Number(u.port || (tls ? 443 : 80)),
      path: `${u.pathname.replace(/\/*$/, "/")}?${params.toString()}`,
      agent: false as const,
      headers: {
        Authorization: `Basic ${Buffer.from(`${ep.username}:${ep.password}`, "utf8").toString("base64")}`,
        "User-Agent": ep.userAgent ?? "clickhouse-k8s-backup",
        "Content-Type": "application/octet-stream",
        "Transfer-Encoding": "chunked",
        Connection: "close",
      },
      timeout: ep.timeoutMs,
      ...(tls && ep.ca ? { ca: ep.ca } : {}),
    };
    const req: ClientRequest = tls ? httpsRequest(options) : httpRequest(options);

    req.on("timeout", () => req.destroy(Object.assign(new Error("Timeout error."), { code: "ETIMEDOUT" })));
    req.on("error", (err: Error) => {
      // The server may have refused the data and closed while we were still
      // sending: its answer, if it comes, says why.
      writeError ??= err;
      if (answer) {
        finish(answer.err ?? err);
        return;
      }
      const t = setTimeout(() => finish(err), ANSWER_GRACE_MS);
      onAnswer = () => {
        clearTimeout(t);
        finish(answer?.err ?? err);
      };
    });
    req.on("response", (res: IncomingMessage) => {
      const status = res.statusCode ?? 0;
      const failed = status < 200 || status >= 300 || res.headers["x-clickhouse-exception-code"] !== undefined;
      const parts: Buffer[] = [];
      let len = 0;
      res.on("data", (c: Buffer) => {
        if (!failed || len >= MAX_ERROR_BODY) return;
        parts.push(c);
        len += c.length;
      });
      const done = (cut?: Error) => {
        if (answer) return;
        let err: Error | undefined;
        if (failed) {
          const text = Buffer.concat(parts).toString("utf8").trim();
          err = text ? parseError(text) : new Error(`ClickHouse answered HTTP ${status} without a message`);
        } else if (cut) err = cut;
        else if (!body.readableEnded) err = new Error("ClickHouse answered the INSERT before it had all of the data");
        answer = { err };
        if (onAnswer) onAnswer();
        else if (err || !writeError) finish(err);
      };
      res.on("end", () => done());
      res.on("error", (err: Error) => done(err));
      res.on("aborted", () => done(new Error("ClickHouse closed the connection before the end of its answer")));
    });

    const write = (chunk: Buffer) => {
      const ok = req.write(chunk, release ? () => release(chunk) : undefined);
      if (!ok) body.pause();
    };
    req.on("drain", () => {
      if (!settled) body.resume();
    });
    body.on("data", write);
    body.once("end", () => {
      if (!settled) req.end();
    });
    body.once("error", (err: Error) => finish(err));
    body.once("close", () => {
      if (!body.readableEnded && !settled) finish(body.errored ?? new Error("the data stream was closed before its end"));
    });
  });
}
