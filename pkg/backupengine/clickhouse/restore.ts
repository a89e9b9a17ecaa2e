// Restore of a dump backup, built so that it destroys nothing before the new
// data is proven:
//
//  1. Decide, before anything changes: which targets exist, what the policy
//     does with each, whether an existing table's schema matches the backup
//     (fail/append), and whether every replaced object can be staged.
//  2. Stage: every data table is created under a staging name next to its
//     target and filled; its rows are counted in the stream as they are sent
//     and compared with the manifest (and with the server's count where the
//     engine keeps rows as inserted); the SHA-256 of every object is checked
//     at its end. A failure here drops the staging tables: nothing else has
//     changed.
//  3. Swap: one RENAME TABLE moves every replaced object aside and every
//     staged table into place.
//  4. Views, materialized views, dictionaries and tables over other tables
//     are created once their sources are in place; a materialized view's own
//     data is inserted and counted right after it.
//  5. Append (fill) existing tables from their staging tables, server-side.
//  6. Commit: drop the objects moved aside and the staging tables.
//
// A failure in 3-5 rolls back: what the restore created is dropped and the
// objects moved aside are renamed back. A runner that died in the middle
// finds the staging tables and the moved-aside objects when it starts
// (cleanupInterrupted).
import { createHash, randomBytes } from "node:crypto";
import { PassThrough, type Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { ClickHouseSettings } from "@clickhouse/client";
import type { Logger } from "winston";
import type { InterruptedCleanup, Progress, RestoreRequest, RestoreResult } from "../types.ts";
import { EngineError } from "../types.ts";
import { chunkReleaseOf } from "../../storage/bufferpool.ts";
import { runPool } from "../../concurrency/pool.ts";
import { createDatabaseSql, existingTables, hasRows, ordinaryColumns } from "./catalog.ts";
import { CompressedStreamCheck } from "./compressed.ts";
import type { Conn, ServerInfo } from "./conn.ts";
import { versionAtLeast } from "./conn.ts";
import { dumpDetails, type DumpDetails, type DumpTable } from "./details.ts";
import { DUMP_CONCURRENCY, progressReporter, linked, type DumpContext } from "./dump.ts";
import { abortReason, messageOf } from "./errors.ts";
import { NativeCountStream, NativeWalker } from "./nativewalk.ts";
import { CATEGORY_TABLE, dependencyOrder, restoreCategory } from "./order.ts";
import { planRestore, type PlannedTable } from "./plan.ts";
import { qualified, quoteIdent, quoteString, referencedNames, renameCreatedObject, tokenize } from "./sql.ts";
import { ByteCounter, dumpZstdDecompressor, FailureTracker, IdleWatch, StallError } from "./streams.ts";

/** Every object a restore creates under a name of its own starts with this. */
export const STAGING_PREFIX = "_chbackup_stage_";
/** Objects a restore moved aside (to be dropped once the restore has committed) start with this. */
export const ASIDE_PREFIX = "_chbackup_old_";

/** `<prefix><restore id>_<name>`, or a hash of the name where the name is too long for a file name. */
export function workName(prefix: string, rid: string, name: string): string {
  const tail = Buffer.byteLength(name) <= 160 ? name : `h${createHash("sha256").update(name).digest("hex").slice(0, 24)}`;
  return `${prefix}${rid}_${tail}`;
}

/** The name a staging or moved-aside object stands for, or undefined if it is not one (or was hashed). */
export function workTarget(name: string): { kind: "stage" | "aside"; rid: string; target: string | undefined } | undefined {
  for (const [prefix, kind] of [
    [STAGING_PREFIX, "stage"],
    [ASIDE_PREFIX, "aside"],
  ] as const) {
    if (!name.startsWith(prefix)) continue;
    const m = /^([0-9a-f]{8})_(.*)$/s.exec(name.slice(prefix.length));
    if (!m) return undefined;
    const rest = m[2] ?? "";
    return { kind, rid: m[1] ?? "", target: rest.length > 0 && !/^h[0-9a-f]{24}$/.test(rest) ? rest : undefined };
  }
  return undefined;
}

/** Engines whose count() after an INSERT equals the rows inserted (no merge folds rows together). */
/** A TTL may remove expired rows as soon as parts are written or merged. */
function hasTtl(ddl: string): boolean {
  return tokenize(ddl).some((t) => t.kind === "word" && t.text.toUpperCase() === "TTL");
}

/** Engines whose count() right after an INSERT equals the rows inserted (nothing folds or drops rows). */
function countIsExact(engine: string, ddl: string): boolean {
  if (hasTtl(ddl)) return false;
  return engine === "MergeTree" || ["Log", "TinyLog", "StripeLog", "Memory"].includes(engine);
}

/** MergeTree engines whose merges fold rows together (exact counts need their merges stopped); not the replicated ones. */
function mergesFoldRows(engine: string): boolean {
  return /^(Replacing|Summing|Aggregating|Collapsing|VersionedCollapsing|Graphite|Coalescing)MergeTree$/.test(engine);
}

/** Database engines where renaming a materialized view renames its inner table along with it. */
function renameKeepsInnerTable(dbEngine: string | undefined): boolean {
  return dbEngine === "Atomic" || dbEngine === "Replicated";
}

type Action = "create" | "replace" | "fill" | "keep";

interface MovedAside {
  db: string;
  aside: string;
  target: string;
  engine: string;
}

interface Step {
  t: PlannedTable<DumpTable>;
  action: Action;
  /** Engine of the existing target (replace, fill, keep). */
  existing?: string | undefined;
  /** Data goes through a staging table that is renamed into place (create/replace of a data table). */
  staged: boolean;
  /** Name of the staging table (staged tables and fill). */
  stage?: string | undefined;
  /** Name the replaced object was moved to. */
  aside?: string | undefined;
  rows: number;
}

function parseDetails(details: unknown): DumpDetails {
  const r = dumpDetails.safeParse(details);
  if (!r.success) throw new EngineError(`backup details are not a ClickHouse dump (${r.error.issues[0]?.message ?? "invalid"})`, { retryable: false });
  return r.data;
}

/** The first difference between two column lists, as a sentence; undefined if they are equal. */
export function schemaDifference(
  table: readonly { name: string; type: string }[],
  backup: readonly { name: string; type: string }[],
): string | undefined {
  const n = Math.max(table.length, backup.length);
  for (let i = 0; i < n; i++) {
    const a = table[i];
    const b = backup[i];
    const show = (c: { name: string; type: string } | undefined) => (c ? `\`${c.name}\` ${c.type}` : "no column");
    if (a?.name !== b?.name || a?.type !== b?.type) return `column ${i + 1} is ${show(a)} in the table and ${show(b)} in the backup`;
  }
  return undefined;
}

async function databaseEngines(conn: Conn, signal: AbortSignal): Promise<Map<string, string>> {
  const rows = await conn.rows<{ name: string; engine: string }>("SELECT name, engine FROM system.databases", signal, "listing databases");
  return new Map(rows.map((r) => [r.name, r.engine]));
}

async function tableEngine(conn: Conn, db: string, name: string, signal: AbortSignal): Promise<string | undefined> {
  const rows = await conn.rows<{ engine: string }>(
    `SELECT engine FROM system.tables WHERE database = ${quoteString(db)} AND name = ${quoteString(name)}`,
    signal,
    `looking up ${db}.${name}`,
  );
  return rows[0]?.engine;
}

/** Settings of the restore INSERTs. */
function insertSettings(info: ServerInfo): Record<string, number> {
  // a restore must not lose blocks that happen to repeat (replicated tables deduplicate inserts)
  const s: Record<string, number> = { insert_deduplicate: 0 };
  // 18.x refuses LowCardinality columns without this, also on INSERT when views are involved
  if (!versionAtLeast(info.v, 19, 0)) s["allow_experimental_low_cardinality_type"] = 1;
  // newer servers fold rows of one inserted block in Replacing/Summing/... tables (optimize_on_insert): the restore's count must see every row sent
  if (versionAtLeast(info.v, 21, 0)) s["optimize_on_insert"] = 0;
  return s;
}

const plural = (n: number, one: string, many = `${one}s`) => (n === 1 ? one : many);

class Restore {
  readonly #ctx: DumpContext;
  readonly #conn: Conn;
  readonly #info: ServerInfo;
  readonly #req: RestoreRequest;
  readonly #log: Logger;
  readonly #rid = randomBytes(4).toString("hex");
  readonly #dropSync: string;
  /** Databases this restore created (dropped again on failure when they hold nothing else). */
  readonly #createdDbs: string[] = [];
  /** Objects that exist because of this restore, newest last (dropped on rollback); `movesTo`: the target a staging table becomes. */
  readonly #created: { db: string; name: string; engine: string; movesTo?: string }[] = [];
  /** Objects moved aside by the swap. */
  #movedAside: MovedAside[] = [];
  /** Targets that now hold staged data (moved in by the swap). */
  #movedIn: { db: string; name: string }[] = [];
  readonly #appended: string[] = [];
  /** Objects without data that were dropped to be created again, with the DDL a rollback creates them with. */
  readonly #droppedWithDdl: { key: string; engine: string; ddl: string }[] = [];
  readonly #progress: Progress;
  readonly #report: (p: Progress, force?: boolean) => void;

  constructor(ctx: DumpContext, info: ServerInfo, req: RestoreRequest) {
    this.#ctx = ctx;
    this.#conn = ctx.conn;
    this.#info = info;
    this.#req = req;
    this.#log = req.logger.child({ restoreId: this.#rid });
    this.#dropSync = versionAtLeast(info.v, 21, 0) ? " SYNC" : "";
    this.#progress = { phase: "planning", tablesDone: 0, tablesTotal: 0, bytes: 0, rows: 0 };
    this.#report = progressReporter(req.onProgress);
  }

  /** `checkOnly`: step 1 alone (everything that can refuse the restore), nothing changes. */
  async run(checkOnly = false): Promise<RestoreResult> {
    const req = this.#req;
    const signal = req.signal;
    const details = parseDetails(req.backup.details);
    const plan = planRestore(details.databases, details.tables, req.options);
    const steps = await this.#decide(details, plan.tables, plan.databases.map((d) => ({ target: d.target, engine: d.engine })));
    if (checkOnly) return { databases: plan.databases.map((d) => d.target), tables: [] };
    // (the ordering items are the steps themselves: what the phases record on them is what the result reports)
    const ordered = dependencyOrder(
      steps.map((s) => Object.assign(s, { key: s.t.key, category: restoreCategory(s.t.source.engine), refs: referencedNames(s.t.ddl, s.t.key) })),
    );
    this.#progress.tablesTotal = steps.filter((s) => s.t.kind !== "schema" && s.action !== "keep").length;
    this.#setPhase("staging");
    let committed = false;
    try {
      for (const d of plan.databases) {
        const had = await this.#conn.rows<{ name: string }>(`SELECT name FROM system.databases WHERE name = ${quoteString(d.target)}`, signal, "listing databases");
        if (had.length > 0) continue;
        this.#createdDbs.push(d.target);
        await this.#change("command", createDatabaseSql(d.target, d.engine, d.ddl), `creating database ${d.target}`);
      }
      // objects the user allowed to be dropped without staging go first, as before staging existed
      for (const s of [...ordered].reverse()) {
        if (s.action === "replace" && !this.#canMoveAside(s) && s.t.kind !== "schema") await this.#drop(s.t.target.database, s.t.target.name, s.existing ?? "", `dropping ${s.t.key}`);
      }

      // 2. stage the data tables
      const storage = ordered.filter((s) => restoreCategory(s.t.source.engine) === CATEGORY_TABLE && s.t.kind === "data" && s.action !== "keep");
      for (const s of storage) await this.#createStage(s, details);
      await runPool(storage, this.#ctx.concurrency ?? DUMP_CONCURRENCY, signal, async (s, sig) => {
        const into = s.stage ?? s.t.target.name;
        s.rows = await this.#insertData(s, details, into, sig);
        this.#tableDone(s);
      });

      // 3. swap
      this.#setPhase("swapping");
      await this.#swap(ordered);

      // 4. everything else in dependency order; a materialized view's own data right after the view
      this.#setPhase("creating views");
      for (const s of ordered) {
        if (storage.includes(s) || s.action === "keep" || s.action === "fill") continue;
        if (restoreCategory(s.t.source.engine) === CATEGORY_TABLE && s.t.kind === "data") continue;
        this.#created.push({ db: s.t.target.database, name: s.t.target.name, engine: s.t.source.engine });
        await this.#change("ddl", s.t.ddl, `creating ${s.t.key}`);
        if (s.t.kind === "view-data") {
          s.rows = await this.#insertData(s, details, s.t.target.name, signal);
          this.#tableDone(s);
        }
      }
      // view-data appended into existing views: staged like tables, then moved by INSERT ... SELECT
      for (const s of ordered) {
        if (s.action === "fill" && s.t.kind === "view-data") {
          await this.#createStage(s, details);
          s.rows = await this.#insertData(s, details, s.stage!, signal);
          this.#tableDone(s);
        }
      }

      // 5. append
      this.#setPhase("appending");
      for (const s of ordered) if (s.action === "fill") await this.#fill(s, details);

      // 6. commit
      committed = true;
      this.#setPhase("committing");
      await this.#commit();
    } catch (err: unknown) {
      if (committed) {
        // the restore is in place; only the clean-up of the old copies failed
        this.#log.error("clickhouse restore: could not drop the old copies after the restore", { error: messageOf(err) });
      } else {
        throw await this.#rollback(err);
      }
    }
    this.#progress.currentTable = undefined;
    this.#report({ ...this.#progress }, true);
    const total = steps.reduce((n, s) => n + s.rows, 0);
    this.#log.info("clickhouse restore: done", { tables: steps.length, rows: total });
    return {
      databases: plan.databases.map((d) => d.target),
      tables: steps.map((s) => ({ database: s.t.target.database, name: s.t.target.name, rows: s.rows })),
    };
  }

  #setPhase(phase: string): void {
    this.#progress.phase = phase;
    this.#report({ ...this.#progress }, true);
  }

  #tableDone(s: Step): void {
    this.#progress.tablesDone++;
    this.#progress.rows += s.rows;
    this.#report({ ...this.#progress }, true);
  }

  /** 1. Everything that can refuse the restore is decided before anything changes. */
  async #decide(details: DumpDetails, tables: PlannedTable<DumpTable>[], dbs: { target: string; engine: string }[]): Promise<Step[]> {
    const { signal, options } = this.#req;
    const conn = this.#conn;
    const existing = await existingTables(conn, [...new Set(dbs.map((d) => d.target))], signal);
    const dbEngines = await databaseEngines(conn, signal);
    const dbEngineOf = (db: string) => dbEngines.get(db) ?? dbs.find((d) => d.target === db)?.engine;
    this.#dbEngineOf = dbEngineOf;
    const steps: Step[] = [];
    const nonEmpty: string[] = [];
    const mismatched: string[] = [];
    const unstageable: string[] = [];
    for (const t of tables) {
      const engine = existing.get(t.key);
      const step: Step = { t, action: "create", existing: engine, staged: false, rows: 0 };
      if (engine !== undefined) {
        if (options.existingTables === "drop") step.action = "replace";
        else if (t.kind === "schema") step.action = "keep";
        else {
          step.action = "fill";
          if (options.existingTables === "fail" && (await hasRows(conn, t.target.database, t.target.name, signal))) nonEmpty.push(t.key);
        }
      }
      if (t.kind === "data" && step.action !== "keep" && step.action !== "fill") step.staged = !t.source.engine.startsWith("Replicated");
      if (step.action === "replace" && !this.#canMoveAside(step)) {
        const why = t.source.engine.startsWith("Replicated")
          ? `${t.key} (${t.source.engine}: a staging copy would share its replication path)`
          : `${t.key} (a materialized view with an inner table, in a database of engine ${dbEngineOf(t.target.database) ?? "unknown"}, where RENAME does not move the inner table)`;
        if (t.kind !== "schema" && !options.allowUnstagedDrop) unstageable.push(why);
      }
      // schema of existing tables that receive data
      if (step.action === "fill") {
        if (engine !== t.source.engine) mismatched.push(`${t.key}: the table's engine is ${engine} and the backup's is ${t.source.engine}`);
        else if (t.source.columns) {
          const diff = schemaDifference(await ordinaryColumns(conn, t.target.database, t.target.name, signal), t.source.columns);
          if (diff) mismatched.push(`${t.key}: ${diff}`);
        }
      }
      steps.push(step);
    }
    const refuse = (what: string) => new EngineError(`restore refused: ${what}; nothing was changed`, { retryable: false });
    if (nonEmpty.length > 0) {
      throw refuse(
        `target ${plural(nonEmpty.length, "table")} ${nonEmpty.join(", ")} already ${plural(nonEmpty.length, "holds", "hold")} data ` +
          `(existing-tables policy "fail"; choose "drop" to replace or "append" to add)`,
      );
    }
    if (mismatched.length > 0) throw refuse(`the schema of ${plural(mismatched.length, "an existing table differs", "existing tables differs")} from the backup: ${mismatched.join("; ")}`);
    if (unstageable.length > 0) {
      throw refuse(
        `"drop" would destroy ${unstageable.join(", ")} before the new data is proven; ` +
          `restore into another database (rename) or set allowUnstagedDrop to accept that`,
      );
    }
    void details;
    return steps;
  }

  #dbEngineOf: (db: string) => string | undefined = () => undefined;

  /**
   * Whether a replaced object can be renamed aside (and back) safely. Not:
   * replicated tables (a staging copy would share the replication path),
   * materialized views with an inner table where RENAME does not carry the
   * inner table (Ordinary databases: the inner table's name follows the
   * view's name when the server attaches it, and old servers cannot rename
   * materialized views at all), and dictionaries. Those without data of their
   * own are dropped once the new data is in place instead, their DDL kept to
   * create them again if the restore rolls back.
   */
  #canMoveAside(s: Step): boolean {
    if (s.t.kind === "data" && s.t.source.engine.startsWith("Replicated")) return false;
    if (s.existing === "Dictionary") return false;
    if (s.t.kind === "view-data" || s.existing === "MaterializedView") return renameKeepsInnerTable(this.#dbEngineOf(s.t.target.database));
    return true;
  }

  async #createStage(s: Step, details: DumpDetails): Promise<void> {
    const { signal } = this.#req;
    const db = s.t.target.database;
    if (s.action === "fill") {
      s.stage = workName(STAGING_PREFIX, this.#rid, s.t.target.name);
      const cols = s.t.source.columns ?? (await ordinaryColumns(this.#conn, db, s.t.target.name, signal));
      this.#created.push({ db, name: s.stage, engine: "" });
      if (s.t.kind === "data") {
        await this.#change("ddl", renameCreatedObject(s.t.ddl, db, s.stage), `creating a staging table for ${s.t.key}`);
      } else {
        const list = cols.map((c) => `${quoteIdent(c.name)} ${c.type}`).join(", ");
        await this.#change("ddl", `CREATE TABLE ${qualified(db, s.stage)} (${list}) ENGINE = Log`, `creating a staging table for ${s.t.key}`);
      }
      if (!s.t.source.columns && s.t.kind === "data") {
        // an older backup without its column list: compare the table the backup's DDL makes
        const diff = schemaDifference(
          await ordinaryColumns(this.#conn, db, s.t.target.name, signal),
          await ordinaryColumns(this.#conn, db, s.stage, signal),
        );
        if (diff) throw new EngineError(`restore refused: ${s.t.key}: ${diff}; nothing was changed`, { retryable: false });
      }
      void details;
      return;
    }
    if (s.staged) {
      s.stage = workName(STAGING_PREFIX, this.#rid, s.t.target.name);
      this.#created.push({ db, name: s.stage, engine: s.t.source.engine, movesTo: s.t.target.name });
      await this.#change("ddl", renameCreatedObject(s.t.ddl, db, s.stage), `creating a staging table for ${s.t.key}`);
    } else {
      // not stageable (replicated): created under its own name, dropped again if the restore fails
      this.#created.push({ db, name: s.t.target.name, engine: s.t.source.engine });
      await this.#change("ddl", s.t.ddl, `creating ${s.t.key}`);
    }
  }

  /** Streams a table's data into `db.into`, counting the rows sent; proves the count. */
  /**
   * Streams a table's data into `db.into` and proves the rows against the
   * manifest. Where the server's count() of the staging table is exact (the
   * Log family, Memory, and MergeTree tables whose merges are stopped while
   * they are staged, without TTL), that count is the proof and the rows
   * reported: what the server holds. Elsewhere (materialized views,
   * replicated tables, key-value engines) the runner counts the rows in the
   * stream it sends.
   */
  async #insertData(s: Step, details: DumpDetails, into: string, signal: AbortSignal): Promise<number> {
    const t = s.t;
    const key = t.key;
    const db = t.target.database;
    this.#progress.currentTable = key;
    const engine = t.kind === "data" ? t.source.engine : "";
    let exact = countIsExact(engine, t.ddl) || (mergesFoldRows(engine) && !hasTtl(t.ddl));
    let mergesStopped = false;
    if (exact && mergesFoldRows(engine)) {
      // rows with equal keys are folded by merges: stop them while the table is staged, so count() is exact
      try {
        await this.#change("command", `SYSTEM STOP MERGES ${qualified(db, into)}`, `stopping merges of the staging table of ${key}`);
        mergesStopped = true;
      } catch (err: unknown) {
        if (signal.aborted) throw err;
        exact = false;
      }
    }
    const sent = await insertObject(this.#ctx, this.#info, this.#req, t.source, details, db, into, !exact, signal, (delta) => {
      this.#progress.bytes += delta;
      this.#report({ ...this.#progress });
    });
    let rows: number;
    if (exact) {
      const [c] = await this.#conn.rows<{ c: string | number }>(`SELECT count() AS c FROM ${qualified(db, into)}`, signal, `counting the rows restored into ${key}`);
      rows = Number(c?.c ?? 0);
      if (mergesStopped) await this.#change("command", `SYSTEM START MERGES ${qualified(db, into)}`, `starting merges of the staging table of ${key}`);
    } else rows = sent!;
    if (rows !== t.source.rows) {
      const what = exact ? `the server holds ${rows} rows after loading the backup's data` : `the backup's data holds ${rows} rows`;
      if (details.rowsFrom === "stream") {
        throw new EngineError(`restoring ${key} failed: ${what}, the manifest says ${t.source.rows}`, { retryable: false });
      }
      // older backups recorded count() at dump time, which a table written to meanwhile may not match
      this.#log.warn("clickhouse restore: rows differ from the count recorded by an older backup", { table: key, rows, recorded: t.source.rows });
    }
    return rows;
  }

  /** 3. One RENAME: replaced objects aside, staged tables into place. */
  async #swap(ordered: Step[]): Promise<void> {
    const { signal } = this.#req;
    const pairs: { db: string; from: string; to: string }[] = [];
    const aside: MovedAside[] = [];
    const dropped: Step[] = [];
    const movedIn: { db: string; name: string }[] = [];
    for (const s of ordered) {
      const db = s.t.target.database;
      if (s.action === "replace" && this.#canMoveAside(s)) {
        s.aside = workName(ASIDE_PREFIX, this.#rid, s.t.target.name);
        pairs.push({ db, from: s.t.target.name, to: s.aside });
        aside.push({ db, aside: s.aside, target: s.t.target.name, engine: s.existing ?? "" });
      } else if (s.action === "replace" && s.t.kind === "schema") dropped.push(s);
    }
    for (const s of ordered) {
      if (s.staged && s.stage) {
        pairs.push({ db: s.t.target.database, from: s.stage, to: s.t.target.name });
        movedIn.push({ db: s.t.target.database, name: s.t.target.name });
      }
    }
    if (pairs.length === 0) return this.#dropKeepingDdl(dropped);
    const sql = `RENAME TABLE ${pairs.map((p) => `${qualified(p.db, p.from)} TO ${qualified(p.db, p.to)}`).join(", ")}`;
    try {
      await this.#change("command", sql, "moving the restored tables into place");
    } catch (err: unknown) {
      // ClickHouse renames one pair after the other: find out how far it got, so the rollback can undo it
      for (const p of pairs) {
        const at = await tableEngine(this.#conn, p.db, p.to, AbortSignal.timeout(30_000)).catch(() => undefined);
        if (at === undefined) continue;
        const a = aside.find((x) => x.db === p.db && x.aside === p.to);
        if (a) this.#movedAside.push(a);
        const m = movedIn.find((x) => x.db === p.db && x.name === p.to);
        if (m) this.#moveIn(m);
      }
      throw err;
    }
    this.#movedAside = aside;
    for (const m of movedIn) this.#moveIn(m);
    await this.#dropKeepingDdl(dropped);
  }

  /**
   * Replaced objects without data that cannot be renamed aside: dropped once
   * the new data is in place (and created anew with the views); their DDL is
   * kept so that a rollback can create them again as they were.
   */
  async #dropKeepingDdl(steps: Step[]): Promise<void> {
    for (const s of steps) {
      const db = s.t.target.database;
      const name = s.t.target.name;
      const [row] = await this.#conn.rows<{ statement: string }>(`SHOW CREATE TABLE ${qualified(db, name)}`, this.#req.signal, `reading the DDL of ${s.t.key}`);
      if (!row?.statement) throw new EngineError(`cannot read the DDL of ${s.t.key} to keep it while it is replaced`, { retryable: true });
      this.#droppedWithDdl.push({ key: s.t.key, engine: s.existing ?? "", ddl: row.statement });
      await this.#drop(db, name, s.existing ?? "", `dropping ${s.t.key}`);
    }
  }

  #moveIn(m: { db: string; name: string }): void {
    this.#movedIn.push(m);
    // the staging table now has the target's name: a rollback drops it by that name
    const stage = this.#created.find((c) => c.db === m.db && c.movesTo === m.name);
    if (stage) stage.name = m.name;
  }

  /** 5. Appends a staged table's rows to the existing target, server-side. */
  async #fill(s: Step, details: DumpDetails): Promise<void> {
    const { signal } = this.#req;
    if (!s.stage) {
      await this.#createStage(s, details);
      s.rows = await this.#insertData(s, details, s.stage!, signal);
      this.#tableDone(s);
    }
    const db = s.t.target.database;
    const cols = (s.t.source.columns ?? (await ordinaryColumns(this.#conn, db, s.stage!, signal))).map((c) => quoteIdent(c.name)).join(", ");
    this.#progress.currentTable = s.t.key;
    await this.#change(
      "command",
      `INSERT INTO ${qualified(db, s.t.target.name)} (${cols}) SELECT ${cols} FROM ${qualified(db, s.stage!)}`,
      `appending the restored rows to ${s.t.key}`,
      insertSettings(this.#info) as ClickHouseSettings,
    );
    this.#appended.push(s.t.key);
  }

  async #drop(db: string, name: string, engine: string, what: string, signal?: AbortSignal): Promise<void> {
    const sql = `DROP ${engine === "Dictionary" ? "DICTIONARY" : "TABLE"} IF EXISTS ${qualified(db, name)}${this.#dropSync}`;
    if (signal) await this.#conn.command(sql, signal, what);
    else await this.#change("command", sql, what);
  }

  /**
   * Runs a statement that changes the server. It is not cancelled half-way:
   * an abort of the restore takes effect before the next statement, so that
   * the restore always knows what exists (a CREATE or RENAME whose request
   * was cancelled may still have happened on the server, and the rollback
   * would not know).
   */
  async #change(kind: "ddl" | "command", sql: string, what: string, settings?: ClickHouseSettings): Promise<void> {
    this.#req.signal.throwIfAborted();
    const signal = AbortSignal.timeout(this.#ctx.config.requestTimeoutSeconds * 1000);
    if (kind === "ddl") await this.#conn.ddl(sql, signal, what);
    else await this.#conn.command(sql, signal, what, settings);
  }

  /** 6. The restore is in place: drop what was moved aside and the staging tables left by appends. */
  async #commit(): Promise<void> {
    // past the point of no return: not cancelled (an abort now would leave the old copies behind)
    const signal = AbortSignal.timeout(this.#ctx.config.requestTimeoutSeconds * 1000);
    for (const a of this.#movedAside) await this.#drop(a.db, a.aside, a.engine, `dropping the replaced ${a.db}.${a.target}`, signal);
    for (const c of this.#created) if (c.name.startsWith(STAGING_PREFIX)) await this.#drop(c.db, c.name, "", `dropping a staging table`, signal);
  }

  /** Undoes what the restore did; returns the error to throw (the first cause, with what the rollback could not undo). */
  async #rollback(cause: unknown): Promise<Error> {
    // the restore's own signal may be what failed: the rollback gets its own bounded time
    const signal = AbortSignal.timeout(120_000);
    const problems: string[] = [];
    const attempt = async (what: string, f: () => Promise<unknown>) => {
      try {
        await f();
      } catch (err: unknown) {
        problems.push(`${what}: ${messageOf(err)}`);
      }
    };
    for (const c of [...this.#created].reverse()) {
      await attempt(`dropping ${c.db}.${c.name}`, () => this.#drop(c.db, c.name, c.engine, `rolling back ${c.db}.${c.name}`, signal));
    }
    for (const a of this.#movedAside) {
      await attempt(`renaming ${a.db}.${a.aside} back to ${a.target}`, async () => {
        if ((await tableEngine(this.#conn, a.db, a.target, signal)) !== undefined) await this.#drop(a.db, a.target, "", `rolling back ${a.db}.${a.target}`, signal);
        await this.#conn.command(`RENAME TABLE ${qualified(a.db, a.aside)} TO ${qualified(a.db, a.target)}`, signal, `putting ${a.db}.${a.target} back`);
      });
    }
    for (const d of this.#droppedWithDdl) {
      await attempt(`creating ${d.key} again`, () => this.#conn.ddl(d.ddl, signal, `creating ${d.key} again`));
    }
    for (const db of [...this.#createdDbs].reverse()) {
      await attempt(`dropping database ${db}`, async () => {
        const left = await this.#conn.rows<{ name: string }>(`SELECT name FROM system.tables WHERE database = ${quoteString(db)}`, signal, `listing ${db}`);
        if (left.length === 0) await this.#conn.command(`DROP DATABASE IF EXISTS ${quoteIdent(db)}`, signal, `dropping database ${db}`);
        else problems.push(`database ${db} was created by the restore but still holds ${left.map((l) => l.name).join(", ")}`);
      });
    }
    if (this.#req.signal.aborted && !(cause instanceof EngineError)) cause = abortReason(this.#req.signal);
    const base = cause instanceof Error ? cause : new Error(String(cause));
    const notes: string[] = [];
    if (this.#appended.length > 0) notes.push(`rows were already appended to ${this.#appended.join(", ")} and stay there`);

    if (problems.length > 0) notes.push(`the rollback could not undo everything: ${problems.join("; ")}`);
    else if (this.#appended.length === 0) notes.push("every pre-existing table is as it was");
    this.#log.error("clickhouse restore: failed and rolled back", { error: messageOf(base), rollbackProblems: problems, appended: this.#appended });
    if (base instanceof EngineError) {
      const e = new EngineError(`${base.message} (${notes.join("; ")})`, { cause: base.cause ?? base, retryable: base.retryable && problems.length === 0 });
      return e;
    }
    if (base.name === "AbortError" || base.name === "ShuttingDownError" || base.name === "TimeoutError") {
      // the same kind of error (callers tell an abort by its name), saying what the rollback did
      const e = new Error(`${base.message} (${notes.join("; ")})`, { cause: base });
      e.name = base.name;
      return e;
    }
    return new EngineError(`${messageOf(base)} (${notes.join("; ")})`, { cause: base, retryable: problems.length === 0 });
  }
}

export async function dumpRestore(ctx: DumpContext, info: ServerInfo, req: RestoreRequest): Promise<RestoreResult> {
  return new Restore(ctx, info, req).run();
}

/** Runs only what can refuse a restore (step 1) and changes nothing: throws the refusal, if any (a cluster checks every host first). */
export async function dumpRestoreCheck(ctx: DumpContext, info: ServerInfo, req: RestoreRequest): Promise<void> {
  await new Restore(ctx, info, req).run(true);
}

/**
 * Streams one table's data object(s) into `db.into` with INSERT ... FORMAT
 * Native, counting the rows in the stream. Resolves with the rows sent once
 * the server has accepted them and every object's checksum held.
 */
async function insertObject(
  ctx: DumpContext,
  info: ServerInfo,
  req: RestoreRequest,
  table: DumpTable,
  details: DumpDetails,
  db: string,
  into: string,
  walk: boolean,
  signal: AbortSignal,
  onBytes: (delta: number) => void,
): Promise<number | undefined> {
  const { conn } = ctx;
  const key = `${table.database}.${table.name}`;
  const names = table.dataObjects ?? (table.dataObject ? [table.dataObject] : []);
  if (names.length === 0) throw new EngineError(`backup has no data object for ${key}`, { retryable: false });
  const codec = table.codec ?? details.compression.codec;
  const order = table.streamColumns ?? table.columns?.map((c) => c.name);
  const list = order ? ` (${order.map(quoteIdent).join(", ")})` : "";
  const insertSql = `INSERT INTO ${qualified(db, into)}${list} FORMAT Native`;
  const walker = new NativeWalker({ what: key });
  const { ac, dispose } = linked(signal);
  try {
    let src: Readable;
    try {
      src = names.length > 1 && req.source.getObjects ? await req.source.getObjects(names, ac.signal) : await req.source.getObject(names[0]!, ac.signal);
      if (names.length > 1 && !req.source.getObjects) throw new EngineError(`${key} is stored in ${names.length} pieces and this storage cannot read them`, { retryable: false });
    } catch (err) {
      if (signal.aborted) throw abortReason(signal);
      throw err;
    }
    // the source's chunks may be pooled (a decryption's): the stage that copies them last hands them back
    const srcRelease = chunkReleaseOf(src);
    const counter = new ByteCounter(onBytes);
    // one watch where the data comes in, one where it goes out (the buffers between them can hold a small table whole)
    const sides = { upstream: "the storage", downstream: "ClickHouse", what: `restoring ${key}` };
    const idle = new IdleWatch(ctx.config.idleTimeoutSeconds * 1000, sides);
    const idleOut = new IdleWatch(ctx.config.idleTimeoutSeconds * 1000, sides);
    // lz4 objects are ClickHouse's own compressed format: the server decompresses them (decompress=1);
    // the runner decodes each block only to walk and count the rows it sends.
    const lz4 = codec === "lz4";
    // (lz4 without a walk passes through untouched: ClickHouse checks the blocks and their checksums itself)
    const zstd = lz4 ? undefined : dumpZstdDecompressor(details, table, { poison: ctx.debugPoolPoison, inputRelease: srcRelease });
    const unpack = zstd ? zstd.stream : walk ? new CompressedStreamCheck(undefined, { onDecoded: (d) => walker.pushQuietly(d) }) : new PassThrough();
    const count = lz4 || !walk ? new PassThrough() : new NativeCountStream(walker);
    const body = new PassThrough();
    const failures = new FailureTracker<"source" | "clickhouse">();
    failures.watch("source", src, counter, unpack, count);
    for (const w of [idle, idleOut]) w.once("error", (err: unknown) => failures.note(err instanceof StallError && err.stalled === "ClickHouse" ? "clickhouse" : "source", err));
    // the INSERT reads `body`: a failing request destroys it first
    failures.watch("clickhouse", body);
    const piped = pipeline(src, idle, counter, unpack, count, idleOut, body, { signal: ac.signal }).catch((err: unknown) => {
      failures.note("source", err);
      ac.abort(err);
      throw err;
    });
    const settings = { ...insertSettings(info), ...(lz4 ? { decompress: 1 } : {}) } as ClickHouseSettings;
    // Pooled chunks go back once the socket has written them: the decompressed frames' blocks, or
    // with lz4 the source's own (a decryption's), which pass the check unchanged.
    const sent = zstd ? zstd.release : srcRelease;
    const release = sent ? { release: sent } : {};
    const inserted = conn.insertStream(insertSql, body, ac.signal, `restoring the data of ${key} into ${db}.${into}`, settings, release).catch((err: unknown) => {
      failures.note("clickhouse", err);
      if (!ac.signal.aborted) ac.abort(err);
      throw err;
    });
    const [, i] = await Promise.allSettled([piped, inserted]);
    if (signal.aborted) throw abortReason(signal);
    const f = failures.first;
    if (f?.err instanceof StallError) throw new EngineError(f.err.message, { cause: f.err, retryable: true });
    if (f?.origin === "source") {
      // the storage, the checksum, or the compressed data failed
      if (f.err instanceof EngineError) throw f.err;
      const m = messageOf(f.err);
      throw new EngineError(`reading the backup of ${key} (${names.join(", ")}) failed: ${m}`, {
        cause: f.err,
        retryable: !/checksum|sha256|corrupt|frame|zstd|decompress|native/i.test(m),
      });
    }
    if (f?.origin === "clickhouse") {
      // insertStream already wrapped what the server said; a destroyed body carries the raw network error
      if (f.err instanceof EngineError) throw f.err;
      if (i.status === "rejected" && i.reason instanceof EngineError) throw i.reason;
      conn.fail(f.err, signal, `restoring the data of ${key}`, insertSql);
    }
    if (i.status === "rejected") throw i.reason;
    if (!walk) return undefined;
    if (lz4) {
      try {
        walker.end();
      } catch (err: unknown) {
        throw new EngineError(`reading the backup of ${key} failed: ${messageOf(err)}`, { cause: err, retryable: false });
      }
    }
    return walker.rows;
  } finally {
    dispose();
  }
}

/**
 * Finds what interrupted restores left behind: staging tables are dropped;
 * an object moved aside whose target name is free again is renamed back (the
 * swap had not completed); one whose target exists is kept and reported
 * (the swap had completed; the user decides when to drop the old copy).
 */
export async function cleanupInterrupted(conn: Conn, info: ServerInfo, log: Logger, signal: AbortSignal): Promise<InterruptedCleanup> {
  const rows = await conn.rows<{ database: string; name: string; engine: string }>(
    `SELECT database, name, engine FROM system.tables WHERE startsWith(name, ${quoteString(STAGING_PREFIX)}) OR startsWith(name, ${quoteString(ASIDE_PREFIX)})`,
    signal,
    "looking for tables left by an interrupted restore",
  );
  const out: InterruptedCleanup = { removed: [], restored: [], kept: [] };
  const sync = versionAtLeast(info.v, 21, 0) ? " SYNC" : "";
  for (const r of rows) {
    const w = workTarget(r.name);
    if (!w) continue;
    const full = `${r.database}.${r.name}`;
    if (w.kind === "stage") {
      await conn.command(`DROP ${r.engine === "Dictionary" ? "DICTIONARY" : "TABLE"} IF EXISTS ${qualified(r.database, r.name)}${sync}`, signal, `dropping ${full}`);
      out.removed.push(full);
      continue;
    }
    if (w.target !== undefined && (await tableEngine(conn, r.database, w.target, signal)) === undefined) {
      await conn.command(`RENAME TABLE ${qualified(r.database, r.name)} TO ${qualified(r.database, w.target)}`, signal, `putting ${r.database}.${w.target} back`);
      out.restored.push(`${r.database}.${w.target}`);
    } else {
      out.kept.push(full);
    }
  }
  if (out.removed.length || out.restored.length || out.kept.length) log.warn("clickhouse: cleaned up after an interrupted restore", { ...out });
  return out;
}
