import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { hookStore } from "../../test/helpers/hooked-store.ts";
import { createFilesystemStore } from "../storage/index.ts";
import { StorageProbe } from "./storageprobe.ts";

describe("storage readiness probe", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "probe-"));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  const signal = () => AbortSignal.timeout(5000);

  it("writes and deletes a probe object, and trusts a success for a minute", async () => {
    const store = hookStore(createFilesystemStore({ root: dir }));
    let puts = 0;
    store.hooks.put = () => void puts++;
    let now = 0;
    const probe = new StorageProbe({ store, prefix: "ns/def", filesystemRoot: dir, now: () => now });
    await probe.check(signal());
    expect(puts).toBe(1);
    expect(await readdir(dir)).toEqual([]); // deleted again, directories too
    now = 59_000;
    await probe.check(signal());
    expect(puts).toBe(1);
    now = 61_000;
    await probe.check(signal());
    expect(puts).toBe(2);
  });

  it("fails for a store that cannot be written, naming why; a failure is retried after a few seconds", async () => {
    const store = hookStore(createFilesystemStore({ root: dir }));
    let fail = true;
    store.hooks.put = () => {
      if (fail) throw new Error('put "ns/def/x": EROFS: read-only file system');
    };
    let now = 0;
    const probe = new StorageProbe({ store, prefix: "ns/def", now: () => now });
    await expect(probe.check(signal())).rejects.toThrow(/storage is not writable: .*EROFS/);
    fail = false;
    now = 1_000;
    await expect(probe.check(signal())).rejects.toThrow(/EROFS/); // cached
    now = 6_000;
    await expect(probe.check(signal())).resolves.toBeUndefined();
  });

  it("fails for a filesystem with less free space than the minimum", async () => {
    const store = createFilesystemStore({ root: dir });
    const probe = new StorageProbe({ store, prefix: "ns/def", filesystemRoot: dir, minFreeBytes: Number.MAX_SAFE_INTEGER });
    await expect(probe.check(signal())).rejects.toThrow(/storage is full: .* MiB free in .*ENOSPC/);
  });

  it("an unreachable store fails on its own check every time (not cached)", async () => {
    const store = createFilesystemStore({ root: join(dir, "missing") });
    const probe = new StorageProbe({ store, prefix: "ns/def" });
    await expect(probe.check(signal())).rejects.toThrow(/does not exist/);
  });
});
