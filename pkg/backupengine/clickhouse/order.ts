// The order in which a restore creates objects: storage tables first, then
// tables over other tables (Distributed, Merge, Buffer), then views and
// materialized views, dictionaries last - and within that, every object after
// the objects its DDL refers to (a topological sort; cycles fall back to the
// category order).

export const CATEGORY_TABLE = 0;
export const CATEGORY_OVER_TABLE = 1;
export const CATEGORY_VIEW = 2;
export const CATEGORY_DICTIONARY = 3;

export function restoreCategory(engine: string): number {
  if (engine === "Distributed" || engine === "Merge" || engine === "Buffer") return CATEGORY_OVER_TABLE;
  if (engine === "View" || engine === "MaterializedView" || engine === "LiveView" || engine === "WindowView") return CATEGORY_VIEW;
  if (engine === "Dictionary") return CATEGORY_DICTIONARY;
  return CATEGORY_TABLE;
}

export interface OrderItem {
  /** "db.name" */
  key: string;
  category: number;
  /** "db.name" of the objects this one refers to (unknown names are ignored). */
  refs: Iterable<string>;
}

/** Stable topological order: dependencies first, then lower category, then input order. */
export function dependencyOrder<T extends OrderItem>(items: readonly T[]): T[] {
  const index = new Map<string, number>();
  items.forEach((it, i) => index.set(it.key, i));
  const deps: Set<number>[] = items.map((it, i) => {
    const s = new Set<number>();
    for (const r of it.refs) {
      const j = index.get(r);
      if (j !== undefined && j !== i) s.add(j);
    }
    return s;
  });
  const done = new Set<number>();
  const out: T[] = [];
  const better = (a: number, b: number) => {
    const ia = items[a] as T;
    const ib = items[b] as T;
    return ia.category !== ib.category ? ia.category < ib.category : a < b;
  };
  while (out.length < items.length) {
    let pick = -1;
    for (let i = 0; i < items.length; i++) {
      if (done.has(i)) continue;
      const ready = [...(deps[i] as Set<number>)].every((d) => done.has(d));
      if (ready && (pick < 0 || better(i, pick))) pick = i;
    }
    if (pick < 0) {
      // a cycle: take the best remaining item regardless of its dependencies
      for (let i = 0; i < items.length; i++) if (!done.has(i) && (pick < 0 || better(i, pick))) pick = i;
    }
    done.add(pick);
    out.push(items[pick] as T);
  }
  return out;
}
