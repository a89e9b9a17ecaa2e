// A thin layer over @clickhouse/client: every call takes the caller's
// AbortSignal, every failure becomes an EngineError naming the (redacted)
// statement, and the server's capabilities (version, which columns the
// system tables have) are probed once.
import type { Readable } from "node:stream";
import type { ClickHouseClient, ClickHouseSettings } from "@clickhouse/client";
import { EngineError } from "../types.ts";
import { abortReason, clickhouseCode, messageOf, wrapError } from "./errors.ts";
import { httpInsert, type HttpInsertOptions } from "./httpinsert.ts";
import { httpSelect, type HttpEndpoint, type HttpSelectOptions } from "./httpselect.ts";
import { quoteString } from "./sql.ts";

export interface ServerInfo {
  version: string;
  /** [major, minor, patch] */
  v: [number, number, number];
  tablesColumns: ReadonlySet<string>;
  databasesColumns: ReadonlySet<string>;
}

export function parseVersion(version: string): [number, number, number] {
  const [a, b, c] = version.split(".").map((x) => Number.parseInt(x, 10));
  return [a || 0, b || 0, c || 0];
}

export function versionAtLeast(v: readonly [number, number, number], major: number, minor = 0): boolean {
  return v[0] > major || (v[0] === major && v[1] >= minor);
}

/** Settings as URL parameters (what the HTTP interface takes). */
function urlSettings(settings: ClickHouseSettings | undefined): Record<string, string | number | boolean> {
  const params: Record<string, string | number | boolean> = {};
  for (const [k, v] of Object.entries(settings ?? {})) {
    if (typeof v === "string" || typeof v === "number" || typeof v === "boolean") params[k] = v;
  }
  return params;
}

export interface ExecStream {
  stream: Readable;
  headers: Record<string, string | string[] | undefined>;
}

export class Conn {
  readonly client: ClickHouseClient;
  readonly username: string;
  readonly secrets: string[];
  /** The server's HTTP endpoint, when known: bulk SELECTs then bypass the client (see httpselect.ts). */
  readonly http: HttpEndpoint | undefined;

  /** Queries that read metadata (rows()) fail when the server does not answer within this (the idle timeout). */
  readonly answerTimeoutMs: number | undefined;

  constructor(client: ClickHouseClient, username: string, secrets: string[], http?: HttpEndpoint, opts: { answerTimeoutMs?: number | undefined } = {}) {
    this.client = client;
    this.username = username;
    this.secrets = secrets;
    this.http = http;
    this.answerTimeoutMs = opts.answerTimeoutMs;
  }

  /** Throws the abort reason if aborted, else the wrapped error. */
  fail(err: unknown, signal: AbortSignal, what: string, query?: string, extraSecrets: readonly string[] = []): never {
    if (signal.aborted) throw abortReason(signal);
    throw wrapError(err, { what, query, username: this.username, secrets: [...this.secrets, ...extraSecrets] });
  }

  async rows<T>(query: string, signal: AbortSignal, what: string, settings?: ClickHouseSettings, secrets?: readonly string[]): Promise<T[]> {
    signal.throwIfAborted();
    const limit = this.answerTimeoutMs;
    const bounded = limit ? AbortSignal.any([signal, AbortSignal.timeout(limit)]) : signal;
    try {
      const rs = await this.client.query({ query, format: "JSONEachRow", abort_signal: bounded, clickhouse_settings: settings });
      return await rs.json<T>();
    } catch (err) {
      if (limit && bounded.aborted && !signal.aborted) {
        throw new EngineError(`ClickHouse stalled: no answer for ${Number((limit / 1000).toFixed(1))} s while ${what}`, { cause: err, retryable: true });
      }
      this.fail(err, signal, what, query, secrets);
    }
  }

  async command(query: string, signal: AbortSignal, what: string, settings?: ClickHouseSettings): Promise<void> {
    signal.throwIfAborted();
    try {
      await this.client.command({ query, abort_signal: signal, clickhouse_settings: settings });
    } catch (err) {
      this.fail(err, signal, what, query);
    }
  }

  /**
   * Runs DDL; if the server refuses it until an `allow_*` setting is enabled
   * (LowCardinality on 18.x, old MergeTree syntax on new servers,
   * experimental types), retries with that setting - the backup came from a
   * server where the object existed.
   */
  async ddl(query: string, signal: AbortSignal, what: string): Promise<void> {
    const settings: Record<string, number> = {};
    for (let attempt = 0; ; attempt++) {
      signal.throwIfAborted();
      try {
        await this.client.command({ query, abort_signal: signal, clickhouse_settings: settings as ClickHouseSettings });
        return;
      } catch (err) {
        if (signal.aborted) throw abortReason(signal);
        const wanted = [...new Set(messageOf(err).match(/\ballow_[a-z0-9_]+/g) ?? [])].filter((s) => !(s in settings));
        if (attempt < 5 && wanted.length > 0 && clickhouseCode(err) !== undefined) {
          for (const s of wanted) settings[s] = 1;
          continue;
        }
        this.fail(err, signal, what, query);
      }
    }
  }

  /** A streaming SELECT; the caller must consume or destroy the stream. */
  async execStream(query: string, signal: AbortSignal, what: string, settings?: ClickHouseSettings): Promise<ExecStream> {
    signal.throwIfAborted();
    try {
      const r = await this.client.exec({ query, abort_signal: signal, ...(settings ? { clickhouse_settings: settings } : {}) });
      return { stream: r.stream as Readable, headers: r.response_headers };
    } catch (err) {
      this.fail(err, signal, what, query);
    }
  }

  /**
   * A streaming SELECT of bulk data (a table dump). With a known endpoint it
   * is read on a raw socket in large blocks (see httpselect.ts); an injected
   * client (chDB in tests) is used as it is.
   */
  async selectStream(query: string, signal: AbortSignal, what: string, settings?: ClickHouseSettings, opts?: HttpSelectOptions): Promise<ExecStream> {
    if (!this.http) return this.execStream(query, signal, what, settings);
    signal.throwIfAborted();
    try {
      const r = await httpSelect(this.http, query, urlSettings(settings), signal, opts);
      return { stream: r.stream, headers: r.headers };
    } catch (err) {
      this.fail(err, signal, what, query);
    }
  }

  /**
   * A streaming INSERT: `query` ends with FORMAT ..., `body` is the data.
   * With a known endpoint it is sent over node:http (httpinsert.ts), and
   * `opts.release` gets each chunk back once the socket has written it; an
   * injected client (chDB in tests) is used as it is, and releases nothing.
   */
  async insertStream(query: string, body: Readable, signal: AbortSignal, what: string, settings?: ClickHouseSettings, opts: HttpInsertOptions = {}): Promise<void> {
    signal.throwIfAborted();
    if (this.http) {
      // with a known endpoint, over node:http, which says when each chunk is written (see httpinsert.ts)
      try {
        await httpInsert(this.http, query, urlSettings(settings), body, signal, opts);
      } catch (err) {
        this.fail(err, signal, what, query);
      }
      return;
    }
    try {
      const r = await this.client.exec({ query, values: body, abort_signal: signal, clickhouse_settings: settings });
      const s = r.stream as Readable;
      for await (const _ of s) {
        // drain the (empty) response so the socket is released
      }
    } catch (err) {
      this.fail(err, signal, what, query);
    }
  }

  /** Version and capabilities; probed again for every operation (the server may have been upgraded). */
  info(signal: AbortSignal): Promise<ServerInfo> {
    return this.#probe(signal);
  }

  async #probe(signal: AbortSignal): Promise<ServerInfo> {
    const [v] = await this.rows<{ v: string }>("SELECT version() AS v", signal, "connecting");
    const version = v?.v ?? "0.0.0";
    const cols = await this.rows<{ table: string; name: string }>(
      `SELECT table, name FROM system.columns WHERE database = 'system' AND table IN (${["tables", "databases"].map(quoteString).join(", ")})`,
      signal,
      "reading system tables",
    );
    const of = (t: string) => new Set(cols.filter((c) => c.table === t).map((c) => c.name));
    return { version, v: parseVersion(version), tablesColumns: of("tables"), databasesColumns: of("databases") };
  }
}
