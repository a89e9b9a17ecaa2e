import { describe, expect, it } from "vitest";
import { formatVerifyReport } from "./report.ts";

const table = (name: string, ok: boolean, extra: Record<string, unknown> = {}) => ({
  database: "shop",
  name,
  objects: [`data/shop/${name}.native.zst`],
  expectedRows: 2000,
  rows: ok ? 2000 : 0,
  bytes: 12345,
  uncompressedBytes: 67890,
  ok,
  ...extra,
});

describe("formatVerifyReport", () => {
  it("prints one aligned line per table with rows, bytes and OK", () => {
    const text = formatVerifyReport("20261124T031000Z-a1b2c3", { tables: [table("orders", true), table("customers_long_name", true)], otherObjects: [{ name: "schema.json", ok: true }] });
    const lines = text.trimEnd().split("\n");
    expect(lines[0]).toBe("backup 20261124T031000Z-a1b2c3: 2 table(s) with data");
    expect(lines[1]).toMatch(/^TABLE\s+ROWS EXPECTED\s+ROWS FOUND\s+STORED BYTES\s+UNCOMPRESSED BYTES\s+RESULT$/);
    expect(lines[2]).toMatch(/^shop\.orders\s+2,000\s+2,000\s+12,345\s+67,890\s+OK$/);
    // columns line up: RESULT starts at the same offset on every line
    expect(lines[2]!.lastIndexOf("OK")).toBe(lines[1]!.indexOf("RESULT"));
    expect(lines[3]!.lastIndexOf("OK")).toBe(lines[1]!.indexOf("RESULT"));
    expect(lines[4]).toBe("1 other object(s) (DDL and metadata): OK");
  });

  it("names what is wrong with each damaged table and object", () => {
    const text = formatVerifyReport("x", {
      tables: [table("orders", false, { error: "checksum mismatch" }), table("items", true)],
      otherObjects: [{ name: "schema.json", ok: false, error: "size 3 != expected 9" }],
    });
    expect(text).toMatch(/shop\.orders .*DAMAGED: checksum mismatch/);
    expect(text).toMatch(/shop\.items .*OK/);
    expect(text).toMatch(/schema\.json\s+DAMAGED: size 3 != expected 9/);
  });

  it("names the host of each table of a cluster backup", () => {
    const text = formatVerifyReport("x", { tables: [table("events", true, { host: "chi-a-0-0:9000" }), table("events", false, { host: "chi-a-1-0:9000", error: "truncated" })], otherObjects: [] });
    expect(text).toMatch(/shop\.events \(chi-a-0-0:9000\)\s+2,000\s+2,000.*OK/);
    expect(text).toMatch(/shop\.events \(chi-a-1-0:9000\)\s.*DAMAGED: truncated/);
  });

  it("says so when no table holds data", () => {
    expect(formatVerifyReport("x", { tables: [], otherObjects: [] })).toContain("(no table holds data)");
  });
});
