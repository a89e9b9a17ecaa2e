// An ObjectStore wrapper whose operations can be held or failed from a test:
// each hook runs before the real operation and may wait (a gate) or throw.
// Everything else is the wrapped store's own (a Proxy, so new store members pass through).
import type { ObjectStore } from "../../pkg/storage/index.ts";

export interface StoreHooks {
  put?: (key: string) => Promise<void> | void;
  get?: (key: string) => Promise<void> | void;
  delete?: (keys: readonly string[]) => Promise<void> | void;
}

export type HookedStore = ObjectStore & {
  readonly inner: ObjectStore;
  /** Set or replace hooks at any time. */
  readonly hooks: StoreHooks;
  /** Every key read with get, in order. */
  readonly gets: string[];
};

export function hookStore(inner: ObjectStore): HookedStore {
  const hooks: StoreHooks = {};
  const gets: string[] = [];
  const own: Record<string, unknown> = {
    inner,
    hooks,
    gets,
    put: async (key: string, ...rest: unknown[]) => {
      await hooks.put?.(key);
      return (inner.put as (...a: unknown[]) => unknown)(key, ...rest);
    },
    get: async (key: string, ...rest: unknown[]) => {
      gets.push(key);
      await hooks.get?.(key);
      return (inner.get as (...a: unknown[]) => unknown)(key, ...rest);
    },
    delete: async (keys: readonly string[]) => {
      await hooks.delete?.(keys);
      return inner.delete(keys);
    },
  };
  return new Proxy(inner, {
    get(target, prop) {
      if (typeof prop === "string" && prop in own) return own[prop];
      const v: unknown = Reflect.get(target, prop, target);
      return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  }) as HookedStore;
}

/** A gate: `reached` resolves when something waits on it; `open()` lets it through. */
export function heldGate(): { wait: () => Promise<void>; reached: Promise<void>; open: () => void } {
  let open!: () => void;
  let reach!: () => void;
  const promise = new Promise<void>((r) => (open = r));
  const reached = new Promise<void>((r) => (reach = r));
  return {
    wait: () => {
      reach();
      return promise;
    },
    reached,
    open,
  };
}
