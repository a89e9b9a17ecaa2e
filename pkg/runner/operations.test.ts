// Operations of a real Runner over a filesystem store with a fake engine:
// cancel, the journal across a "restart", verify, the start-up clean-up of
// interrupted restores, and the service's start without storage.
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { FakeEngine, fakeRunner, gate, type FakeRunner } from "../../test/helpers/api-fake.ts";
import { hookStore, type HookedStore } from "../../test/helpers/hooked-store.ts";
import { waitUntil } from "../../test/env/proc.ts";
import { OperationFinishedError, OperationNotFoundError } from "./errors.ts";
import { createLogger } from "./logging.ts";
import { RunnerService } from "./service.ts";

const TOKEN = "unit-test-token-0123456789abcdef";
const silent = createLogger({ silent: true });

// Every runner a test made settles (its journal's storage copies written) before its directory is removed.
let made: FakeRunner[] = [];
async function make(opts: Parameters<typeof fakeRunner>[0]): Promise<FakeRunner> {
  const fr = await fakeRunner(opts);
  made.push(fr);
  return fr;
}
async function settleAll(): Promise<void> {
  await Promise.all(made.splice(0).map((fr) => fr.settle()));
}

describe("runner operations (fake engine)", () => {
  let root: string;
  let storage: string;
  let stateDir: string;
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), "ops-"));
    storage = join(root, "storage");
    stateDir = join(root, "state");
  });
  afterEach(async () => {
    await settleAll();
    await rm(root, { recursive: true, force: true });
  });

  it("cancel: a running backup ends cancelled, its objects are removed; cancel again is 'finished', unknown is 'not found'", async () => {
    const fr = await make({ token: TOKEN, logger: silent, dir: storage, stateDir });
    const g = gate();
    fr.engine.gate = g.promise;
    const { operation, finished } = fr.runner.startBackup("api");
    await fr.engine.atGate();
    expect(await readdir(join(storage, "shop", "orders", operation.backupId!))).toContain("data.bin");
    const c = fr.runner.cancel(operation.id, "test");
    expect(c.state).toBe("running");
    g.open();
    const op = await finished;
    expect(op.state).toBe("cancelled");
    expect(op.error).toContain("cancelled by test");
    // the backup's objects are gone, like after a failure
    expect(await readdir(join(storage, "shop", "orders")).catch(() => [])).not.toContain(operation.backupId);
    expect(fr.runner.catalog.list()).toEqual([]);
    expect(fr.runner.status().lastFailure.backup?.id).toBe(operation.id);
    expect(() => fr.runner.cancel(operation.id, "test")).toThrow(OperationFinishedError);
    expect(() => fr.runner.cancel("nope", "test")).toThrow(OperationNotFoundError);
  });

  it("cancel: a running restore ends cancelled", async () => {
    const fr = await make({ token: TOKEN, logger: silent, dir: storage });
    await fr.runner.startBackup("api").finished;
    const g = gate();
    fr.engine.gate = g.promise;
    const { operation, finished } = fr.runner.startRestore({ backup: "latest", existingTables: "fail" });
    await fr.engine.atGate();
    fr.runner.cancel(operation.id, "test");
    g.open();
    const op = await finished;
    expect(op.state).toBe("cancelled");
    expect(op.error).toContain("cancelled by test");
    expect(fr.runner.status().lastFailure.restore?.state).toBe("cancelled");
  });

  it("journal: a restore running when the runner 'died' is listed interrupted after a restart, with lastFailure; the storage copy is next to the backup", async () => {
    const first = await make({ token: TOKEN, logger: silent, dir: storage, stateDir });
    const backup = await first.runner.startBackup("api").finished;
    expect(backup.state).toBe("succeeded");
    const g = gate();
    first.engine.gate = g.promise;
    const { operation } = first.runner.startRestore({ backup: "latest", existingTables: "fail" });
    // wait until the engine reported progress; flush then writes the journal's phase
    await first.engine.atGate();
    await first.runner.journal.flush();
    expect(first.runner.journal.dir).toBe(join(stateDir, "journal", first.runner.owner.id));
    const files = await readdir(first.runner.journal.dir!);
    expect(files).toHaveLength(2);
    const key = join(storage, "shop", "orders", backup.backupId!, "restores", `${operation.id}.json`);
    expect(JSON.parse(await readFile(key, "utf8")).operation.state).toBe("running");

    // "restart": a new runner on the same storage and state directory (the old one never ended its operation)
    const second = await make({ token: TOKEN, logger: silent, dir: storage, stateDir });
    const op = second.runner.operation(operation.id);
    expect(op?.state).toBe("interrupted");
    expect(op?.progress.phase).toBe("restore");
    expect(op?.progress.tablesDone).toBe(1);
    expect(op?.error).toMatch(/^interrupted/);
    expect(second.runner.status().lastFailure.restore?.id).toBe(operation.id);
    expect(second.runner.status().lastSuccess.backup?.id).toBe(backup.id);
    expect(second.runner.operations().map((o) => [o.id, o.state])).toEqual([
      [operation.id, "interrupted"],
      [backup.id, "succeeded"],
    ]);

    // the volume is lost: the storage copy still tells
    const third = await make({ token: TOKEN, logger: silent, dir: storage });
    expect(third.runner.operation(operation.id)?.state).toBe("interrupted");
    expect(JSON.parse(await readFile(key, "utf8")).operation.state).toBe("interrupted");
    g.open();
  });

  it("idempotency key: journaled with the restore, so a restarted runner answers a repeated key with it and starts nothing", async () => {
    const first = await make({ token: TOKEN, logger: silent, dir: storage, stateDir });
    await first.runner.startBackup("api").finished;
    const a = first.runner.startRestore({ backup: "latest", existingTables: "fail" }, "api", "restore-uid-1");
    expect(a.replayed).toBeUndefined();
    const b = first.runner.startRestore({ backup: "latest", existingTables: "fail" }, "api", "restore-uid-1");
    expect(b.replayed).toBe(true);
    expect(b.operation).toBe(a.operation);
    expect((await b.finished).state).toBe("succeeded");
    await first.runner.journal.flush();
    const second = await make({ token: TOKEN, logger: silent, dir: storage, stateDir });
    const c = second.runner.startRestore({ backup: "latest", existingTables: "fail" }, "api", "restore-uid-1");
    expect(c.replayed).toBe(true);
    expect(c.operation).toMatchObject({ id: a.operation.id, state: "succeeded", idempotencyKey: "restore-uid-1" });
    expect(second.engine.restores).toHaveLength(0);
    const d = second.runner.startRestore({ backup: "latest", existingTables: "fail" }, "api", "restore-uid-2");
    expect(d.replayed).toBeUndefined();
    expect((await d.finished).state).toBe("succeeded");
  });

  it("verify: a whole backup succeeds; a damaged one fails naming each table, keeps the report, and sets lastVerified", async () => {
    const fr = await make({ token: TOKEN, logger: silent, dir: storage });
    const b = await fr.runner.startBackup("api").finished;
    const ok = await fr.runner.startVerify("latest", "api").finished;
    expect(ok.state).toBe("succeeded");
    expect(ok.kind).toBe("verify");
    expect(ok.result?.["ok"]).toBe(true);
    expect(fr.runner.status().lastVerified).toMatchObject({ backupId: b.backupId, ok: true, operationId: ok.id });

    fr.engine.verifyResult = {
      ok: false,
      tables: [
        { database: "db1", name: "t1", objects: ["a"], expectedRows: 100, rows: 0, bytes: 0, uncompressedBytes: 0, ok: false, error: "checksum mismatch" },
        { database: "db1", name: "t2", objects: ["b"], expectedRows: 5, rows: 5, bytes: 9, uncompressedBytes: 9, ok: true },
        { database: "db2", name: "t3", objects: ["c"], expectedRows: 3, rows: 0, bytes: 0, uncompressedBytes: 0, ok: false, error: "holds 0 rows" },
      ],
      otherObjects: [{ name: "schema.json", ok: false, error: "size 1 != expected 2" }],
    };
    const bad = await fr.runner.startVerify(b.backupId!, "api").finished;
    expect(bad.state).toBe("failed");
    expect(bad.error).toContain("db1.t1 (checksum mismatch)");
    expect(bad.error).toContain("db2.t3 (holds 0 rows)");
    expect(bad.error).toContain("object schema.json");
    expect(bad.error).not.toContain("db1.t2");
    expect((bad.result?.["tables"] as unknown[]).length).toBe(3);
    expect(fr.runner.status().lastVerified).toMatchObject({ backupId: b.backupId, ok: false, operationId: bad.id });
    expect(fr.runner.status().lastFailure.verify?.id).toBe(bad.id);
  });

  it("verify needs no database: it works while the engine's check fails", async () => {
    const fr = await make({ token: TOKEN, logger: silent, dir: storage });
    await fr.runner.startBackup("api").finished;
    fr.engine.checkError = "connect ECONNREFUSED";
    expect((await fr.runner.startVerify("latest").finished).state).toBe("succeeded");
  });

  it("copies an interrupted restore kept are a warning in the status", async () => {
    const fr = await make({ token: TOKEN, logger: silent, dir: storage });
    fr.engine.cleanup = { removed: ["db._chbackup_stage_x_t"], restored: [], kept: ["db._chbackup_aside_x_t"] };
    const r = await fr.runner.cleanupInterrupted(new AbortController().signal);
    expect(r?.kept).toEqual(["db._chbackup_aside_x_t"]);
    const st = fr.runner.status();
    expect(st.warnings.some((w) => w.includes("db._chbackup_aside_x_t"))).toBe(true);
    expect(st.interruptedCleanup?.removed).toEqual(["db._chbackup_stage_x_t"]);
  });
});

describe("service start without storage or database", () => {
  let root: string;
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), "svc-"));
  });
  afterEach(async () => {
    await settleAll();
    await rm(root, { recursive: true, force: true });
  });

  it("retries loading the catalog and the clean-up until they work, not ready meanwhile (with the reason), then ready", async () => {
    let store!: HookedStore;
    const engine = new FakeEngine();
    const fr = await make({
      token: TOKEN,
      logger: silent,
      dir: join(root, "storage"),
      engine,
      noInit: true,
      wrapStore: (s) => (store = hookStore(s)),
    });
    // list is not hooked: fail the catalog's listing through the store's list by making the root a file for a while
    let storageDown = true;
    const origList = store.list.bind(store);
    (store as unknown as { list: typeof store.list }).list = (prefix, opts) => {
      if (storageDown) {
        throw Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:9000"), { code: "ECONNREFUSED" });
      }
      return origList(prefix, opts);
    };
    engine.cleanupError = "ClickHouse unreachable";
    const service = new RunnerService({ runner: fr.runner, logger: silent, retry: { baseMs: 20, maxMs: 40 } });
    const ac = new AbortController();
    const started = service.start(ac.signal);
    await waitUntil("a failed catalog load", async () => service.startupProblem()?.includes("ECONNREFUSED") === true, { timeoutMs: 10_000, intervalMs: 5 });
    expect(service.ready).toBe(false);
    expect(service.catalogLoaded).toBe(false);
    expect(service.startupProblem()).toMatch(/loading the backup catalog from storage: .*ECONNREFUSED/);
    // storage back: the catalog loads; the database is still away
    storageDown = false;
    await waitUntil("catalog loaded", async () => service.catalogLoaded === true, { timeoutMs: 10_000, intervalMs: 5 });
    expect(service.ready).toBe(false);
    expect(service.startupProblem()).toMatch(/cleaning up after interrupted restores in the database: ClickHouse unreachable/);
    expect(engine.cleanupCalls).toBeGreaterThan(0);
    engine.cleanupError = undefined;
    await started;
    expect(service.ready).toBe(true);
    expect(service.startupProblem()).toBeUndefined();
    await service.stop(1000);
    await fr.runner.idle();
  });

  it("a signal ends the retries", async () => {
    const engine = new FakeEngine();
    engine.cleanupError = "down";
    const fr = await make({ token: TOKEN, logger: silent, dir: join(root, "storage"), engine, noInit: true });
    const service = new RunnerService({ runner: fr.runner, logger: silent, retry: { baseMs: 10_000, maxMs: 10_000 } });
    const ac = new AbortController();
    const started = service.start(ac.signal);
    await waitUntil("a failed clean-up", async () => engine.cleanupCalls > 0, { timeoutMs: 10_000, intervalMs: 5 });
    const t = Date.now();
    ac.abort(new Error("SIGTERM"));
    await expect(started).rejects.toThrow("SIGTERM");
    expect(Date.now() - t).toBeLessThan(5000); // the retry delay is 10 s: ending sooner means the signal ended it
  });
});
