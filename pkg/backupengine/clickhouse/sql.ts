// A small ClickHouse SQL tokenizer and the text transformations built on it:
// quoting, secret redaction, database renaming inside DDL, and the names a
// DDL statement refers to (for restore ordering). It is not a parser: it only
// needs to know what is a string literal, a quoted identifier, a comment or a
// word, so that rewrites never touch text inside literals.

export type TokenKind = "ws" | "comment" | "string" | "qident" | "word" | "number" | "punct";

export interface Token {
  kind: TokenKind;
  /** The token exactly as written. */
  text: string;
  start: number;
  end: number;
  /** Unquoted/unescaped value for strings and identifiers (word or quoted). */
  value: string;
}

const isWordStart = (c: string) => /[A-Za-z_]/.test(c) || c.charCodeAt(0) >= 0x80;
const isWordChar = (c: string) => /[A-Za-z0-9_$]/.test(c) || c.charCodeAt(0) >= 0x80;

function unescape(body: string, quote: string): string {
  let out = "";
  for (let i = 0; i < body.length; i++) {
    const c = body[i] as string;
    if (c === "\\" && i + 1 < body.length) {
      const n = body[++i] as string;
      switch (n) {
        case "n":
          out += "\n";
          break;
        case "t":
          out += "\t";
          break;
        case "r":
          out += "\r";
          break;
        case "0":
          out += "\0";
          break;
        case "b":
          out += "\b";
          break;
        case "f":
          out += "\f";
          break;
        case "x": {
          const hex = body.slice(i + 1, i + 3);
          if (/^[0-9a-fA-F]{2}$/.test(hex)) {
            out += String.fromCharCode(parseInt(hex, 16));
            i += 2;
          } else out += "x";
          break;
        }
        default:
          out += n;
      }
    } else if (c === quote && body[i + 1] === quote) {
      out += quote;
      i++;
    } else out += c;
  }
  return out;
}

/** Splits SQL into tokens; never throws (unterminated literals run to the end). */
export function tokenize(sql: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  const n = sql.length;
  const push = (kind: TokenKind, start: number, end: number, value?: string) => {
    const text = sql.slice(start, end);
    out.push({ kind, text, start, end, value: value ?? text });
  };
  while (i < n) {
    const c = sql[i] as string;
    const start = i;
    if (/\s/.test(c)) {
      while (i < n && /\s/.test(sql[i] as string)) i++;
      push("ws", start, i);
    } else if (c === "-" && sql[i + 1] === "-") {
      while (i < n && sql[i] !== "\n") i++;
      push("comment", start, i);
    } else if (c === "/" && sql[i + 1] === "*") {
      const close = sql.indexOf("*/", i + 2);
      i = close < 0 ? n : close + 2;
      push("comment", start, i);
    } else if (c === "'" || c === "`" || c === '"') {
      i++;
      while (i < n) {
        const d = sql[i];
        if (d === "\\") i += 2;
        else if (d === c && sql[i + 1] === c) i += 2;
        else if (d === c) break;
        else i++;
      }
      const closed = i < n;
      const bodyEnd = Math.min(i, n);
      if (closed) i++;
      const value = unescape(sql.slice(start + 1, bodyEnd), c);
      push(c === "'" ? "string" : "qident", start, Math.min(i, n), value);
    } else if (/[0-9]/.test(c)) {
      while (i < n && /[0-9A-Za-z_.]/.test(sql[i] as string)) {
        // a dot followed by a non-digit ends the number (tuple access "t.1.x" is rare)
        if (sql[i] === "." && !/[0-9eE]/.test(sql[i + 1] ?? "")) break;
        i++;
      }
      push("number", start, i);
    } else if (isWordStart(c)) {
      while (i < n && isWordChar(sql[i] as string)) i++;
      push("word", start, i);
    } else {
      i++;
      push("punct", start, i);
    }
  }
  return out;
}

const significant = (t: Token) => t.kind !== "ws" && t.kind !== "comment";
const isIdent = (t: Token | undefined): t is Token => t !== undefined && (t.kind === "word" || t.kind === "qident");
const isPunct = (t: Token | undefined, p: string) => t !== undefined && t.kind === "punct" && t.text === p;
const isWord = (t: Token | undefined, w: string) => t !== undefined && t.kind === "word" && t.text.toUpperCase() === w;

/** Backquotes an identifier for ClickHouse (always quoted: names may be keywords). */
export function quoteIdent(name: string): string {
  return "`" + name.replace(/\\/g, "\\\\").replace(/`/g, "\\`") + "`";
}

/** `db`.`table` */
export function qualified(db: string, table: string): string {
  return `${quoteIdent(db)}.${quoteIdent(table)}`;
}

/** A single-quoted string literal. */
export function quoteString(s: string): string {
  return "'" + s.replace(/\\/g, "\\\\").replace(/'/g, "\\'") + "'";
}

/** Re-quotes an identifier in the style it was written in. */
function requoteLike(original: Token, name: string): string {
  if (original.kind === "qident") {
    const q = original.text[0] as string;
    return q + name.replace(/\\/g, "\\\\").split(q).join("\\" + q) + q;
  }
  if (original.kind === "string") return quoteString(name);
  return /^[A-Za-z_][A-Za-z0-9_]*$/.test(name) ? name : quoteIdent(name);
}

interface Call {
  /** Index (in the significant-token list) of the function name. */
  nameIdx: number;
  name: string;
  /** Arguments as ranges of significant-token indexes [from, to). */
  args: [number, number][];
}

/** Function calls `name(arg, arg, ...)` found in the significant tokens. */
function findCalls(sig: Token[]): Call[] {
  const calls: Call[] = [];
  for (let i = 0; i + 1 < sig.length; i++) {
    const t = sig[i];
    if (!t || t.kind !== "word" || !isPunct(sig[i + 1], "(")) continue;
    const args: [number, number][] = [];
    let depth = 0;
    let argStart = i + 2;
    let j = i + 1;
    for (; j < sig.length; j++) {
      const s = sig[j] as Token;
      if (s.kind !== "punct") continue;
      if (s.text === "(" || s.text === "[") depth++;
      else if (s.text === ")" || s.text === "]") {
        depth--;
        if (depth === 0) {
          if (j > argStart) args.push([argStart, j]);
          break;
        }
      } else if (s.text === "," && depth === 1) {
        args.push([argStart, j]);
        argStart = j + 1;
      }
    }
    calls.push({ nameIdx: i, name: t.text.toLowerCase(), args });
  }
  return calls;
}

// ---------------------------------------------------------------------------
// Redaction

const REDACTED = "[REDACTED]";

/** Table functions / engines whose arguments after the first two may hold credentials. */
const CREDENTIAL_CALLS = new Set([
  "s3",
  "s3cluster",
  "s3queue",
  "gcs",
  "cosn",
  "oss",
  "azureblobstorage",
  "azureblobstoragecluster",
  "azurequeue",
  "deltalake",
  "deltalakes3",
  "deltalakeazure",
  "hudi",
  "iceberg",
  "icebergs3",
  "icebergazure",
  "mysql",
  "postgresql",
  "mongodb",
  "remote",
  "remotesecure",
  "redis",
  "hdfs",
]);

/** Words after which a string literal is a secret (`password = '...'`, `PASSWORD '...'`). */
const SECRET_WORDS = new Set([
  "password",
  "passwd",
  "pwd",
  "secret",
  "secret_access_key",
  "access_key_id",
  "session_token",
  "token",
  "account_key",
  "connection_string",
  "sas_token",
]);

/**
 * Removes credentials from SQL or from an error message that quotes SQL:
 * credential arguments of S3(...) and similar calls, `password = '...'` style
 * settings, `IDENTIFIED ... BY '...'`, `user:password@` in URLs, and every
 * occurrence of the given known secrets.
 */
export function redact(text: string, secrets: readonly string[] = []): string {
  const tokens = tokenize(text);
  const sig = tokens.filter(significant);
  const replace = new Map<Token, string>();
  for (const call of findCalls(sig)) {
    if (!CREDENTIAL_CALLS.has(call.name)) continue;
    call.args.forEach(([from, to], idx) => {
      if (idx < 2) return;
      for (let k = from; k < to; k++) {
        const t = sig[k] as Token;
        if (t.kind === "string") replace.set(t, `'${REDACTED}'`);
      }
    });
  }
  for (let i = 0; i < sig.length; i++) {
    const t = sig[i] as Token;
    if (t.kind === "word" && SECRET_WORDS.has(t.text.toLowerCase())) {
      let k = i + 1;
      if (isPunct(sig[k], "=") || isPunct(sig[k], ":")) k++;
      const v = sig[k];
      if (v?.kind === "string") replace.set(v, `'${REDACTED}'`);
    }
    if (isWord(t, "BY") && sig.slice(Math.max(0, i - 3), i).some((p) => isWord(p, "IDENTIFIED"))) {
      const v = sig[i + 1];
      if (v?.kind === "string") replace.set(v, `'${REDACTED}'`);
    }
  }
  let out = "";
  for (const t of tokens) {
    const r = replace.get(t);
    out += r ?? t.text;
  }
  out = out.replace(/(\b[a-z][a-z0-9+.-]*:\/\/[^\s:/@'"]+):[^\s@/'"]+@/gi, `$1:${REDACTED}@`);
  for (const s of secrets) {
    if (s && s.length >= 4) out = out.split(s).join(REDACTED);
  }
  return out;
}

/** Shortens a statement for an error message. */
export function truncate(sql: string, max = 300): string {
  const one = sql.replace(/\s+/g, " ").trim();
  return one.length <= max ? one : `${one.slice(0, max - 1)}…`;
}

// ---------------------------------------------------------------------------
// Qualified names, renames and references

/** Keywords after which `db.name` is a table reference. */
const TABLE_POSITION_WORDS = new Set(["FROM", "JOIN", "TO", "TABLE", "VIEW", "DICTIONARY", "INTO", "IN", "EXISTS", "ON"]);

interface QualifiedRef {
  /** Index of the database token in `sig`. */
  dbIdx: number;
  db: string;
  name: string;
}

function qualifiedRefs(sig: Token[]): QualifiedRef[] {
  const refs: QualifiedRef[] = [];
  for (let i = 0; i + 2 < sig.length; i++) {
    const a = sig[i];
    const b = sig[i + 2];
    if (!isIdent(a) || !isPunct(sig[i + 1], ".") || !isIdent(b)) continue;
    if (isPunct(sig[i - 1], ".")) continue; // x.db.name: not a db qualifier
    refs.push({ dbIdx: i, db: a.value, name: b.value });
  }
  return refs;
}

/** Engines whose arguments name a (database, table). */
const ENGINE_DB_ARG: Record<string, { db: number; table?: number }> = {
  distributed: { db: 1, table: 2 },
  buffer: { db: 0, table: 1 },
  merge: { db: 0 },
};

/** Function names whose first argument is a 'db.dictionary' string. */
const DICT_FUNCS = /^(dictget\w*|dicthas|dictisin|dictgethierarchy|dictgetchildren|dictgetdescendants)$/;

function singleArgToken(sig: Token[], range: [number, number] | undefined): Token | undefined {
  if (!range || range[1] - range[0] !== 1) return undefined;
  const t = sig[range[0]];
  return t && (t.kind === "word" || t.kind === "qident" || t.kind === "string") ? t : undefined;
}

/**
 * Rewrites database names in a DDL statement: `olddb.x` / `` `olddb`.x ``
 * qualified names outside string literals, the database arguments of
 * Distributed/Buffer/Merge engines, `DB 'olddb'` in dictionary sources, and
 * `'olddb.dict'` in dictGet-family calls.
 *
 * With `knownObjects` ("db.name" of the objects in the backup), a qualified
 * name is only rewritten in a table position (after FROM, JOIN, TO, TABLE,
 * ...) or when it names a known object, so that a column qualified by a table
 * alias that happens to equal a database name is left alone.
 */
export function renameDatabasesInDdl(ddl: string, renames: Readonly<Record<string, string>>, knownObjects?: ReadonlySet<string>): string {
  const map = new Map(Object.entries(renames).filter(([from, to]) => from !== to));
  if (map.size === 0) return ddl;
  const tokens = tokenize(ddl);
  const sig = tokens.filter(significant);
  const replace = new Map<Token, string>();

  for (const ref of qualifiedRefs(sig)) {
    const to = map.get(ref.db);
    if (to === undefined) continue;
    if (knownObjects) {
      const prev = sig[ref.dbIdx - 1];
      const tablePosition = prev?.kind === "word" && TABLE_POSITION_WORDS.has(prev.text.toUpperCase());
      const commaListAfterFrom = isPunct(prev, ",") && precededByFromList(sig, ref.dbIdx - 1);
      if (!tablePosition && !commaListAfterFrom && !knownObjects.has(`${ref.db}.${ref.name}`)) continue;
    }
    const t = sig[ref.dbIdx] as Token;
    replace.set(t, requoteLike(t, to));
  }

  const calls = findCalls(sig);
  for (const call of calls) {
    const prev = sig[call.nameIdx - 1];
    const engineSpec = ENGINE_DB_ARG[call.name];
    if (engineSpec && isPunct(prev, "=") && isWord(sig[call.nameIdx - 2], "ENGINE")) {
      const t = singleArgToken(sig, call.args[engineSpec.db]);
      const to = t ? map.get(t.value) : undefined;
      if (t && to !== undefined) replace.set(t, requoteLike(t, to));
    }
    if (DICT_FUNCS.test(call.name)) {
      const t = singleArgToken(sig, call.args[0]);
      if (t?.kind === "string") {
        const dot = t.value.indexOf(".");
        const to = dot > 0 ? map.get(t.value.slice(0, dot)) : undefined;
        if (to !== undefined) replace.set(t, quoteString(to + t.value.slice(dot)));
      }
    }
  }
  // dictionary SOURCE(CLICKHOUSE(... DB 'olddb' ...))
  for (let i = 0; i + 1 < sig.length; i++) {
    const v = sig[i + 1] as Token;
    if (isWord(sig[i], "DB") && v.kind === "string") {
      const to = map.get(v.value);
      if (to !== undefined) replace.set(v, quoteString(to));
    }
  }

  if (replace.size === 0) return ddl;
  let out = "";
  for (const t of tokens) out += replace.get(t) ?? t.text;
  return out;
}

/** True if the comma at `commaIdx` belongs to a `FROM a.x, b.y` list (old-style join). */
function precededByFromList(sig: Token[], commaIdx: number): boolean {
  for (let k = commaIdx - 1; k >= 0 && k >= commaIdx - 12; k--) {
    const t = sig[k] as Token;
    if (t.kind === "word" && t.text.toUpperCase() === "FROM") return true;
    if (t.kind === "punct" && t.text !== "." && t.text !== ",") return false;
    if (t.kind === "word" && ["SELECT", "WHERE", "ON", "AS"].includes(t.text.toUpperCase())) return false;
  }
  return false;
}

/**
 * The "db.name" objects a DDL statement refers to (qualified names,
 * Distributed/Buffer underlying tables, dictionary ClickHouse sources,
 * dictGet targets), without the statement's own name.
 */
export function referencedNames(ddl: string, self?: string): Set<string> {
  const sig = tokenize(ddl).filter(significant);
  const out = new Set<string>();
  for (const r of qualifiedRefs(sig)) out.add(`${r.db}.${r.name}`);
  for (const call of findCalls(sig)) {
    const spec = ENGINE_DB_ARG[call.name];
    if (spec?.table !== undefined && isPunct(sig[call.nameIdx - 1], "=") && isWord(sig[call.nameIdx - 2], "ENGINE")) {
      const db = singleArgToken(sig, call.args[spec.db]);
      const table = singleArgToken(sig, call.args[spec.table]);
      if (db && table) out.add(`${db.value}.${table.value}`);
    }
    if (DICT_FUNCS.test(call.name)) {
      const t = singleArgToken(sig, call.args[0]);
      if (t?.kind === "string" && t.value.includes(".")) out.add(t.value);
    }
    if (call.name === "clickhouse" && isPunct(sig[call.nameIdx - 1], "(") && isWord(sig[call.nameIdx - 2], "SOURCE")) {
      let db: string | undefined;
      let table: string | undefined;
      const [from, to] = [call.nameIdx + 2, call.args.at(-1)?.[1] ?? call.nameIdx + 2];
      for (let k = from; k + 1 < to; k++) {
        const v = sig[k + 1] as Token;
        if (isWord(sig[k], "DB") && v.kind === "string") db = v.value;
        if (isWord(sig[k], "TABLE") && (v.kind === "string" || isIdent(v))) table = v.value;
      }
      if (db && table) out.add(`${db}.${table}`);
    }
  }
  if (self) out.delete(self);
  return out;
}

/**
 * True if a CREATE MATERIALIZED VIEW statement writes to an explicit target
 * (`TO db.table`); false if the view keeps its data in its own inner table.
 */
export function materializedViewHasTarget(ddl: string): boolean {
  const sig = tokenize(ddl).filter(significant);
  let i = sig.findIndex((t, k) => isWord(t, "MATERIALIZED") && isWord(sig[k + 1], "VIEW"));
  if (i < 0) return false;
  i += 2;
  if (isWord(sig[i], "IF") && isWord(sig[i + 1], "NOT") && isWord(sig[i + 2], "EXISTS")) i += 3;
  // the view's name: ident [. ident]
  if (isIdent(sig[i])) i++;
  if (isPunct(sig[i], ".") && isIdent(sig[i + 1])) i += 2;
  const stop = new Set(["ENGINE", "AS", "POPULATE", "EMPTY", "COMMENT", "DEFINER", "SQL", "INNER"]);
  for (; i < sig.length; i++) {
    const t = sig[i] as Token;
    if (isPunct(t, "(")) return false;
    if (t.kind === "word") {
      const w = t.text.toUpperCase();
      if (w === "TO") return true;
      if (stop.has(w)) return false;
    }
  }
  return false;
}

/**
 * Rewrites the name a CREATE statement creates (`CREATE [OR REPLACE]
 * [TEMPORARY] TABLE|VIEW|MATERIALIZED VIEW|LIVE VIEW|WINDOW VIEW|DICTIONARY
 * [IF NOT EXISTS] [db.]name ...`) to `db`.`name`; everything else is left as
 * written. Throws if the statement does not have that shape.
 */
export function renameCreatedObject(ddl: string, db: string, name: string): string {
  const tokens = tokenize(ddl);
  const sig = tokens.filter(significant);
  let i = 0;
  if (!isWord(sig[i], "CREATE") && !isWord(sig[i], "ATTACH")) throw new Error(`not a CREATE statement: ${truncate(ddl, 80)}`);
  i++;
  if (isWord(sig[i], "OR") && isWord(sig[i + 1], "REPLACE")) i += 2;
  if (isWord(sig[i], "TEMPORARY")) i++;
  if (isWord(sig[i], "MATERIALIZED") || isWord(sig[i], "LIVE") || isWord(sig[i], "WINDOW")) i++;
  if (!isWord(sig[i], "TABLE") && !isWord(sig[i], "VIEW") && !isWord(sig[i], "DICTIONARY")) throw new Error(`not a CREATE statement: ${truncate(ddl, 80)}`);
  i++;
  if (isWord(sig[i], "IF") && isWord(sig[i + 1], "NOT") && isWord(sig[i + 2], "EXISTS")) i += 3;
  const first = sig[i];
  if (!isIdent(first)) throw new Error(`cannot find the name in: ${truncate(ddl, 80)}`);
  const last = isPunct(sig[i + 1], ".") && isIdent(sig[i + 2]) ? (sig[i + 2] as Token) : first;
  return ddl.slice(0, first.start) + qualified(db, name) + ddl.slice(last.end);
}
