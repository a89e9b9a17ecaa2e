import { describe, expect, it } from "vitest";
import { WorkQueue } from "./queue.ts";

const tick = (ms = 5) => new Promise((r) => setTimeout(r, ms));

describe("WorkQueue", () => {
  it("never runs one key twice at once, and runs it again when it was added meanwhile", async () => {
    const running = new Set<string>();
    const runs: string[] = [];
    let overlap = false;
    // a's first run is held until the test lets it go, so the adds below happen while it runs.
    let releaseA!: () => void;
    const gateA = new Promise<void>((r) => (releaseA = r));
    const q = new WorkQueue({
      workers: 4,
      handle: async (key) => {
        if (running.has(key)) overlap = true;
        running.add(key);
        runs.push(key);
        await (key === "a" && runs.filter((k) => k === "a").length === 1 ? gateA : tick(20));
        running.delete(key);
      },
    });
    q.start();
    q.add("a");
    q.add("b");
    await tick(5);
    expect(running.has("a")).toBe(true);
    q.add("a"); // while a runs
    q.add("a"); // deduplicated
    releaseA();
    await q.idle();
    expect(overlap).toBe(false);
    expect(runs.filter((k) => k === "a")).toHaveLength(2);
    expect(runs.filter((k) => k === "b")).toHaveLength(1);
    await q.stop();
  });

  it("retries failures with growing delays and resets after a success", async () => {
    const times: number[] = [];
    const delays: number[] = [];
    let n = 0;
    const q = new WorkQueue({
      workers: 1,
      baseDelayMs: 10,
      handle: async () => {
        times.push(Date.now());
        if (++n <= 3) throw new Error("transient");
      },
      onError: (_k, _e, ms) => delays.push(ms),
    });
    q.start();
    q.add("k");
    await q.idle();
    expect(n).toBe(4);
    expect(delays).toEqual([10, 20, 40]);
    await q.stop();
  });

  it("bounds concurrency by the worker count", async () => {
    let active = 0;
    let peak = 0;
    const q = new WorkQueue({
      workers: 3,
      handle: async () => {
        peak = Math.max(peak, ++active);
        await tick(10);
        active--;
      },
    });
    q.start();
    for (let i = 0; i < 20; i++) q.add(`k${i}`);
    await q.idle();
    expect(peak).toBe(3);
    await q.stop();
  });
});
