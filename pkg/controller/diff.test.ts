import { describe, expect, it } from "vitest";
import { differingPaths, isSubset } from "./diff.ts";

describe("isSubset", () => {
  it("ignores fields the server added", () => {
    expect(isSubset({ spec: { type: "ClusterIP" } }, { spec: { type: "ClusterIP", clusterIP: "10.0.0.5" }, status: {} })).toBe(true);
  });
  it("sees a changed value, a missing field and a changed list", () => {
    expect(isSubset({ a: 1 }, { a: 2 })).toBe(false);
    expect(isSubset({ a: { b: "x" } }, { a: {} })).toBe(false);
    expect(isSubset({ l: [{ port: 8080 }] }, { l: [{ port: 8080, protocol: "TCP" }] })).toBe(true);
    expect(isSubset({ l: [{ port: 8080 }] }, { l: [{ port: 8080 }, { port: 9999 }] })).toBe(false);
    expect(isSubset({ l: [1, 2] }, { l: [2, 1] })).toBe(false);
  });
  it("names the differing paths", () => {
    expect(differingPaths({ spec: { ports: [{ port: 8080 }], replicas: 1 } }, { spec: { ports: [{ port: 9999 }], replicas: 1 } })).toEqual(["spec.ports[0].port"]);
  });
});
