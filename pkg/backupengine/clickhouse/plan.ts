// Restore planning shared by both methods: which databases and tables of the
// backup to restore, under which names, and what to do about tables that
// already exist - decided before anything on the server changes.
import { EngineError, type RestoreOptions } from "../types.ts";
import { existingTables, hasRows, tableKind, type DatabaseInfo, type TableKind } from "./catalog.ts";
import type { Conn } from "./conn.ts";
import { SYSTEM_DATABASES } from "./select.ts";
import { renameDatabasesInDdl } from "./sql.ts";

export interface BackupTable {
  database: string;
  name: string;
  engine: string;
  ddl: string;
  /** "schema": the backup holds no data for it (a cluster replica whose replicated tables' data comes through replication). */
  kind?: TableKind | undefined;
}

export interface PlannedDatabase extends DatabaseInfo {
  target: string;
}

export interface PlannedTable<T extends BackupTable> {
  source: T;
  kind: TableKind;
  target: { database: string; name: string };
  /** "targetdb.name" */
  key: string;
  /** DDL with databases renamed. */
  ddl: string;
}

export interface RestorePlan<T extends BackupTable> {
  databases: PlannedDatabase[];
  tables: PlannedTable<T>[];
  renames: Record<string, string>;
}

const list = (xs: Iterable<string>) => [...xs].join(", ") || "none";

export function planRestore<T extends BackupTable>(databases: readonly DatabaseInfo[], tables: readonly T[], options: RestoreOptions): RestorePlan<T> {
  const inBackup = new Set(databases.map((d) => d.name));
  for (const d of options.databases ?? []) {
    if (!inBackup.has(d)) throw new EngineError(`database "${d}" is not in this backup (it has: ${list(inBackup)})`, { retryable: false });
  }
  const tableKeys = new Set(tables.map((t) => `${t.database}.${t.name}`));
  for (const t of options.tables ?? []) {
    if (!tableKeys.has(t)) throw new EngineError(`table "${t}" is not in this backup`, { retryable: false });
  }
  const wantedTables = options.tables ? new Set(options.tables) : undefined;
  let dbNames: Set<string>;
  if (options.databases) dbNames = new Set(options.databases);
  else if (wantedTables) dbNames = new Set([...wantedTables].map((k) => tables.find((t) => `${t.database}.${t.name}` === k)?.database ?? ""));
  else dbNames = new Set(inBackup);

  const renames: Record<string, string> = {};
  for (const d of dbNames) renames[d] = options.renameDatabases?.[d] ?? d;
  for (const [from, to] of Object.entries(renames)) {
    if (!to) throw new EngineError(`cannot restore database "${from}" under an empty name`, { retryable: false });
    if (SYSTEM_DATABASES.has(to)) throw new EngineError(`cannot restore database "${from}" into the system database "${to}"`, { retryable: false });
  }

  const planned: PlannedTable<T>[] = [];
  const seen = new Map<string, string>();
  for (const t of tables) {
    const key = `${t.database}.${t.name}`;
    if (!dbNames.has(t.database) || (wantedTables && !wantedTables.has(key))) continue;
    const target = { database: renames[t.database] ?? t.database, name: t.name };
    const targetKey = `${target.database}.${target.name}`;
    const clash = seen.get(targetKey);
    if (clash) throw new EngineError(`tables ${clash} and ${key} would both be restored as ${targetKey}`, { retryable: false });
    seen.set(targetKey, key);
    planned.push({ source: t, kind: t.kind === "schema" ? "schema" : tableKind(t.engine, t.ddl), target, key: targetKey, ddl: renameDatabasesInDdl(t.ddl, renames, tableKeys) });
  }
  return {
    databases: databases.filter((d) => dbNames.has(d.name)).map((d) => ({ ...d, target: renames[d.name] ?? d.name })),
    tables: planned,
    renames,
  };
}

/** Engines whose emptiness can be checked with a SELECT. */
const checkable = (engine: string) => tableKind(engine, "") === "data" || engine === "MaterializedView";

export interface ExistingDecision {
  /** Targets that exist and are kept (not created). */
  reuse: Set<string>;
  /** Targets to drop before creating them again. */
  drop: { key: string; database: string; name: string; engine: string }[];
}

/**
 * Looks at the target tables before anything changes. Policy "fail" refuses
 * the whole restore if any target table holds data (existing empty tables are
 * reused); "drop" drops existing targets first; "append" keeps them.
 */
export async function decideExisting<T extends BackupTable>(
  conn: Conn,
  plan: RestorePlan<T>,
  policy: RestoreOptions["existingTables"],
  signal: AbortSignal,
): Promise<ExistingDecision> {
  const existing = await existingTables(conn, [...new Set(plan.databases.map((d) => d.target))], signal);
  const reuse = new Set<string>();
  const drop: ExistingDecision["drop"] = [];
  const nonEmpty: string[] = [];
  for (const t of plan.tables) {
    const engine = existing.get(t.key);
    if (engine === undefined) continue;
    if (policy === "drop") {
      drop.push({ key: t.key, database: t.target.database, name: t.target.name, engine });
      continue;
    }
    reuse.add(t.key);
    if (policy === "fail" && t.kind !== "schema" && checkable(engine) && (await hasRows(conn, t.target.database, t.target.name, signal))) {
      nonEmpty.push(t.key);
    }
  }
  if (nonEmpty.length > 0) {
    throw new EngineError(
      `restore refused: target table${nonEmpty.length > 1 ? "s" : ""} ${nonEmpty.join(", ")} already hold${nonEmpty.length > 1 ? "" : "s"} data ` +
        `(existing-tables policy "fail"; choose "drop" to replace or "append" to add); nothing was changed`,
      { retryable: false },
    );
  }
  return { reuse, drop };
}
