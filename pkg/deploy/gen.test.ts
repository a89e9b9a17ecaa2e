import { readFileSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { generatedFiles } from "./gen.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

describe("generated files", () => {
  for (const [path, content] of generatedFiles()) {
    it(`${path} is up to date (run npm run gen)`, () => {
      expect(readFileSync(join(root, path), "utf8")).toBe(content);
    });
  }
});
