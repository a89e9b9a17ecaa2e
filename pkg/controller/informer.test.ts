// The controller's own writes, laid over the cache until the watch catches up: resourceVersions
// are opaque, so they are only compared for equality (here they do not even look like numbers).
import { describe, expect, it } from "vitest";
import { WriteOverlay } from "./informer.ts";
import type { KubeObject } from "./types.ts";

const obj = (rv: string, extra = ""): KubeObject & { extra: string } => ({ metadata: { name: "x", namespace: "ns", resourceVersion: rv }, extra });

describe("WriteOverlay", () => {
  it("serves our write until the watch echoes it, whatever the resourceVersions look like", () => {
    const o = new WriteOverlay();
    const cached = obj("zz-old");
    const mine = obj("aa-new", "mine");
    o.wrote(mine, cached);
    // "aa-new" sorts before "zz-old" and is no number: still ours, because the echo has not come.
    expect(o.get("ns", "x", cached)).toBe(mine);
    // An older event still on its way changes nothing.
    expect(o.observe(obj("yy-older"), "update")).toBeUndefined();
    expect(o.get("ns", "x", obj("yy-older"))).toBe(mine);
    // The echo: handlers need not see it, and the cache is right from now on.
    expect(o.observe(obj("aa-new"), "update")).toBe("echo");
    const later = obj("mm-later");
    expect(o.get("ns", "x", later)).toBe(later);
    expect(o.size).toBe(0);
  });

  it("serves a write the cache holds at the same version (a Secret read in full, cached without data) until the cache moves on", () => {
    const o = new WriteOverlay();
    const slim = obj("7");
    const full = obj("7", "data");
    o.wrote(full, slim);
    expect(o.get("ns", "x", slim)).toBe(full);
    // Someone else's later change is then seen at once, event or no event.
    expect(o.get("ns", "x", obj("8"))!.metadata.resourceVersion).toBe("8");
    expect(o.size).toBe(0);
    o.wrote(full, slim);
    expect(o.observe(obj("8"), "update")).toBeUndefined();
    expect(o.size).toBe(0);
  });

  it("two writes in a row: the echo of the first is ours too, and the second stays until its own echo", () => {
    const o = new WriteOverlay<KubeObject>({ now: () => 0 });
    const at = (rv: string): KubeObject => ({ metadata: { name: "d", namespace: "n", resourceVersion: rv } });
    o.wrote(at("a1"), at("a0"));
    o.wrote(at("b7"), at("a0"));
    expect(o.observe(at("a1"), "update")).toBe("echo");
    expect(o.get("n", "d", at("a1"))?.metadata.resourceVersion).toBe("b7");
    // Someone else's write in between is not ours.
    expect(o.observe(at("x3"), "update")).toBeUndefined();
    expect(o.observe(at("b7"), "update")).toBe("echo");
    expect(o.size).toBe(0);
  });
  it("numbers are not ordered either: 10 after 9 is just another version", () => {
    const o = new WriteOverlay();
    o.wrote(obj("9", "mine"), obj("10"));
    expect(o.get("ns", "x", obj("10"))!.metadata.resourceVersion).toBe("9");
  });

  it("forgets a deletion when the watch reports it, and an object made anew", () => {
    const o = new WriteOverlay();
    o.deleted("ns", "x");
    expect(o.get("ns", "x", obj("1"))).toBeUndefined();
    expect(o.observe(obj("1"), "update")).toBeUndefined();
    expect(o.observe(obj("1"), "delete")).toBe("echo");
    expect(o.get("ns", "x", undefined)).toBeUndefined();
    o.deleted("ns", "x");
    expect(o.observe(obj("2"), "add")).toBeUndefined();
    expect(o.get("ns", "x", obj("2"))!.metadata.resourceVersion).toBe("2");
  });

  it("gives way to a fresh list, to a delete event, and after maxAgeMs", () => {
    let now = 0;
    const o = new WriteOverlay({ now: () => now, maxAgeMs: 1000 });
    o.wrote(obj("a"), undefined);
    o.clear();
    expect(o.get("ns", "x", obj("b"))!.metadata.resourceVersion).toBe("b");
    o.wrote(obj("a"), undefined);
    expect(o.observe(obj("c"), "delete")).toBeUndefined();
    expect(o.size).toBe(0);
    o.wrote(obj("a"), undefined);
    now = 1001;
    expect(o.get("ns", "x", obj("b"))!.metadata.resourceVersion).toBe("b");
  });
});
