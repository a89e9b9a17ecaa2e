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
  it("reads the runner poll settings: period, URL template, health tolerance", () => {
    const env = { CONTROLLER_NAMESPACE: "n", RUNNER_IMAGE: "i" };
    const d = parseControllerCommand([], env, "h").settings!;
    expect([d.runnerStatusSeconds, d.runnerUrlTemplate, d.backupHealthTolerance]).toEqual([60, undefined, 2]);
    const s = parseControllerCommand(["--runner-status-seconds", "5", "--backup-health-tolerance", "1.5"], { ...env, RUNNER_URL_TEMPLATE: "http://127.0.0.1:9/{service}" }, "h").settings!;
    expect([s.runnerStatusSeconds, s.runnerUrlTemplate, s.backupHealthTolerance]).toEqual([5, "http://127.0.0.1:9/{service}", 1.5]);
    expect(() => parseControllerCommand(["--runner-url-template", "http://x:8080"], env, "h")).toThrow(/runnerUrlTemplate/);
    expect(() => parseControllerCommand(["--backup-health-tolerance", "0.5"], env, "h")).toThrow(/backupHealthTolerance/);
    expect(() => parseControllerCommand(["--backup-health-tolerance", "two"], env, "h")).toThrow(/backupHealthTolerance/);
  });
  it("rejects unknown flags", () => {
    expect(() => parseControllerCommand(["--nope"], {}, "h")).toThrow(SettingsError);
  });
});
