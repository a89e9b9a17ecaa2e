import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { describe, expect, it } from "vitest";
import { IdleWatch, StallError, trailingException, TrailingExceptionCheck, TRAILER_WINDOW } from "./streams.ts";

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

describe("IdleWatch", () => {
  it("passes data through and stays quiet while data moves", async () => {
    const out: Buffer[] = [];
    const src = Readable.from((async function* () {
      for (let i = 0; i < 5; i++) {
        await new Promise((r) => setTimeout(r, 30));
        yield Buffer.from([i]);
      }
    })());
    // (2 s: well above the 30 ms between chunks, and above an event-loop stall of a busy machine)
    await pipeline(src, new IdleWatch(2000, { upstream: "storage", downstream: "ClickHouse", what: "restoring t" }), async function* (s: AsyncIterable<Buffer>) {
      for await (const c of s) out.push(c);
    });
    expect(Buffer.concat(out)).toEqual(Buffer.from([0, 1, 2, 3, 4]));
  });
  it("names the producer when no data arrives", async () => {
    const src = new Readable({ read() {} });
    src.push(Buffer.from("x"));
    const sink = async function* (s: AsyncIterable<Buffer>) {
      for await (const _ of s) {
        // keeps reading
      }
    };
    await expect(pipeline(src, new IdleWatch(150, { upstream: "storage", downstream: "ClickHouse", what: "restoring t" }), sink)).rejects.toThrow(
      /^storage stalled: no data moved for 0.1 s while restoring t$/,
    );
  });
  it("names the consumer when it stops reading", async () => {
    const src = new Readable({
      read() {
        this.push(Buffer.alloc(64 * 1024));
      },
    });
    const watch = new IdleWatch(150, { upstream: "storage", downstream: "ClickHouse", what: "restoring t" });
    const err = await new Promise<Error>((resolve) => {
      watch.on("error", resolve);
      src.pipe(watch); // nobody reads the watch's output
    });
    src.destroy();
    expect(err).toBeInstanceOf(StallError);
    expect(err.message).toMatch(/^ClickHouse stalled/);
  });
});
