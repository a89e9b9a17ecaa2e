import { describe, expect, it } from "vitest";
import { canonicalJson, desiredHash, differingPaths, holds, quantityValue, withDesiredHash } from "./diff.ts";

describe("holds", () => {
  it("ignores fields the server added", () => {
    expect(holds({ spec: { type: "ClusterIP" } }, { spec: { type: "ClusterIP", clusterIP: "10.0.0.5" }, status: {} })).toBe(true);
  });
  it("sees a changed value, a missing field, a missing or changed list entry and a changed order", () => {
    expect(holds({ a: 1 }, { a: 2 })).toBe(false);
    expect(holds({ a: { b: "x" } }, { a: {} })).toBe(false);
    expect(holds({ l: [{ port: 8080 }] }, { l: [{ port: 8080, protocol: "TCP" }] })).toBe(true);
    expect(holds({ l: [{ port: 8080 }] }, { l: [{ port: 9999 }] })).toBe(false);
    expect(holds({ l: [{ port: 8080 }, { port: 9090 }] }, { l: [{ port: 8080 }] })).toBe(false);
    expect(holds({ l: [1, 2] }, { l: [2, 1] })).toBe(false);
  });
  it("holds when another manager added list entries, before, between or after ours", () => {
    expect(holds({ env: [{ name: "A" }, { name: "B" }] }, { env: [{ name: "X" }, { name: "A" }, { name: "Y" }, { name: "B", value: "" }, { name: "Z" }] })).toBe(true);
    expect(holds({ l: [{ port: 8080 }] }, { l: [{ port: 8080 }, { port: 9999 }] })).toBe(true);
  });
  it("holds an empty map or list by an absent one", () => {
    expect(holds({ a: {}, b: [] }, {})).toBe(true);
    expect(holds({ a: {} }, { a: null })).toBe(false);
  });
  it("compares resource quantities by amount", () => {
    expect(holds({ resources: { requests: { cpu: "0.5", memory: "1024Mi" } } }, { resources: { requests: { cpu: "500m", memory: "1Gi" } } })).toBe(true);
    expect(holds({ resources: { limits: { memory: "1G" } } }, { resources: { limits: { memory: "1Gi" } } })).toBe(false);
    // Elsewhere a string is a string.
    expect(holds({ labels: { v: "1.0" } }, { labels: { v: "1" } })).toBe(false);
  });
  it("names the differing paths", () => {
    expect(differingPaths({ spec: { ports: [{ port: 8080 }], replicas: 1 } }, { spec: { ports: [{ port: 9999 }], replicas: 1 } })).toEqual(["spec.ports"]);
    expect(differingPaths({ spec: { a: 1, b: { c: 2 } } }, { spec: { a: 1, b: { c: 3 } } })).toEqual(["spec.b.c"]);
  });
});

describe("quantityValue", () => {
  it("reads Kubernetes quantities", () => {
    expect(quantityValue("500m")).toBe(0.5);
    expect(quantityValue("1Gi")).toBe(2 ** 30);
    expect(quantityValue("2")).toBe(2);
    expect(quantityValue("1e3")).toBe(1000);
    expect(quantityValue("1.5G")).toBe(1.5e9);
    expect(quantityValue("http")).toBeUndefined();
  });
});

describe("desired hash", () => {
  const obj: { metadata: { name: string; annotations: Record<string, string> }; [k: string]: unknown } = { apiVersion: "v1", kind: "Service", metadata: { name: "s", annotations: { "chbackup.dev/definition": "a/b" } }, spec: { ports: [{ port: 1 }] } };
  it("is the SHA-256 of the canonical object: key order does not matter, every value does", () => {
    expect(canonicalJson({ b: 1, a: [{ d: 2, c: undefined }] })).toBe('{"a":[{"d":2}],"b":1}');
    const reordered = { spec: { ports: [{ port: 1 }] }, metadata: { annotations: { "chbackup.dev/definition": "a/b" }, name: "s" }, kind: "Service", apiVersion: "v1" };
    expect(desiredHash(reordered)).toBe(desiredHash(obj));
    expect(desiredHash(obj)).toMatch(/^[0-9a-f]{64}$/);
    const changed: typeof obj = { ...obj, spec: { ports: [{ port: 2 }] } };
    expect(desiredHash(changed)).not.toBe(desiredHash(obj));
    // A removed field changes it too: that is how a removal reaches the live object.
    const removed: typeof obj = { ...obj, spec: {} };
    expect(desiredHash(removed)).not.toBe(desiredHash(obj));
  });
  it("is stamped as an annotation, without counting itself", () => {
    const stamped = withDesiredHash(obj);
    expect(stamped.metadata.annotations).toEqual({ "chbackup.dev/definition": "a/b", "chbackup.dev/desired-hash": desiredHash(obj) });
    expect(desiredHash(stamped)).toBe(desiredHash(obj));
    expect(obj.metadata.annotations).toEqual({ "chbackup.dev/definition": "a/b" });
  });
});
