import { describe, expect, it } from "vitest";
import { parseControllerCommand } from "./cli.ts";
import { SettingsError } from "./settings.ts";

describe("controller command line", () => {
  it("reads the environment, flags win, and defaults fill the rest", () => {
    const c = parseControllerCommand(["--workers", "8"], { CONTROLLER_NAMESPACE: "chbackup-system", RUNNER_IMAGE: "img:1", IMAGE_PULL_SECRETS: "a, b", WORKERS: "2", POD_NAME: "ctrl-0" }, "host");
    expect(c.settings).toMatchObject({
      namespace: "chbackup-system",
      runnerImage: "img:1",
      imagePullSecrets: ["a", "b"],
      workers: 8,
      resyncSeconds: 300,
      leaderElection: { enabled: true, identity: "ctrl-0", leaseName: "chbackup-controller" },
      runnerDefaults: { storageSize: "1Gi" },
    });
  });
  it("lists every problem at once", () => {
    let err: unknown;
    try {
      parseControllerCommand(["--resync-seconds", "soon", "--leader-election", "maybe", "--runner-defaults", "{"], {}, "host");
    } catch (e: unknown) {
      err = e;
    }
    expect(err).toBeInstanceOf(SettingsError);
    const problems = (err as SettingsError).problems.join("\n");
    for (const p of ["resyncSeconds", "leaderElection.enabled", "runnerDefaults", "namespace", "runnerImage"]) expect(problems).toContain(p);
  });
  it("reads the cache sync timeout from its flag or CACHE_SYNC_TIMEOUT_SECONDS (default 300)", () => {
    const env = { CONTROLLER_NAMESPACE: "n", RUNNER_IMAGE: "i" };
    expect(parseControllerCommand([], env, "h").settings?.cacheSyncTimeoutSeconds).toBe(300);
    expect(parseControllerCommand([], { ...env, CACHE_SYNC_TIMEOUT_SECONDS: "120" }, "h").settings?.cacheSyncTimeoutSeconds).toBe(120);
    expect(parseControllerCommand(["--cache-sync-timeout-seconds", "60"], { ...env, CACHE_SYNC_TIMEOUT_SECONDS: "120" }, "h").settings?.cacheSyncTimeoutSeconds).toBe(60);
    expect(() => parseControllerCommand(["--cache-sync-timeout-seconds", "0"], env, "h")).toThrow(/cacheSyncTimeoutSeconds/);
  });
  it("rejects unknown flags", () => {
    expect(() => parseControllerCommand(["--nope"], {}, "h")).toThrow(SettingsError);
  });
});
