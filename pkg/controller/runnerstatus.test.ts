// The newest backup as the controller reads it from a runner's API.
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { describe, expect, it } from "vitest";
import { runnerLastBackupFetcher } from "./runnerstatus.ts";

describe("runnerLastBackupFetcher", () => {
  it("takes the newest complete backup of the runner itself: not an unreadable one, not another runner's", async () => {
    const backups = [
      { id: "20261201T040000Z-aaaaaa", state: "unreadable", endedAt: null },
      { id: "20261201T035000Z-bbbbbb", state: "complete", foreign: true, endedAt: "2026-12-01T03:51:00.123Z" },
      { id: "20261201T034000Z-cccccc", state: "complete", foreign: false, endedAt: "2026-12-01T03:41:00.456Z" },
    ];
    const server = createServer((req, res) => {
      expect(req.headers.authorization).toBe("Bearer tok");
      res.writeHead(200, { "Content-Type": "application/json" });
      res.end(JSON.stringify({ backups }));
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    try {
      const port = (server.address() as AddressInfo).port;
      const fetchLast = runnerLastBackupFetcher(() => `http://127.0.0.1:${port}`);
      expect(await fetchLast({ name: "runner-a-b", namespace: "ctrl" }, "tok", AbortSignal.timeout(5000))).toEqual({ id: "20261201T034000Z-cccccc", time: "2026-12-01T03:41:00Z" });
      backups.splice(2, 1);
      expect(await fetchLast({ name: "runner-a-b", namespace: "ctrl" }, "tok", AbortSignal.timeout(5000))).toBeUndefined();
    } finally {
      server.close();
    }
  });
});
