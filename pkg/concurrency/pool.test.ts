import { describe, expect, it } from "vitest";
import { runPool } from "./pool.ts";

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

describe("runPool: the first real cause", () => {
  it("reports the real failure even when an aborted item reported first", async () => {
    // Item 2 fails with an abort error before item 1's real error arrives (as a stream torn down
    // by a shared resource would): the pool must report ENOSPC, not "aborted".
    const enospc = Object.assign(new Error("put \"b\": ENOSPC: no space left on device, write"), { code: "ENOSPC" });
    const err = await runPool([1, 2], 2, new AbortController().signal, async (n) => {
      if (n === 2) {
        await new Promise((r) => setTimeout(r, 1));
        throw new DOMException("The operation was aborted", "AbortError");
      }
      await new Promise((r) => setTimeout(r, 20));
      throw enospc;
    }).catch((e: unknown) => e);
    expect(err).toBe(enospc);
  });
  it("keeps the first failure when every failure is an abort", async () => {
    const first = new DOMException("first", "AbortError");
    const err = await runPool([1, 2], 2, new AbortController().signal, async (n) => {
      await new Promise((r) => setTimeout(r, n * 5));
      throw n === 1 ? first : new DOMException("second", "AbortError");
    }).catch((e: unknown) => e);
    expect(err).toBe(first);
  });
  it("a storage abort error is an abort; an ENOSPC is not", async () => {
    const { isAbortError } = await import("./pool.ts");
    expect(isAbortError(Object.assign(new Error("put: aborted"), { name: "StorageAbortedError" }))).toBe(true);
    expect(isAbortError(Object.assign(new Error("x"), { code: "ABORT_ERR" }))).toBe(true);
    expect(isAbortError(Object.assign(new Error("ENOSPC"), { code: "ENOSPC" }))).toBe(false);
    expect(isAbortError("aborted")).toBe(false);
  });
});
