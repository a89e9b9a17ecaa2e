import { describe, expect, it } from "vitest";
import { EngineError } from "../types.ts";
import { cleanServerMessage, wrapError } from "./errors.ts";

const ctx = { what: "testing", username: "backup", secrets: ["hunter22"] };

describe("wrapError", () => {
  it("reports authentication failures as terminal with the user name and no secret", () => {
    const e = wrapError(new Error("Code: 193, e.displayText() = DB::Exception: Wrong password for user backup, e.what() = DB::Exception\n"), {
      ...ctx,
      query: "SELECT version()",
    });
    expect(e).toBeInstanceOf(EngineError);
    expect(e.retryable).toBe(false);
    expect(e.message).toMatch(/^ClickHouse authentication failed for user backup: Wrong password for user backup/);
    const e2 = wrapError(Object.assign(new Error("backup: Authentication failed: password is incorrect"), { code: "516" }), ctx);
    expect(e2.retryable).toBe(false);
    expect(e2.message).toContain("authentication failed for user backup");
  });
  it("makes network failures retryable and syntax/unknown-table errors terminal", () => {
    expect(wrapError(Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:1"), { code: "ECONNREFUSED" }), ctx).retryable).toBe(true);
    expect(wrapError(Object.assign(new Error("aborted"), { code: "ECONNRESET" }), ctx).retryable).toBe(true);
    expect(wrapError(new Error("Timeout error."), ctx).retryable).toBe(true);
    expect(wrapError(new Error("Code: 62, e.displayText() = DB::Exception: Syntax error, e.what() = DB::Exception"), ctx).retryable).toBe(false);
    expect(wrapError(Object.assign(new Error("Table a.t does not exist."), { code: "60" }), ctx).retryable).toBe(false);
    expect(wrapError(Object.assign(new Error("Too many simultaneous queries"), { code: "202" }), ctx).retryable).toBe(true);
    expect(wrapError(new Error("Code: 499. DB::Exception: HTTP response code: 403, error type: ACCESS_DENIED. (S3_ERROR)"), ctx).retryable).toBe(false);
  });
  it("names the redacted, shortened query and keeps a secret-free cause", () => {
    const e = wrapError(new Error("Code: 60. DB::Exception: boom hunter22. (UNKNOWN_TABLE) (version 24.1.1.1)"), {
      ...ctx,
      query: "BACKUP TABLE a.t TO S3('http://h/b', 'AK', 'hunter22')",
    });
    expect(e.message).toContain("[query: BACKUP TABLE a.t TO S3('http://h/b', 'AK', '[REDACTED]')]");
    expect(e.message).not.toContain("hunter22");
    expect(String((e.cause as Error).message)).not.toContain("hunter22");
  });
  it("cleans server messages", () => {
    expect(cleanServerMessage("Code: 60, e.displayText() = DB::Exception: Table a.t doesn't exist., e.what() = DB::Exception\n")).toBe("Table a.t doesn't exist.");
    expect(cleanServerMessage("Code: 499. DB::Exception: x (S3_ERROR), Stack trace (when copying...):\n0. ?")).toBe("x (S3_ERROR)");
  });
});
