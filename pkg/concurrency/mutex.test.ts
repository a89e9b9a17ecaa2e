import { describe, expect, it } from "vitest";
import { Mutex } from "./mutex.ts";

const tick = () => new Promise((r) => setTimeout(r, 5));

describe("Mutex", () => {
  it("runs callers one at a time, in arrival order, and passes results and errors through", async () => {
    const m = new Mutex();
    const log: string[] = [];
    let inside = 0;
    let maxInside = 0;
    const job = (name: string, fail = false) =>
      m.run(async () => {
        inside++;
        maxInside = Math.max(maxInside, inside);
        log.push(`start ${name}`);
        await tick();
        log.push(`end ${name}`);
        inside--;
        if (fail) throw new Error(`boom ${name}`);
        return name;
      });
    const results = await Promise.allSettled([job("a"), job("b", true), job("c")]);
    expect(maxInside).toBe(1);
    expect(log).toEqual(["start a", "end a", "start b", "end b", "start c", "end c"]);
    expect(results.map((r) => (r.status === "fulfilled" ? r.value : String((r.reason as Error).message)))).toEqual(["a", "boom b", "c"]);
    expect(m.locked).toBe(false);
  });

  it("reports whether it is held", async () => {
    const m = new Mutex();
    let release!: () => void;
    const held = m.run(() => new Promise<void>((r) => (release = r)));
    await tick();
    expect(m.locked).toBe(true);
    release();
    await held;
    expect(m.locked).toBe(false);
  });
});
