import { describe, expect, it } from "vitest";
import { dependencyOrder, restoreCategory } from "./order.ts";
import { referencedNames } from "./sql.ts";

const item = (key: string, engine: string, ddl = "") => ({ key, category: restoreCategory(engine), refs: referencedNames(ddl, key) });

describe("dependencyOrder", () => {
  it("puts tables first, then tables over tables, views, dictionaries", () => {
    const out = dependencyOrder([
      item("a.dict", "Dictionary"),
      item("a.v", "View"),
      item("a.dist", "Distributed"),
      item("a.t", "MergeTree"),
      item("a.mem", "Memory"),
    ]).map((i) => i.key);
    expect(out).toEqual(["a.t", "a.mem", "a.dist", "a.v", "a.dict"]);
  });
  it("creates every object after the objects its DDL refers to", () => {
    const out = dependencyOrder([
      item("a.v2", "View", "CREATE VIEW a.v2 AS SELECT * FROM a.v1"),
      item("a.v1", "View", "CREATE VIEW a.v1 AS SELECT * FROM b.mv"),
      item("b.mv", "MaterializedView", "CREATE MATERIALIZED VIEW b.mv TO b.dst AS SELECT * FROM a.src"),
      item("b.dst", "MergeTree"),
      item("a.src", "MergeTree"),
    ]).map((i) => i.key);
    expect(out.indexOf("b.mv")).toBeGreaterThan(out.indexOf("b.dst"));
    expect(out.indexOf("b.mv")).toBeGreaterThan(out.indexOf("a.src"));
    expect(out.indexOf("a.v1")).toBeGreaterThan(out.indexOf("b.mv"));
    expect(out.indexOf("a.v2")).toBeGreaterThan(out.indexOf("a.v1"));
  });
  it("lets a view that a dictionary depends on come before the dictionary, and the dictionary before views using it", () => {
    const out = dependencyOrder([
      item("a.uses", "View", "CREATE VIEW a.uses AS SELECT dictGet('a.d', 'x', id) FROM a.t"),
      item("a.d", "Dictionary", "CREATE DICTIONARY a.d (id UInt64) PRIMARY KEY id SOURCE(CLICKHOUSE(TABLE 'src' DB 'a')) LAYOUT(FLAT()) LIFETIME(0)"),
      item("a.src", "View", "CREATE VIEW a.src AS SELECT * FROM a.t"),
      item("a.t", "MergeTree"),
    ]).map((i) => i.key);
    expect(out).toEqual(["a.t", "a.src", "a.d", "a.uses"]);
  });
  it("ignores unknown references and survives cycles", () => {
    const out = dependencyOrder([
      item("a.x", "View", "CREATE VIEW a.x AS SELECT * FROM a.y, zz.unknown"),
      item("a.y", "View", "CREATE VIEW a.y AS SELECT * FROM a.x"),
    ]).map((i) => i.key);
    expect(out.sort()).toEqual(["a.x", "a.y"]);
  });
});
