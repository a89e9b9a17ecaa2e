import { describe, expect, it } from "vitest";
import { MAX_RUNNER_NAME, labelValue, runnerName, splitKey, defKey } from "./names.ts";

describe("runner names", () => {
  it("is runner-<namespace>-<name>-<hash of namespace/name>", () => {
    expect(runnerName("shop", "orders")).toMatch(/^runner-shop-orders-[0-9a-f]{8}$/);
    expect(runnerName("shop", "orders")).toBe(runnerName("shop", "orders"));
  });
  it("never gives two definitions the same name, however the dashes split", () => {
    expect(runnerName("team-a", "x")).not.toBe(runnerName("team", "a-x"));
    expect(runnerName("team-a", "x")).toMatch(/^runner-team-a-x-[0-9a-f]{8}$/);
    expect(runnerName("a", "b-c-d")).not.toBe(runnerName("a-b", "c-d"));
    expect(runnerName("a", "b.c")).not.toBe(runnerName("a", "b-c"));
  });
  it("shortens long names with a stable hash, within the StatefulSet limit", () => {
    const a = runnerName("analytics-production", "a-very-long-definition-name-for-the-events-cluster");
    expect(a.length).toBeLessThanOrEqual(MAX_RUNNER_NAME);
    expect(a).toMatch(/^runner-analytics-production-a-very-[a-z0-9-]*-[0-9a-f]{8}$/);
    expect(runnerName("analytics-production", "a-very-long-definition-name-for-the-events-cluster")).toBe(a);
    expect(runnerName("analytics-production", "a-very-long-definition-name-for-the-events-clusterX".toLowerCase())).not.toBe(a);
  });
  it("turns dots into a DNS label without colliding with the dashed name", () => {
    const dotted = runnerName("shop", "orders.v2");
    expect(dotted).toMatch(/^[a-z]([-a-z0-9]*[a-z0-9])?$/);
    expect(dotted).not.toBe(runnerName("shop", "orders-v2"));
  });
  it("always yields a valid DNS-1035 label", () => {
    for (const [ns, n] of [["a", "b"], ["x".repeat(63), "y".repeat(253)], ["ns", "a.b.c-d"], ["n", "9abc"]] as const) {
      expect(runnerName(ns, n)).toMatch(/^[a-z]([-a-z0-9]{0,50}[a-z0-9])?$/);
    }
  });
  it("label values stand for any string within 63 characters", () => {
    expect(labelValue("orders")).toBe("orders");
    const long = labelValue("x".repeat(200));
    expect(long.length).toBeLessThanOrEqual(63);
    expect(long).toMatch(/^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/);
  });
  it("keys round-trip", () => {
    expect(splitKey(defKey("shop", "orders.v2"))).toEqual({ namespace: "shop", name: "orders.v2" });
  });
});
