// The server's lifecycle: create the node:http server with its timeouts,
// listen, and stop (stop accepting; then, after a grace period, close every
// connection).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Logger } from "winston";
import { describeError } from "../errors.ts";
import type { ApiTimeouts } from "./types.ts";

export type ResolvedTimeouts = Required<ApiTimeouts>;

/** The defaults; headers never get longer than the whole request. */
export function resolveTimeouts(t: ApiTimeouts = {}): ResolvedTimeouts {
  const requestMs = t.requestMs ?? 30_000;
  return {
    requestMs,
    headersMs: Math.min(t.headersMs ?? 10_000, requestMs),
    keepAliveMs: t.keepAliveMs ?? 5_000,
    healthMs: t.healthMs ?? 4_000,
  };
}

function urlFor(host: string, port: number): string {
  const h = host === "0.0.0.0" || host === "" ? "127.0.0.1" : host === "::" ? "[::1]" : host.includes(":") ? `[${host}]` : host;
  return `http://${h}:${port}`;
}

export interface ListenOptions {
  host: string;
  /** 0 = any free port. */
  port: number;
  timeouts: ResolvedTimeouts;
  logger: Logger;
}

/** Creates the server and resolves once it listens (rejects if it cannot). */
export async function listen(
  listener: (req: IncomingMessage, res: ServerResponse) => void,
  opts: ListenOptions,
): Promise<{ server: Server; port: number; url: string }> {
  const { headersMs, keepAliveMs, requestMs } = opts.timeouts;
  const { logger } = opts;
  const server: Server = createServer(
    {
      requestTimeout: requestMs,
      headersTimeout: headersMs,
      keepAliveTimeout: keepAliveMs,
      // how often Node checks connections against headersTimeout / requestTimeout
      connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(headersMs / 4))),
    },
    listener,
  );
  server.keepAliveTimeout = keepAliveMs;

  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    server.once("error", onError);
    server.listen(opts.port, opts.host, () => {
      server.off("error", onError);
      resolve();
    });
  });
  server.on("error", (err) => logger.error("api server error", { error: describeError(err) }));
  const port = (server.address() as AddressInfo).port;
  const url = urlFor(opts.host, port);
  logger.info("api listening", { url, host: opts.host, port });
  return { server, port, url };
}

export interface Shutdown {
  /** Stops accepting connections; requests in flight go on. */
  stopAccepting(): Promise<void>;
  /** stopAccepting, waits up to graceMs for requests in flight, then closes every connection. */
  close(graceMs: number): Promise<void>;
}

/** `onStop` runs when the server stops accepting (readiness then reports shutting down). */
export function shutdown(server: Server, onStop: () => void): Shutdown {
  let closed: Promise<void> | undefined;
  const stopAccepting = async (): Promise<void> => {
    onStop();
    closed ??= new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeIdleConnections();
    });
  };
  return {
    stopAccepting,
    close: async (graceMs: number) => {
      await stopAccepting();
      const done = closed!;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([done, new Promise<void>((r) => (timer = setTimeout(r, graceMs)))]);
      clearTimeout(timer);
      server.closeAllConnections();
      await done;
    },
  };
}
