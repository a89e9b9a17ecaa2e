import { defineConfig } from "vitest/config";

// Two projects: `unit` (pure logic, beside the code) and `integration`
// (real servers started by test/env as local processes on 127.0.0.1).
// `npm test` runs both; `npm run test:unit` / `npm run test:integration` run one.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: "unit",
          include: ["pkg/**/*.test.ts", "cmd/**/*.test.ts", "scripts/**/*.test.ts"],
          environment: "node",
          // Some unit tests take 2-3 s (a TypeScript program over the SDK's types, TLS, a socket timeout):
          // the default 5 s leaves too little room on a busy 2-core machine.
          testTimeout: 30_000,
        },
      },
      {
        test: {
          name: "integration",
          include: ["test/**/*.test.ts"],
          environment: "node",
          // Says once which test servers are missing and how to install them (scripts/setup.sh --test).
          globalSetup: ["test/env/check-tools.ts"],
          // Real servers: generous timeouts, and few files at once on a 2-core machine.
          testTimeout: 180_000,
          hookTimeout: 180_000,
          maxWorkers: 2,
          pool: "forks",
        },
      },
    ],
  },
});
