// What exists on the server: the selected databases and tables with their
// DDL, probed so that it works from ClickHouse 18.16 (fewer system-table
// columns) to current versions.
import type { Conn, ServerInfo } from "./conn.ts";
import { isInnerTable, makeSelector, type Selection } from "./select.ts";
import { materializedViewHasTarget, qualified, quoteIdent, quoteString, tokenize } from "./sql.ts";

export interface DatabaseInfo {
  name: string;
  engine: string;
  ddl: string;
}

/** data: own data, dumped; view-data: a materialized view's inner table, dumped and restored through the view; schema: DDL only. */
export type TableKind = "data" | "view-data" | "schema";

export interface TableInfo {
  database: string;
  name: string;
  engine: string;
  ddl: string;
  kind: TableKind;
  /** From system.tables where the server has it (not on 18.x). */
  totalRows?: number | undefined;
  totalBytes?: number | undefined;
}

/** Database engines whose tables live elsewhere: the database is recreated, its tables are not backed up. */
const EXTERNAL_DB_ENGINES = new Set([
  "MySQL",
  "MaterializedMySQL",
  "MaterializeMySQL",
  "PostgreSQL",
  "MaterializedPostgreSQL",
  "SQLite",
  "Dictionary",
  "Filesystem",
  "S3",
  "HDFS",
  "DataLakeCatalog",
  "Backup",
]);

/** Database engines that are just "the server's default": recreated without an ENGINE clause. */
const DEFAULT_DB_ENGINES = new Set(["Atomic", "Ordinary", "Overlay", ""]);

/** Table engines whose data a `SELECT *` returns and an `INSERT` restores. */
const DATA_ENGINES = new Set(["Log", "TinyLog", "StripeLog", "Memory", "EmbeddedRocksDB"]);

export function tableKind(engine: string, ddl: string): TableKind {
  if (engine.endsWith("MergeTree") || DATA_ENGINES.has(engine)) return "data";
  if (engine === "MaterializedView" && !materializedViewHasTarget(ddl)) return "view-data";
  return "schema";
}

export function isExternalDatabase(engine: string): boolean {
  return EXTERNAL_DB_ENGINES.has(engine);
}

/** `CREATE DATABASE IF NOT EXISTS name [ENGINE = ...]` from the recorded statement. */
export function createDatabaseSql(name: string, engine: string, ddl: string): string {
  const head = `CREATE DATABASE IF NOT EXISTS ${quoteIdent(name)}`;
  if (DEFAULT_DB_ENGINES.has(engine)) return head;
  const tokens = tokenize(ddl);
  const at = tokens.findIndex((t) => t.kind === "word" && t.text.toUpperCase() === "ENGINE");
  if (at < 0) return head;
  return `${head} ${ddl.slice(tokens[at]?.start ?? ddl.length).trim()}`;
}

const num = (v: unknown): number | undefined => (v === null || v === undefined || v === "" ? undefined : Number(v));

export interface Catalog {
  databases: DatabaseInfo[];
  tables: TableInfo[];
}

/** Lists the selected databases and tables with their DDL. */
export async function readCatalog(conn: Conn, info: ServerInfo, selection: Selection, signal: AbortSignal): Promise<Catalog> {
  const sel = makeSelector(selection);
  const dbRows = await conn.rows<{ name: string; engine: string }>("SELECT name, engine FROM system.databases", signal, "listing databases");
  const databases: DatabaseInfo[] = [];
  for (const d of dbRows) {
    if (!sel.database(d.name)) continue;
    let ddl = `CREATE DATABASE ${quoteIdent(d.name)} ENGINE = ${d.engine}`;
    try {
      const [s] = await conn.rows<{ statement: string }>(`SHOW CREATE DATABASE ${quoteIdent(d.name)}`, signal, `reading the DDL of database ${d.name}`);
      if (s?.statement) ddl = s.statement;
    } catch (err) {
      if (signal.aborted) throw err;
      // some database engines cannot show their DDL; the engine name is enough
    }
    databases.push({ name: d.name, engine: d.engine, ddl });
  }
  databases.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const local = databases.filter((d) => !isExternalDatabase(d.engine));
  if (local.length === 0) return { databases, tables: [] };

  const cols = info.tablesColumns;
  const select = ["database", "name", "engine"];
  for (const c of ["is_temporary", "create_table_query", "total_rows", "total_bytes"]) if (cols.has(c)) select.push(c);
  const rows = await conn.rows<{
    database: string;
    name: string;
    engine: string;
    is_temporary?: number | string;
    create_table_query?: string;
    total_rows?: number | string | null;
    total_bytes?: number | string | null;
  }>(
    `SELECT ${select.join(", ")} FROM system.tables WHERE database IN (${local.map((d) => quoteString(d.name)).join(", ")}) ORDER BY database, name`,
    signal,
    "listing tables",
  );
  const tables: TableInfo[] = [];
  for (const r of rows) {
    if (Number(r.is_temporary ?? 0) === 1 || isInnerTable(r.name) || !sel.table(r.database, r.name)) continue;
    let ddl = r.create_table_query ?? "";
    if (!ddl) {
      const [s] = await conn.rows<{ statement: string }>(
        `SHOW CREATE TABLE ${qualified(r.database, r.name)}`,
        signal,
        `reading the DDL of ${r.database}.${r.name}`,
      );
      ddl = s?.statement ?? "";
    }
    tables.push({
      database: r.database,
      name: r.name,
      engine: r.engine,
      ddl,
      kind: tableKind(r.engine, ddl),
      totalRows: num(r.total_rows),
      totalBytes: num(r.total_bytes),
    });
  }
  return { databases, tables };
}

/** The tables that exist in the given databases now (for restore checks). */
export async function existingTables(conn: Conn, databases: readonly string[], signal: AbortSignal): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  if (databases.length === 0) return out;
  const rows = await conn.rows<{ database: string; name: string; engine: string }>(
    `SELECT database, name, engine FROM system.tables WHERE database IN (${databases.map(quoteString).join(", ")})`,
    signal,
    "checking existing tables",
  );
  for (const r of rows) out.set(`${r.database}.${r.name}`, r.engine);
  return out;
}

/** True if the table (or view) returns at least one row. */
export async function hasRows(conn: Conn, db: string, name: string, signal: AbortSignal): Promise<boolean> {
  const rows = await conn.rows<Record<string, unknown>>(`SELECT 1 AS x FROM ${qualified(db, name)} LIMIT 1`, signal, `checking whether ${db}.${name} is empty`);
  return rows.length > 0;
}

/** The columns `SELECT *` returns (no MATERIALIZED, ALIAS or EPHEMERAL ones), in the table's order. */
export async function ordinaryColumns(conn: Conn, db: string, name: string, signal: AbortSignal): Promise<{ name: string; type: string }[]> {
  const rows = await conn.rows<{ name: string; type: string; default_type?: string; default_kind?: string }>(
    `DESCRIBE TABLE ${qualified(db, name)}`,
    signal,
    `reading the columns of ${db}.${name}`,
  );
  return rows
    .filter((r) => !["MATERIALIZED", "ALIAS", "EPHEMERAL"].includes((r.default_type ?? r.default_kind ?? "").toUpperCase()))
    .map((r) => ({ name: r.name, type: r.type }));
}
