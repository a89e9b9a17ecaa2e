// The README's first command must keep working: npm run demo ends with OK.
import { join } from "node:path";
import { execa } from "execa";
import { describe, expect, it } from "vitest";
import { repoRoot } from "./env/index.ts";

describe("npm run demo", () => {
  it("backs up and restores on embedded defaults and verifies the data", async () => {
    const r = await execa(process.execPath, [join(repoRoot, "scripts", "demo.ts")], { reject: false, cwd: repoRoot });
    expect(r.stderr).toBe("");
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toContain("OK: restored data equals the source");
    expect(r.stdout).toMatch(/restored: demo\.orders has 1000000 rows/);
  });
});
