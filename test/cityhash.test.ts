// CityHash128 v1.0.2 (pkg/backupengine/clickhouse/cityhash.ts) against
// ClickHouse 18.16 itself: every block of the server's compressed answers
// carries a checksum the function reproduces, and blocks the test signs
// (uncompressed method, sizes from 11 to 5000 bytes: every code path of the
// hash) are accepted by the server's INSERT ... decompress=1 - and refused
// once a byte changes.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cityHash128, compressedBlockChecksumOk } from "../pkg/backupengine/clickhouse/cityhash.ts";
import { startClickHouse, type ClickHouseServer } from "./env/index.ts";

/** One block of ClickHouse's compressed format with method NONE (0x02) around `data`, signed with cityHash128. */
function signedBlock(data: Buffer): Buffer {
  const body = Buffer.alloc(9 + data.length);
  body[0] = 0x02;
  body.writeUInt32LE(9 + data.length, 1);
  body.writeUInt32LE(data.length, 5);
  data.copy(body, 9);
  const [lo, hi] = cityHash128(body);
  const sum = Buffer.alloc(16);
  sum.writeBigUInt64LE(lo, 0);
  sum.writeBigUInt64LE(hi, 8);
  return Buffer.concat([sum, body]);
}

/** A Native block of one String column `s` with the given values. */
function nativeStrings(values: string[]): Buffer {
  const parts: Buffer[] = [Buffer.from([1, values.length]), Buffer.from([1]), Buffer.from("s"), Buffer.from([6]), Buffer.from("String")];
  for (const v of values) parts.push(Buffer.from([v.length]), Buffer.from(v));
  return Buffer.concat(parts);
}

describe("CityHash128 of ClickHouse's compressed blocks", () => {
  let ch: ClickHouseServer;
  const http = (query: string, params: Record<string, string>, body?: Buffer) =>
    fetch(`${ch.url}/?${new URLSearchParams({ user: ch.username, password: ch.password, query, ...params })}`, { method: "POST", ...(body ? { body } : {}) });
  beforeAll(async () => {
    ch = await startClickHouse();
    await ch.exec("CREATE TABLE default.t (s String) ENGINE = Log");
  });
  afterAll(async () => {
    await ch?.stop();
  });

  it("reproduces the checksum of every block the server compresses", async () => {
    const r = await http("SELECT number, toString(number) AS s FROM system.numbers LIMIT 400000 FORMAT Native", { compress: "1" });
    const buf = Buffer.from(await r.arrayBuffer());
    let off = 0;
    let blocks = 0;
    while (off < buf.length) {
      const size = buf.readUInt32LE(off + 17);
      const block = buf.subarray(off, off + 16 + size);
      expect(compressedBlockChecksumOk(block), `block ${blocks}`).toBe(true);
      const flipped = Buffer.from(block);
      flipped[flipped.length >> 1]! ^= 1;
      expect(compressedBlockChecksumOk(flipped)).toBe(false);
      off += 16 + size;
      blocks++;
    }
    expect(blocks).toBeGreaterThan(3);
  });

  it("signs blocks of every length class the way the server checks them", async () => {
    // body lengths 11 (< 16), 20-127 (short hash), 128-... (long hash with tails of each size)
    const cases: string[][] = [[], ["a"], ["abc", "de"], ["x".repeat(100)], ["y".repeat(110)], ["z".repeat(119)], ["w".repeat(120)], ["v".repeat(121), "u".repeat(70)], Array.from({ length: 40 }, (_, i) => "k".repeat(i))];
    let expected = 0;
    for (const values of cases) {
      const native = values.length === 0 ? Buffer.from([0, 0]) : nativeStrings(values);
      const block = signedBlock(native);
      const ok = await http("INSERT INTO default.t FORMAT Native", { decompress: "1" }, block);
      expect(ok.status, `${block.length} bytes: ${await ok.clone().text()}`).toBe(200);
      expected += values.length;
      const bad = Buffer.from(block);
      bad[bad.length - 1]! ^= 0x20;
      const refused = await http("INSERT INTO default.t FORMAT Native", { decompress: "1" }, bad);
      expect(refused.status, `${block.length} bytes, altered`).not.toBe(200);
      expect(await refused.text()).toMatch(/[Cc]hecksum/);
    }
    expect(await ch.query("SELECT toString(count()) AS c FROM default.t")).toEqual([{ c: String(expected) }]);
  });
});
