// Reads a kustomize base the way `kustomize build` does for the features our
// generated bases use (a `resources` list of files and directories, nothing
// else), so tests can apply the base without a kustomize binary. Any other
// kustomization field is an error here, not silently ignored.
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { parseAllDocuments } from "yaml";
import type { Obj } from "./manifests.ts";

const SUPPORTED = new Set(["apiVersion", "kind", "resources"]);

/** The objects of the kustomization in `dir`, in resource order. */
export function loadKustomization(dir: string): Obj[] {
  const k = parseYamlDocs(readFileSync(join(dir, "kustomization.yaml"), "utf8"))[0];
  if (!k || k["kind"] !== "Kustomization") throw new Error(`${dir}/kustomization.yaml: not a Kustomization`);
  for (const key of Object.keys(k)) if (!SUPPORTED.has(key)) throw new Error(`${dir}/kustomization.yaml: field ${key} is not supported by this loader`);
  const out: Obj[] = [];
  for (const r of (k["resources"] ?? []) as string[]) {
    const path = join(dir, r);
    if (statSync(path).isDirectory()) out.push(...loadKustomization(path));
    else out.push(...parseYamlDocs(readFileSync(path, "utf8")));
  }
  return out;
}

/** The non-empty documents of a multi-document YAML text. */
export function parseYamlDocs(text: string): Obj[] {
  return parseAllDocuments(text).flatMap((d) => {
    if (d.errors.length) throw d.errors[0];
    const v = d.toJS() as unknown;
    return v && typeof v === "object" ? [v as Obj] : [];
  });
}
