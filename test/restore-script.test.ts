// examples/restore.sh end to end against a real runner API server (real
// Runner and filesystem store, fake engine), with a stand-in `kubectl` that
// answers the definition's status and the runner Secret's token, and whose
// port-forward is the API server already listening on LOCAL_PORT.
import { existsSync, readFileSync, writeFileSync, chmodSync } from "node:fs";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RunnerMetrics } from "../pkg/runner/api/metrics.ts";
import { startApiServer, type ApiServer } from "../pkg/runner/api/server.ts";
import { createLogger } from "../pkg/runner/logging.ts";
import { fakeRunner, type FakeRunner } from "./helpers/api-fake.ts";
import { apiClient, pollJson } from "./helpers/api-http.ts";
import { makeTempDir, removeDir } from "./env/index.ts";
import { repoRoot } from "./env/tools.ts";

const TOKEN = "restore-script-token-0123456789";
const hasCurl = existsSync("/usr/bin/curl") || existsSync("/usr/local/bin/curl");

const FAKE_KUBECTL = `#!/usr/bin/env bash
echo "$*" >> "$FAKE_DIR/calls"
case "$*" in
  "-n shop get backupdefinition orders -o jsonpath={.status.runner.namespace} {.status.runner.service} {.status.runner.secret}"*)
    echo "chbackup-system runner-shop-orders runner-shop-orders-config" ;;
  "-n shop get backupdefinition pending -o jsonpath="*)
    echo "" ;;
  "-n chbackup-system get secret runner-shop-orders-config -o jsonpath={.data.token}")
    printf %s "$(printf %s "$FAKE_TOKEN" | base64)" ;;
  "-n chbackup-system port-forward svc/runner-shop-orders $LOCAL_PORT:8080")
    echo $$ > "$FAKE_DIR/port-forward.pid"
    exec sleep 60 ;;
  *) echo "unexpected: kubectl $*" >&2; exit 1 ;;
esac
`;

describe.skipIf(!hasCurl)("examples/restore.sh", () => {
  let fr: FakeRunner;
  let server: ApiServer;
  let dir: string;
  const logger = createLogger({ silent: true });

  const run = (args: string[], env: Record<string, string> = {}) =>
    execa("bash", [join(repoRoot, "examples", "restore.sh"), ...args], {
      reject: false,
      env: { KUBECTL: join(dir, "kubectl"), LOCAL_PORT: String(server.port), FAKE_DIR: dir, FAKE_TOKEN: TOKEN, ...env },
      timeout: 60_000,
    });
  // The script's trap kills its port-forward on exit; the process may linger a moment, or stay a zombie
  // until it is reaped (its parent, the script, is gone), which counts as gone.
  const portForwardGone = async () => {
    const pid = Number(readFileSync(join(dir, "port-forward.pid"), "utf8"));
    const gone = () => {
      try {
        process.kill(pid, 0);
      } catch {
        return true;
      }
      try {
        return /^\d+ \(.*\) Z /.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
      } catch {
        return true;
      }
    };
    await expect.poll(gone, { timeout: 15_000, interval: 50 }).toBe(true);
  };

  beforeAll(async () => {
    dir = await makeTempDir("restore-script");
    writeFileSync(join(dir, "kubectl"), FAKE_KUBECTL);
    chmodSync(join(dir, "kubectl"), 0o755);
    fr = await fakeRunner({ token: TOKEN, logger });
    server = await startApiServer({
      service: { runner: fr.runner, ready: true, nextRun: () => undefined },
      metrics: new RunnerMetrics({ defaultMetrics: false }),
      logger,
      token: TOKEN,
      host: "127.0.0.1",
      port: 0,
    });
    const api = apiClient(server.url, TOKEN);
    const started = await api.post("/api/v1/backups", undefined);
    expect(started.status).toBe(202);
    await pollJson(() => api.get(String(started.headers["location"])), (j) => j.operation.state !== "running", 10_000, 20);
  });
  afterAll(async () => {
    await server?.close(1000);
    await fr?.cleanup();
    if (dir) await removeDir(dir);
  });

  it("restores a database under a new name through the runner Service, with the token from the runner Secret", async () => {
    const r = await run(["shop", "orders", "latest", "db1", "db1_restored"]);
    expect(r.stderr).toBe("");
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toMatch(/== backups, newest first\n\{"backups":\[\{"id":"/);
    expect(r.stdout).toMatch(/== restore [0-9a-f-]+ succeeded$/);
    // The engine gets the options; "latest" was resolved by the runner to the backup it restores.
    expect(fr.engine.restores.at(-1)).toEqual({ databases: ["db1"], renameDatabases: { db1: "db1_restored" }, existingTables: "fail" });
    expect(readFileSync(join(dir, "calls"), "utf8").split("\n").filter(Boolean).map((l) => l.split(" ").slice(0, 4).join(" "))).toEqual([
      "-n shop get backupdefinition",
      "-n chbackup-system get secret",
      "-n chbackup-system port-forward svc/runner-shop-orders",
    ]);
    await portForwardGone();
  });

  it("exits non-zero when the restore fails, and when the definition has no runner yet", async () => {
    fr.engine.restoreError = "restore went wrong";
    try {
      const r = await run(["shop", "orders"], { EXISTING_TABLES: "drop" });
      expect(r.exitCode).toBe(1);
      expect(r.stdout).toContain("restore went wrong");
      expect(r.stdout).toMatch(/== restore [0-9a-f-]+ failed$/);
      expect(fr.engine.restores.at(-1)).toEqual({ existingTables: "drop" });
      await portForwardGone();
    } finally {
      fr.engine.restoreError = undefined;
    }
    const pending = await run(["shop", "pending"]);
    expect(pending.exitCode).toBe(1);
    expect(pending.stderr).toContain("backupdefinition shop/pending has no runner yet");
    expect((await run(["shop"])).exitCode).toBe(2);
    expect((await run(["shop", "orders", "latest", "", "x"])).stderr).toContain("TARGET_DATABASE needs DATABASE");
  });
});
