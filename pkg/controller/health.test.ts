// RunnerReady and BackupHealthy from what the controller knows.
import { describe, expect, it } from "vitest";
import { backupHealthy, formatDuration, parseDuration, runnerReady, ScheduleIntervals, staleThresholdMs, type BackupHealthInput } from "./health.ts";

const H = 3_600_000;
const now = new Date("2026-12-01T12:00:00Z");

describe("durations", () => {
  it("parses d, h, m, s in order", () => {
    expect(parseDuration("26h")).toBe(26 * H);
    expect(parseDuration("1d12h")).toBe(36 * H);
    expect(parseDuration("90m")).toBe(90 * 60_000);
    expect(parseDuration("45s")).toBe(45_000);
    expect(parseDuration("1h30m15s")).toBe(H + 30 * 60_000 + 15_000);
    expect(parseDuration("")).toBeUndefined();
    expect(parseDuration("1.5h")).toBeUndefined();
    expect(parseDuration("h")).toBeUndefined();
    expect(parseDuration("30m1h")).toBeUndefined();
  });
  it("formats", () => {
    expect(formatDuration(26 * H)).toBe("1d 2h");
    expect(formatDuration(90_000)).toBe("1m");
    expect(formatDuration(5000)).toBe("5s");
  });
});

describe("ScheduleIntervals", () => {
  const si = new ScheduleIntervals();
  it("takes the longest gap between runs", () => {
    expect(si.intervalMs("0 * * * *", "UTC", now)).toBe(H);
    expect(si.intervalMs("*/15 * * * *", "UTC", now)).toBe(15 * 60_000);
    expect(si.intervalMs("0 2 * * *", "Europe/Berlin", now)).toBe(24 * H);
    // Weekdays only: the weekend gap of three days.
    expect(si.intervalMs("0 2 * * 1-5", "UTC", now)).toBe(72 * H);
    expect(si.intervalMs("*/30 * * * * *", "UTC", now)).toBe(30_000);
  });
  it("a yearly schedule counts as 366 days", () => {
    expect(si.intervalMs("0 0 1 1 *", "UTC", now)).toBe(366 * 24 * H);
  });
});

describe("runnerReady", () => {
  const ok = { ok: true as const, readiness: { ready: true, checks: { runner: "ok", storage: "ok", engine: "ok" } } };
  it("pod first, then the API, then storage and ClickHouse", () => {
    expect(runnerReady({ readyReplicas: 0, poll: ok }).reason).toBe("PodNotReady");
    expect(runnerReady({ readyReplicas: undefined, poll: { ok: false, error: "ECONNREFUSED" } })).toMatchObject({ status: "False", reason: "PodNotReady" });
    expect(runnerReady({ readyReplicas: 1, poll: { ok: false, error: "ECONNREFUSED" } })).toMatchObject({ status: "False", reason: "RunnerUnreachable" });
    expect(runnerReady({ readyReplicas: 1, poll: { ok: true, readiness: { ready: false, checks: { runner: "ok", storage: "NoSuchBucket", engine: "ok" } } } })).toMatchObject({ reason: "StorageUnavailable" });
    expect(runnerReady({ readyReplicas: 1, poll: { ok: true, readiness: { ready: false, checks: { runner: "ok", storage: "ok", engine: "Authentication failed" } } } })).toMatchObject({
      reason: "ClickHouseUnavailable",
      message: expect.stringContaining("Authentication failed"),
    });
    expect(runnerReady({ readyReplicas: 1, poll: ok })).toMatchObject({ status: "True", reason: "RunnerReady" });
  });
});

describe("backupHealthy", () => {
  const base: BackupHealthInput = { now, mode: "scheduled", suspended: false, intervalMs: H, tolerance: 2, createdAt: new Date("2026-11-01T00:00:00Z") };
  const ago = (ms: number) => new Date(now.getTime() - ms);
  it("True while the newest backup is within tolerance × interval, or spec.staleAfter", () => {
    expect(backupHealthy({ ...base, newestBackup: ago(90 * 60_000) })).toMatchObject({ status: "True", reason: "RecentBackup" });
    expect(backupHealthy({ ...base, newestBackup: ago(3 * H) })).toMatchObject({ status: "False", reason: "NoRecentBackup" });
    expect(backupHealthy({ ...base, staleAfterMs: 4 * H, newestBackup: ago(3 * H) })).toMatchObject({ status: "True" });
    expect(staleThresholdMs({ intervalMs: H, tolerance: 2 })).toBe(2 * H);
  });
  it("failing attempts: BackupsFailing once stale or when there is no backup at all", () => {
    const failing = { consecutive: 3, since: "2026-12-01T11:00:00Z", message: "authentication failed" };
    expect(backupHealthy({ ...base, failing })).toMatchObject({ status: "False", reason: "BackupsFailing", message: expect.stringContaining("3 backup attempt(s) in a row failed") });
    expect(backupHealthy({ ...base, failing, newestBackup: ago(3 * H) })?.reason).toBe("BackupsFailing");
    // A runner that cannot reach ClickHouse cannot back up at all.
    expect(backupHealthy({ ...base, blocked: "the runner cannot reach ClickHouse: Authentication failed" })).toMatchObject({ reason: "BackupsFailing", message: expect.stringContaining("Authentication failed") });
    expect(backupHealthy({ ...base, blocked: "x", newestBackup: ago(30 * 60_000) })?.status).toBe("True");
    // One failure while the newest backup is still recent: still healthy.
    expect(backupHealthy({ ...base, failing, newestBackup: ago(30 * 60_000) })?.status).toBe("True");
  });
  it("Suspended first; unreachable: NoRecentBackup when the last known backup is stale, else RunnerUnreachable", () => {
    expect(backupHealthy({ ...base, suspended: true, newestBackup: ago(1000) })).toMatchObject({ status: "False", reason: "Suspended" });
    const unreachable = { since: "2026-12-01T09:00:00Z", error: "ECONNREFUSED" };
    expect(backupHealthy({ ...base, unreachable, newestBackup: ago(3 * H) })).toMatchObject({ reason: "NoRecentBackup", message: expect.stringContaining("last known state") });
    expect(backupHealthy({ ...base, unreachable, newestBackup: ago(30 * 60_000) })).toMatchObject({ status: "False", reason: "RunnerUnreachable" });
  });
  it("no backup yet: Unknown until the threshold has passed since creation (also while the runner is not up); nothing in single mode", () => {
    expect(backupHealthy({ ...base, createdAt: ago(60_000) })).toMatchObject({ status: "Unknown", reason: "AwaitingFirstBackup" });
    expect(backupHealthy({ ...base, createdAt: ago(60_000), unreachable: { since: "2026-12-01T11:59:00Z", error: "ECONNREFUSED" } })?.reason).toBe("AwaitingFirstBackup");
    expect(backupHealthy({ ...base, createdAt: ago(3 * H) })).toMatchObject({ status: "False", reason: "NoRecentBackup" });
    expect(backupHealthy({ ...base, mode: "single" })).toBeUndefined();
  });
  it("messages hold absolute times only, so a poll that learns nothing new writes nothing", () => {
    const a = backupHealthy({ ...base, newestBackup: ago(30 * 60_000) })!;
    const b = backupHealthy({ ...base, now: new Date(now.getTime() + 20 * 60_000), newestBackup: ago(30 * 60_000) })!;
    expect(a.message).toBe(b.message);
  });
});
