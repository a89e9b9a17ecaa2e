// The Restore controller's pure parts: the request body, the status that mirrors a runner
// operation, the merge patch, change detection, backoff and how a runner is found.
import { describe, expect, it } from "vitest";
import { restoreSpec } from "../apis/restore.ts";
import { ANNOTATIONS, LABELS, MANAGED_BY } from "./contract.ts";
import { failedStatus, onlyProgressDiffers, pendingStatus, requestBody, retryDelayMs, runnerTargetOf, statusDiffers, statusOf, statusPatch, type RunnerOperation } from "./restores.ts";
import type { BackupDefinitionObject, SecretObject } from "./types.ts";

const op = (over: Partial<RunnerOperation> = {}): RunnerOperation => ({
  id: "0b6c7d1e-op",
  kind: "restore",
  state: "running",
  backupId: "20261201T060000Z-a1b2c3",
  startedAt: "2026-12-01T06:00:01.234Z",
  endedAt: null,
  progress: { phase: "restore", tablesDone: 1, tablesTotal: 3, bytes: 1000, rows: 500 },
  error: null,
  result: null,
  ...over,
});

describe("requestBody", () => {
  it("sends the spec's fields as the runner API names them, defaults spelled out, the definition left out", () => {
    const spec = restoreSpec.parse({ backupDefinition: "orders", databases: ["shop"], renameDatabases: { shop: "shop_restored" } });
    expect(requestBody(spec)).toEqual({ backup: "latest", existingTables: "fail", databases: ["shop"], renameDatabases: { shop: "shop_restored" } });
    const all = restoreSpec.parse({ backupDefinition: "o", backup: "20261201T060000Z-a1b2c3", tables: ["a.b"], existingTables: "drop", allowUnstagedDrop: true, mergeShards: true, identityFile: "key.txt" });
    expect(requestBody(all)).toEqual({ backup: "20261201T060000Z-a1b2c3", tables: ["a.b"], existingTables: "drop", allowUnstagedDrop: true, mergeShards: true, identityFile: "key.txt" });
  });
});

describe("statusOf", () => {
  it("running: phase Running with the operation id, resolved backup id, start and progress", () => {
    const st = statusOf({ phase: "Pending", reason: "RunnerBusy", message: "busy" }, op(), "chbackup-system/runner-shop-orders");
    expect(st).toMatchObject({
      phase: "Running",
      reason: "Running",
      operationId: "0b6c7d1e-op",
      backupId: "20261201T060000Z-a1b2c3",
      runner: "chbackup-system/runner-shop-orders",
      startedAt: "2026-12-01T06:00:01Z",
      progress: { phase: "restore", tablesDone: 1, tablesTotal: 3, bytes: 1000, rows: 500 },
    });
    expect(st.completedAt).toBeUndefined();
  });

  it("succeeded: rows from the result (counted in the data), bytes, end time", () => {
    const st = statusOf({}, op({ state: "succeeded", endedAt: "2026-12-01T06:00:09.9Z", result: { rows: 100000, tables: 2 }, progress: { phase: "done", tablesDone: 2, tablesTotal: 2, bytes: 4096, rows: 99999 } }), "ns/r");
    expect(st).toMatchObject({ phase: "Succeeded", reason: "Succeeded", rowsRestored: 100000, bytesRestored: 4096, completedAt: "2026-12-01T06:00:09Z" });
    expect(st.message).toBe("restored 100000 rows in 2 tables from backup 20261201T060000Z-a1b2c3");
  });

  it.each([
    ["failed", "Failed"],
    ["cancelled", "Cancelled"],
    ["aborted", "Aborted"],
    ["interrupted", "Interrupted"],
  ])("%s: phase Failed, reason %s, the runner's error", (state, reason) => {
    const st = statusOf({}, op({ state, endedAt: "2026-12-01T06:00:05Z", error: "restore x: table shop.orders exists and holds rows" }), "ns/r");
    expect(st).toMatchObject({ phase: "Failed", reason, error: "restore x: table shop.orders exists and holds rows", completedAt: "2026-12-01T06:00:05Z" });
    expect(st.rowsRestored).toBeUndefined();
  });
});

describe("status changes", () => {
  it("the same status read back from the apiserver is no change; progress is", () => {
    const a = statusOf({}, op(), "ns/r");
    const roundTrip = JSON.parse(JSON.stringify(a)) as typeof a;
    expect(statusDiffers(a, roundTrip)).toBe(false);
    expect(statusDiffers(a, statusOf({}, op({ progress: { ...op().progress, rows: 501 } }), "ns/r"))).toBe(true);
    expect(statusDiffers(pendingStatus({}, "RunnerBusy", "m"), pendingStatus({}, "RunnerBusy", "m"))).toBe(false);
    expect(statusDiffers(pendingStatus({}, "RunnerBusy", "m"), pendingStatus({}, "RunnerNotReady", "m"))).toBe(true);
    expect(onlyProgressDiffers(a, statusOf({}, op({ progress: { ...op().progress, rows: 501 } }), "ns/r"))).toBe(true);
    expect(onlyProgressDiffers(a, roundTrip)).toBe(false);
    expect(onlyProgressDiffers(a, statusOf({}, op({ state: "succeeded", progress: { ...op().progress, rows: 501 } }), "ns/r"))).toBe(false);
  });

  it("a merge patch removes what the new status lacks (null) and keeps what an earlier attempt knew", () => {
    const prev = pendingStatus({}, "RunnerBusy", "busy", "ns/r");
    const next = statusOf(prev, op(), "ns/r");
    expect(statusPatch(prev, next)).toMatchObject({ phase: "Running", runner: "ns/r", operationId: "0b6c7d1e-op" });
    expect(statusPatch({ error: "x", phase: "Pending" }, { phase: "Running" })).toEqual({ error: null, phase: "Running" });
    const failed = failedStatus(prev, "BackupNotFound", "no backup", "2026-12-01T06:00:00Z");
    expect(failed).toMatchObject({ phase: "Failed", reason: "BackupNotFound", error: "no backup", runner: "ns/r", completedAt: "2026-12-01T06:00:00Z" });
  });
});

describe("retryDelayMs", () => {
  it("doubles from the base up to the cap", () => {
    expect([0, 1, 2, 3, 4, 5, 6].map((n) => retryDelayMs(n))).toEqual([1000, 2000, 4000, 8000, 16000, 30000, 30000]);
    expect(retryDelayMs(100, 50, 500)).toBe(500);
  });
});

describe("runnerTargetOf", () => {
  const key = "shop/orders";
  const def = (over: Partial<BackupDefinitionObject["status"]> = {}, meta: Partial<BackupDefinitionObject["metadata"]> = {}): BackupDefinitionObject =>
    ({
      metadata: { name: "orders", namespace: "shop", ...meta },
      spec: {},
      status: {
        conditions: [{ type: "Ready", status: "True", reason: "Reconciled", message: "", lastTransitionTime: "2026-12-01T00:00:00Z" }],
        runner: { namespace: "chbackup-system", secret: "runner-shop-orders", statefulSet: "runner-shop-orders", service: "runner-shop-orders" },
        ...over,
      },
    }) as unknown as BackupDefinitionObject;
  const secret = (source = key, token: string | null = "t0ken-t0ken-t0ken-t0ken"): SecretObject => ({
    metadata: { name: "runner-shop-orders", namespace: "chbackup-system", labels: { [LABELS.managedBy]: MANAGED_BY }, annotations: { [ANNOTATIONS.source]: source } },
    data: token === null ? {} : { token: Buffer.from(token).toString("base64") },
  });

  it("the runner Service and the token of the definition's own runner Secret", () => {
    const r = runnerTargetOf(def(), key, () => secret());
    expect(r).toEqual({ ok: true, target: { service: { namespace: "chbackup-system", name: "runner-shop-orders" }, token: "t0ken-t0ken-t0ken-t0ken" } });
  });

  it("waits, saying why: no definition, not Ready, being deleted, a Secret of another definition, no token", () => {
    expect(runnerTargetOf(undefined, key, () => secret())).toMatchObject({ ok: false, reason: "DefinitionNotFound" });
    expect(runnerTargetOf(def({ conditions: [] }), key, () => secret())).toMatchObject({ ok: false, reason: "DefinitionNotReady" });
    expect(runnerTargetOf(def({ runner: undefined }), key, () => secret())).toMatchObject({ ok: false, reason: "DefinitionNotReady" });
    expect(runnerTargetOf(def({}, { deletionTimestamp: "2026-12-01T00:00:00Z" }), key, () => secret())).toMatchObject({ ok: false, reason: "DefinitionNotReady" });
    expect(runnerTargetOf(def(), key, () => secret("other/orders"))).toMatchObject({ ok: false, reason: "RunnerNotReady" });
    expect(runnerTargetOf(def(), key, () => undefined)).toMatchObject({ ok: false, reason: "RunnerNotReady" });
    expect(runnerTargetOf(def(), key, () => secret(key, null))).toMatchObject({ ok: false, reason: "RunnerNotReady" });
  });

  it("never puts the token into a message", () => {
    const r = runnerTargetOf(def({ conditions: [] }), key, () => secret());
    expect(JSON.stringify(r)).not.toContain("t0ken");
  });
});
