import { describe, expect, it } from "vitest";
import { globToRegExp, isInnerTable, makeSelector, Matcher } from "./select.ts";

describe("globs", () => {
  it("matches * and ? and treats everything else literally", () => {
    expect(globToRegExp("a*").test("abc")).toBe(true);
    expect(globToRegExp("a?c").test("abc")).toBe(true);
    expect(globToRegExp("a?c").test("abbc")).toBe(false);
    expect(globToRegExp("db.t").test("dbxt")).toBe(false);
    expect(globToRegExp("a+b(c)[d]^$").test("a+b(c)[d]^$")).toBe(true);
    expect(globToRegExp("*").test("")).toBe(true);
    expect(globToRegExp("*.events_*").test("analytics.events_2024")).toBe(true);
  });
  it("knows when patterns select everything", () => {
    expect(new Matcher({ include: ["*"], exclude: [] }).all).toBe(true);
    expect(new Matcher({ include: ["*"], exclude: ["x.*"] }).all).toBe(false);
    expect(new Matcher({ include: ["a.*"], exclude: [] }).all).toBe(false);
  });
});

describe("selection", () => {
  it("never selects system databases, even when asked", () => {
    const s = makeSelector({ databases: { include: ["*"], exclude: [] }, tables: { include: ["*"], exclude: [] } });
    for (const db of ["system", "INFORMATION_SCHEMA", "information_schema"]) {
      expect(s.database(db)).toBe(false);
      expect(s.table(db, "tables")).toBe(false);
    }
    expect(s.database("default")).toBe(true);
    const explicit = makeSelector({ databases: { include: ["system"], exclude: [] }, tables: { include: ["*"], exclude: [] } });
    expect(explicit.database("system")).toBe(false);
  });
  it("applies include then exclude, for databases and db.table names", () => {
    const s = makeSelector({
      databases: { include: ["shop*", "logs"], exclude: ["shop_tmp"] },
      tables: { include: ["*"], exclude: ["*.tmp_*", "logs.raw"] },
    });
    expect(s.database("shop")).toBe(true);
    expect(s.database("shop_eu")).toBe(true);
    expect(s.database("shop_tmp")).toBe(false);
    expect(s.database("other")).toBe(false);
    expect(s.table("shop", "orders")).toBe(true);
    expect(s.table("shop", "tmp_x")).toBe(false);
    expect(s.table("logs", "raw")).toBe(false);
    expect(s.table("logs", "raw2")).toBe(true);
    expect(s.table("other", "orders")).toBe(false);
    expect(s.allTables).toBe(false);
  });
  it("recognises materialized view inner tables", () => {
    expect(isInnerTable(".inner.mv")).toBe(true);
    expect(isInnerTable(".inner_id.0c9f-...")).toBe(true);
    expect(isInnerTable("inner")).toBe(false);
  });
});
