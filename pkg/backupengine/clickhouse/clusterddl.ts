// DDL rewrites of cluster backups, pure functions: where a replicated
// table's ZooKeeper path is, the path of a restored copy in a renamed
// database, macro expansion, and the plain (single-server) form of
// replicated and Distributed tables for a restore that merges the shards.
import { qualified, quoteIdent, quoteString, tokenize, type Token } from "./sql.ts";

const significant = (t: Token) => t.kind !== "ws" && t.kind !== "comment";

export interface ReplicatedEngine {
  /** "ReplicatedMergeTree", "ReplicatedReplacingMergeTree", ... */
  name: string;
  /** The plain engine ("MergeTree", "ReplacingMergeTree", ...). */
  plain: string;
  /** The ZooKeeper path and replica name as written (macros unexpanded); undefined when the engine has no arguments (server defaults). */
  path?: string | undefined;
  replica?: string | undefined;
}

interface EngineCall {
  nameTok: Token;
  /** Significant-token index range of the argument list, "(" and ")" included; undefined without parentheses. */
  open?: Token | undefined;
  close?: Token | undefined;
  args: Token[][];
}

/** The `ENGINE = Name(...)` clause(s) of a statement (a materialized view has its inner table's). */
function engineCalls(ddl: string): EngineCall[] {
  const sig = tokenize(ddl).filter(significant);
  const out: EngineCall[] = [];
  for (let i = 0; i + 2 < sig.length; i++) {
    const a = sig[i]!;
    if (!(a.kind === "word" && a.text.toUpperCase() === "ENGINE" && sig[i + 1]?.text === "=" && sig[i + 2]?.kind === "word")) continue;
    const nameTok = sig[i + 2]!;
    const open = sig[i + 3];
    if (open?.text !== "(" || open.kind !== "punct") {
      out.push({ nameTok, args: [] });
      continue;
    }
    const args: Token[][] = [];
    let cur: Token[] = [];
    let depth = 0;
    let close: Token | undefined;
    for (let j = i + 3; j < sig.length; j++) {
      const t = sig[j]!;
      if (t.kind === "punct" && (t.text === "(" || t.text === "[")) {
        depth++;
        if (depth === 1) continue;
      } else if (t.kind === "punct" && (t.text === ")" || t.text === "]")) {
        depth--;
        if (depth === 0) {
          if (cur.length) args.push(cur);
          close = t;
          break;
        }
      } else if (t.kind === "punct" && t.text === "," && depth === 1) {
        args.push(cur);
        cur = [];
        continue;
      }
      cur.push(t);
    }
    out.push({ nameTok, open, close, args });
  }
  return out;
}

/** The replicated engine of a table or of a materialized view's inner table, if any. */
export function replicatedEngine(ddl: string): ReplicatedEngine | undefined {
  for (const c of engineCalls(ddl)) {
    const name = c.nameTok.text;
    if (!/^Replicated[A-Za-z]*MergeTree$/.test(name)) continue;
    const str = (a: Token[] | undefined) => (a && a.length === 1 && a[0]!.kind === "string" ? a[0]!.value : undefined);
    return { name, plain: name.slice("Replicated".length), path: str(c.args[0]), replica: str(c.args[1]) };
  }
  return undefined;
}

/** Whether the object's data is replicated (a Replicated*MergeTree table, or a materialized view whose inner table is one). */
export function isReplicatedObject(engine: string, ddl: string): boolean {
  if (/^Replicated[A-Za-z]*MergeTree$/.test(engine)) return true;
  return engine === "MaterializedView" && replicatedEngine(ddl) !== undefined;
}

/**
 * The ZooKeeper path of a copy restored into database `to` from database
 * `from`: every path segment equal to `from` becomes `to`
 * (`/clickhouse/tables/{shard}/shop/orders` -> `.../copy/orders`); a path
 * without such a segment gets `_<to>` appended to its last segment
 * (`/clickhouse/tables/{shard}/orders` -> `.../orders_copy`). Paths built
 * from the {database} macro follow the database by themselves.
 */
export function renamedZooKeeperPath(path: string, from: string, to: string): string {
  if (from === to || path.includes("{database}") || path.includes("{uuid}")) return path;
  const segs = path.split("/");
  let hit = false;
  const out = segs.map((s) => {
    if (s === from) {
      hit = true;
      return to;
    }
    return s;
  });
  if (hit) return out.join("/");
  let last = out.length - 1;
  while (last > 0 && out[last] === "") last--;
  out[last] = `${out[last]}_${to}`;
  return out.join("/");
}

/** Replaces the ZooKeeper path argument of the replicated engine in `ddl`. */
export function withZooKeeperPath(ddl: string, rewrite: (path: string) => string): string {
  for (const c of engineCalls(ddl)) {
    if (!/^Replicated[A-Za-z]*MergeTree$/.test(c.nameTok.text)) continue;
    const a = c.args[0];
    if (!a || a.length !== 1 || a[0]!.kind !== "string") return ddl;
    const tok = a[0]!;
    const next = rewrite(tok.value);
    if (next === tok.value) return ddl;
    return ddl.slice(0, tok.start) + quoteString(next) + ddl.slice(tok.end);
  }
  return ddl;
}

/** The plain engine of a replicated table (the ZooKeeper path and replica arguments dropped). */
export function withoutReplication(ddl: string): string {
  for (const c of engineCalls(ddl)) {
    const name = c.nameTok.text;
    if (!/^Replicated[A-Za-z]*MergeTree$/.test(name)) continue;
    const plain = name.slice("Replicated".length);
    if (!c.open || !c.close) return ddl.slice(0, c.nameTok.start) + plain + ddl.slice(c.nameTok.end);
    // new-style engines without a path: ReplicatedMergeTree() -> MergeTree()
    const hasPath = c.args.length >= 2 && c.args[0]!.length === 1 && c.args[0]![0]!.kind === "string" && c.args[1]!.length === 1 && c.args[1]![0]!.kind === "string";
    if (!hasPath) return ddl.slice(0, c.nameTok.start) + plain + ddl.slice(c.nameTok.end);
    const rest = c.args.slice(2);
    const inner = rest.length === 0 ? "" : ddl.slice(rest[0]![0]!.start, rest[rest.length - 1]![rest[rest.length - 1]!.length - 1]!.end);
    return ddl.slice(0, c.nameTok.start) + `${plain}(${inner})` + ddl.slice(c.close.end);
  }
  return ddl;
}

/**
 * A Distributed table pointed at another cluster: its first argument, when
 * it names `from` (a backup restored onto a cluster of another name).
 */
export function withDistributedCluster(ddl: string, from: string, to: string): string {
  if (from === to) return ddl;
  for (const c of engineCalls(ddl)) {
    if (c.nameTok.text !== "Distributed") continue;
    const a = c.args[0];
    if (!a || a.length !== 1 || !["word", "qident", "string"].includes(a[0]!.kind) || a[0]!.value !== from) return ddl;
    const tok = a[0]!;
    return ddl.slice(0, tok.start) + (tok.kind === "string" ? quoteString(to) : quoteIdent(to)) + ddl.slice(tok.end);
  }
  return ddl;
}

/** The database and table a Distributed table reads from (`Distributed(cluster, db, table[, key])`), when written as plain names. */
export function distributedTarget(ddl: string): { database: string; table: string } | undefined {
  for (const c of engineCalls(ddl)) {
    if (c.nameTok.text !== "Distributed") continue;
    const name = (a: Token[] | undefined) => (a && a.length === 1 && ["word", "qident", "string"].includes(a[0]!.kind) ? a[0]!.value : undefined);
    const database = name(c.args[1]);
    const table = name(c.args[2]);
    return database && table ? { database, table } : undefined;
  }
  return undefined;
}

/**
 * A Distributed table as a Merge table over its local table, for a restore
 * that merges every shard into one server:
 * `CREATE TABLE db.t AS db.local ENGINE = Merge('db', '^local$')`.
 */
export function distributedAsMerge(db: string, name: string, target: { database: string; table: string }): string {
  const escaped = target.table.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  return `CREATE TABLE ${qualified(db, name)} AS ${qualified(target.database, target.table)} ENGINE = Merge(${quoteString(target.database)}, ${quoteString(`^${escaped}$`)})`;
}

/** Expands `{macro}`s with a host's macros; undefined when a macro is unknown (or {uuid}, which only the server knows). */
export function expandMacros(s: string, macros: Readonly<Record<string, string>>, extra: Readonly<Record<string, string>> = {}): string | undefined {
  let unknown = false;
  const out = s.replace(/\{([A-Za-z0-9_]+)\}/g, (_m, k: string) => {
    const v = extra[k] ?? macros[k];
    if (v === undefined) {
      unknown = true;
      return "";
    }
    return v;
  });
  return unknown ? undefined : out;
}
