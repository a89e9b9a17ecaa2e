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
