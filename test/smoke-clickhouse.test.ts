// Smoke test: the ClickHouse 18.16 server of the test environment answers,
// stores data and streams Native out and back in through @clickhouse/client.
import { Transform } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startClickHouse, assertPortsClosed, type ClickHouseServer } from "./env/index.ts";

describe("ClickHouse server (Debian 18.16)", () => {
  let ch: ClickHouseServer;
  beforeAll(async () => {
    ch = await startClickHouse();
  });
  afterAll(async () => {
    await ch?.stop();
  });

  it("runs the Debian server version", () => {
    expect(ch.version).toMatch(/^18\.16\./);
  });

  it("stores 100k rows and streams them out and back in as Native", async () => {
    await ch.exec("CREATE DATABASE smoke");
    await ch.exec("CREATE TABLE smoke.src (id UInt64, name String, v Float64) ENGINE = MergeTree ORDER BY id");
    await ch.exec("CREATE TABLE smoke.dst AS smoke.src");
    await ch.exec("INSERT INTO smoke.src SELECT number, concat('n', toString(number)), number / 3 FROM system.numbers LIMIT 100000");
    const [count] = await ch.query<{ c: string }>("SELECT count() AS c FROM smoke.src");
    expect(Number(count?.c)).toBe(100_000);

    const out = ch.client();
    const inn = ch.client();
    try {
      const rs = await out.exec({ query: "SELECT * FROM smoke.src FORMAT Native" });
      let bytes = 0;
      const counted = rs.stream.pipe(
        new Transform({
          transform(chunk: Buffer, _enc, cb) {
            bytes += chunk.length;
            cb(null, chunk);
          },
        }),
      );
      await inn.exec({ query: "INSERT INTO smoke.dst FORMAT Native", values: counted });
      expect(bytes).toBeGreaterThan(1_000_000);
    } finally {
      await out.close();
      await inn.close();
    }
    const sum = "SELECT count() AS c, toString(sum(cityHash64(id, name, v))) AS h FROM smoke.";
    const [a] = await ch.query<{ c: string; h: string }>(sum + "src");
    const [b] = await ch.query<{ c: string; h: string }>(sum + "dst");
    expect(b).toEqual(a);
    expect(Number(b?.c)).toBe(100_000);
  });

  it("leaves no process and no open port after stop", async () => {
    const other = await startClickHouse();
    const pid = other.pid();
    await other.stop();
    expect(await assertPortsClosed(other.ports)).toEqual([]);
    expect(() => process.kill(pid, 0)).toThrow();
  });
});
