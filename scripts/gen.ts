// npm run gen: writes every generated file (CRDs) from the zod schemas.
import { writeFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { generatedFiles } from "../pkg/deploy/gen.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
for (const [path, content] of generatedFiles()) {
  mkdirSync(dirname(join(root, path)), { recursive: true });
  writeFileSync(join(root, path), content);
  console.log(`wrote ${path}`);
}
