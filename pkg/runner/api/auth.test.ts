// The bearer check always goes through timingSafeEqual on two SHA-256 digests
// (32 bytes each), whatever the header holds: same work for missing,
// malformed, short, long, wrong and right tokens.
import * as crypto from "node:crypto";
import { beforeEach, describe, expect, it, vi } from "vitest";
import { BearerAuth } from "./auth.ts";

vi.mock("node:crypto", async (importOriginal) => {
  const orig = await importOriginal<typeof import("node:crypto")>();
  return { ...orig, timingSafeEqual: vi.fn(orig.timingSafeEqual) };
});

const TOKEN = "a-token-of-32-characters-0123456";

describe("BearerAuth", () => {
  const spy = vi.mocked(crypto.timingSafeEqual);
  beforeEach(() => {
    spy.mockClear();
  });

  it.each([
    ["missing", undefined, false],
    ["empty", "", false],
    ["no scheme", TOKEN, false],
    ["other scheme", `Basic ${TOKEN}`, false],
    ["short", "Bearer x", false],
    ["long", `Bearer ${TOKEN}${"x".repeat(1000)}`, false],
    ["one byte off", `Bearer ${TOKEN.slice(0, -1)}7`, false],
    ["prefix", `Bearer ${TOKEN.slice(0, 16)}`, false],
    ["repeated header", [`Bearer ${TOKEN}`, `Bearer ${TOKEN}`], false],
    ["trailing junk", `Bearer ${TOKEN} x`, false],
    ["right", `Bearer ${TOKEN}`, true],
    ["right, lower-case scheme, tab", `bearer\t${TOKEN}`, true],
  ] as [string, string | string[] | undefined, boolean][])("%s header → %s, through timingSafeEqual on 32-byte digests", (_n, header, expected) => {
    const auth = new BearerAuth(TOKEN);
    expect(auth.check(header)).toBe(expected);
    expect(spy).toHaveBeenCalledTimes(1);
    const [a, b] = spy.mock.calls[0]!;
    expect((a as Buffer).length).toBe(32);
    expect((b as Buffer).length).toBe(32);
  });

  it("refuses tokens shorter than 16 characters", () => {
    expect(() => new BearerAuth("too-short")).toThrow(/at least 16/);
  });
});
