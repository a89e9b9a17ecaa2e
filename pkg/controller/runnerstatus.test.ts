// What the controller reads from a runner's API and mirrors into the definition's status.
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { describe, expect, it } from "vitest";
import { humanBytes, lastAttemptFailed, mirrorFigures, runnerSnapshotFetcher, RunnerUnreachableError, type RunnerStatusAnswer } from "./runnerstatus.ts";

const backups = [
  { id: "20261201T040000Z-aaaaaa", state: "unreadable", endedAt: null },
  { id: "20261201T035000Z-bbbbbb", state: "complete", foreign: true, endedAt: "2026-12-01T03:51:00.123Z", bytes: 999, rows: 9 },
  { id: "20261201T034000Z-cccccc", state: "complete", foreign: false, endedAt: "2026-12-01T03:41:00.456Z", durationMs: 61_400, bytes: 2048, rows: 30 },
  { id: "20261201T024000Z-dddddd", state: "complete", foreign: false, endedAt: "2026-12-01T02:41:00.000Z", durationMs: 1000, bytes: 1024, rows: 10 },
];
const status: RunnerStatusAnswer = {
  ready: true,
  nextRun: "2026-12-01T05:00:00.000Z",
  current: { id: "op-3", kind: "backup", state: "running", startedAt: "2026-12-01T04:00:00.500Z", progress: { phase: "tables", tablesDone: 2, tablesTotal: 5, bytes: 100, rows: 7 } },
  lastSuccess: { backup: { id: "op-1", kind: "backup", state: "succeeded", startedAt: "2026-12-01T03:40:00Z", endedAt: "2026-12-01T03:41:00.456Z" } },
  lastFailure: { backup: { id: "op-2", kind: "backup", state: "failed", startedAt: "2026-12-01T03:45:00Z", endedAt: "2026-12-01T03:45:01.000Z", error: "clickhouse: authentication failed", retryable: false } },
  lastVerified: { backupId: "20261201T034000Z-cccccc", at: "2026-12-01T03:42:00.000Z", ok: true, operationId: "op-9" },
  consecutiveFailures: 1,
};

describe("mirrorFigures", () => {
  it("counts only the runner's own complete backups, newest first, and copies the runner's figures at second precision", () => {
    expect(mirrorFigures({ status, backups })).toEqual({
      lastBackup: { id: "20261201T034000Z-cccccc", time: "2026-12-01T03:41:00Z", durationSeconds: 61, bytes: 2048, rows: 30 },
      lastFailure: { time: "2026-12-01T03:45:01Z", message: "clickhouse: authentication failed", retryable: false },
      consecutiveFailures: 1,
      nextRun: "2026-12-01T05:00:00Z",
      backups: { count: 2, oldest: "2026-12-01T02:41:00Z", newest: "2026-12-01T03:41:00Z", totalBytes: 3072, size: "3.0 KiB" },
      lastVerified: { backupId: "20261201T034000Z-cccccc", time: "2026-12-01T03:42:00Z", ok: true },
      currentOperation: { id: "op-3", kind: "backup", startedAt: "2026-12-01T04:00:00Z", phase: "tables", tablesDone: 2, tablesTotal: 5, bytes: 100, rows: 7 },
    });
  });
  it("an empty catalog: count 0 and no lastBackup; a finished operation is not current", () => {
    const f = mirrorFigures({ status: { consecutiveFailures: 0, current: { ...status.current!, state: "succeeded" } }, backups: [] });
    expect(f).toEqual({ consecutiveFailures: 0, backups: { count: 0, totalBytes: 0, size: "0 B" } });
  });
  it("the newest attempt failed only when the failure is newer than the last success", () => {
    expect(lastAttemptFailed(status)).toBe(true);
    expect(lastAttemptFailed({ ...status, lastSuccess: { backup: { ...status.lastSuccess!.backup!, endedAt: "2026-12-01T03:50:00Z" } } })).toBe(false);
    expect(lastAttemptFailed({ lastFailure: status.lastFailure! })).toBe(true);
    expect(lastAttemptFailed({})).toBe(false);
  });
  it("humanBytes", () => {
    expect(humanBytes(0)).toBe("0 B");
    expect(humanBytes(1536)).toBe("1.5 KiB");
    expect(humanBytes(300 * 1024 ** 3)).toBe("300 GiB");
  });
});

describe("runnerSnapshotFetcher", () => {
  it("reads /readyz without the token (503 carries the failed checks) and the API with it", async () => {
    let ready = true;
    const server = createServer((req, res) => {
      if (req.url === "/readyz") {
        expect(req.headers.authorization).toBeUndefined();
        res.writeHead(ready ? 200 : 503, { "Content-Type": "application/json" });
        return res.end(JSON.stringify({ ready, checks: { runner: "ok", storage: ready ? "ok" : "bucket not found", engine: "ok" } }));
      }
      expect(req.headers.authorization).toBe("Bearer tok");
      res.writeHead(200, { "Content-Type": "application/json" });
      res.end(JSON.stringify(req.url === "/api/v1/status" ? status : { backups }));
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    try {
      const port = (server.address() as AddressInfo).port;
      const fetchSnap = runnerSnapshotFetcher(() => `http://127.0.0.1:${port}`);
      const snap = await fetchSnap({ name: "runner-a-b", namespace: "ctrl" }, "tok", AbortSignal.timeout(5000));
      expect(snap.readiness).toEqual({ ready: true, checks: { runner: "ok", storage: "ok", engine: "ok" } });
      expect(snap.backups).toHaveLength(4);
      expect(snap.status.nextRun).toBe(status.nextRun);
      ready = false;
      expect((await fetchSnap({ name: "runner-a-b", namespace: "ctrl" }, "tok", AbortSignal.timeout(5000))).readiness.checks.storage).toBe("bucket not found");
    } finally {
      server.close();
    }
    const gone = runnerSnapshotFetcher(() => "http://127.0.0.1:1");
    await expect(gone({ name: "runner-a-b", namespace: "ctrl" }, "tok", AbortSignal.timeout(5000))).rejects.toBeInstanceOf(RunnerUnreachableError);
  });
  it("reads the catalog again only when the status says it changed", async () => {
    let catalogReads = 0;
    let st: RunnerStatusAnswer = { ...status, backups: 4, unreadableBackups: 1 };
    const server = createServer((req, res) => {
      if (req.url === "/api/v1/backups") catalogReads++;
      res.writeHead(200, { "Content-Type": "application/json" });
      res.end(JSON.stringify(req.url === "/readyz" ? { ready: true, checks: {} } : req.url === "/api/v1/status" ? st : { backups }));
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    try {
      const port = (server.address() as AddressInfo).port;
      const fetchSnap = runnerSnapshotFetcher(() => `http://127.0.0.1:${port}`);
      const svc = { name: "runner-a-b", namespace: "ctrl" };
      const first = await fetchSnap(svc, "tok", AbortSignal.timeout(5000));
      const second = await fetchSnap(svc, "tok", AbortSignal.timeout(5000));
      expect(catalogReads).toBe(1);
      expect(second.backups).toEqual(first.backups);
      // Retention deleted one: the count differs.
      st = { ...st, backups: 3 };
      await fetchSnap(svc, "tok", AbortSignal.timeout(5000));
      expect(catalogReads).toBe(2);
      // A new success with the same count (one deleted, one added).
      st = { ...st, lastSuccess: { backup: { ...status.lastSuccess!.backup!, id: "op-7", endedAt: "2026-12-01T05:00:00Z" } } };
      await fetchSnap(svc, "tok", AbortSignal.timeout(5000));
      expect(catalogReads).toBe(3);
      // Another runner is another catalog.
      await fetchSnap({ name: "runner-c-d", namespace: "ctrl" }, "tok", AbortSignal.timeout(5000));
      expect(catalogReads).toBe(4);
    } finally {
      server.close();
    }
  });
});
