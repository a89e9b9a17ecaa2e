// When must a desired object be applied? Two questions, both answered
// without a write:
//
// 1. Did the desired object change since the controller last applied it?
//    Every desired object carries the SHA-256 of its complete content in
//    the annotation chbackup.dev/desired-hash. A live object with another
//    hash (or none) gets the whole desired object by server-side apply, and
//    the apply removes every field the controller's field manager set
//    before and no longer sends (a removed nodeSelector, toleration, map
//    key or resource limit).
// 2. Did someone else change a field the controller sets? `holds` checks
//    that every desired value is present in the live object. The server
//    adds defaults and other managers add their own fields and list
//    entries: those are not drift, so a list holds when the desired entries
//    appear in it in order (with others in between), and a quantity holds
//    when it is the same amount however the server wrote it (0.5 = 500m).
import { createHash } from "node:crypto";
import { ANNOTATIONS } from "./contract.ts";

/** JSON with object keys sorted at every level: equal objects give equal text. */
export function canonicalJson(v: unknown): string {
  if (v === null || typeof v !== "object") return JSON.stringify(v) ?? "null";
  if (Array.isArray(v)) return `[${v.map((x) => (x === undefined ? "null" : canonicalJson(x))).join(",")}]`;
  const entries = Object.entries(v as Record<string, unknown>)
    .filter(([, x]) => x !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, x]) => `${JSON.stringify(k)}:${canonicalJson(x)}`).join(",")}}`;
}

interface Annotated {
  metadata: { annotations?: Record<string, string> | undefined };
}

/** SHA-256 (hex) of the complete object, without its own desired-hash annotation. */
export function desiredHash(obj: Annotated): string {
  const { [ANNOTATIONS.desiredHash]: _own, ...annotations } = obj.metadata.annotations ?? {};
  const bare = { ...obj, metadata: { ...obj.metadata, annotations } };
  return createHash("sha256").update(canonicalJson(bare)).digest("hex");
}

/** The object with its desired-hash annotation set (a copy; the input is not changed). */
export function withDesiredHash<T extends Annotated>(obj: T): T {
  return { ...obj, metadata: { ...obj.metadata, annotations: { ...obj.metadata.annotations, [ANNOTATIONS.desiredHash]: desiredHash(obj) } } };
}

const QUANTITY = /^([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$/;
const SUFFIX: Record<string, number> = {
  n: 1e-9, u: 1e-6, m: 1e-3, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18,
  Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60,
};

/** A Kubernetes quantity as a number ("500m" → 0.5, "1Gi" → 1073741824); undefined if it is none. */
export function quantityValue(s: string): number | undefined {
  const m = QUANTITY.exec(s);
  if (!m) return undefined;
  return Number(m[1]) * (m[2] ? SUFFIX[m[2]]! : 1);
}

function sameQuantity(a: string, b: string): boolean {
  const x = quantityValue(a);
  const y = quantityValue(b);
  return x !== undefined && y !== undefined && Math.abs(x - y) <= 1e-9 * Math.max(Math.abs(x), Math.abs(y));
}

/** Keys under which the values are quantities (container resources, claim requests). */
const QUANTITY_PARENTS = new Set(["requests", "limits"]);
const IN_QUANTITIES = "\0quantities";

function isEmpty(v: unknown): boolean {
  return (Array.isArray(v) && v.length === 0) || (v !== null && typeof v === "object" && !Array.isArray(v) && Object.keys(v).length === 0);
}

/**
 * True when the live object holds every desired value: fields the server or other managers added
 * are ignored; a desired list must appear in the live list in order (other entries may sit between
 * them); an empty desired map or list is held by an absent one; quantities compare by amount.
 */
export function holds(desired: unknown, live: unknown, parentKey = ""): boolean {
  if (desired === undefined) return true;
  if (desired === null || typeof desired !== "object") {
    if (desired === live) return true;
    return parentKey === IN_QUANTITIES && typeof desired === "string" && typeof live === "string" && sameQuantity(desired, live);
  }
  if (live === undefined && isEmpty(desired)) return true;
  if (Array.isArray(desired)) {
    if (!Array.isArray(live)) return false;
    let i = 0;
    for (const d of desired) {
      while (i < live.length && !holds(d, live[i], parentKey)) i++;
      if (i === live.length) return false;
      i++;
    }
    return true;
  }
  if (live === null || typeof live !== "object" || Array.isArray(live)) return false;
  const l = live as Record<string, unknown>;
  for (const [k, v] of Object.entries(desired as Record<string, unknown>)) {
    if (!holds(v, l[k], QUANTITY_PARENTS.has(parentKey) ? IN_QUANTITIES : k)) return false;
  }
  return true;
}

/** The paths where the live object does not hold the desired values (for logs; values are never reported). */
export function differingPaths(desired: unknown, live: unknown, path = "", out: string[] = [], limit = 10): string[] {
  if (out.length >= limit || holds(desired, live, path.split(".").at(-1) ?? "")) return out;
  if (desired === null || typeof desired !== "object" || Array.isArray(desired) || live === null || typeof live !== "object" || Array.isArray(live)) {
    out.push(path || "(root)");
    return out;
  }
  for (const [k, v] of Object.entries(desired as Record<string, unknown>)) {
    differingPaths(v, (live as Record<string, unknown>)[k], path ? `${path}.${k}` : k, out, limit);
  }
  return out;
}
