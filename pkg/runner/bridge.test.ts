// StoreSink.putObjects / StoreSource.getObjects on a filesystem store whose
// objects are capped small, so that a stream becomes many pieces.
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { buffer } from "node:stream/consumers";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { StorageRunnerConfig } from "../apis/index.ts";
import { ChecksumMismatchError, createFilesystemStore, NotFoundError, StorageAbortedError, type ObjectStore } from "../storage/index.ts";
import { StoreSink, StoreSource } from "./bridge.ts";

const storage = { filesystem: { path: "/unused" } } as StorageRunnerConfig;
const signal = () => new AbortController().signal;

function data(n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + (i >>> 8)) & 0xff;
  return b;
}

let dir: string;
let store: ObjectStore;

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "bridge-test-"));
  store = { ...createFilesystemStore({ root: dir }), maxObjectBytes: 1000 };
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("StoreSink.putObjects / StoreSource.getObjects", () => {
  it("writes a stream as pieces of at most maxObjectBytes and reads them back as one stream", async () => {
    const body = data(30_500);
    let counted = 0;
    const sink = new StoreSink(store, "bk", storage, (n) => (counted += n));
    const written = await sink.putObjects("t.bin", Readable.from([body.subarray(0, 12_345), body.subarray(12_345)]), signal());
    expect(written.length).toBe(31);
    expect(written[0]).toMatchObject({ name: "t.bin", size: 1000 });
    expect(written[1]).toMatchObject({ name: "t.bin.001", size: 1000 });
    expect(written[30]).toMatchObject({ name: "t.bin.030", size: 500 });
    expect(counted).toBe(body.length);
    const small = await sink.putObject("meta.json", Readable.from([Buffer.from("{}")]), signal());
    expect(sink.written).toEqual([...written, small]);

    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on("warning", onWarning);
    try {
      let read = 0;
      const source = new StoreSource(store, "bk", sink.written, storage, (n) => (read += n));
      expect(await buffer(await source.getObjects(written.map((w) => w.name), signal()))).toEqual(body);
      expect(read).toBe(body.length);
      // One name: the object itself.
      expect(await buffer(await source.getObjects(["meta.json"], signal()))).toEqual(Buffer.from("{}"));
    } finally {
      process.off("warning", onWarning);
    }
    expect(warnings.map((w) => w.name)).not.toContain("MaxListenersExceededWarning");
  });

  it("a piece that differs from the manifest fails the stream, naming it; later pieces are not read", async () => {
    const sink = new StoreSink(store, "bk", storage);
    const written = await sink.putObjects("t.bin", Readable.from([data(3500)]), signal());
    await writeFile(path.join(dir, "bk", "t.bin.002"), Buffer.alloc(1000, 1));
    const gets: string[] = [];
    const spy: ObjectStore = { ...store, get: (key, opts) => (gets.push(key), store.get(key, opts)) };
    const source = new StoreSource(spy, "bk", written, storage);
    const err = await buffer(await source.getObjects(written.map((w) => w.name), signal())).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ChecksumMismatchError);
    expect((err as Error).message).toMatch(/^get "bk\/t\.bin\.002": checksum mismatch/);
    expect(gets).toEqual(["bk/t.bin", "bk/t.bin.001", "bk/t.bin.002"]);
  });

  it("rejects names that are not in the manifest, and a missing first piece, before streaming", async () => {
    const sink = new StoreSink(store, "bk", storage);
    const written = await sink.putObjects("t.bin", Readable.from([data(2500)]), signal());
    const source = new StoreSource(store, "bk", written, storage);
    await expect(source.getObjects(["t.bin", "t.bin.009"], signal())).rejects.toThrow(/object "t.bin.009" is not part of the backup in bk/);
    await expect(source.getObjects([], signal())).rejects.toThrow(/no objects to read/);
    await rm(path.join(dir, "bk", "t.bin"));
    await expect(source.getObjects(written.map((w) => w.name), signal())).rejects.toBeInstanceOf(NotFoundError);
  });

  it("a missing later piece fails the stream; an abort fails it with StorageAbortedError", async () => {
    const sink = new StoreSink(store, "bk", storage);
    const written = await sink.putObjects("t.bin", Readable.from([data(2500)]), signal());
    const source = new StoreSource(store, "bk", written, storage);
    await rm(path.join(dir, "bk", "t.bin.002"));
    await expect(buffer(await source.getObjects(written.map((w) => w.name), signal()))).rejects.toBeInstanceOf(NotFoundError);

    const ac = new AbortController();
    const stream = await source.getObjects(written.map((w) => w.name), ac.signal);
    ac.abort(new Error("stop"));
    await expect(buffer(stream)).rejects.toBeInstanceOf(StorageAbortedError);
  });

  it("a consumer that stops early releases the piece being read", async () => {
    const sink = new StoreSink(store, "bk", storage);
    const written = await sink.putObjects("t.bin", Readable.from([data(5000)]), signal());
    const source = new StoreSource(store, "bk", written, storage);
    const stream = await source.getObjects(written.map((w) => w.name), signal());
    for await (const _ of stream) break; // destroys the stream
    expect(stream.destroyed).toBe(true);
  });

  it("removeObjects deletes pieces and forgets them", async () => {
    const sink = new StoreSink(store, "bk", storage);
    const written = await sink.putObjects("t.bin", Readable.from([data(2500)]), signal());
    const ac = new AbortController();
    ac.abort();
    await sink.removeObjects(written.map((w) => w.name), ac.signal); // runs even after an abort: it cleans up
    expect(sink.written).toEqual([]);
    expect(await Array.fromAsync(store.list("bk/"))).toEqual([]);
  });
});
