// A filesystem put whose writes fail (a full disk, simulated by failing the
// file handle's writes with ENOSPC) rejects with that error and destroys its
// body with it too, so whoever produces the body learns ENOSPC rather than
// "The operation was aborted" (issue #13: the first cause, always).
import type { FileHandle } from "node:fs/promises";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { PassThrough } from "node:stream";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

const failing = vi.hoisted(() => ({ match: undefined as string | undefined, afterWrites: 2 }));

vi.mock("node:fs/promises", async (importOriginal) => {
  const orig = await importOriginal<typeof import("node:fs/promises")>();
  const open = async (...args: Parameters<typeof orig.open>): Promise<FileHandle> => {
    const fh = await orig.open(...args);
    const file = String(args[0]);
    if (failing.match === undefined || !file.includes(failing.match)) return fh;
    let writes = 0;
    return new Proxy(fh, {
      get(target, prop, receiver) {
        if (prop === "write") {
          return async (...w: unknown[]) => {
            if (++writes > failing.afterWrites) throw Object.assign(new Error(`ENOSPC: no space left on device, write`), { code: "ENOSPC", errno: -28, syscall: "write" });
            return (target.write as (...a: unknown[]) => Promise<unknown>)(...w);
          };
        }
        const v: unknown = Reflect.get(target, prop, receiver);
        return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
  };
  return { ...orig, open, default: { ...orig, open } };
});

const { createFilesystemStore } = await import("./filesystem.ts");
const { StorageError } = await import("./errors.ts");

describe("filesystem put on a full disk", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "fs-full-"));
  });
  afterEach(async () => {
    failing.match = undefined;
    await rm(dir, { recursive: true, force: true });
  });

  it("rejects with ENOSPC and destroys the body with that error, not an AbortError", async () => {
    const store = createFilesystemStore({ root: dir });
    failing.match = "orders.native";
    const body = new PassThrough();
    const bodyError = new Promise<Error>((resolve) => body.once("error", resolve));
    // the producer keeps writing, like a table dump
    const producer = (async () => {
      for (let i = 0; i < 64 && !body.destroyed; i++) {
        if (!body.write(Buffer.alloc(64 * 1024, i))) await new Promise((r) => body.once("drain", r).once("close", r));
      }
      body.end();
    })();
    const err = await store.put("id/data/shop/orders.native.zst", body).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StorageError);
    expect((err as Error).message).toContain("ENOSPC");
    const seen = await bodyError;
    expect(seen.name).not.toBe("AbortError");
    expect(seen.message).toContain("ENOSPC");
    await producer;
    // and nothing of it is left, not even its directories
    expect(await readdir(dir)).toEqual([]);
  });
});
