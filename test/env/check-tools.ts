// vitest globalSetup of the integration project: says once, before any test
// runs, which test servers are missing and which command installs them
// (`bash scripts/setup.sh --test`; the demo setup leaves them out). The tests
// that need a missing server still fail, each with the same message; tests
// that need none of them (the demo's, chDB's) run as usual.
import { missingTestTools } from "./tools.ts";

export default function checkTestTools(): void {
  const missing = missingTestTools();
  if (missing.length === 0) return;
  process.stderr.write(
    `\n[test] ${missing.length} test server(s) missing; the tests that start them will fail. Run \`bash scripts/setup.sh --test\` once.\n` +
      missing.map((m) => `[test]   ${m}\n`).join("") +
      "\n",
  );
}
