// Status conditions, as the controller writes them on BackupDefinitions and
// StorageLocations: a condition's transition time moves only when its status
// changes, and a list keeps its order (a write that only reordered it would
// be a write for nothing).
import type { Condition } from "../apis/resources.ts";

/** The condition `type` with its new verdict, carrying over `prev`'s transition time while the status stays. */
export function nextCondition(
  prev: Condition | undefined,
  type: string,
  v: { status: Condition["status"]; reason: string; message: string },
  generation: number | undefined,
  now: string,
): Condition {
  return {
    type,
    status: v.status,
    reason: v.reason,
    message: v.message,
    lastTransitionTime: prev && prev.status === v.status ? prev.lastTransitionTime : now,
    ...(generation !== undefined ? { observedGeneration: generation } : {}),
  };
}

/** Sets a condition in place (a new type goes last), so the list's order never changes by itself. */
export function setCondition(list: readonly Condition[] | undefined, c: Condition): Condition[] {
  const out = [...(list ?? [])];
  const i = out.findIndex((x) => x.type === c.type);
  if (i >= 0) out[i] = c;
  else out.push(c);
  return out;
}
