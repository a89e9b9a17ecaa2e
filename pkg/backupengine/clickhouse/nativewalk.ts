// A streaming walker of ClickHouse's Native format that counts rows by
// walking every block, so that a dump proves its row count from the data it
// stored rather than from a separate count() that may disagree with it.
//
// The Native format (as a server writes it for `FORMAT Native` over HTTP,
// client revision 0: no block info, no per-column serialization info):
//
//   block  := VarUInt numColumns, VarUInt numRows, column * numColumns
//   column := String name, String type, data        (String = VarUInt length + bytes)
//
// A column's data is absent when numRows is 0. Otherwise it is the column's
// bulk serialization for numRows rows, all substreams written one after the
// other into the same buffer:
//
//   - fixed-width types: numRows * width bytes;
//   - String: per row a VarUInt length and the bytes;
//   - Nullable(T): numRows null-map bytes, then T for numRows rows;
//   - Array(T): numRows cumulative UInt64 offsets, then T for (last offset) rows;
//   - Tuple(T1, T2, ...): T1 for numRows rows, then T2, ...;
//   - Map(K, V) = Array(Tuple(K, V)); Nested(...) as one type = Array(Tuple(...));
//   - LowCardinality(T): a "state prefix" of one UInt64 (keys serialization
//     version, 1) written before ANY data of the column - so for
//     Array(LowCardinality(String)) the version comes before the offsets, and a
//     type with several LowCardinality parts starts with one UInt64 per part,
//     in type order. The data is then one or more granules:
//       UInt64 flags (low byte: index width 0..3 -> UInt8..UInt64; 0x200: has
//       additional keys; 0x100: needs a global dictionary, never in Native),
//       [UInt64 keyCount, keys as T without Nullable], UInt64 rowCount,
//       rowCount indexes.
//     A LowCardinality part with 0 rows (inside empty arrays) writes nothing on
//     current servers but one granule with 0 rows on old ones (18.16: flags
//     0x600, the default key(s), rowCount 0). See LC_EMPTY below. (18.16
//     reads such a stream back; chDB 26.7 does not expect the granule and
//     reads it as a block of 0 columns and 6 rows: 6 rows of defaults.)
//
// Types whose data cannot be sized without decoding it (AggregateFunction
// states have no length prefix; Variant, Dynamic, JSON/Object; anything
// unknown) are "unwalkable". The dump selects them last; on reaching the first
// unwalkable column of a block with rows, the walker finds the end of the
// block by a signature search for the next block header (see #scan).
import { Transform, type TransformCallback } from "node:stream";

export class NativeFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "NativeFormatError";
  }
}

// ---------------------------------------------------------------------------
// Types -> skip plans

const P_FIXED = 0;
const P_STRING = 1;
const P_ARRAY = 2;
const P_NULLABLE = 3;
const P_TUPLE = 4;
const P_LOWCARD = 5;

/** How to skip a type's data. `lc`: number of LowCardinality parts inside (each writes a UInt64 prefix). */
type Plan =
  | { readonly k: typeof P_FIXED; readonly w: number; readonly lc: 0 }
  | { readonly k: typeof P_STRING; readonly lc: 0 }
  | { readonly k: typeof P_ARRAY; readonly elem: Plan; readonly lc: number }
  | { readonly k: typeof P_NULLABLE; readonly elem: Plan; readonly lc: number }
  | { readonly k: typeof P_TUPLE; readonly elems: readonly Plan[]; readonly lc: number }
  | { readonly k: typeof P_LOWCARD; readonly dict: DictPlan; readonly lc: number };
type DictPlan = { readonly k: typeof P_FIXED; readonly w: number; readonly lc: 0 } | { readonly k: typeof P_STRING; readonly lc: 0 };

const fixed = (w: number): Plan => ({ k: P_FIXED, w, lc: 0 });
const STRING: Plan = { k: P_STRING, lc: 0 };
const array = (elem: Plan): Plan => ({ k: P_ARRAY, elem, lc: elem.lc });
/** Nullable of a fixed-width type is fixed-width too (null map byte + value). */
const nullable = (elem: Plan): Plan => (elem.k === P_FIXED ? fixed(elem.w + 1) : { k: P_NULLABLE, elem, lc: elem.lc });
/** A tuple of fixed-width types is skipped as one fixed width. */
const tuple = (elems: Plan[]): Plan =>
  elems.every((e) => e.k === P_FIXED)
    ? fixed(elems.reduce((a, e) => a + (e.k === P_FIXED ? e.w : 0), 0))
    : { k: P_TUPLE, elems, lc: elems.reduce((a, e) => a + e.lc, 0) };

const FIXED_WIDTH: Record<string, number> = {
  UInt8: 1, UInt16: 2, UInt32: 4, UInt64: 8, UInt128: 16, UInt256: 32,
  Int8: 1, Int16: 2, Int32: 4, Int64: 8, Int128: 16, Int256: 32,
  Float32: 4, Float64: 8, BFloat16: 2, Bool: 1,
  Date: 2, Date32: 4, DateTime: 4, DateTime32: 4, DateTime64: 8, Time: 4, Time64: 8,
  Decimal32: 4, Decimal64: 8, Decimal128: 16, Decimal256: 32,
  Enum8: 1, Enum16: 2, UUID: 16, IPv4: 4, IPv6: 16,
  // SerializationNothing writes one byte ('0') per row: Nullable(Nothing) of NULL, Array(Nothing) of [].
  Nothing: 1,
};
const INTERVALS = new Set(["Nanosecond", "Microsecond", "Millisecond", "Second", "Minute", "Hour", "Day", "Week", "Month", "Quarter", "Year"]);
/** Fixed-width types that take arguments (the arguments do not change the width). */
const FIXED_WITH_ARGS = new Set(["DateTime", "DateTime64", "Time64", "Time", "Decimal32", "Decimal64", "Decimal128", "Decimal256", "Enum8", "Enum16"]);

interface Tok {
  t: "id" | "str" | "num" | "p";
  v: string;
}

const IDENT = /[A-Za-z_][A-Za-z0-9_.$]*/y;
const NUMBER = /[-+]?[0-9.][0-9A-Za-z_.]*(?:[eE][-+]?[0-9]+)?/y;

/** Splits a type name into tokens; undefined if it holds something no type name holds. */
function tokenize(s: string): Tok[] | undefined {
  const out: Tok[] = [];
  let i = 0;
  while (i < s.length) {
    const c = s[i]!;
    if (c === " " || c === "\t" || c === "\n" || c === "\r") {
      i++;
    } else if (c === "(" || c === ")" || c === "," || c === "=") {
      out.push({ t: "p", v: c });
      i++;
    } else if (c === "'" || c === "`" || c === '"') {
      // quoted: backslash escapes, and a doubled quote stands for one
      let v = "";
      i++;
      for (;;) {
        if (i >= s.length) return undefined;
        const d = s[i]!;
        if (d === "\\") {
          if (i + 1 >= s.length) return undefined;
          v += s[i + 1]!;
          i += 2;
        } else if (d === c) {
          if (s[i + 1] === c) {
            v += c;
            i += 2;
          } else {
            i++;
            break;
          }
        } else {
          v += d;
          i++;
        }
      }
      out.push({ t: c === "'" ? "str" : "id", v });
    } else if (/[A-Za-z_]/.test(c)) {
      IDENT.lastIndex = i;
      const m = IDENT.exec(s)!;
      out.push({ t: "id", v: m[0] });
      i += m[0].length;
    } else if (/[-+0-9.]/.test(c)) {
      NUMBER.lastIndex = i;
      const m = NUMBER.exec(s);
      if (!m) return undefined;
      out.push({ t: "num", v: m[0] });
      i += m[0].length;
    } else {
      return undefined;
    }
  }
  return out;
}

interface TypeNode {
  name: string;
  args: Arg[] | undefined;
}
type Arg = { type: TypeNode; elemName: string | undefined } | { lit: Tok[] };

class TypeSyntaxError extends Error {}

function parseTypeTokens(toks: Tok[]): TypeNode {
  let i = 0;
  const peek = (o = 0) => toks[i + o];
  const isP = (t: Tok | undefined, v: string) => t?.t === "p" && t.v === v;
  const parseType = (): TypeNode => {
    const t = toks[i];
    if (t?.t !== "id") throw new TypeSyntaxError();
    i++;
    if (!isP(peek(), "(")) return { name: t.v, args: undefined };
    i++;
    const args: Arg[] = [];
    if (isP(peek(), ")")) {
      i++;
      return { name: t.v, args };
    }
    for (;;) {
      const a = peek();
      if (a === undefined) throw new TypeSyntaxError();
      if (a.t === "str" || a.t === "num") {
        // a literal: 'tz', 3, 'name' = -1
        const lit: Tok[] = [];
        while (i < toks.length && !isP(peek(), ",") && !isP(peek(), ")")) {
          const x = toks[i]!;
          if (x.t === "p" && x.v !== "=") throw new TypeSyntaxError();
          lit.push(x);
          i++;
        }
        args.push({ lit });
      } else if (a.t === "id" && peek(1)?.t === "id") {
        // a named element: Tuple(a UInt8), Nested(`x y` String)
        i++;
        args.push({ type: parseType(), elemName: a.v });
      } else {
        args.push({ type: parseType(), elemName: undefined });
      }
      const sep = peek();
      i++;
      if (isP(sep, ")")) break;
      if (!isP(sep, ",")) throw new TypeSyntaxError();
    }
    return { name: t.v, args };
  };
  const node = parseType();
  if (i !== toks.length) throw new TypeSyntaxError();
  return node;
}

/** Thrown inside planning: the type cannot be sized. */
class Unwalkable extends Error {}

function typeArg(a: Arg | undefined): TypeNode {
  if (a === undefined || !("type" in a)) throw new Unwalkable();
  return a.type;
}

function intArg(a: Arg | undefined): number {
  if (a === undefined || !("lit" in a) || a.lit.length !== 1 || a.lit[0]!.t !== "num" || !/^[0-9]+$/.test(a.lit[0]!.v)) throw new Unwalkable();
  return Number(a.lit[0]!.v);
}

const POINT = fixed(16); // Tuple(Float64, Float64)

function planOf(n: TypeNode): Plan {
  const args = n.args;
  const name = n.name;
  const w = FIXED_WIDTH[name];
  if (w !== undefined) {
    if (args !== undefined && !FIXED_WITH_ARGS.has(name)) throw new Unwalkable();
    if (args?.some((a) => !("lit" in a))) throw new Unwalkable();
    return fixed(w);
  }
  if (name.startsWith("Interval") && INTERVALS.has(name.slice(8)) && args === undefined) return fixed(8);
  const one = (): TypeNode => {
    if (args?.length !== 1) throw new Unwalkable();
    return typeArg(args[0]);
  };
  switch (name) {
    case "String":
      if (args !== undefined) throw new Unwalkable();
      return STRING;
    case "FixedString": {
      if (args?.length !== 1) throw new Unwalkable();
      const len = intArg(args[0]);
      if (len < 1 || len > 0x7fffffff) throw new Unwalkable();
      return fixed(len);
    }
    case "Decimal": {
      if (args === undefined || args.length < 1 || args.length > 2) throw new Unwalkable();
      const p = intArg(args[0]);
      if (args[1] !== undefined) intArg(args[1]);
      if (p < 1 || p > 76) throw new Unwalkable();
      return fixed(p <= 9 ? 4 : p <= 18 ? 8 : p <= 38 ? 16 : 32);
    }
    case "Nullable":
      return nullable(planOf(one()));
    case "Array":
      return array(planOf(one()));
    case "Tuple":
    case "Nested": {
      if (args === undefined || args.length === 0) throw new Unwalkable(); // Tuple(): nothing to count by
      const t = tuple(args.map((a) => planOf(typeArg(a))));
      return name === "Nested" ? array(t) : t;
    }
    case "Map": {
      if (args?.length !== 2) throw new Unwalkable();
      return array(tuple([planOf(typeArg(args[0])), planOf(typeArg(args[1]))]));
    }
    case "LowCardinality": {
      // the dictionary holds T without Nullable (nulls are a reserved index)
      const t = one();
      const inner = planOf(t.name === "Nullable" ? typeArg(t.args?.length === 1 ? t.args[0] : undefined) : t);
      if (inner.k !== P_FIXED && inner.k !== P_STRING) throw new Unwalkable();
      return { k: P_LOWCARD, dict: inner, lc: 1 };
    }
    case "SimpleAggregateFunction": {
      // SimpleAggregateFunction(f[(params)], T): stored as T
      if (args === undefined || args.length < 2) throw new Unwalkable();
      return planOf(typeArg(args[args.length - 1]));
    }
    case "Point":
      if (args !== undefined) throw new Unwalkable();
      return POINT;
    case "Ring":
    case "LineString":
      if (args !== undefined) throw new Unwalkable();
      return array(POINT);
    case "Polygon":
    case "MultiLineString":
      if (args !== undefined) throw new Unwalkable();
      return array(array(POINT));
    case "MultiPolygon":
      if (args !== undefined) throw new Unwalkable();
      return array(array(array(POINT)));
    default:
      // AggregateFunction, Variant, Dynamic, JSON, Object, and anything unknown
      throw new Unwalkable();
  }
}

/** The skip plan of a type name, or undefined if its data cannot be sized. Throws TypeSyntaxError on a name that is no type name. */
function planType(type: string): Plan | undefined {
  if (type.length === 0 || /[\u0000-\u001f\u007f]/.test(type)) throw new TypeSyntaxError();
  const toks = tokenize(type);
  if (toks === undefined) throw new TypeSyntaxError();
  let node: TypeNode;
  try {
    node = parseTypeTokens(toks);
  } catch {
    return undefined; // odd syntax (JSON(SKIP ...), ...): not a type we can size
  }
  try {
    return planOf(node);
  } catch (err) {
    if (err instanceof Unwalkable) return undefined;
    throw err;
  }
}

/** True if the walker can size this type's data without guessing. */
export function isWalkableType(type: string): boolean {
  try {
    return planType(type) !== undefined;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------
// The walker

/** Limits against garbage: far above anything a server writes. */
const MAX_COLUMNS = 1_000_000;
const MAX_ROWS = 2 ** 40;
const MAX_HEADER_STRING = 16 * 1024 * 1024;
const MAX_LENGTH = 2 ** 48; // a String value, an array's element count, a dictionary's size
/** The longest VarUInt of the numRows of a block header (2^40 fits in 6 bytes of 7 bits). */
const MAX_ROWS_VARUINT = 6;

// Frames of the data walk (a stack; the top is worked on, after any pending skip).
const F_NODE = 0; // expand `plan` for `n` rows
const F_STRINGS = 1; // `n` Strings left
const F_ARRAY_LAST = 2; // read the last offset of an array (the element count), then walk `plan` for it
const F_LC_VERSION = 3; // `n` LowCardinality prefixes (UInt64 1) left
const F_LC = 4; // LowCardinality granules covering `n` rows (stage: what comes next)
const F_LC_EMPTY = 5; // a LowCardinality part with 0 rows: a granule or nothing (LC_EMPTY)

const LC_FLAGS = 0;
const LC_KEYS = 1;
const LC_ROWS = 2;

interface Frame {
  op: number;
  plan: Plan;
  n: number;
  stage: number;
  /** F_LC: index width in bytes. */
  width: number;
  /** F_LC: exactly one granule (an empty part of an old server). */
  one: boolean;
}

// Walker states.
const S_BLOCK = 0; // block header
const S_NAME = 1; // a column's name
const S_TYPE = 2; // a column's type
const S_DATA = 3; // a column's data
const S_SCAN = 4; // looking for the next block header behind unwalkable data

interface KnownColumn {
  name: string;
  type: string;
}

const utf8 = new TextDecoder("utf-8");

function varUIntBytes(v: number): number[] {
  const out: number[] = [];
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
  return out;
}

function stringBytes(s: string): Buffer {
  const b = Buffer.from(s, "utf8");
  return Buffer.concat([Buffer.from(varUIntBytes(b.length)), b]);
}

const asBuffer = (u: Uint8Array): Buffer => (Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength));

/**
 * Counts the rows of a Native stream by walking every block. push() takes
 * chunks of any size; nothing of a chunk is kept after push() returns (a
 * value split across chunks is copied into the walker's own small buffers).
 */
export class NativeWalker {
  readonly #what: string;
  #state = S_BLOCK;
  /** Absolute stream offset of buf[0] of the buffer being fed. */
  #base = 0;
  #bytes = 0;
  #rows = 0;
  #blocks = 0;

  // the current block
  #hdrStage = 0; // S_BLOCK: 0 numColumns, 1 numRows
  #blockStart = 0;
  #numCols = -1; // of every block (all blocks of a result have the same columns)
  #blockCols = 0;
  #blockRows = 0;
  #col = 0;
  #colName = "";
  #colType = "";
  readonly #known: KnownColumn[] = [];
  readonly #plans = new Map<string, Plan | undefined>();

  // VarUInt in progress (header fields, String lengths)
  #vuVal = 0;
  #vuMul = 1;
  #vuDone = false;
  #vuResult = 0;
  // a header String in progress
  #strLen = -1; // -1: reading its length
  #strGot = 0;
  #str = Buffer.alloc(256);

  // the data walk
  readonly #stack: Frame[] = [];
  #skip = 0;
  readonly #u64 = Buffer.alloc(8);
  #u64Len = 0;
  #u64Val = 0;
  #u64Done = false;

  // LC_EMPTY: whether this stream writes a granule for a LowCardinality part of 0 rows (undefined: not seen yet)
  #lcEmptyGranule: boolean | undefined = undefined;
  #peek = Buffer.alloc(64);
  #peekLen = 0;
  #peekStart = 0;
  #replay: Buffer | undefined;

  // the signature search (S_SCAN)
  #sigP1: Uint8Array = new Uint8Array(0);
  #sigP2: Buffer = Buffer.alloc(0);
  #tail: Buffer = Buffer.alloc(0);
  #tailLen = 0;

  #ended = false;
  #failed: unknown;

  constructor(opts: { what?: string } = {}) {
    this.#what = opts.what ?? "the Native stream";
  }

  /** Rows of the blocks walked to their end (a block with unwalkable data ends when the next header or the end of the stream is found). */
  get rows(): number {
    return this.#rows;
  }
  /** Blocks walked to their end. */
  get blocks(): number {
    return this.#blocks;
  }
  /** Bytes pushed. */
  get bytes(): number {
    return this.#bytes;
  }
  /**
   * Column names and types of the stream (every block has the same), once the
   * first block has been walked; undefined before it and for an empty stream.
   * The columns behind the first unwalkable column of a block with rows are
   * only known if some block had 0 rows (their headers are behind data that
   * cannot be sized): see columnCount for how many there are.
   */
  get columns(): { name: string; type: string }[] | undefined {
    if (this.#blocks === 0) return undefined;
    return this.#known.map((c) => ({ name: c.name, type: c.type }));
  }
  /** The number of columns of every block (undefined before the first block header). */
  get columnCount(): number | undefined {
    return this.#numCols < 0 ? undefined : this.#numCols;
  }

  push(chunk: Uint8Array): void {
    if (this.#failed !== undefined) throw this.#failed;
    if (this.#ended) throw new NativeFormatError(`${this.#what}: data pushed after the end`);
    const base = this.#bytes;
    this.#bytes += chunk.length;
    try {
      this.#feed(chunk, base);
    } catch (err) {
      // the walk cannot go on from where it failed: every later call throws the same
      this.#failed = err;
      throw err;
    }
  }

  /**
   * push() for callers that must not throw (a callback in the middle of a
   * stream): a failure is kept, the rest of the data is ignored, and end()
   * throws it. Lets the stage that finds a server exception appended to the
   * data report that first.
   */
  pushQuietly(chunk: Uint8Array): void {
    if (this.#failed !== undefined) return;
    try {
      this.push(chunk);
    } catch {
      // kept in #failed: end() throws it
    }
  }

  end(): void {
    if (this.#failed !== undefined) throw this.#failed;
    if (this.#ended) return;
    this.#ended = true;
    try {
      this.#end();
    } catch (err) {
      this.#failed = err;
      throw err;
    }
  }

  #end(): void {
    // an undecided LC_EMPTY lookahead decides now (what it holds is no granule) and walks on
    this.#feed(new Uint8Array(0), this.#bytes);
    switch (this.#state) {
      case S_BLOCK:
        if (this.#hdrStage === 0 && this.#vuMul === 1) return; // at a block boundary (or an empty stream)
        throw this.#error("the data ended", this.#bytes, "inside the header of");
      case S_SCAN:
        // the unwalkable data of the last block runs to the end of the stream
        this.#blockDone();
        return;
      default:
        throw this.#error("the data ended", this.#bytes, "inside");
    }
  }

  // -------------------------------------------------------------------------

  #where(): string {
    const n = this.#blocks + 1;
    switch (this.#state) {
      case S_BLOCK:
        return `block ${n}`;
      case S_NAME:
        return `block ${n}, the header of column ${this.#col + 1}`;
      case S_TYPE:
        return `block ${n}, the header of column ${this.#col + 1} (\`${this.#colName}\`)`;
      default:
        return `block ${n}, column \`${this.#colName}\` (${this.#colType})`;
    }
  }

  /** "<what>: <msg> in block 3, column `x` (String), 1234 bytes into the block (stream offset 56789)". */
  #error(msg: string, at: number, prep = "in"): NativeFormatError {
    return new NativeFormatError(`${this.#what}: ${msg} ${prep} ${this.#where()}, ${at - this.#blockStart} bytes into the block (stream offset ${at})`);
  }

  /** Runs the state machine over buf; `base` is the stream offset of buf[0]. */
  #feed(buf: Uint8Array, base: number): void {
    const saved = this.#base;
    this.#base = base;
    try {
      let p = 0;
      const end = buf.length;
      for (;;) {
        if (this.#replay !== undefined) {
          // bytes an LC_EMPTY lookahead took that turned out to be no granule: walk them first
          const r = this.#replay;
          this.#replay = undefined;
          this.#feed(r, this.#peekStart);
          continue;
        }
        switch (this.#state) {
          case S_DATA:
            p = this.#walk(buf, p, end);
            if (this.#replay !== undefined) continue;
            if (this.#skip > 0 || this.#stack.length > 0) return; // needs more data
            this.#columnDone();
            continue;
          case S_SCAN:
            if (p >= end) return;
            p = this.#scan(buf, p, end);
            continue;
          case S_BLOCK:
            if (p >= end) return;
            p = this.#blockHeader(buf, p, end);
            continue;
          default:
            if (p >= end) return;
            p = this.#headerString(buf, p, end);
            continue;
        }
      }
    } finally {
      this.#base = saved;
    }
  }

  /** Continues a VarUInt; returns the position after what it took. When it is complete, #vuDone is set and the value is in #vuResult. */
  #varuint(buf: Uint8Array, p: number, end: number, what: string): number {
    let v = this.#vuVal;
    let mul = this.#vuMul;
    while (p < end) {
      const b = buf[p++]!;
      v += (b & 0x7f) * mul;
      if (b < 0x80) {
        this.#vuVal = 0;
        this.#vuMul = 1;
        this.#vuDone = true;
        if (v > MAX_LENGTH) throw this.#error(`${what} ${v} is out of range`, this.#base + p);
        this.#vuResult = v;
        return p;
      }
      mul *= 0x80;
      if (mul > 2 ** 49) throw this.#error(`${what} is not a valid VarUInt`, this.#base + p);
    }
    this.#vuVal = v;
    this.#vuMul = mul;
    this.#vuDone = false;
    return p;
  }

  #blockHeader(buf: Uint8Array, p: number, end: number): number {
    if (this.#hdrStage === 0 && this.#vuMul === 1) this.#blockStart = this.#base + p;
    const q = this.#varuint(buf, p, end, this.#hdrStage === 0 ? "the column count" : "the row count");
    if (!this.#vuDone) return q;
    const v = this.#vuResult;
    if (this.#hdrStage === 0) {
      if (v > MAX_COLUMNS) throw this.#error(`a column count of ${v} is not plausible`, this.#base + q);
      if (this.#numCols >= 0 && v !== this.#numCols) throw this.#error(`${v} columns, the first block had ${this.#numCols},`, this.#base + q);
      this.#numCols = v;
      this.#blockCols = v;
      this.#hdrStage = 1;
      return q;
    }
    if (v > MAX_ROWS) throw this.#error(`a row count of ${v} is not plausible`, this.#base + q);
    this.#blockRows = v;
    this.#hdrStage = 0;
    this.#col = 0;
    if (this.#blockCols === 0) this.#blockDone();
    else this.#beginColumnHeader();
    return q;
  }

  #beginColumnHeader(): void {
    this.#state = S_NAME;
    this.#strLen = -1;
    this.#strGot = 0;
    this.#colName = "";
    this.#colType = "";
  }

  #headerString(buf: Uint8Array, p: number, end: number): number {
    const what = this.#state === S_NAME ? "the column name" : "the column type";
    if (this.#strLen < 0) {
      p = this.#varuint(buf, p, end, `the length of ${what}`);
      if (!this.#vuDone) return p;
      const r = this.#vuResult;
      if (r > MAX_HEADER_STRING) throw this.#error(`${what} of ${r} bytes is not plausible`, this.#base + p);
      this.#strLen = r;
      this.#strGot = 0;
      if (this.#str.length < Math.min(r, 64 * 1024)) this.#str = Buffer.alloc(Math.min(r, 64 * 1024));
    }
    const n = Math.min(end - p, this.#strLen - this.#strGot);
    if (n > 0) {
      if (this.#str.length < this.#strGot + n) {
        const bigger = Buffer.alloc(Math.min(this.#strLen, Math.max(this.#str.length * 2, this.#strGot + n)));
        this.#str.copy(bigger, 0, 0, this.#strGot);
        this.#str = bigger;
      }
      this.#str.set(buf.subarray(p, p + n), this.#strGot);
      this.#strGot += n;
      p += n;
    }
    if (this.#strGot < this.#strLen) return p;
    const s = utf8.decode(this.#str.subarray(0, this.#strLen));
    this.#strLen = -1;
    if (this.#state === S_NAME) {
      this.#colName = s;
      this.#state = S_TYPE;
      return p;
    }
    this.#colType = s;
    const known = this.#known[this.#col];
    if (known === undefined) {
      this.#known[this.#col] = { name: this.#colName, type: s };
    } else if (known.name !== this.#colName || known.type !== s) {
      throw this.#error(`column ${this.#col + 1} is \`${this.#colName}\` (${s}) but was \`${known.name}\` (${known.type}) in an earlier block,`, this.#base + p);
    }
    this.#beginColumnData(p);
    return p;
  }

  #plan(type: string, at: number): Plan | undefined {
    if (this.#plans.has(type)) return this.#plans.get(type);
    let plan: Plan | undefined;
    try {
      plan = planType(type);
    } catch {
      throw this.#error(`\`${type.slice(0, 200)}\` is not a type name`, at);
    }
    this.#plans.set(type, plan);
    return plan;
  }

  /** The column header is read; `p` (in the buffer being fed) is where its data starts. */
  #beginColumnData(p: number): void {
    this.#state = S_DATA;
    const plan = this.#plan(this.#colType, this.#base + p);
    if (this.#blockRows === 0) return; // no data at all: #feed sees an empty stack and moves on
    if (plan === undefined) {
      this.#beginScan();
      return;
    }
    this.#stack.length = 0;
    this.#stack.push(frame(F_NODE, plan, this.#blockRows));
    if (plan.lc > 0) this.#stack.push(frame(F_LC_VERSION, plan, plan.lc));
  }

  #columnDone(): void {
    this.#col++;
    if (this.#col < this.#blockCols) {
      this.#beginColumnHeader();
      return;
    }
    this.#blockDone();
  }

  #blockDone(): void {
    this.#rows += this.#blockRows;
    this.#blocks++;
    this.#state = S_BLOCK;
    this.#hdrStage = 0;
  }

  // -------------------------------------------------------------------------
  // Column data

  /** Reads a UInt64 (possibly split across buffers); sets #u64Done/#u64Val. */
  #readU64(buf: Uint8Array, p: number, end: number): number {
    if (this.#u64Len === 0 && end - p >= 8) {
      this.#u64Val = this.#u64At(buf, p, p + 8);
      this.#u64Done = true;
      return p + 8;
    }
    while (this.#u64Len < 8 && p < end) this.#u64[this.#u64Len++] = buf[p++]!;
    if (this.#u64Len < 8) {
      this.#u64Done = false;
      return p;
    }
    this.#u64Len = 0;
    this.#u64Val = this.#u64At(this.#u64, 0, p);
    this.#u64Done = true;
    return p;
  }

  /** The UInt64 at b[i..i+8] as a number; fails above 2^53. `after`: position in the fed buffer for errors. */
  #u64At(b: Uint8Array, i: number, after: number): number {
    const lo = (b[i]! | (b[i + 1]! << 8) | (b[i + 2]! << 16) | (b[i + 3]! << 24)) >>> 0;
    const hi = (b[i + 4]! | (b[i + 5]! << 8) | (b[i + 6]! << 16) | (b[i + 7]! << 24)) >>> 0;
    if (hi > 0x1fffff) throw this.#error(`a UInt64 of 0x${hi.toString(16)}${lo.toString(16).padStart(8, "0")} is out of range`, this.#base + after);
    return hi * 0x100000000 + lo;
  }

  #expand(plan: Plan, rows: number): void {
    if (rows === 0 && plan.lc === 0) return;
    const stack = this.#stack;
    switch (plan.k) {
      case P_FIXED:
        this.#skip += plan.w * rows;
        return;
      case P_STRING:
        stack.push(frame(F_STRINGS, plan, rows));
        return;
      case P_NULLABLE:
        // the null map (skipped first: pending skips go before the top frame), then the values
        stack.push(frame(F_NODE, plan.elem, rows));
        this.#skip += rows;
        return;
      case P_TUPLE:
        for (let i = plan.elems.length - 1; i >= 0; i--) stack.push(frame(F_NODE, plan.elems[i]!, rows));
        return;
      case P_ARRAY:
        if (rows === 0) {
          stack.push(frame(F_NODE, plan.elem, 0)); // only for the LowCardinality parts inside (LC_EMPTY)
          return;
        }
        // offsets are cumulative: the last one is the number of elements
        this.#skip += 8 * (rows - 1);
        stack.push(frame(F_ARRAY_LAST, plan.elem, 0));
        return;
      case P_LOWCARD:
        if (rows > 0) {
          stack.push(frame(F_LC, plan, rows));
        } else if (this.#lcEmptyGranule === true) {
          const f = frame(F_LC, plan, 0);
          f.one = true;
          stack.push(f);
        } else if (this.#lcEmptyGranule === undefined) {
          stack.push(frame(F_LC_EMPTY, plan, 0));
        }
        return;
    }
  }

  /** Walks column data from `p`; returns where it stopped (the end of the buffer, or the end of the column's data). */
  #walk(buf: Uint8Array, p: number, end: number): number {
    const stack = this.#stack;
    for (;;) {
      if (this.#skip > 0) {
        const avail = end - p;
        if (avail < this.#skip) {
          this.#skip -= avail;
          return end;
        }
        p += this.#skip;
        this.#skip = 0;
      }
      const f = stack[stack.length - 1];
      if (f === undefined) return p;
      switch (f.op) {
        case F_NODE:
          stack.pop();
          this.#expand(f.plan, f.n);
          continue;

        case F_STRINGS: {
          let rows = f.n;
          if (this.#vuMul !== 1) {
            // a length split across buffers
            p = this.#varuint(buf, p, end, "a String length");
            if (!this.#vuDone) return p;
            p += this.#vuResult;
            rows--;
          }
          while (rows > 0 && p < end) {
            const b = buf[p]!;
            if (b < 0x80) {
              p += 1 + b;
              rows--;
              continue;
            }
            p = this.#varuint(buf, p, end, "a String length");
            if (!this.#vuDone) {
              f.n = rows;
              return p; // = end
            }
            p += this.#vuResult;
            rows--;
          }
          f.n = rows;
          if (p > end) {
            this.#skip = p - end;
            p = end;
          }
          if (rows === 0) {
            stack.pop();
            continue;
          }
          return p; // = end
        }

        case F_ARRAY_LAST: {
          p = this.#readU64(buf, p, end);
          if (!this.#u64Done) return p;
          const m = this.#u64Val;
          if (m > MAX_LENGTH) throw this.#error(`an array with ${m} elements is not plausible`, this.#base + p);
          stack.pop();
          if (m > 0 || f.plan.lc > 0) stack.push(frame(F_NODE, f.plan, m));
          continue;
        }

        case F_LC_VERSION: {
          p = this.#readU64(buf, p, end);
          if (!this.#u64Done) return p;
          if (this.#u64Val !== 1) throw this.#error(`LowCardinality keys serialization version ${this.#u64Val} (expected 1)`, this.#base + p);
          if (--f.n === 0) stack.pop();
          continue;
        }

        case F_LC: {
          p = this.#readU64(buf, p, end);
          if (!this.#u64Done) return p;
          const v = this.#u64Val;
          const plan = f.plan as Extract<Plan, { k: typeof P_LOWCARD }>;
          if (f.stage === LC_FLAGS) {
            const type = v & 0xff;
            if (type > 3 || v >= 0x800 || (v & 0x100) !== 0) throw this.#error(`LowCardinality granule flags 0x${v.toString(16)} are not supported`, this.#base + p);
            f.width = 1 << type;
            f.stage = (v & 0x200) !== 0 ? LC_KEYS : LC_ROWS;
            continue;
          }
          if (f.stage === LC_KEYS) {
            if (v > MAX_LENGTH) throw this.#error(`a LowCardinality dictionary of ${v} keys is not plausible`, this.#base + p);
            f.stage = LC_ROWS;
            if (v > 0) stack.push(frame(F_NODE, plan.dict, v));
            continue;
          }
          // LC_ROWS
          if (v > f.n) throw this.#error(`a LowCardinality granule of ${v} rows where ${f.n} are left`, this.#base + p);
          this.#skip += v * f.width;
          f.n -= v;
          if (f.one || f.n === 0) stack.pop();
          else f.stage = LC_FLAGS;
          continue;
        }

        case F_LC_EMPTY: {
          // LC_EMPTY: an old server (18.16) writes a granule of 0 rows for a
          // LowCardinality part inside empty arrays, a current one nothing.
          // The next bytes decide: a granule is UInt64 flags (0x200 set,
          // bits 0..1 the index width, nothing above 0x7ff), UInt64 keyCount
          // (the default key(s), at most a few), the keys and UInt64 rowCount
          // 0. What else can follow an empty part cannot look like that: a
          // column header has a non-zero type length within its first 8
          // bytes, as does a block header (numColumns, numRows, then a name
          // and a type); a String's data could, in principle, but then the
          // keys and a zero row count must follow too. The first decision of
          // a stream is kept for the rest of it.
          const plan = f.plan as Extract<Plan, { k: typeof P_LOWCARD }>;
          for (;;) {
            const verdict = classifyEmptyGranule(this.#peek, this.#peekLen, plan.dict);
            if (verdict < 0) {
              // a granule of -verdict bytes, all taken
              this.#lcEmptyGranule = true;
              this.#peekLen = 0;
              stack.pop();
              break;
            }
            if (verdict === 0 || (p >= end && this.#ended)) {
              // no granule (at the end of the stream: no evidence either way, nothing learnt)
              if (verdict === 0) this.#lcEmptyGranule = false;
              stack.pop();
              if (this.#peekLen > 0) {
                this.#replay = Buffer.from(this.#peek.subarray(0, this.#peekLen));
                this.#peekLen = 0;
                return p;
              }
              break;
            }
            if (p >= end) return p;
            if (this.#peekLen === 0) this.#peekStart = this.#base + p;
            if (this.#peek.length < verdict) {
              const bigger = Buffer.alloc(verdict + 64);
              this.#peek.copy(bigger, 0, 0, this.#peekLen);
              this.#peek = bigger;
            }
            const n = Math.min(verdict - this.#peekLen, end - p);
            this.#peek.set(buf.subarray(p, p + n), this.#peekLen);
            this.#peekLen += n;
            p += n;
          }
          continue;
        }
      }
    }
  }

  // -------------------------------------------------------------------------
  // Unwalkable data: the signature search

  /**
   * The first unwalkable column of a block with rows begins: its data (and
   * that of the columns after it, also unwalkable) cannot be sized, so the
   * end of the block is found by a signature search for the next block
   * header:
   *
   *   VarUInt numColumns (this block's), VarUInt numRows (at most 2^40),
   *   String name and String type of the first column (this block's)
   *
   * or the end of the stream. This is a signature search, not a parse: it is
   * safe enough because the header holds both length-prefixed strings of the
   * first column (e.g. "\x02id\x06UInt64") behind the column count and a
   * well-formed row count, so a false match needs state bytes that spell this
   * exact sequence - aggregate states are numbers, hashes and values, which
   * would have to hold the first column's name and type name as adjacent
   * length-prefixed strings. And a false match is rarely silent: the walk
   * goes on from it as a block, so the next column header must match the
   * first block's too, or the walk fails with a NativeFormatError.
   *
   * Across buffers: the search keeps the last bytes of the data seen (as
   * many as a header straddling two buffers needs: |numColumns| + 6 + the
   * strings' length - 1) in a buffer of its own; no reference to a pushed
   * chunk is kept.
   */
  #beginScan(): void {
    this.#state = S_SCAN;
    const first = this.#known[0]!;
    this.#sigP1 = Uint8Array.from(varUIntBytes(this.#numCols));
    this.#sigP2 = Buffer.concat([stringBytes(first.name), stringBytes(first.type)]);
    const t = this.#sigP1.length + MAX_ROWS_VARUINT + this.#sigP2.length - 1;
    if (this.#tail.length !== t) this.#tail = Buffer.alloc(t);
    this.#tailLen = 0;
  }

  #scan(buf: Uint8Array, p: number, end: number): number {
    const p2 = this.#sigP2;
    const m = p2.length;
    const region = end - p;
    const tail = this.#tail;
    const tl = this.#tailLen;
    const at = (k: number): number => (k < 0 ? tail[tl + k]! : buf[p + k]!);

    // 1. the strings starting in the kept tail and ending in this buffer
    for (let s = -Math.min(tl, m - 1); s < 0 && s + m <= region; s++) {
      let i = 0;
      while (i < m && at(s + i) === p2[i]) i++;
      if (i === m && this.#headerBefore(at, s, tl)) return this.#found(p, s, m);
    }
    // 2. the strings inside this buffer
    const bb = asBuffer(buf);
    for (let j = bb.indexOf(p2, p); j >= 0 && j + m <= end; j = bb.indexOf(p2, j + 1)) {
      if (this.#headerBefore(at, j - p, tl)) return this.#found(p, j - p, m);
    }
    // 3. nothing: keep the last bytes for a header that straddles into the next buffer
    const t = tail.length;
    if (region >= t) {
      tail.set(buf.subarray(end - t, end), 0);
      this.#tailLen = t;
    } else {
      const keep = Math.min(tl, t - region);
      tail.copyWithin(0, tl - keep, tl);
      tail.set(buf.subarray(p, end), keep);
      this.#tailLen = keep + region;
    }
    return end;
  }

  #sigRows = 0;
  #sigStart = 0;

  /** Whether the first column's strings at `s` (relative to the region) follow a block header; sets #sigRows/#sigStart. */
  #headerBefore(at: (k: number) => number, s: number, tl: number): boolean {
    // numRows: bytes >= 0x80 then its last byte < 0x80, ending at s - 1
    let k = s - 1;
    if (k < -tl || at(k) >= 0x80) return false;
    while (k - 1 >= -tl && at(k - 1) >= 0x80) {
      k--;
      if (s - k > MAX_ROWS_VARUINT) return false;
    }
    const p1 = this.#sigP1;
    const h = k - p1.length;
    if (h < -tl) return false;
    for (let i = 0; i < p1.length; i++) if (at(h + i) !== p1[i]) return false;
    let rows = 0;
    let mul = 1;
    for (let i = k; i < s; i++, mul *= 0x80) rows += (at(i) & 0x7f) * mul;
    if (rows > MAX_ROWS) return false;
    this.#sigRows = rows;
    this.#sigStart = h;
    return true;
  }

  /** The next block header was found: its first column's header ends at region offset s + m. */
  #found(p: number, s: number, m: number): number {
    this.#blockDone();
    this.#blockStart = this.#base + p + this.#sigStart;
    this.#blockCols = this.#numCols;
    this.#blockRows = this.#sigRows;
    this.#col = 0;
    const first = this.#known[0]!;
    this.#colName = first.name;
    this.#colType = first.type;
    const q = p + s + m;
    this.#beginColumnData(q);
    return q;
  }
}

function frame(op: number, plan: Plan, n: number): Frame {
  return { op, plan, n, stage: 0, width: 0, one: false };
}

/**
 * LC_EMPTY: is c[0..len) (so far) the granule of 0 rows an old server writes
 * for an empty LowCardinality part? Returns -size if it is one (of `size`
 * bytes), 0 if it is not, or the number of bytes needed to tell.
 */
function classifyEmptyGranule(c: Uint8Array, len: number, dict: DictPlan): number {
  const u64 = (i: number): number => {
    for (let j = 4; j < 8; j++) if (c[i + j] !== 0) return -1;
    return (c[i]! | (c[i + 1]! << 8) | (c[i + 2]! << 16) | (c[i + 3]! << 24)) >>> 0;
  };
  if (len < 8) return 8;
  const flags = u64(0);
  if (flags < 0 || (flags & 0xff) > 3 || (flags & 0x200) === 0 || (flags & 0x100) !== 0 || flags >= 0x800) return 0;
  if (len < 16) return 16;
  const keys = u64(8);
  if (keys < 1 || keys > 4) return 0;
  let q = 16;
  for (let i = 0; i < keys; i++) {
    if (dict.k === P_FIXED) {
      if (dict.w > 256) return 0;
      q += dict.w;
    } else {
      if (len < q + 1) return q + 1;
      const l = c[q]!;
      if (l > 64) return 0; // default keys are empty; a long value here is something else
      q += 1 + l;
    }
  }
  if (len < q + 8) return q + 8;
  return u64(q) === 0 ? -(q + 8) : 0;
}

/**
 * Passes every chunk on unchanged (the same object) after feeding it to a
 * NativeWalker; fails the stream at the end if the data was not a complete
 * Native stream.
 *
 * A format error found in the middle is held until the end, and the rest of
 * the data passes unwalked: when a server appends an exception text to a
 * response that had already started, the walker sees that text as a broken
 * block, and the stage that recognises the exception (TrailingExceptionCheck)
 * must get to report it, whichever of the two comes first in the pipeline.
 */
export class NativeCountStream extends Transform {
  readonly walker: NativeWalker;

  /** Feeds the given walker, or a new one made with these options. */
  constructor(walker: NativeWalker | { what?: string } = {}) {
    super();
    this.walker = walker instanceof NativeWalker ? walker : new NativeWalker(walker);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.walker.pushQuietly(chunk);
    cb(null, chunk);
  }

  override _flush(cb: TransformCallback): void {
    try {
      this.walker.end();
      cb();
    } catch (err: unknown) {
      cb(err as Error);
    }
  }
}
