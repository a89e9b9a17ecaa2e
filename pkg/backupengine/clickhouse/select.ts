// Which databases and tables a backup covers: include/exclude globs over
// database names and "database.table" names. System databases are never
// included.

export const SYSTEM_DATABASES: ReadonlySet<string> = new Set(["system", "INFORMATION_SCHEMA", "information_schema"]);

export interface Patterns {
  include: readonly string[];
  exclude: readonly string[];
}

/** Compiles a glob ("*" any run of characters, "?" one character; everything else literal). */
export function globToRegExp(glob: string): RegExp {
  let re = "";
  for (const c of glob) {
    if (c === "*") re += "[\\s\\S]*";
    else if (c === "?") re += "[\\s\\S]";
    else re += c.replace(/[.+^${}()|[\]\\/-]/g, "\\$&");
  }
  return new RegExp(`^${re}$`, "u");
}

export class Matcher {
  readonly #include: RegExp[];
  readonly #exclude: RegExp[];
  constructor(p: Patterns) {
    this.#include = p.include.map(globToRegExp);
    this.#exclude = p.exclude.map(globToRegExp);
  }
  matches(name: string): boolean {
    return this.#include.some((r) => r.test(name)) && !this.#exclude.some((r) => r.test(name));
  }
  /** True when the patterns select everything (include "*", nothing excluded). */
  get all(): boolean {
    return this.#include.some((r) => r.source === "^[\\s\\S]*$") && this.#exclude.length === 0;
  }
}

export interface Selection {
  databases: Patterns;
  tables: Patterns;
}

export function makeSelector(sel: Selection) {
  const dbs = new Matcher(sel.databases);
  const tables = new Matcher(sel.tables);
  return {
    database: (db: string) => !SYSTEM_DATABASES.has(db) && dbs.matches(db),
    table: (db: string, table: string) => !SYSTEM_DATABASES.has(db) && dbs.matches(db) && tables.matches(`${db}.${table}`),
    /** True when every table of a selected database is selected. */
    allTables: tables.all,
  };
}

/** MaterializedView inner tables: their data is backed up through the view. */
export function isInnerTable(name: string): boolean {
  return name.startsWith(".inner.") || name.startsWith(".inner_id.");
}
