import { createHash } from "node:crypto";
import { PassThrough, Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { describe, expect, it } from "vitest";
import { ChecksumStream, sha256Hex, verifiedReadable } from "./checksum.ts";
import { ChecksumMismatchError, StorageAbortedError, StorageError } from "./errors.ts";

function* chunks(n: number, size: number): Generator<Buffer> {
  for (let i = 0; i < n; i++) yield Buffer.alloc(size, i % 251);
}

async function drain(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of stream) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

describe("ChecksumStream", () => {
  it("passes bytes through and computes sha256 + size", async () => {
    const expected = createHash("sha256");
    for (const c of chunks(10, 1000)) expected.update(c);
    const cs = new ChecksumStream();
    const out = await drain(Readable.from(chunks(10, 1000)).pipe(cs));
    expect(out.length).toBe(10_000);
    expect(cs.bytesSeen).toBe(10_000);
    expect(cs.sha256).toBe(expected.digest("hex"));
  });

  it("hashes the empty stream", async () => {
    const cs = new ChecksumStream({ expectedSha256: sha256Hex(""), expectedSize: 0 });
    await pipeline(Readable.from([]), cs, new PassThrough().resume());
    expect(cs.sha256).toBe("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    expect(cs.bytesSeen).toBe(0);
  });

  it("ends normally when expectations match (case-insensitive hex)", async () => {
    const data = Buffer.from("hello world");
    const cs = new ChecksumStream({ expectedSha256: sha256Hex(data).toUpperCase(), expectedSize: data.length });
    expect((await drain(Readable.from([data]).pipe(cs))).toString()).toBe("hello world");
  });

  it("errors with ChecksumMismatchError at the end on a sha256 mismatch", async () => {
    const cs = new ChecksumStream({ expectedSha256: sha256Hex("other"), op: "get", key: "a/b" });
    const seen: Buffer[] = [];
    const err = await (async () => {
      try {
        for await (const c of Readable.from([Buffer.from("hello")]).pipe(cs)) seen.push(c as Buffer);
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    // (Chunks still buffered when the error is emitted may not be delivered; that is fine.)
    expect(Buffer.concat(seen).toString()).toBe("hello".slice(0, Buffer.concat(seen).length));
    expect(err).toBeInstanceOf(ChecksumMismatchError);
    expect(err).toBeInstanceOf(StorageError);
    const e = err as ChecksumMismatchError;
    expect(e.expected.sha256).toBe(sha256Hex("other"));
    expect(e.actual).toEqual({ sha256: sha256Hex("hello"), size: 5 });
    expect(e.message).toMatch(/^get "a\/b": checksum mismatch/);
    expect(e.retryable).toBe(false);
  });

  it("errors on a size mismatch", async () => {
    const cs = new ChecksumStream({ expectedSize: 6 });
    await expect(drain(Readable.from([Buffer.from("hello")]).pipe(cs))).rejects.toMatchObject({
      name: "ChecksumMismatchError",
      actual: { size: 5 },
      expected: { size: 6 },
    });
  });

  it("reports cumulative progress", async () => {
    const seen: number[] = [];
    const cs = new ChecksumStream({ onProgress: (n) => seen.push(n) });
    await drain(Readable.from(chunks(3, 10)).pipe(cs));
    expect(seen).toEqual([10, 20, 30]);
  });

  it("has no length-like property (lib-storage would take it as the Body's total size)", () => {
    const cs = new ChecksumStream() as unknown as Record<string, unknown>;
    for (const prop of ["size", "length", "byteLength", "start", "end"]) expect(typeof cs[prop]).not.toBe("number");
  });

  it("rejects malformed expectations", () => {
    expect(() => new ChecksumStream({ expectedSha256: "abc" })).toThrow(TypeError);
    expect(() => new ChecksumStream({ expectedSize: -1 })).toThrow(TypeError);
  });
});

describe("verifiedReadable", () => {
  const mapError = (err: unknown) => new StorageError("mapped", { op: "get", key: "k", retryable: true, cause: err });

  it("maps source errors to StorageErrors", async () => {
    const source = new Readable({ read() {} });
    const out = verifiedReadable(source, { op: "get", key: "k", mapError });
    source.push(Buffer.from("abc"));
    setImmediate(() => source.destroy(Object.assign(new Error("socket hang up"), { code: "ECONNRESET" })));
    const err = await drain(out).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StorageError);
    expect((err as StorageError).retryable).toBe(true);
    expect((err as StorageError).cause).toMatchObject({ code: "ECONNRESET" });
  });

  it("destroys the source when the consumer destroys the stream", async () => {
    const source = new Readable({ read() {} });
    const out = verifiedReadable(source, { op: "get", key: "k", mapError });
    out.destroy();
    await new Promise((r) => setImmediate(r));
    expect(source.destroyed).toBe(true);
  });

  it("errors with StorageAbortedError when the signal fires", async () => {
    const ac = new AbortController();
    const source = new Readable({ read() {} });
    const out = verifiedReadable(source, { op: "get", key: "k", mapError, signal: ac.signal });
    setImmediate(() => ac.abort());
    await expect(drain(out)).rejects.toBeInstanceOf(StorageAbortedError);
    expect(source.destroyed).toBe(true);
  });
});
