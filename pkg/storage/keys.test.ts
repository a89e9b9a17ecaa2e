import { describe, expect, it } from "vitest";
import { InvalidKeyError } from "./errors.ts";
import { assertValidKey, assertValidPrefix, keyProblem, normalizeStorePrefix } from "./keys.ts";

describe("key validation", () => {
  it.each(["a", "a/b", "backups/2024-01-01T00:00:00Z/shard-1/part.bin", "a.b/c..d/.hidden", "ünïcode/ключ", "a b/c"])(
    "accepts %j",
    (key) => {
      expect(keyProblem(key)).toBeUndefined();
    },
  );

  it.each([
    ["", /empty/],
    ["../x", /'\.\.'/],
    ["a/../../b", /'\.\.'/],
    ["a/..", /'\.\.'/],
    ["..", /'\.\.'/],
    ["/abs", /absolute/],
    ["/", /absolute/],
    ["a\\b", /backslash/],
    ["..\\x", /backslash/],
    ["a\0b", /NUL/],
    ["a\nb", /control/],
    ["a//b", /empty segments/],
    ["a/", /empty segments/],
    ["./a", /'\.'/],
    ["a/./b", /'\.'/],
    ["C:/x", /drive/],
    ["a/b.tmp-123", /reserved/],
    ["x".repeat(1025), /longer/],
  ])("rejects %j", (key, reason) => {
    expect(keyProblem(key)).toMatch(reason);
    expect(() => assertValidKey(key, "put")).toThrow(InvalidKeyError);
  });

  it("InvalidKeyError names the op and key", () => {
    try {
      assertValidKey("../x", "get");
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(InvalidKeyError);
      expect((err as InvalidKeyError).message).toMatch(/^get "\.\.\/x": /);
      expect((err as InvalidKeyError).retryable).toBe(false);
    }
  });

  it("rejects non-strings", () => {
    expect(() => assertValidKey(undefined, "put")).toThrow(InvalidKeyError);
    expect(() => assertValidKey(42, "put")).toThrow(InvalidKeyError);
  });

  it("prefixes: empty and trailing slash allowed, traversal rejected", () => {
    expect(() => assertValidPrefix("", "list")).not.toThrow();
    expect(() => assertValidPrefix("a/", "list")).not.toThrow();
    expect(() => assertValidPrefix("a/b", "list")).not.toThrow();
    expect(() => assertValidPrefix("../", "list")).toThrow(InvalidKeyError);
    expect(() => assertValidPrefix("/", "list")).toThrow(InvalidKeyError);
    expect(() => assertValidPrefix("a//", "list")).toThrow(InvalidKeyError);
  });

  it("normalizes store prefixes", () => {
    expect(normalizeStorePrefix(undefined)).toBe("");
    expect(normalizeStorePrefix("/")).toBe("");
    expect(normalizeStorePrefix("/backups/prod/")).toBe("backups/prod");
    expect(() => normalizeStorePrefix("a/../b")).toThrow(InvalidKeyError);
  });
});
