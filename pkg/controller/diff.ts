// Does the live object already hold everything we want? The server adds
// defaults and other managers' fields, so "equal" is too strict: every field
// we set must be present with the same value (arrays element by element and
// of the same length, since we own those lists whole).

export function isSubset(desired: unknown, live: unknown): boolean {
  if (desired === undefined) return true;
  if (desired === null || typeof desired !== "object") return desired === live;
  if (Array.isArray(desired)) {
    if (!Array.isArray(live) || live.length !== desired.length) return false;
    return desired.every((d, i) => isSubset(d, live[i]));
  }
  if (live === null || typeof live !== "object" || Array.isArray(live)) return false;
  const l = live as Record<string, unknown>;
  for (const [k, v] of Object.entries(desired as Record<string, unknown>)) {
    if (!isSubset(v, l[k])) return false;
  }
  return true;
}

/** The paths where live differs from desired (for logs; values are never reported). */
export function differingPaths(desired: unknown, live: unknown, path = "", out: string[] = [], limit = 10): string[] {
  if (out.length >= limit || desired === undefined) return out;
  if (desired === null || typeof desired !== "object") {
    if (desired !== live) out.push(path || "(root)");
    return out;
  }
  if (Array.isArray(desired)) {
    if (!Array.isArray(live) || live.length !== desired.length) out.push(path || "(root)");
    else desired.forEach((d, i) => differingPaths(d, live[i], `${path}[${i}]`, out, limit));
    return out;
  }
  if (live === null || typeof live !== "object") {
    out.push(path || "(root)");
    return out;
  }
  for (const [k, v] of Object.entries(desired as Record<string, unknown>)) differingPaths(v, (live as Record<string, unknown>)[k], path ? `${path}.${k}` : k, out, limit);
  return out;
}
