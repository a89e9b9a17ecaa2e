// NativeWalker on Native streams built here by a small encoder (independent
// of the walker: it writes values, the walker only skips them), plus a few
// byte strings captured from ClickHouse 18.16 and chDB 26.7. Every fixture is
// fed split at every offset (or at random ones for the larger ones), with
// each piece in a buffer that is overwritten as soon as push() returns.
// The real servers are covered by test/native-walk.test.ts.
import { Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { isWalkableType, NativeCountStream, NativeFormatError, NativeWalker } from "./nativewalk.ts";

// ---------------------------------------------------------------------------
// A Native encoder for fixtures

const cat = (parts: Buffer[]) => Buffer.concat(parts);
const EMPTY = Buffer.alloc(0);
function vu(v: number): Buffer {
  const out: number[] = [];
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
  return Buffer.from(out);
}
function u64(v: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(v));
  return b;
}
const str = (s: string | Buffer) => {
  const b = typeof s === "string" ? Buffer.from(s) : s;
  return cat([vu(b.length), b]);
};

/** Encodes a type's data: the LowCardinality prefixes (all of them, first) and the bulk data. */
interface Enc {
  type: string;
  prefix(): Buffer;
  data(vals: unknown[]): Buffer;
}

const fixedEnc = (type: string, w: number): Enc => ({
  type,
  prefix: () => EMPTY,
  data: (vals) => cat(vals.map((v) => Buffer.alloc(w, Number(v ?? 0) & 0xff))),
});
const Str: Enc = { type: "String", prefix: () => EMPTY, data: (vals) => cat(vals.map((v) => str((v as string | Buffer | undefined) ?? ""))) };
const Nullable = (e: Enc, dflt: unknown = ""): Enc => ({
  type: `Nullable(${e.type})`,
  prefix: () => e.prefix(),
  data: (vals) => cat([Buffer.from(vals.map((v) => (v === null ? 1 : 0))), e.data(vals.map((v) => (v === null ? dflt : v)))]),
});
const Arr = (e: Enc, type = `Array(${e.type})`): Enc => ({
  type,
  prefix: () => e.prefix(),
  data: (vals) => {
    let n = 0;
    const offs = (vals as unknown[][]).map((a) => u64((n += a.length)));
    return cat([...offs, e.data((vals as unknown[][]).flat(1))]);
  },
});
const Tup = (es: Enc[], names?: string[], type?: string): Enc => ({
  type: type ?? `Tuple(${es.map((e, i) => (names ? `${names[i]} ${e.type}` : e.type)).join(", ")})`,
  prefix: () => cat(es.map((e) => e.prefix())),
  data: (vals) => cat(es.map((e, i) => e.data((vals as unknown[][]).map((v) => v[i])))),
});
const MapT = (k: Enc, v: Enc): Enc => Arr(Tup([k, v]), `Map(${k.type}, ${v.type})`);

/**
 * LowCardinality(T) of strings or numbers (`w`: fixed width of T, 0 for
 * String). `old`: an empty part writes one granule of 0 rows (18.16), else
 * nothing. `granule`: rows per granule.
 */
const LC = (inner: string, opts: { nullable?: boolean; old?: boolean; granule?: number; w?: number } = {}): Enc => {
  const nullable = opts.nullable ?? false;
  const w = opts.w ?? 0;
  const key = (v: unknown): Buffer => (w === 0 ? str(String(v ?? "")) : Buffer.alloc(w, Number(v ?? 0) & 0xff));
  const granule = (vals: unknown[]): Buffer => {
    const dict: unknown[] = nullable ? [null, w === 0 ? "" : 0] : [w === 0 ? "" : 0];
    const idx = vals.map((v) => {
      if (v === null && nullable) return 0;
      let i = dict.findIndex((d, j) => (nullable ? j > 0 : true) && d === v);
      if (i < 0) i = dict.push(v) - 1;
      return i;
    });
    const type = dict.length <= 0x100 ? 0 : dict.length <= 0x10000 ? 1 : 2;
    const iw = 1 << type;
    const ib = Buffer.alloc(iw * idx.length);
    idx.forEach((x, i) => ib.writeUIntLE(x, i * iw, iw));
    return cat([u64(0x600 | type), u64(dict.length), ...dict.map(key), u64(vals.length), ib]);
  };
  return {
    type: `LowCardinality(${nullable ? `Nullable(${inner})` : inner})`,
    prefix: () => u64(1),
    data: (vals) => {
      if (vals.length === 0) return opts.old ? cat([u64(0x600), u64(nullable ? 2 : 1), ...(nullable ? [key(null), key(null)] : [key(null)]), u64(0)]) : EMPTY;
      const g = opts.granule ?? vals.length;
      const parts: Buffer[] = [];
      for (let i = 0; i < vals.length; i += g) parts.push(granule(vals.slice(i, i + g)));
      return cat(parts);
    },
  };
};

/** An aggregate state: bytes without a length prefix (here: whatever `bytes` makes of each value). */
const Agg = (type: string, bytes: (v: unknown) => Buffer): Enc => ({ type, prefix: () => EMPTY, data: (vals) => cat(vals.map(bytes)) });

interface Col {
  name: string;
  enc: Enc;
  vals: (rows: number, block: number) => unknown[];
}

function block(cols: { name: string; enc: Enc; vals: unknown[] }[], rows: number): Buffer {
  const parts = [vu(cols.length), vu(rows)];
  for (const c of cols) {
    expect(c.vals.length).toBe(rows);
    parts.push(str(c.name), str(c.enc.type));
    if (rows > 0) parts.push(c.enc.prefix(), c.enc.data(c.vals));
  }
  return cat(parts);
}

function stream(cols: Col[], blockRows: number[]): { data: Buffer; ends: number[] } {
  const parts: Buffer[] = [];
  const ends: number[] = [];
  let len = 0;
  blockRows.forEach((rows, b) => {
    const bl = block(
      cols.map((c) => ({ name: c.name, enc: c.enc, vals: c.vals(rows, b) })),
      rows,
    );
    parts.push(bl);
    len += bl.length;
    ends.push(len);
  });
  return { data: cat(parts), ends };
}

/** A small deterministic PRNG. */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 0x100000000;
  };
}

const ENUM = "Enum8('a,b' = 1, 'it\\'s' = 2, '(x)' = -3, '=' = 4, ')' = 5, '' = 6)";

/** Columns of every walkable kind, with values that vary by row. */
function richColumns(old: boolean, long = false): Col[] {
  const r = rng(7);
  const pick = <T,>(xs: T[]): T => xs[Math.floor(r() * xs.length)]!;
  const words = ["", "a", "bb", "x".repeat(127), "y".repeat(128), "é€", ...(long ? ["z".repeat(20000)] : [])];
  const rows = <T,>(f: (i: number) => T) => (n: number) => Array.from({ length: n }, (_, i) => f(i));
  return [
    { name: "u8", enc: fixedEnc("UInt8", 1), vals: rows((i) => i) },
    { name: "i64", enc: fixedEnc("Int64", 8), vals: rows((i) => i) },
    { name: "s", enc: Str, vals: rows(() => pick(words)) },
    { name: "ns", enc: Nullable(Str), vals: rows((i) => (i % 3 === 0 ? null : pick(words))) },
    { name: "aas", enc: Arr(Arr(Str)), vals: rows((i) => Array.from({ length: i % 4 }, () => Array.from({ length: Math.floor(r() * 3) }, () => pick(words)))) },
    { name: "anu", enc: Arr(Nullable(fixedEnc("UInt32", 4), 0)), vals: rows((i) => Array.from({ length: i % 3 }, (_, j) => (j === 1 ? null : j))) },
    { name: "t", enc: Tup([fixedEnc("UInt8", 1), Str], ["a", "b"]), vals: rows((i) => [i, pick(words)]) },
    { name: "m", enc: MapT(Str, Arr(fixedEnc("UInt8", 1))), vals: rows((i) => Array.from({ length: i % 3 }, (_, j) => [`k${j}`, [1, 2].slice(0, j)])) },
    { name: "lc", enc: LC("String", { old, granule: 5 }), vals: rows(() => pick(words)) },
    { name: "lcn", enc: LC("String", { old, nullable: true }), vals: rows((i) => (i % 4 === 0 ? null : pick(words))) },
    { name: "alc", enc: Arr(LC("String", { old })), vals: rows((i) => (i % 3 === 0 ? [] : [pick(words), pick(words)])) },
    { name: "e", enc: fixedEnc(ENUM, 1), vals: rows(() => 1) },
    { name: "d", enc: fixedEnc("Decimal(20, 4)", 16), vals: rows(() => 1) },
    { name: "dt64", enc: fixedEnc("DateTime64(3, 'Europe/Amsterdam')", 8), vals: rows(() => 1) },
    { name: "fs", enc: fixedEnc("FixedString(3)", 3), vals: rows(() => 1) },
    { name: "n", enc: Arr(Tup([fixedEnc("UInt8", 1), Str]), "Nested(a UInt8, b String)"), vals: rows((i) => Array.from({ length: i % 2 }, () => [1, pick(words)])) },
    { name: "saf", enc: fixedEnc("SimpleAggregateFunction(sum, UInt64)", 8), vals: rows(() => 1) },
    { name: "safs", enc: { ...Nullable(Str), type: "SimpleAggregateFunction(anyLast, Nullable(String))" }, vals: rows(() => null) },
    { name: "pt", enc: fixedEnc("Point", 16), vals: rows(() => 1) },
    { name: "poly", enc: Arr(Arr(fixedEnc("Point", 16)), "Polygon"), vals: rows((i) => [[1, 2].slice(0, i % 3)]) },
    { name: "nn", enc: { ...Nullable(fixedEnc("Nothing", 1)), type: "Nullable(Nothing)" }, vals: rows(() => null) },
    { name: "an", enc: Arr(fixedEnc("Nothing", 1)), vals: rows(() => []) },
    {
      name: "mlc",
      enc: MapT(LC("String", { old }), Arr(Nullable(fixedEnc("Decimal(20, 4)", 16), 0))),
      vals: rows((i) => Array.from({ length: i % 3 }, (_, j) => [`k${j}`, [null, 2].slice(0, j)])),
    },
    { name: "talc", enc: Tup([Arr(LC("String", { old })), Str]), vals: rows((i) => [i % 2 ? [] : ["q"], "\x06\x00"]) },
    { name: "lcu", enc: LC("UInt32", { old, w: 4 }), vals: rows((i) => i % 300) },
    { name: "lcw", enc: LC("String", { old }), vals: rows((i) => `v${i}`) }, // > 256 keys: UInt16 indexes
    { name: "`odd name`", enc: fixedEnc("IPv6", 16), vals: rows(() => 1) },
  ];
}

// ---------------------------------------------------------------------------
// Feeding

interface Result {
  rows: number;
  blocks: number;
  bytes: number;
  columns: { name: string; type: string }[] | undefined;
  error?: string;
}

/** Feeds `data` cut at `cuts`, each piece in a reused buffer overwritten right after push(). */
function walk(data: Buffer, cuts: number[], what?: string): Result {
  const w = new NativeWalker(what === undefined ? {} : { what });
  const scratch = Buffer.alloc(data.length + 1);
  const pts = [...new Set(cuts.filter((c) => c > 0 && c < data.length))].sort((a, b) => a - b);
  let prev = 0;
  try {
    for (const p of [...pts, data.length]) {
      if (p < prev || (p === prev && data.length > 0)) continue;
      const piece = scratch.subarray(0, p - prev);
      data.copy(piece, 0, prev, p);
      w.push(piece);
      piece.fill(0xa5);
      prev = p;
    }
    w.end();
  } catch (err) {
    if (!(err instanceof NativeFormatError)) throw err;
    return { rows: w.rows, blocks: w.blocks, bytes: w.bytes, columns: w.columns, error: err.message };
  }
  return { rows: w.rows, blocks: w.blocks, bytes: w.bytes, columns: w.columns };
}

/** The same result whole, byte by byte, and split in two at every offset. */
function expectEverySplit(data: Buffer, expected: Partial<Result>): void {
  const whole = walk(data, []);
  expect(whole).toMatchObject(expected);
  expect(whole.error).toBeUndefined();
  expect(walk(data, Array.from({ length: data.length }, (_, i) => i))).toEqual(whole);
  for (let i = 1; i < data.length; i++) expect(walk(data, [i])).toEqual(whole);
}

function randomCuts(len: number, seed: number, n: number): number[] {
  const r = rng(seed);
  return Array.from({ length: n }, () => Math.floor(r() * len));
}

// ---------------------------------------------------------------------------

describe("isWalkableType", () => {
  it.each([
    "UInt8", "Int256", "UInt128", "Float32", "BFloat16", "Bool", "Date", "Date32", "DateTime", "DateTime('Asia/Kolkata')", "DateTime64(9)",
    "DateTime64(3, 'UTC')", "Decimal(9, 2)", "Decimal(76, 10)", "Decimal128(5)", "UUID", "IPv4", "IPv6", "FixedString(16)", "IntervalDay",
    "IntervalNanosecond", "Time", "Time64(3)", "Nothing", "Nullable(Nothing)", "String", "Nullable(String)", "Array(Array(String))", ENUM,
    "Enum16('\\\\' = 1, '''' = 2)", "Tuple(UInt8, String)", "Tuple(a UInt8, `b c` Array(String))", "Map(String, UInt64)",
    "Map(LowCardinality(String), Array(Nullable(Decimal(20, 4))))", "Nested(a UInt8, b String)", "LowCardinality(String)",
    "LowCardinality(Nullable(String))", "LowCardinality(Nullable(FixedString(3)))", "Array(LowCardinality(String))",
    "SimpleAggregateFunction(anyLast, Nullable(String))", "SimpleAggregateFunction(groupUniqArrayArray(10), Array(UInt8))", "Point", "Ring",
    "LineString", "Polygon", "MultiLineString", "MultiPolygon",
  ])("%s is walkable", (t) => expect(isWalkableType(t)).toBe(true));
  it.each([
    "AggregateFunction(uniq, UInt64)", "AggregateFunction(argMax, String, DateTime)", "AggregateFunction(quantiles(0.5, 0.9), UInt64)",
    "Array(AggregateFunction(sum, UInt64))", "Variant(String, UInt64)", "Dynamic", "JSON", "JSON(max_dynamic_paths=10, a.b UInt32, SKIP a.c)",
    "Object('json')", "Tuple()", "LowCardinality(Array(String))", "Whatever", "UInt8(3)", "FixedString(x)", "Decimal(77, 2)", "Array(UInt8",
    "", "Nullable(UInt8, UInt8)", "Map(String)", "Tuple(a UInt8, Dynamic)",
  ])("%s is not walkable", (t) => expect(isWalkableType(t)).toBe(false));
});

describe("NativeWalker", () => {
  it("takes an empty stream as 0 rows", () => {
    const w = new NativeWalker();
    w.end();
    expect([w.rows, w.blocks, w.bytes, w.columns]).toEqual([0, 0, 0, undefined]);
    const v = new NativeWalker();
    v.push(new Uint8Array(0));
    v.end();
    expect(v.rows).toBe(0);
  });

  it("walks blocks of 0 rows (headers only), whatever the types", () => {
    const cols: Col[] = [
      { name: "id", enc: fixedEnc("UInt64", 8), vals: () => [] },
      { name: "lc", enc: LC("String"), vals: () => [] },
      { name: "agg", enc: Agg("AggregateFunction(uniq, UInt64)", () => EMPTY), vals: () => [] },
      { name: "agg2", enc: Agg("AggregateFunction(sum, UInt64)", () => EMPTY), vals: () => [] },
    ];
    const { data } = stream(cols, [0, 0]);
    expectEverySplit(data, {
      rows: 0,
      blocks: 2,
      columns: cols.map((c) => ({ name: c.name, type: c.enc.type })),
    });
  });

  for (const old of [false, true]) {
    it(`walks every walkable type, split anywhere (${old ? "18.16" : "current"} LowCardinality)`, () => {
      const cols = richColumns(old);
      const { data } = stream(cols, [1, 3]);
      expectEverySplit(data, { rows: 4, blocks: 2, bytes: data.length });
      expect(walk(data, []).columns).toEqual(cols.map((c) => ({ name: c.name, type: c.enc.type })));
    });

    it(`walks many blocks of many rows cut at random (${old ? "18.16" : "current"} LowCardinality)`, () => {
      const cols = richColumns(old, true);
      const sizes = [700, 0, 1, 333, 1000];
      const { data } = stream(cols, sizes);
      const whole = walk(data, []);
      expect(whole).toEqual({ rows: 2034, blocks: 5, bytes: data.length, columns: cols.map((c) => ({ name: c.name, type: c.enc.type })) });
      for (let seed = 1; seed <= 20; seed++) expect(walk(data, randomCuts(data.length, seed, seed * 10))).toEqual(whole);
      expect(walk(data, Array.from({ length: 3000 }, (_, i) => i * 7 + (i % 5)))).toEqual(whole); // many tiny pieces
    }, 60_000);
  }

  it("takes the 18.16 granule of an empty LowCardinality part, and its absence on current servers", () => {
    // captured: SELECT CAST([] AS Array(LowCardinality(String))) AS x FROM numbers(2) FORMAT Native
    const v18 = Buffer.from(
      "010201781d4172726179284c6f7743617264696e616c69747928537472696e67292901000000000000000000000000000000000000000000000000060000000000000100000000000000000000000000000000",
      "hex",
    );
    const v26 = Buffer.from("010201781d4172726179284c6f7743617264696e616c69747928537472696e672929010000000000000000000000000000000000000000000000", "hex");
    expectEverySplit(v18, { rows: 2, blocks: 1 });
    expectEverySplit(v26, { rows: 2, blocks: 1 });
    expectEverySplit(Buffer.concat([v18, v18, v18]), { rows: 6, blocks: 3 });
    expectEverySplit(Buffer.concat([v26, v26, v26]), { rows: 6, blocks: 3 });
    // and with another column behind: SELECT CAST([] AS Array(LowCardinality(String))) AS x, 5::UInt8 AS y FROM numbers(2)
    const v26y = Buffer.from(
      "020201781d4172726179284c6f7743617264696e616c69747928537472696e672929010000000000000000000000000000000000000000000000000179055549" + "6e74380505",
      "hex",
    );
    expectEverySplit(v26y, { rows: 2, blocks: 1 });
    // Strings behind an empty part (current servers: no granule) whose first 8 bytes read as granule flags 0x600:
    // "", "\0\0\0\0\0\0", "x" -> 00 06 00 00 00 00 00 00 | 01 78 ... (a key count of 0x7801: no granule)
    const tricky: Col[] = [
      { name: "t", enc: Tup([Arr(LC("String")), Str]), vals: (n) => Array.from({ length: n }, (_, i) => [[], ["", "\0".repeat(6), "x"][i % 3]]) },
      { name: "after", enc: fixedEnc("UInt64", 8), vals: (n) => Array.from({ length: n }, () => 0) },
    ];
    expectEverySplit(stream(tricky, [3]).data, { rows: 3, blocks: 1 });
    expectEverySplit(stream(tricky, [3, 3]).data, { rows: 6, blocks: 2 });
  });

  it("walks a captured chDB 26.7 Map(LowCardinality(String), Array(Nullable(Decimal(38, 4))))", () => {
    const m = Buffer.from(
      "0101016d3c4d6170284c6f7743617264696e616c69747928537472696e67292c204172726179284e756c6c61626c6528446563696d616c2833382c2034292929290100000000000000010000000000000000060000000000000200000000000000000161010000000000000001010000000000000000983a0000000000000000000000000000",
      "hex",
    );
    expectEverySplit(m, { rows: 1, blocks: 1, columns: [{ name: "m", type: "Map(LowCardinality(String), Array(Nullable(Decimal(38, 4))))" }] });
  });

  describe("unwalkable columns at the end of the block: the signature search", () => {
    /** State bytes full of partial lookalikes of a block header of `ncols` columns whose first column's header is `sig`. */
    const nasty = (i: number, ncols: number, sig: Buffer): Buffer => {
      const variants = [
        Buffer.concat([vu(ncols), vu(5), sig.subarray(0, sig.length - 1)]), // the strings cut short
        Buffer.concat([vu(ncols + 1), vu(5), sig]), // another column count
        Buffer.concat([vu(ncols), Buffer.from([0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x01]), sig]), // row count VarUInt too long
        Buffer.concat([vu(ncols), Buffer.from([0x80, 0x80, 0x80, 0x80, 0x80, 0x41]), sig]), // a row count above 2^40
        Buffer.concat([vu(ncols), vu(5), sig.subarray(0, sig.length - 2), Buffer.from("2")]), // another type
        Buffer.concat([Buffer.from([0xff]), sig]), // the strings behind no row count
        Buffer.from([ncols, 0x82]), // a row count that the next bytes would end
        Buffer.alloc(0),
      ];
      return variants[i % variants.length]!;
    };
    const idSig = Buffer.concat([str("id"), str("UInt64")]);
    const mixed: Col[] = [
      { name: "id", enc: fixedEnc("UInt64", 8), vals: (n) => Array.from({ length: n }, (_, i) => i) },
      { name: "s", enc: Str, vals: (n) => Array.from({ length: n }, (_, i) => "s".repeat(i % 5)) },
      { name: "u", enc: Agg("AggregateFunction(uniq, UInt64)", () => EMPTY), vals: (n) => Array.from({ length: n }, () => 0) },
      { name: "g", enc: Agg("AggregateFunction(groupArray, String)", (v) => nasty(v as number, 5, idSig)), vals: (n) => Array.from({ length: n }, (_, i) => i) },
      { name: "a", enc: Agg("AggregateFunction(argMax, String, UInt64)", (v) => Buffer.from([(v as number) & 0xff, 0x80, 3])), vals: (n) => Array.from({ length: n }, (_, i) => i + 1) },
    ];

    it("finds every block's end, however the stream is cut (walkable columns first)", () => {
      const { data } = stream(mixed, [3, 8, 1, 0, 130, 2]);
      expectEverySplit(data, { rows: 144, blocks: 6 });
      // the columns behind the first unwalkable one are known from the block of 0 rows
      expect(walk(data, []).columns?.map((x) => x.name)).toEqual(["id", "s", "u", "g", "a"]);
      expect(walk(stream(mixed, [3, 8]).data, []).columns?.map((x) => x.name)).toEqual(["id", "s", "u"]);
    });

    it("works when every column is unwalkable (the first one's header is the signature)", () => {
      const type = "AggregateFunction(uniq, UInt64)";
      const sig = Buffer.concat([str("id"), str(type)]);
      const cols: Col[] = [
        { name: "id", enc: Agg(type, (v) => nasty(v as number, 2, sig)), vals: (n) => Array.from({ length: n }, (_, i) => i) },
        { name: "g", enc: Agg("AggregateFunction(groupArray, String)", (v) => nasty((v as number) + 3, 2, sig)), vals: (n) => Array.from({ length: n }, (_, i) => i) },
      ];
      const { data } = stream(cols, [4, 1, 130, 9]);
      expectEverySplit(data, { rows: 144, blocks: 4 });
      expect(walk(data, []).columns).toEqual([{ name: "id", type }]); // the other header is behind state data
    });

    it("finds a header that straddles pieces, with the pieces overwritten in between", () => {
      const { data, ends } = stream(mixed, [5, 5, 5]);
      const whole = walk(data, []);
      expect(whole.rows).toBe(15);
      for (const e of ends.slice(0, -1)) {
        for (let a = e - 3; a <= e + idSig.length + 3; a++) {
          expect(walk(data, [a, a + 1, a + 3])).toEqual(whole);
          expect(walk(data, [a - 1, a, a + 2, a + 5])).toEqual(whole);
        }
      }
    });

    it("counts a block whose unwalkable data runs to the end, and cannot tell a cut there", () => {
      const { data, ends } = stream(mixed, [5, 5]);
      // inherent: the data can't be sized; the rows are those of the headers
      expect(walk(data.subarray(0, data.length - 2), [])).toMatchObject({ rows: 10, blocks: 2 });
      // fewer rows: the caller's count() catches it
      expect(walk(data.subarray(0, ends[0]! - 2), [])).toMatchObject({ rows: 5, blocks: 1 });
    });
  });

  it("fails on a stream cut anywhere but at a block boundary, naming the block, column and offset", () => {
    const cols = richColumns(true);
    const { data, ends } = stream(cols, [2, 3]);
    const boundaries = new Set([0, ...ends]);
    for (let n = 0; n < data.length; n++) {
      const r = walk(data.subarray(0, n), randomCuts(n, n, 3));
      if (boundaries.has(n)) {
        expect(r.error).toBeUndefined();
      } else {
        expect(r.error, `cut at ${n}`).toMatch(/the data ended inside (the header of )?block [12]/);
        expect(r.rows).toBeLessThan(5);
      }
    }
    const w = walk(data.subarray(0, ends[0]! + 40), [], "shop.orders");
    expect(w.error).toMatch(/^shop\.orders: the data ended inside block 2, column `i64` \(Int64\), 40 bytes into the block \(stream offset \d+\)$/);
  });

  it("fails with a NativeFormatError on garbage, never anything else, and never hangs", () => {
    const { data } = stream(richColumns(false), [3]);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.nat(), fc.integer({ min: 0, max: 255 }), (junk, at, byte) => {
        walk(Buffer.from(junk), [3, 17]); // throws anything but a NativeFormatError
        const bad = Buffer.from(data);
        bad[at % bad.length] = byte;
        walk(bad, [at % 50]);
        walk(Buffer.concat([data, Buffer.from(junk)]), [data.length]);
      }),
      { numRuns: 300 },
    );
  });

  it("names what it found wrong", () => {
    const one = (cols: number, rows: number, ...rest: Buffer[]) => Buffer.concat([vu(cols), vu(rows), ...rest]);
    expect(walk(one(1, 1, str("x"), str("Foo\u0001")), []).error).toMatch(/`Foo\u0001` is not a type name in block 1/);
    expect(walk(one(1, 1, str("x"), str("LowCardinality(String)"), u64(2)), []).error).toMatch(/keys serialization version 2/);
    expect(walk(Buffer.concat([one(1, 1, str("x"), str("UInt8"), Buffer.from([1])), one(2, 1)]), []).error).toMatch(/2 columns, the first block had 1/);
    expect(walk(Buffer.concat([one(1, 1, str("x"), str("UInt8"), Buffer.from([1])), one(1, 1, str("y"), str("UInt8"), Buffer.from([1]))]), []).error).toMatch(
      /column 1 is `y` \(UInt8\) but was `x` \(UInt8\)/,
    );
    expect(walk(one(1, 2 ** 41), []).error).toMatch(/row count/);
    expect(walk(one(1, 1, str("x"), str("Array(UInt8)"), u64(2 ** 60)), []).error).toMatch(/out of range/);
    const w = new NativeWalker();
    w.end();
    expect(() => w.push(Buffer.from([1]))).toThrow(NativeFormatError);
    // after a failure, every call throws the same error
    const f = new NativeWalker();
    let first: unknown;
    try {
      f.push(one(1, 1, str("x"), str("LowCardinality(String)"), u64(2)));
    } catch (err) {
      first = err;
    }
    expect(first).toBeInstanceOf(NativeFormatError);
    expect(() => f.push(Buffer.from([0]))).toThrow(first as Error);
    expect(() => f.end()).toThrow(first as Error);
  });

  it("is fast: fixed-width columns in O(1), Strings in a tight loop", () => {
    // 1M rows of UInt64 + a short String + an array, in blocks of 65536 rows
    const n = 65536;
    const bl = block(
      [
        { name: "id", enc: fixedEnc("UInt64", 8), vals: Array.from({ length: n }, () => 0) },
        { name: "s", enc: Str, vals: Array.from({ length: n }, (_, i) => "v".repeat(i % 20)) },
        { name: "a", enc: Arr(fixedEnc("UInt32", 4)), vals: Array.from({ length: n }, (_, i) => [i % 3, 1].slice(0, i % 3)) },
      ],
      n,
    );
    const data = Buffer.concat(Array.from({ length: 16 }, () => bl));
    const t0 = performance.now();
    const w = new NativeWalker();
    for (let off = 0; off < data.length; off += 1 << 20) w.push(data.subarray(off, off + (1 << 20)));
    w.end();
    const ms = performance.now() - t0;
    expect(w.rows).toBe(16 * n);
    console.log(`walked ${(data.length / 1e6).toFixed(0)} MB (${w.rows} rows) in ${ms.toFixed(0)} ms: ${(data.length / 1e6 / (ms / 1000)).toFixed(0)} MB/s`);
  });
});

describe("NativeCountStream", () => {
  const { data } = stream(richColumns(false), [3, 4]);

  async function run(s: NativeCountStream, input: Buffer[]): Promise<Buffer[]> {
    const out: Buffer[] = [];
    await pipeline(
      Readable.from(input),
      s,
      new Writable({
        write(c: Buffer, _e, cb) {
          out.push(c);
          cb();
        },
      }),
    );
    return out;
  }

  it("passes the same chunk objects on and counts", async () => {
    const input = [data.subarray(0, 100), data.subarray(100, 101), data.subarray(101)];
    const s = new NativeCountStream({ what: "db.t" });
    const out = await run(s, input);
    expect(out.length).toBe(3);
    out.forEach((c, i) => expect(c).toBe(input[i]));
    expect(s.walker.rows).toBe(7);
  });

  it("feeds a walker it is given", async () => {
    const w = new NativeWalker();
    await run(new NativeCountStream(w), [data]);
    expect(w.rows).toBe(7);
  });

  it("fails at the end on a cut stream, and holds a format error until the end", async () => {
    await expect(run(new NativeCountStream({ what: "db.t" }), [data.subarray(0, data.length - 1)])).rejects.toThrow(/^db\.t: the data ended inside block 2/);
    // an exception text appended to the data: passed on to the end, then the format error
    const tail = Buffer.from("Code: 241, e.displayText() = DB::Exception: Memory limit exceeded, e.what() = DB::Exception\n");
    const s = new NativeCountStream();
    const out: Buffer[] = [];
    await expect(
      pipeline(
        Readable.from([data, tail, Buffer.from("more")]),
        s,
        new Writable({
          write(c: Buffer, _e, cb) {
            out.push(c);
            cb();
          },
        }),
      ),
    ).rejects.toThrow(NativeFormatError);
    expect(Buffer.concat(out).length).toBe(data.length + tail.length + 4);
  });
});
