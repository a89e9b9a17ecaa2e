import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { describe, expect, it } from "vitest";
import { runPool, trailingException, TrailingExceptionCheck, TRAILER_WINDOW } from "./streams.ts";

async function through(chunks: Buffer[], tag?: string): Promise<Buffer> {
  const out: Buffer[] = [];
  await pipeline(Readable.from(chunks), new TrailingExceptionCheck(tag), async function* (src: AsyncIterable<Buffer>) {
    for await (const c of src) out.push(c);
  });
  return Buffer.concat(out);
}

describe("trailing exception detection", () => {
  it("passes data through unchanged, in any chunking", async () => {
    const data = Buffer.alloc(3 * TRAILER_WINDOW + 123);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7) & 0xff;
    expect((await through([data])).equals(data)).toBe(true);
    const small: Buffer[] = [];
    for (let i = 0; i < data.length; i += 1000) small.push(data.subarray(i, i + 1000));
    expect((await through(small)).equals(data)).toBe(true);
    expect((await through([])).length).toBe(0);
  });
  it("fails on an 18.x-style exception appended to the data", async () => {
    const data = Buffer.concat([Buffer.alloc(100_000, 1), Buffer.from("Code: 241, e.displayText() = DB::Exception: Memory limit exceeded, e.what() = DB::Exception\n")]);
    await expect(through([data])).rejects.toThrow(/Memory limit exceeded/);
  });
  it("fails on a 23.x-style exception appended to the data", async () => {
    const data = Buffer.concat([Buffer.alloc(1000, 0), Buffer.from("Code: 395. DB::Exception: Value passed to 'throwIf' function is non-zero. (FUNCTION_THROW_IF_VALUE_IS_NON_ZERO) (version 23.8.1.1)\n")]);
    await expect(through([data])).rejects.toThrow(/throwIf/);
  });
  it("fails on a tagged exception (25.11+) and only with the announced tag", async () => {
    const tag = "abcdefghijklmnop";
    const msg = "Code: 241. DB::Exception: boom. (MEMORY_LIMIT_EXCEEDED)\n";
    const framed = Buffer.concat([Buffer.alloc(500, 2), Buffer.from(`\r\n__exception__\r\n${tag}\r\n${msg}${Buffer.byteLength(msg)} ${tag}\r\n__exception__\r\n`)]);
    await expect(through([framed], tag)).rejects.toThrow(/boom/);
    expect(trailingException(Buffer.from("plain data"), tag)).toBeUndefined();
  });
  it("does not mistake data mentioning an exception for one", () => {
    expect(trailingException(Buffer.from("\x05Code: 60 in the middle and then more binary \x00\x01"), undefined)).toBeUndefined();
    expect(trailingException(Buffer.from("Code: 1. DB::Exception: text without version"), undefined)).toBeUndefined();
  });
});

describe("runPool", () => {
  it("runs at most `concurrency` at a time and all items", async () => {
    let running = 0;
    let peak = 0;
    const seen: number[] = [];
    await runPool([1, 2, 3, 4, 5], 2, new AbortController().signal, async (n) => {
      running++;
      peak = Math.max(peak, running);
      await new Promise((r) => setTimeout(r, 10));
      seen.push(n);
      running--;
    });
    expect(peak).toBe(2);
    expect(seen.sort()).toEqual([1, 2, 3, 4, 5]);
  });
  it("stops on the first failure and aborts the others", async () => {
    const started: number[] = [];
    let abortedOther = false;
    await expect(
      runPool([1, 2, 3, 4], 2, new AbortController().signal, async (n, signal) => {
        started.push(n);
        if (n === 1) {
          await new Promise((r) => setTimeout(r, 5));
          throw new Error("first failed");
        }
        await new Promise<void>((resolve) => signal.addEventListener("abort", () => ((abortedOther = true), resolve()), { once: true }));
      }),
    ).rejects.toThrow("first failed");
    expect(started).toEqual([1, 2]);
    expect(abortedOther).toBe(true);
  });
});
