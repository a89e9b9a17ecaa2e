// The Restore controller's reconcile against a fake API client and a fake runner (one that keeps
// operations by Idempotency-Key as the real one does): what is sent when, how often, and what is
// written. The same behaviour against a real apiserver and runner: test/restore-object.test.ts.
import { describe, expect, it } from "vitest";
import { createLogger } from "../common/logging.ts";
import type { RestoreStatus } from "../apis/restore.ts";
import { ANNOTATIONS, LABELS, MANAGED_BY } from "./contract.ts";
import type { KubeClient } from "./kube.ts";
import { RestoreController, type RestoreObject, type RunnerOperation, type RunnerRestoreClient, type SubmitOutcome } from "./restores.ts";
import { parseControllerSettings } from "./settings.ts";
import type { BackupDefinitionObject, SecretObject } from "./types.ts";

const definition: BackupDefinitionObject = {
  metadata: { name: "orders", namespace: "shop" },
  spec: {},
  status: {
    conditions: [{ type: "Ready", status: "True", reason: "Reconciled", message: "", lastTransitionTime: "2026-12-01T00:00:00Z" }],
    runner: { namespace: "ctl", secret: "runner-shop-orders", statefulSet: "runner-shop-orders", service: "runner-shop-orders" },
  },
} as unknown as BackupDefinitionObject;
const secret: SecretObject = {
  metadata: { name: "runner-shop-orders", namespace: "ctl", labels: { [LABELS.managedBy]: MANAGED_BY }, annotations: { [ANNOTATIONS.source]: "shop/orders" } },
  data: { token: Buffer.from("runner-token-0123456789").toString("base64") },
};

/** A runner that starts one operation per key, answers 409 while `busy`, and counts what it was asked. */
class FakeRunner implements RunnerRestoreClient {
  busy = false;
  readonly ops = new Map<string, RunnerOperation>();
  readonly sent: string[] = [];
  followed = 0;
  async submit(_t: unknown, _body: unknown, key: string): Promise<SubmitOutcome> {
    this.sent.push(key);
    const seen = this.ops.get(key);
    if (seen) return { kind: "accepted", operation: seen };
    if (this.busy) return { kind: "busy", message: "a backup operation (b1) is already running" };
    const op: RunnerOperation = { id: `op-${this.ops.size + 1}`, kind: "restore", state: "running", backupId: "20261201T060000Z-a1b2c3", startedAt: "2026-12-01T06:00:00.000Z", endedAt: null, progress: { phase: "restore", tablesDone: 0, tablesTotal: 1, bytes: 0, rows: 0 }, error: null, result: null, idempotencyKey: key };
    this.ops.set(key, op);
    return { kind: "accepted", operation: op };
  }
  async follow(_t: unknown, id: string) {
    this.followed++;
    const op = [...this.ops.values()].find((o) => o.id === id);
    return op ? { kind: "found" as const, operation: op } : { kind: "notFound" as const, message: "no such restore" };
  }
}

/** A KubeClient that answers status patches (or fails the next ones) and takes Events. */
function fakeClient() {
  const patches: Record<string, unknown>[] = [];
  const events: { reason: string; type: string }[] = [];
  let failNext = 0;
  let rv = 1;
  const store = new Map<string, RestoreObject>();
  const client = {
    kubeConfig: undefined,
    async patch(_rt: unknown, ns: string, name: string, body: { status: Record<string, unknown> }) {
      if (failNext > 0) {
        failNext--;
        throw new Error("apiserver went away");
      }
      patches.push(body.status);
      const cur = store.get(`${ns}/${name}`)!;
      const status = { ...(cur.status ?? {}) } as Record<string, unknown>;
      for (const [k, v] of Object.entries(body.status)) {
        if (v === null) delete status[k];
        else status[k] = v;
      }
      const next = { ...cur, metadata: { ...cur.metadata, resourceVersion: String(++rv) }, status: status as RestoreStatus };
      store.set(`${ns}/${name}`, next);
      return next;
    },
    async create(_rt: unknown, _ns: string, ev: { reason: string; type: string }) {
      events.push({ reason: ev.reason, type: ev.type });
      return ev;
    },
  } as unknown as KubeClient;
  return { client, patches, events, store, failPatches: (n: number) => (failNext = n) };
}

function setup(defs: BackupDefinitionObject[] = [definition]) {
  const k = fakeClient();
  const runner = new FakeRunner();
  const rc = new RestoreController({
    client: k.client,
    settings: parseControllerSettings({ namespace: "ctl", runnerImage: "img", leaderElection: { identity: "test" } }),
    logger: createLogger({ silent: true }),
    definitions: { get: (ns, name) => defs.find((d) => d.metadata.namespace === ns && d.metadata.name === name), on: () => undefined },
    secrets: { get: (ns, name) => (ns === secret.metadata.namespace && name === secret.metadata.name ? secret : undefined) },
    cachesReady: () => true,
    runner,
  });
  /** Puts a Restore where the controller reads it (as its own last write, which the cache serves first). */
  const put = (r: RestoreObject) => {
    k.store.set(`${r.metadata.namespace}/${r.metadata.name}`, r);
    rc.informer.wrote(r);
  };
  const current = () => k.store.get("shop/r1")!;
  // Every write the controller makes goes back into what it reads next.
  const reconcile = async () => {
    const out = await rc.reconcile("shop/r1");
    rc.informer.wrote(current());
    return out;
  };
  put({ metadata: { name: "r1", namespace: "shop", uid: "uid-1", resourceVersion: "1", generation: 1 }, spec: { backupDefinition: "orders" } });
  return { ...k, runner, rc, put, current, reconcile };
}

describe("RestoreController.reconcile", () => {
  it("sends once with the Restore's uid as key, then only follows; the status mirrors the operation", async () => {
    const s = setup();
    expect(await s.reconcile()).toEqual({ requeueAfterMs: 2000 });
    expect(s.runner.sent).toEqual(["restore-uid-1"]);
    expect(s.current().status).toMatchObject({ phase: "Running", operationId: "op-1", backupId: "20261201T060000Z-a1b2c3", runner: "ctl/runner-shop-orders", observedGeneration: 1 });
    await s.reconcile();
    await s.reconcile();
    expect(s.runner.sent).toHaveLength(1);
    expect(s.runner.followed).toBe(2);
    expect(s.patches).toHaveLength(1); // nothing changed while it ran
    Object.assign(s.runner.ops.get("restore-uid-1")!, { state: "succeeded", endedAt: "2026-12-01T06:00:05Z", result: { rows: 42, tables: 1 }, progress: { phase: "done", tablesDone: 1, tablesTotal: 1, bytes: 100, rows: 42 } });
    expect(await s.reconcile()).toEqual({});
    expect(s.current().status).toMatchObject({ phase: "Succeeded", rowsRestored: 42, bytesRestored: 100, completedAt: "2026-12-01T06:00:05Z" });
    // Final: nothing is asked or written any more.
    await s.reconcile();
    expect(s.runner.followed).toBe(3);
    expect(s.patches).toHaveLength(2);
    expect(s.events.map((e) => e.reason)).toEqual(["Running", "Succeeded"]);
  });

  it("progress alone is written at most every progressEveryMs; the end at once", async () => {
    const s = setup();
    await s.reconcile();
    const op = s.runner.ops.get("restore-uid-1")!;
    for (let rows = 1; rows <= 3; rows++) {
      op.progress = { ...op.progress, rows };
      await s.reconcile();
    }
    expect(s.patches).toHaveLength(1);
    Object.assign(op, { state: "succeeded", endedAt: "2026-12-01T06:00:05Z", result: { rows: 3, tables: 1 } });
    await s.reconcile();
    expect(s.patches).toHaveLength(2);
    expect(s.current().status).toMatchObject({ phase: "Succeeded", rowsRestored: 3 });
  });

  it("a status write that fails after the runner took the restore: the retry sends the same key and adopts the same operation", async () => {
    const s = setup();
    s.failPatches(1);
    await expect(s.reconcile()).rejects.toThrow(/apiserver went away/);
    expect(s.current().status).toBeUndefined();
    await s.reconcile();
    expect(s.runner.sent).toEqual(["restore-uid-1", "restore-uid-1"]);
    expect(s.runner.ops.size).toBe(1);
    expect(s.current().status).toMatchObject({ phase: "Running", operationId: "op-1" });
  });

  it("a busy runner: Pending RunnerBusy, retried with a growing delay, written once; then it runs", async () => {
    const s = setup();
    s.runner.busy = true;
    expect(await s.reconcile()).toEqual({ requeueAfterMs: 1000 });
    expect(await s.reconcile()).toEqual({ requeueAfterMs: 2000 });
    expect(await s.reconcile()).toEqual({ requeueAfterMs: 4000 });
    expect(s.current().status).toMatchObject({ phase: "Pending", reason: "RunnerBusy" });
    expect(s.patches).toHaveLength(1);
    s.runner.busy = false;
    await s.reconcile();
    expect(s.current().status).toMatchObject({ phase: "Running", reason: "Running", operationId: "op-1" });
    expect(s.current().status!.message).not.toContain("busy");
    expect(s.events.map((e) => [e.type, e.reason])).toEqual([
      ["Normal", "RunnerBusy"],
      ["Normal", "Running"],
    ]);
  });

  it("a missing definition: Pending DefinitionNotFound, one write and one Warning Event however often it is retried", async () => {
    const s = setup([]);
    for (let i = 0; i < 4; i++) await s.reconcile();
    expect(s.runner.sent).toEqual([]);
    expect(s.current().status).toMatchObject({ phase: "Pending", reason: "DefinitionNotFound" });
    expect(s.patches).toHaveLength(1);
    expect(s.events).toEqual([{ type: "Warning", reason: "DefinitionNotFound" }]);
  });

  it("a Restore found Running (a restart): followed, never sent; an operation the runner forgot fails it", async () => {
    const s = setup();
    s.put({ ...s.current(), status: { phase: "Running", reason: "Running", operationId: "op-gone", observedGeneration: 1 } });
    await s.reconcile();
    expect(s.runner.sent).toEqual([]);
    expect(s.current().status).toMatchObject({ phase: "Failed", reason: "OperationLost" });
  });

  it("a spec that got past the CRD: Failed InvalidSpec, never sent", async () => {
    const s = setup();
    s.put({ ...s.current(), spec: { backupDefinition: "orders", backup: "../etc" } });
    await s.reconcile();
    expect(s.runner.sent).toEqual([]);
    expect(s.current().status).toMatchObject({ phase: "Failed", reason: "InvalidSpec" });
    expect(s.current().status!.message).toContain("spec.backup");
  });
});
