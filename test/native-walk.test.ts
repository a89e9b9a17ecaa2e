// NativeWalker against the Native output of real servers: ClickHouse 18.16
// (plain, and compress=1 decoded by CompressedStreamCheck) and chDB 26.7.
// Every type from the walker's list that a server supports (probed: each
// column is created on its own first) goes into one wide table, filled with
// 0, 1, 3 and 200,000 rows; aggregate states go into an AggregatingMergeTree
// in varied positions and are selected last. The walker's row count must be
// the server's count(), fed in pieces of every size, and a cut stream must
// fail. Also prints the LZ4 decoder's and the walker's speed on real data.
import { Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startChdb, startClickHouse, type ChdbEngine, type ClickHouseServer } from "./env/index.ts";
import { CompressedStreamCheck, decompressBlock, lz4DecompressBlock } from "../pkg/backupengine/clickhouse/compressed.ts";
import { httpSelect } from "../pkg/backupengine/clickhouse/httpselect.ts";
import { isWalkableType, NativeFormatError, NativeWalker } from "../pkg/backupengine/clickhouse/nativewalk.ts";

const ENUM8 = "Enum8('a,b' = 1, 'it\\'s' = 2, '(x)' = -3, '=' = 4, ')' = 5, 'q''q' = 6)";
const ENUM8_VALUES = "['a,b', 'it\\'s', '(x)', '=', ')', 'q''q']";

/** A column: its type and a value expression over `number`. */
interface Spec {
  name: string;
  type: string;
  expr: string;
}

// Walkable types, as table columns.
const SPECS: Spec[] = [
  { name: "u8", type: "UInt8", expr: "toUInt8(number % 256)" },
  { name: "u16", type: "UInt16", expr: "toUInt16(number)" },
  { name: "u32", type: "UInt32", expr: "toUInt32(number)" },
  { name: "u64", type: "UInt64", expr: "number" },
  { name: "u128", type: "UInt128", expr: "toUInt128(number)" },
  { name: "u256", type: "UInt256", expr: "toUInt256(number)" },
  { name: "i8", type: "Int8", expr: "toInt8(number % 100 - 50)" },
  { name: "i16", type: "Int16", expr: "toInt16(number)" },
  { name: "i32", type: "Int32", expr: "toInt32(number)" },
  { name: "i64", type: "Int64", expr: "toInt64(number)" },
  { name: "i128", type: "Int128", expr: "toInt128(number)" },
  { name: "i256", type: "Int256", expr: "toInt256(number)" },
  { name: "f32", type: "Float32", expr: "toFloat32(number / 3)" },
  { name: "f64", type: "Float64", expr: "number / 7" },
  { name: "bf16", type: "BFloat16", expr: "toBFloat16(number)" },
  { name: "b", type: "Bool", expr: "number % 2 = 1" },
  { name: "d", type: "Date", expr: "toDate(number % 20000)" },
  { name: "d32", type: "Date32", expr: "toDate32(number % 20000)" },
  { name: "dt", type: "DateTime", expr: "toDateTime(number)" },
  { name: "dttz", type: "DateTime('Asia/Kolkata')", expr: "toDateTime(number, 'Asia/Kolkata')" },
  { name: "dt64", type: "DateTime64(3, 'UTC')", expr: "toDateTime64(number, 3, 'UTC')" },
  { name: "dec9", type: "Decimal(9, 2)", expr: "toDecimal32(number % 1000, 2)" },
  { name: "dec18", type: "Decimal(18, 4)", expr: "toDecimal64(number, 4)" },
  { name: "dec38", type: "Decimal(38, 10)", expr: "toDecimal128(number, 10)" },
  { name: "dec76", type: "Decimal(76, 20)", expr: "toDecimal256(number, 20)" },
  { name: "dec32s", type: "Decimal32(3)", expr: "toDecimal32(number % 1000, 3)" },
  { name: "e8", type: ENUM8, expr: `CAST(${ENUM8_VALUES}[number % 6 + 1] AS ${ENUM8})` },
  { name: "e16", type: "Enum16('x' = 1000, 'y = z, (w)' = -1000)", expr: "CAST(if(number % 2 = 0, 'x', 'y = z, (w)') AS Enum16('x' = 1000, 'y = z, (w)' = -1000))" },
  { name: "uuid", type: "UUID", expr: "toUUID('01234567-89ab-cdef-0123-456789abcdef')" },
  { name: "ip4", type: "IPv4", expr: "toIPv4('10.0.0.1')" },
  { name: "ip6", type: "IPv6", expr: "toIPv6('2001:db8::1')" },
  { name: "fs", type: "FixedString(5)", expr: "toFixedString(toString(number % 10000), 5)" },
  { name: "s", type: "String", expr: "if(number % 7 = 0, '', concat('s', toString(number)))" },
  { name: "es", type: "String", expr: "''" },
  { name: "hs", type: "String", expr: "arrayStringConcat(arrayMap(x -> 'x', range(if(number < 3, 1048576, number % 30))))" },
  { name: "ns", type: "Nullable(String)", expr: "if(number % 3 = 0, NULL, toString(number))" },
  { name: "nu", type: "Nullable(UInt32)", expr: "if(number % 4 = 0, NULL, toUInt32(number))" },
  { name: "ndec", type: "Nullable(Decimal(20, 4))", expr: "if(number % 4 = 0, NULL, toDecimal128(number, 4))" },
  { name: "aas", type: "Array(Array(String))", expr: "arrayMap(x -> arrayMap(y -> toString(y), range(x % 3)), range(number % 4))" },
  { name: "ani", type: "Array(Nullable(Int32))", expr: "arrayMap(x -> if(x = 1, NULL, toInt32(x)), range(number % 3))" },
  { name: "aes", type: "Array(String)", expr: "emptyArrayString()" },
  { name: "n.a", type: "Array(UInt8)", expr: "arrayMap(x -> toUInt8(x), range(number % 3))" },
  { name: "n.b", type: "Array(String)", expr: "arrayMap(x -> toString(x), range(number % 3))" },
  { name: "lc", type: "LowCardinality(String)", expr: "toString(number % 100)" },
  { name: "lcn", type: "LowCardinality(Nullable(String))", expr: "if(number % 5 = 0, NULL, toString(number % 50))" },
  { name: "lcw", type: "LowCardinality(String)", expr: "toString(number % 70000)" }, // wide indexes (UInt32 for 65536+ keys)
  { name: "lcfs", type: "LowCardinality(FixedString(4))", expr: "toFixedString(toString(number % 1000), 4)" },
  { name: "lcu", type: "LowCardinality(UInt32)", expr: "toUInt32(number % 300)" },
  { name: "alc", type: "Array(LowCardinality(String))", expr: "arrayMap(x -> toString(x), range(number % 3))" },
  { name: "alce", type: "Array(LowCardinality(String))", expr: "emptyArrayString()" }, // always empty: the empty-part case
  { name: "alcn", type: "Array(LowCardinality(Nullable(String)))", expr: "arrayMap(x -> if(x = 0, NULL, toString(x)), range(number % 2))" },
  { name: "t", type: "Tuple(UInt8, String)", expr: "(toUInt8(number % 256), toString(number))" },
  { name: "tn", type: "Tuple(a UInt8, b Array(String))", expr: "CAST((toUInt8(number % 256), [toString(number)]) AS Tuple(a UInt8, b Array(String)))" },
  { name: "talc", type: "Tuple(Array(LowCardinality(String)), String)", expr: "CAST((emptyArrayString(), '') AS Tuple(Array(LowCardinality(String)), String))" },
  { name: "m", type: "Map(String, UInt64)", expr: "map(toString(number % 10), number)" },
  { name: "mlc", type: "Map(LowCardinality(String), Array(Nullable(Decimal(20, 4))))", expr: "map(toString(number % 10), [NULL, toDecimal128(number, 4)])" },
  { name: "nst", type: "Nested(a UInt8, b String)", expr: "arrayMap(x -> (toUInt8(x), toString(x)), range(number % 3))" }, // flatten_nested = 0
  { name: "me", type: "Map(String, String)", expr: "CAST(map(), 'Map(String, String)')" },
  { name: "saf", type: "SimpleAggregateFunction(sum, UInt64)", expr: "number" },
  { name: "safn", type: "SimpleAggregateFunction(anyLast, Nullable(String))", expr: "if(number % 2 = 0, NULL, 'x')" },
  { name: "tm", type: "Time", expr: "toTime(number % 86400)" },
  { name: "tm64", type: "Time64(3)", expr: "toTime64(number % 86400, 3)" },
  { name: "pt", type: "Point", expr: "(toFloat64(number), 1.5)" },
  { name: "ring", type: "Ring", expr: "[(0., 0.), (toFloat64(number), 1.)]" },
  { name: "ls", type: "LineString", expr: "[(0., 0.), (1., toFloat64(number))]" },
  { name: "poly", type: "Polygon", expr: "[[(0., 0.), (toFloat64(number), 1.)], []]" },
  { name: "mls", type: "MultiLineString", expr: "[[(0., 0.)]]" },
  { name: "mpoly", type: "MultiPolygon", expr: "[[[(0., 0.), (1., toFloat64(number))]]]" },
];

// Walkable types that are no table column: selected as expressions.
const EXPR_SPECS: Spec[] = [
  { name: "iday", type: "IntervalDay", expr: "toIntervalDay(number)" },
  { name: "isec", type: "IntervalSecond", expr: "toIntervalSecond(number)" },
  { name: "nn", type: "Nullable(Nothing)", expr: "NULL" },
  { name: "an", type: "Array(Nothing)", expr: "[]" },
];

// Unwalkable, not aggregate states: selected last.
const UNWALKABLE_SPECS: Spec[] = [
  { name: "var", type: "Variant(String, UInt64)", expr: "if(number % 2 = 0, toString(number)::Variant(String, UInt64), number::Variant(String, UInt64))" },
  { name: "dyn", type: "Dynamic", expr: "number::Dynamic" },
  { name: "js", type: "JSON", expr: "concat('{\"a\": ', toString(number), ', \"b\": \"x\"}')::JSON" },
];

const SIZES = [0, 1, 3, 200_000];

interface Server {
  kind: string;
  /** Runs a statement. */
  exec(sql: string): Promise<void>;
  count(table: string): Promise<number>;
  /** The raw response body of a SELECT ... FORMAT Native. */
  fetch(sql: string, settings?: Record<string, string | number>): Promise<Buffer>;
}

async function collect(stream: AsyncIterable<unknown>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of stream) parts.push(Buffer.isBuffer(c) ? Buffer.from(c) : Buffer.from(c as Uint8Array));
  return Buffer.concat(parts);
}

function clickhouse(ch: ClickHouseServer): Server {
  const ep = { url: ch.url, username: ch.username, password: ch.password, timeoutMs: 120_000 };
  return {
    kind: "ClickHouse 18.16",
    exec: async (sql) => {
      const c = ch.client();
      try {
        await c.command({ query: sql, clickhouse_settings: { allow_experimental_low_cardinality_type: 1 } as never });
      } finally {
        await c.close();
      }
    },
    count: async (t) => Number((await ch.query<{ c: string }>(`SELECT count() AS c FROM ${t}`))[0]!.c),
    // the dump's own reader
    fetch: async (sql, settings = {}) => collect((await httpSelect(ep, sql, settings, AbortSignal.timeout(300_000))).stream),
  };
}

function chdbServer(chdb: ChdbEngine): Server {
  return {
    kind: "chDB 26.7",
    exec: (sql) => chdb.exec(sql),
    count: async (t) => Number((await chdb.query<{ c: string }>(`SELECT count() AS c FROM ${t}`))[0]!.c),
    fetch: async (sql, settings = {}) => {
      const s = Object.entries(settings);
      const q = s.length ? sql.replace(/ FORMAT Native$/, ` SETTINGS ${s.map(([k, v]) => `${k} = ${v}`).join(", ")} FORMAT Native`) : sql;
      const r = await chdb.client().exec({ query: q });
      return collect(r.stream as Readable);
    },
  };
}

/** Feeds `data` in pieces of pseudo-random sizes from 1 byte to 4 MiB; each piece is overwritten after push(). */
function walk(data: Buffer, seed: number, what = "t"): NativeWalker {
  const w = new NativeWalker({ what });
  let s = seed || 1;
  const next = () => {
    s = (s * 1103515245 + 12345) >>> 0;
    return s;
  };
  const scratch = Buffer.alloc(Math.min(data.length, 4 << 20));
  for (let off = 0; off < data.length; ) {
    const r = next();
    const size = r % 4 === 0 ? 1 + (r % 7) : r % 4 === 1 ? 1 + (r % 5000) : r % 4 === 2 ? 1 + (r % 300_000) : 4 << 20;
    const n = Math.min(size, data.length - off);
    const piece = scratch.subarray(0, n);
    data.copy(piece, 0, off, off + n);
    w.push(piece);
    piece.fill(0xa5);
    off += n;
  }
  w.end();
  return w;
}

/** Cuts `data` at `n` bytes: the walk must fail, or (with unwalkable data at the end of a block) report fewer rows. */
function expectCutFails(data: Buffer, n: number, rows: number, unwalkableTail: boolean): void {
  const w = new NativeWalker();
  let err: unknown;
  try {
    w.push(data.subarray(0, n));
    w.end();
  } catch (e) {
    err = e;
  }
  if (err !== undefined) {
    expect(err).toBeInstanceOf(NativeFormatError);
    return;
  }
  if (!unwalkableTail) throw new Error(`a stream of ${data.length} bytes cut at ${n} walked without an error (${w.rows} of ${rows} rows)`);
  expect(w.rows, `cut at ${n} of ${data.length}`).toBeLessThanOrEqual(rows);
}

const observations: string[] = [];
afterAll(() => {
  console.log(`\n${observations.join("\n")}\n`);
});

async function probe(server: Server, specs: Spec[], label: string): Promise<{ ok: Spec[]; skipped: string[] }> {
  const ok: Spec[] = [];
  const skipped: string[] = [];
  for (const [i, spec] of specs.entries()) {
    const t = `probe.${label}${i}`;
    try {
      await server.exec(`CREATE TABLE ${t} (\`${spec.name}\` ${spec.type}) ENGINE = Memory`);
      await server.exec(`INSERT INTO ${t} SELECT ${spec.expr} FROM numbers(3)`);
      ok.push(spec);
    } catch {
      skipped.push(spec.type);
    }
  }
  return { ok, skipped };
}

const q = (name: string) => `\`${name}\``;

function suite(name: string, start: () => Promise<{ server: Server; stop: () => Promise<void> }>, opts: { compressed: boolean; mustHave: string[] }) {
  describe(name, () => {
    let server: Server;
    let stop: () => Promise<void>;
    let walkable: Spec[] = [];
    let unwalkable: Spec[] = [];
    let exprs: Spec[] = [];

    beforeAll(async () => {
      ({ server, stop } = await start());
      await server.exec("CREATE DATABASE probe");
      await server.exec("CREATE DATABASE w");
      const p = await probe(server, SPECS, "w");
      walkable = p.ok;
      const u = await probe(server, UNWALKABLE_SPECS, "u");
      unwalkable = u.ok;
      exprs = [];
      for (const e of EXPR_SPECS) {
        try {
          await server.fetch(`SELECT ${e.expr} AS ${q(e.name)} FROM numbers(1) FORMAT Native`);
          exprs.push(e);
        } catch {
          p.skipped.push(e.type);
        }
      }
      observations.push(
        `${server.kind}: walkable column types: ${[...walkable, ...exprs].map((s) => s.type).join(", ")}`,
        `${server.kind}: unwalkable column types (besides AggregateFunction): ${unwalkable.map((s) => s.type).join(", ") || "none"}`,
        `${server.kind}: not supported: ${[...p.skipped, ...u.skipped].join(", ")}`,
      );
      const cols = [...walkable, ...unwalkable].map((s) => `${q(s.name)} ${s.type}`).join(", ");
      for (const n of SIZES) {
        await server.exec(`CREATE TABLE w.t${n} (${cols}) ENGINE = MergeTree ORDER BY tuple()`);
        if (n > 0) await server.exec(`INSERT INTO w.t${n} SELECT ${[...walkable, ...unwalkable].map((s) => s.expr).join(", ")} FROM numbers(${n})`);
        // aggregate states in varied positions
        await server.exec(
          `CREATE TABLE w.a${n} (u AggregateFunction(uniq, UInt64), k UInt64, sm AggregateFunction(sum, UInt64), s String, ga AggregateFunction(groupArray, String), ` +
            `lc LowCardinality(String), am AggregateFunction(argMax, String, UInt64)) ENGINE = AggregatingMergeTree ORDER BY (k, s, lc)`,
        );
        if (n > 0) {
          await server.exec(
            `INSERT INTO w.a${n} SELECT uniqState(number), number % ${n} AS k, sumState(number), any(toString(number)), ` +
              `groupArrayState(concat('v', toString(number), if(number % 3 = 0, '\\x02\\x01u\\x1fAggregateFunction(uniq, UInt64)', ''))), ` +
              `any(toString(number % 10)), argMaxState(toString(number), number) FROM numbers(${Math.min(n * 2, 400_000)}) GROUP BY k`,
          );
        }
      }
    }, 600_000);
    afterAll(async () => {
      await stop?.();
    });

    it("walks every supported type: walker rows = count(), in any pieces, in blocks of any size", async () => {
      for (const t of opts.mustHave) expect([...walkable, ...exprs].map((s) => s.type)).toContain(t);
      const select = [...walkable, ...unwalkable].map((s) => q(s.name)).join(", ");
      for (const n of SIZES) {
        const count = await server.count(`w.t${n}`);
        expect(count).toBe(n);
        const blockSizes: Record<string, number>[] = n > 1000 ? [{}, { max_block_size: 1000 }] : [{}];
        for (const settings of blockSizes) {
          const data = await server.fetch(`SELECT ${select} FROM w.t${n} FORMAT Native`, settings);
          for (const seed of [1, 2, 3]) {
            const w = walk(data, seed, `w.t${n}`);
            expect(w.rows, `w.t${n} ${JSON.stringify(settings)}`).toBe(n);
            if (n > 0) expect(w.columns?.map((c) => c.name).slice(0, walkable.length)).toEqual(walkable.map((s) => s.name));
          }
          const w = walk(data, 9);
          observations.push(`${server.kind}: w.t${n} ${JSON.stringify(settings)}: ${data.length} bytes, ${w.blocks} blocks, ${w.rows} rows`);
        }
      }
    });

    it("walks expression-only types (Interval, Nothing)", async () => {
      const cols = exprs.map((e) => `${e.expr} AS ${q(e.name)}`).join(", ");
      for (const n of [0, 1, 3, 5000]) {
        // (18.16 takes numbers(0) as no limit at all)
        const data = await server.fetch(`SELECT ${cols}, number AS x FROM numbers(${Math.max(n, 1)}) WHERE number < ${n} FORMAT Native`, { max_block_size: 1000 });
        const w = walk(data, n);
        expect(w.rows).toBe(n);
        if (n > 0) expect(w.columns?.map((c) => c.type)).toEqual([...exprs.map((e) => e.type), "UInt64"]);
      }
    });

    it("walks aggregate states selected last (the signature search)", async () => {
      for (const n of SIZES) {
        const count = await server.count(`w.a${n}`);
        expect(count).toBe(n);
        const cols = ["k", "s", "lc", "u", "sm", "ga", "am"];
        for (const settings of (n > 1000 ? [{}, { max_block_size: 1000 }, { max_block_size: 77 }] : [{}]) as Record<string, number>[]) {
          const data = await server.fetch(`SELECT ${cols.join(", ")} FROM w.a${n} FORMAT Native`, settings);
          for (const seed of [1, 2, 3]) expect(walk(data, seed).rows, `w.a${n} ${JSON.stringify(settings)}`).toBe(count);
          // only aggregate states: the first one's header is the signature
          const states = await server.fetch(`SELECT u, sm, ga, am FROM w.a${n} FORMAT Native`, settings);
          expect(walk(states, 5).rows).toBe(count);
        }
      }
      // and the other unwalkable types (Variant, Dynamic, JSON) behind the walkable columns
      if (unwalkable.length > 0) {
        expect(unwalkable.every((s) => !isWalkableType(s.type))).toBe(true);
        const select = [...walkable, ...unwalkable].map((s) => q(s.name)).join(", ");
        for (const n of SIZES) {
          const data = await server.fetch(`SELECT ${select} FROM w.t${n} FORMAT Native`, { max_block_size: 1000 });
          expect(walk(data, 4).rows).toBe(n);
        }
      }
    });

    it("fails on a stream cut anywhere but at a block boundary", async () => {
      const walkableSelect = walkable.map((s) => q(s.name)).join(", ");
      for (const n of [1, 3, 200_000]) {
        const data = await server.fetch(`SELECT ${walkableSelect} FROM w.t${n} FORMAT Native`, n > 1000 ? { max_block_size: 5000 } : {});
        const cuts = n === 1 ? Array.from({ length: Math.min(data.length, 3000) }, (_, i) => i + 1).filter((c) => c < data.length) : [1, 2, 17, 100, 1000, 65_536, 1_000_003, data.length - 1, data.length - 9, Math.floor(data.length / 2) + 3];
        for (const c of cuts.filter((x) => x > 0 && x < data.length)) expectCutFails(data, c, n, false);
        const agg = await server.fetch(`SELECT k, s, lc, u, sm, ga, am FROM w.a${n} FORMAT Native`, n > 1000 ? { max_block_size: 5000 } : {});
        for (const c of [1, 5, 20, 60, Math.floor(agg.length / 2), agg.length - 1].filter((x) => x > 0 && x < agg.length)) expectCutFails(agg, c, n, true);
      }
    });

    if (opts.compressed) {
      it("walks the LZ4 stream of compress=1 through CompressedStreamCheck (and records 18.16's empty bodies)", async () => {
        const select = [...walkable, ...unwalkable].map((s) => q(s.name)).join(", ");
        const cases: [string, string][] = [];
        for (const n of SIZES) cases.push([`w.t${n}`, `SELECT ${select} FROM w.t${n} FORMAT Native`], [`w.a${n}`, `SELECT k, s, lc, u, sm, ga, am FROM w.a${n} FORMAT Native`]);
        // (numbers(131000) is 1,048,015 bytes of Native, numbers(131100) 1,048,815: around max_compress_block_size, 1 MiB)
        for (const n of [1, 10, 100, 1000, 10_000, 100_000, 131_000, 131_100, 1_000_000]) cases.push([`numbers(${n})`, `SELECT number FROM numbers(${n}) FORMAT Native`]);
        for (const n of [1, 100, 1000, 10_000]) cases.push([`numbers(${n}) as strings`, `SELECT toString(number) AS s, [number] AS a FROM numbers(${n}) FORMAT Native`]);
        const empty: string[] = [];
        for (const [label, sql] of cases) {
          const count = label.startsWith("numbers") ? Number(/\d+/.exec(label)![0]) : await server.count(label);
          const body = await server.fetch(sql, { compress: 1 });
          const walker = new NativeWalker({ what: label });
          await pipeline(
            Readable.from([body]),
            new CompressedStreamCheck(undefined, { onDecoded: (d) => walker.push(d) }),
            new Writable({ write: (_c, _e, cb) => cb() }),
          );
          walker.end();
          if (body.length === 0) {
            empty.push(`${label} (${count} rows)`);
            expect(walker.rows).toBe(0); // the caller sees count() > 0 and falls back
          } else {
            expect(walker.rows, label).toBe(count);
          }
        }
        observations.push(`${server.kind}: compress=1 answered with an EMPTY body for: ${empty.join(", ") || "none"}`);
        observations.push(`${server.kind}: compress=1 answered with data for: ${cases.map(([l]) => l).filter((l) => !empty.some((e) => e.startsWith(`${l} (`))).join(", ")}`);
      });

      it("LZ4 decode and walk speed on ~100 MB of real data (printed, not asserted)", async () => {
        await server.exec(
          "CREATE TABLE w.big (id UInt64, ts DateTime, user String, url String, v Float64, tags Array(String), code LowCardinality(String)) ENGINE = MergeTree ORDER BY id",
        );
        await server.exec(
          "INSERT INTO w.big SELECT number, toDateTime(1500000000 + number), concat('user_', toString(number % 5000)), " +
            "concat('https://example.com/p/', toString(number % 100000), '?q=', toString(intHash32(number) % 1000)), number / 7, " +
            "arrayMap(x -> concat('t', toString(x)), range(number % 4)), toString(number % 20) FROM numbers(1200000)",
        );
        const body = await server.fetch("SELECT * FROM w.big FORMAT Native", { compress: 1 });
        expect(body.length).toBeGreaterThan(0);
        const blocks: Buffer[] = [];
        for (let off = 0; off < body.length; ) {
          const size = 16 + body.readUInt32LE(off + 17);
          blocks.push(body.subarray(off, off + size));
          off += size;
        }
        const plainBytes = blocks.reduce((a, b) => a + b.readUInt32LE(21), 0);
        const dst = Buffer.allocUnsafe(2 << 20);
        const decodeAll = () => {
          for (const b of blocks) lz4DecompressBlock(b.subarray(25), b.readUInt32LE(21), dst);
        };
        decodeAll(); // warm up
        const runs = 3;
        let t0 = performance.now();
        for (let i = 0; i < runs; i++) decodeAll();
        const decodeMs = (performance.now() - t0) / runs;
        const plain = Buffer.concat(blocks.map(decompressBlock));
        expect(plain.length).toBe(plainBytes);
        t0 = performance.now();
        const w = new NativeWalker();
        for (let off = 0; off < plain.length; off += 1 << 20) w.push(plain.subarray(off, off + (1 << 20)));
        w.end();
        const walkMs = performance.now() - t0;
        expect(w.rows).toBe(1_200_000);
        t0 = performance.now();
        const w2 = new NativeWalker();
        await pipeline(Readable.from([body]), new CompressedStreamCheck(undefined, { onDecoded: (d) => w2.push(d) }), new Writable({ write: (_c, _e, cb) => cb() }));
        w2.end();
        const bothMs = performance.now() - t0;
        expect(w2.rows).toBe(1_200_000);
        const mb = (x: number) => (x / 1e6).toFixed(1);
        const rate = (bytes: number, ms: number) => ((bytes / 1e6) / (ms / 1000)).toFixed(0);
        observations.push(
          `${server.kind}: LZ4 decode of ${mb(body.length)} MB compressed -> ${mb(plainBytes)} MB Native (${blocks.length} blocks): ` +
            `${decodeMs.toFixed(0)} ms = ${rate(plainBytes, decodeMs)} MB/s of output (${rate(body.length, decodeMs)} MB/s of input); ` +
            `walk of the Native data: ${walkMs.toFixed(0)} ms = ${rate(plainBytes, walkMs)} MB/s; ` +
            `CompressedStreamCheck + decode + walk: ${bothMs.toFixed(0)} ms = ${rate(plainBytes, bothMs)} MB/s of Native`,
        );
      });
    }
  });
}

suite(
  "NativeWalker on ClickHouse 18.16",
  async () => {
    const ch = await startClickHouse();
    return { server: clickhouse(ch), stop: () => ch.stop() };
  },
  {
    compressed: true,
    mustHave: ["UInt64", "String", "Nullable(String)", "Array(Array(String))", "LowCardinality(String)", "LowCardinality(Nullable(String))", "Array(LowCardinality(String))", ENUM8, "Decimal(38, 10)", "FixedString(5)", "UUID", "IntervalDay", "Nullable(Nothing)"],
  },
);

suite(
  "NativeWalker on chDB 26.7",
  async () => {
    const chdb = await startChdb();
    for (const s of ["enable_time_time64_type", "allow_experimental_time_time64_type"]) await chdb.exec(`SET ${s} = 1`).catch(() => {});
    await chdb.exec("SET flatten_nested = 0");
    await chdb.exec("SET allow_suspicious_low_cardinality_types = 1");
    return { server: chdbServer(chdb), stop: () => chdb.stop() };
  },
  {
    compressed: false,
    mustHave: ["Int256", "BFloat16", "Bool", "Date32", "DateTime64(3, 'UTC')", "IPv4", "Map(LowCardinality(String), Array(Nullable(Decimal(20, 4))))", "Tuple(a UInt8, b Array(String))", "Point", "MultiPolygon", "Time64(3)", "SimpleAggregateFunction(anyLast, Nullable(String))"],
  },
);
