// Every generated file: the CRDs and the reference (pkg/apis, from the zod schemas), the kustomize
// base and the Helm chart (pkg/deploy). `npm run gen` writes them; gen.test.ts checks them.
import { crdFiles, referenceDoc } from "../apis/gen.ts";
import { deployFiles } from "./files.ts";

/** Path (relative to the repo root) → content of every generated file. */
export function generatedFiles(): Map<string, string> {
  const files = new Map<string, string>();
  const crds = crdFiles();
  for (const [name, text] of crds) files.set(`deploy/crds/${name}`, text);
  files.set("docs/reference.md", referenceDoc());
  // The kustomize base and the Helm chart, with the same CRD files.
  for (const [path, text] of deployFiles(crds)) files.set(path, text);
  return files;
}
