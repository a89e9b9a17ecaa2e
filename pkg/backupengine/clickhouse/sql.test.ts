import { describe, expect, it } from "vitest";
import { materializedViewHasTarget, quoteIdent, renameCreatedObject, quoteString, redact, referencedNames, renameDatabasesInDdl, tokenize, truncate } from "./sql.ts";

describe("tokenize", () => {
  it("keeps strings, quoted identifiers and comments intact and round-trips the text", () => {
    const sql = "SELECT 'it''s a.b', `we\\`ird`.x, \"dq\".y -- a.b comment\n/* c.d */ FROM db.t";
    const toks = tokenize(sql);
    expect(toks.map((t) => t.text).join("")).toBe(sql);
    expect(toks.find((t) => t.kind === "string")?.value).toBe("it's a.b");
    expect(toks.filter((t) => t.kind === "qident").map((t) => t.value)).toEqual(["we`ird", "dq"]);
    expect(toks.filter((t) => t.kind === "comment")).toHaveLength(2);
  });
  it("does not throw on unterminated literals", () => {
    expect(tokenize("SELECT 'abc").at(-1)?.kind).toBe("string");
    expect(tokenize("doesn't matter").map((t) => t.text).join("")).toBe("doesn't matter");
  });
});

describe("quoting", () => {
  it("quotes identifiers and strings with escapes", () => {
    expect(quoteIdent("a`b\\c")).toBe("`a\\`b\\\\c`");
    expect(quoteString("it's \\ here")).toBe("'it\\'s \\\\ here'");
  });
});

describe("redact", () => {
  it("hides the secret of S3(...) and the base backup, keeping url and key id", () => {
    const sql =
      "BACKUP DATABASE `a` TO S3('http://127.0.0.1:9000/bkt/x/native', 'AKID', 'SuperSecret1') SETTINGS base_backup = s3('http://h/b', 'AKID', 'OtherSecret2') ASYNC";
    const r = redact(sql);
    expect(r).not.toContain("SuperSecret1");
    expect(r).not.toContain("OtherSecret2");
    expect(r).toContain("'http://127.0.0.1:9000/bkt/x/native'");
    expect(r).toContain("'AKID'");
    expect(r.match(/\[REDACTED\]/g)).toHaveLength(2);
  });
  it("hides password settings, dictionary sources, IDENTIFIED BY and URL credentials", () => {
    expect(redact("SOURCE(CLICKHOUSE(HOST 'h' USER 'u' PASSWORD 'pw1'))")).not.toContain("pw1");
    expect(redact("CREATE TABLE t ENGINE = MySQL('h:3306', 'db', 't', 'user', 'pw2')")).not.toContain("pw2");
    expect(redact("SETTINGS password = 'pw3'")).not.toContain("pw3");
    expect(redact("CREATE USER u IDENTIFIED WITH sha256_password BY 'pw4'")).not.toContain("pw4");
    expect(redact("SELECT * FROM url('http://user:pw5@host/x', CSV)")).not.toContain("pw5");
    expect(redact("SELECT * FROM s3('http://h/b', 'k', 'pw6', 'CSV')")).not.toContain("pw6");
  });
  it("hides known secrets anywhere and leaves ordinary text alone", () => {
    expect(redact("error: token abcdef123 was rejected", ["abcdef123"])).toBe("error: token [REDACTED] was rejected");
    expect(redact("Wrong password for user backup")).toBe("Wrong password for user backup");
    expect(redact("SELECT count() FROM db.t WHERE s = 'x'")).toBe("SELECT count() FROM db.t WHERE s = 'x'");
  });
  it("truncates long statements", () => {
    const long = "SELECT " + "x, ".repeat(500) + "1";
    expect(truncate(long).length).toBeLessThanOrEqual(300);
  });
});

describe("renameDatabasesInDdl", () => {
  const map = { old: "new" };
  it("renames the statement's own name and references, keeping quoting style", () => {
    expect(renameDatabasesInDdl("CREATE TABLE old.t (`id` UInt64) ENGINE = MergeTree ORDER BY id", map)).toBe(
      "CREATE TABLE new.t (`id` UInt64) ENGINE = MergeTree ORDER BY id",
    );
    expect(renameDatabasesInDdl("CREATE VIEW `old`.`v` AS SELECT * FROM `old`.t JOIN other.u USING id", map)).toBe(
      "CREATE VIEW `new`.`v` AS SELECT * FROM `new`.t JOIN other.u USING id",
    );
    expect(renameDatabasesInDdl("CREATE MATERIALIZED VIEW old.mv TO old.dst (`id` UInt64) AS SELECT id FROM old.src", map)).toBe(
      "CREATE MATERIALIZED VIEW new.mv TO new.dst (`id` UInt64) AS SELECT id FROM new.src",
    );
  });
  it("never touches string literals, comments or longer names", () => {
    const ddl = "CREATE VIEW old.v AS SELECT 'old.t' AS s, older.x, x.old.y /* old.t */ FROM old.t";
    expect(renameDatabasesInDdl(ddl, map)).toBe("CREATE VIEW new.v AS SELECT 'old.t' AS s, older.x, x.old.y /* old.t */ FROM new.t");
  });
  it("quotes a new name that is not a bare identifier", () => {
    expect(renameDatabasesInDdl("CREATE TABLE old.t (x UInt8) ENGINE = Memory", { old: "my-db" })).toBe(
      "CREATE TABLE `my-db`.t (x UInt8) ENGINE = Memory",
    );
    expect(renameDatabasesInDdl("CREATE TABLE `old`.t (x UInt8) ENGINE = Memory", { old: "we`ird" })).toBe(
      "CREATE TABLE `we\\`ird`.t (x UInt8) ENGINE = Memory",
    );
  });
  it("rewrites engine database arguments, dictionary sources and dictGet names", () => {
    expect(renameDatabasesInDdl("CREATE TABLE old.d (x UInt8) ENGINE = Distributed(cluster, old, t, rand())", map)).toBe(
      "CREATE TABLE new.d (x UInt8) ENGINE = Distributed(cluster, new, t, rand())",
    );
    expect(renameDatabasesInDdl("CREATE TABLE old.d (x UInt8) ENGINE = Distributed('cluster', 'old', 't')", map)).toBe(
      "CREATE TABLE new.d (x UInt8) ENGINE = Distributed('cluster', 'new', 't')",
    );
    expect(renameDatabasesInDdl("CREATE TABLE old.b (x UInt8) ENGINE = Buffer(old, t, 16, 10, 100, 10000, 1000000, 10000000, 100000000)", map)).toContain(
      "Buffer(new, t,",
    );
    expect(renameDatabasesInDdl("CREATE TABLE old.m (x UInt8) ENGINE = Merge(old, '^t')", map)).toContain("Merge(new, '^t')");
    expect(
      renameDatabasesInDdl("CREATE DICTIONARY old.dict (id UInt64) PRIMARY KEY id SOURCE(CLICKHOUSE(TABLE 'src' DB 'old')) LIFETIME(0) LAYOUT(HASHED())", map),
    ).toContain("SOURCE(CLICKHOUSE(TABLE 'src' DB 'new'))");
    expect(renameDatabasesInDdl("CREATE VIEW old.v AS SELECT dictGet('old.dict', 'c', id) FROM old.t", map)).toBe(
      "CREATE VIEW new.v AS SELECT dictGet('new.dict', 'c', id) FROM new.t",
    );
  });
  it("with known objects, leaves alias-qualified columns alone", () => {
    const known = new Set(["old.t", "old.v"]);
    expect(renameDatabasesInDdl("CREATE VIEW old.v AS SELECT old.id FROM old.t AS old", map, known)).toBe(
      "CREATE VIEW new.v AS SELECT old.id FROM new.t AS old",
    );
    expect(renameDatabasesInDdl("CREATE VIEW old.v AS SELECT * FROM old.a, old.b", map, known)).toBe("CREATE VIEW new.v AS SELECT * FROM new.a, new.b");
  });
  it("does nothing without renames", () => {
    const ddl = "CREATE TABLE a.t (x UInt8) ENGINE = Memory";
    expect(renameDatabasesInDdl(ddl, {})).toBe(ddl);
    expect(renameDatabasesInDdl(ddl, { a: "a" })).toBe(ddl);
  });
});

describe("referencedNames", () => {
  it("finds tables, engine arguments, dictionary sources and dictGet targets", () => {
    expect([...referencedNames("CREATE MATERIALIZED VIEW a.mv TO a.dst AS SELECT x FROM a.src JOIN b.u USING x", "a.mv")].sort()).toEqual([
      "a.dst",
      "a.src",
      "b.u",
    ]);
    expect([...referencedNames("CREATE TABLE a.d (x UInt8) ENGINE = Distributed(c, a, t)", "a.d")]).toEqual(["a.t"]);
    expect([...referencedNames("CREATE DICTIONARY a.dict (id UInt64) PRIMARY KEY id SOURCE(CLICKHOUSE(TABLE 'src' DB 'a')) LAYOUT(FLAT()) LIFETIME(0)", "a.dict")]).toEqual([
      "a.src",
    ]);
    expect([...referencedNames("CREATE VIEW a.v AS SELECT dictGet('a.dict', 'c', 1)", "a.v")]).toEqual(["a.dict"]);
  });
});

describe("materializedViewHasTarget", () => {
  it("tells TO views from views with an inner table", () => {
    expect(materializedViewHasTarget("CREATE MATERIALIZED VIEW a.mv TO a.dst (`id` UInt64) AS SELECT id FROM a.t")).toBe(true);
    expect(materializedViewHasTarget("CREATE MATERIALIZED VIEW a.mv (`id` UInt64) ENGINE = MergeTree ORDER BY id AS SELECT id FROM a.t")).toBe(false);
    expect(
      materializedViewHasTarget("CREATE MATERIALIZED VIEW a.mv ENGINE = MergeTree ORDER BY d TTL d + INTERVAL 1 DAY TO DISK 'cold' AS SELECT d FROM a.t"),
    ).toBe(false);
    expect(materializedViewHasTarget("CREATE MATERIALIZED VIEW IF NOT EXISTS `a`.`mv` REFRESH EVERY 1 HOUR TO a.dst AS SELECT 1")).toBe(true);
    expect(materializedViewHasTarget("CREATE MATERIALIZED VIEW a.mv ENGINE = Memory POPULATE AS SELECT 1")).toBe(false);
  });
});

describe("renameCreatedObject", () => {
  it("rewrites the created name and nothing else", () => {
    expect(renameCreatedObject("CREATE TABLE shop.orders (id UInt64) ENGINE = MergeTree ORDER BY id", "s", "x")).toBe(
      "CREATE TABLE `s`.`x` (id UInt64) ENGINE = MergeTree ORDER BY id",
    );
    expect(renameCreatedObject("CREATE MATERIALIZED VIEW IF NOT EXISTS `a b`.`v` TO shop.t AS SELECT * FROM shop.orders", "s", "v2")).toBe(
      "CREATE MATERIALIZED VIEW IF NOT EXISTS `s`.`v2` TO shop.t AS SELECT * FROM shop.orders",
    );
    expect(renameCreatedObject("CREATE VIEW v AS SELECT 1", "d", "w")).toBe("CREATE VIEW `d`.`w` AS SELECT 1");
    expect(renameCreatedObject("CREATE DICTIONARY d.dict (k UInt64) PRIMARY KEY k", "d", "n")).toBe("CREATE DICTIONARY `d`.`n` (k UInt64) PRIMARY KEY k");
    expect(() => renameCreatedObject("SELECT 1", "d", "n")).toThrow(/not a CREATE/);
  });
});
