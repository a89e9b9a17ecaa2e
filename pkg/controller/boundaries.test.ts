// Package boundaries, read from the import statements of every non-test source file under pkg/
// and cmd/: the controller side (cmd/backup-controller, pkg/controller and everything it imports)
// reaches nothing of the runner, the engines or the storage, and no two packages import each
// other, directly or through others.
import { readFileSync, readdirSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    if (statSync(p).isDirectory()) return sources(p);
    return p.endsWith(".ts") && !p.endsWith(".test.ts") && !p.endsWith(".d.ts") ? [p] : [];
  });
}

/** "pkg/controller", "cmd/backup-controller": the package of a file (its first two path segments). */
const packageOf = (file: string) => relative(root, file).split("/").slice(0, 2).join("/");

/** Relative imports and re-exports of a file, as files. */
function importsOf(file: string): string[] {
  const text = readFileSync(file, "utf8");
  const out: string[] = [];
  for (const m of text.matchAll(/^\s*(?:import|export)\s[^;]*?from\s+"(\.[^"]+)"/gms)) out.push(resolve(dirname(file), m[1]!));
  for (const m of text.matchAll(/^\s*import\s+"(\.[^"]+)"/gm)) out.push(resolve(dirname(file), m[1]!));
  return out;
}

const files = [...sources(join(root, "pkg")), ...sources(join(root, "cmd"))];
const fileEdges = new Map(files.map((f) => [f, importsOf(f)]));
const packageEdges = new Map<string, Set<string>>();
for (const [f, deps] of fileEdges) {
  const from = packageOf(f);
  if (!packageEdges.has(from)) packageEdges.set(from, new Set());
  for (const d of deps) if (packageOf(d) !== from) packageEdges.get(from)!.add(packageOf(d));
}

/** Every file reached from `start` through imports. */
function reach(start: string[]): Set<string> {
  const seen = new Set<string>();
  const todo = [...start];
  while (todo.length) {
    const f = todo.pop()!;
    if (seen.has(f)) continue;
    seen.add(f);
    todo.push(...(fileEdges.get(f) ?? []));
  }
  return seen;
}

describe("package boundaries", () => {
  it("the controller side reaches nothing of pkg/runner, pkg/backupengine or pkg/storage", () => {
    const start = files.filter((f) => ["cmd/backup-controller", "pkg/controller", "pkg/deploy", "pkg/apis"].includes(packageOf(f)));
    expect(start.length).toBeGreaterThan(10);
    const reached = [...new Set([...reach(start)].map(packageOf))].sort();
    expect(reached.filter((p) => ["pkg/runner", "pkg/backupengine", "pkg/storage", "cmd/backup-runner"].includes(p))).toEqual([]);
    expect(reached).toContain("pkg/common");
  });

  it("no import cycle between packages", () => {
    const cycles: string[] = [];
    for (const from of packageEdges.keys()) {
      // A path from one of `from`'s dependencies back to `from`.
      const seen = new Set<string>();
      const todo = [...(packageEdges.get(from) ?? [])].map((p) => [from, p]);
      while (todo.length) {
        const path = todo.pop()!;
        const last = path.at(-1)!;
        if (last === from) {
          cycles.push(path.join(" → "));
          break;
        }
        if (seen.has(last)) continue;
        seen.add(last);
        for (const next of packageEdges.get(last) ?? []) todo.push([...path, next]);
      }
    }
    expect(cycles).toEqual([]);
  });

  it("pkg/common imports no other package of the repository", () => {
    expect([...(packageEdges.get("pkg/common") ?? [])]).toEqual([]);
  });
});
