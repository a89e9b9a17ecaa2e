// One writer per backup set: every backup records its owner, an in-progress
// marker says whose a directory without a manifest is, and a runner deletes
// (retention, incomplete cleanup) only what is its own. Two Runner instances
// on one filesystem store and prefix, with different definition uids.
import { mkdir, mkdtemp, readFile, readdir, rm, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { parseRunnerConfig, type RunnerConfig } from "../apis/index.ts";
import { createFilesystemStore } from "../storage/index.ts";
import { FakeEngine, gate } from "../../test/helpers/api-fake.ts";
import { newBackupId } from "./ids.ts";
import { createLogger } from "./logging.ts";
import type { Owner } from "./manifest.ts";
import { isOwnedBy, runnerOwner } from "./owner.ts";
import { Runner } from "./runner.ts";

const silent = createLogger({ silent: true });
const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), "ownership-unit-"));
  dirs.push(d);
  return d;
}

function config(dir: string, opts: { uid?: string; retention?: Record<string, number>; cleanupHours?: number; mode?: "single" } = {}): RunnerConfig {
  return parseRunnerConfig({
    definition: {
      namespace: "shop",
      name: "orders",
      ...(opts.uid ? { uid: opts.uid } : {}),
      clickhouse: { url: "http://127.0.0.1:9" },
      ...(opts.mode === "single" ? { mode: "single", singleBackup: { target: "exports/one" } } : { schedule: { cron: "0 0 1 1 *", timeZone: "UTC" } }),
      retention: opts.retention ?? { hourly: 1 },
      ...(opts.cleanupHours ? { incompleteCleanupAfterHours: opts.cleanupHours } : {}),
    },
    storage: { filesystem: { path: dir } },
    api: { token: "ownership-test-token-01" },
  });
}

function runnerAt(cfg: RunnerConfig, clock: { t: number }, engine = new FakeEngine()): Runner {
  return new Runner({ config: cfg, store: createFilesystemStore({ root: cfg.storage.filesystem!.path }), engine, logger: silent, clock: () => new Date(clock.t) });
}

const T0 = Date.parse("2026-05-04T08:00:00Z");
const root = (dir: string) => join(dir, "shop", "orders");
const ids = async (dir: string) => (await readdir(root(dir)).catch(() => [] as string[])).sort();
const manifestOf = async (dir: string, id: string) => JSON.parse(await readFile(join(root(dir), id, "manifest.json"), "utf8")) as { owner?: Owner };

async function backup(r: Runner, clock: { t: number }, at: number): Promise<string> {
  clock.t = at;
  const op = await r.startBackup("api").finished;
  expect(op.error).toBeUndefined();
  return op.backupId!;
}

describe("owner identity", () => {
  it("is stable for a config, and differs by uid and by storage location", () => {
    const a = runnerOwner(config("/b", { uid: "uid-a" }));
    expect(runnerOwner(config("/b", { uid: "uid-a" }))).toEqual(a);
    expect(a).toEqual({ uid: "uid-a", id: expect.stringMatching(/^[0-9a-f]{16}$/) });
    expect(runnerOwner(config("/b", { uid: "uid-b" })).id).not.toBe(a.id);
    expect(runnerOwner(config("/c", { uid: "uid-a" })).id).not.toBe(a.id);
    const noUid = runnerOwner(config("/b"));
    expect(noUid.uid).toBeUndefined();
    expect(noUid.id).not.toBe(a.id);
  });

  it("own: no owner recorded (legacy), the same id, or the same uid", () => {
    const self = { uid: "u1", id: "aaaa" };
    expect(isOwnedBy(undefined, self)).toBe(true);
    expect(isOwnedBy({ id: "aaaa" }, self)).toBe(true);
    expect(isOwnedBy({ uid: "u1", id: "bbbb" }, self)).toBe(true);
    expect(isOwnedBy({ uid: "u2", id: "bbbb" }, self)).toBe(false);
    expect(isOwnedBy({ id: "bbbb" }, self)).toBe(false);
    expect(isOwnedBy({ id: "bbbb" }, { id: "aaaa" })).toBe(false);
  });
});

describe("two runners on one prefix", () => {
  it("neither deletes the other's in-progress or complete backups", async () => {
    const dir = await tempDir();
    const clockA = { t: T0 };
    const clockB = { t: T0 };
    const engineA = new FakeEngine();
    const A = runnerAt(config(dir, { uid: "uid-a" }), clockA, engineA);
    await A.init();
    const a1 = await backup(A, clockA, T0);
    expect((await manifestOf(dir, a1)).owner).toEqual(A.owner);

    // a2 is held after its data is written: a marker and data.bin, no manifest.
    const held = gate();
    engineA.gate = held.promise;
    clockA.t = T0 + 10 * 60_000;
    const a2run = A.startBackup("api");
    const a2 = a2run.operation.backupId!;
    await engineA.atGate();
    expect((await readdir(join(root(dir), a2))).sort()).toEqual(["data.bin", "inprogress.json"]);
    expect(JSON.parse(await readFile(join(root(dir), a2, "inprogress.json"), "utf8"))).toEqual({ owner: A.owner, startedAt: new Date(clockA.t).toISOString(), backupId: a2 });

    // B starts while a2 is running: it leaves a2 alone and reports A.
    clockB.t = T0 + 11 * 60_000;
    const B = runnerAt(config(dir, { uid: "uid-b" }), clockB);
    await B.init();
    expect(await ids(dir)).toContain(a2);
    expect(B.owner.id).not.toBe(A.owner.id);
    expect(B.status().foreignOwners).toEqual([{ owner: A.owner, backups: 1, inProgress: 1 }]);
    expect(B.status().warnings.join("\n")).toMatch(/another runner writes to shop\/orders.*uid uid-b.*uid uid-a/);

    // B's backups and retention passes: B deletes its own (b2), never A's.
    const b1 = await backup(B, clockB, T0 + 12 * 60_000);
    const b2 = await backup(B, clockB, T0 + 13 * 60_000);
    const b3 = await backup(B, clockB, T0 + 14 * 60_000);
    expect(await ids(dir)).toEqual([a1, a2, b1, b3].sort());
    expect(B.retentionDecision().labels.get(a1)).toBeUndefined();
    expect(B.retentionDecision().labels.get(b1)).toEqual(["hourly"]);

    // a2 finishes: manifest written, marker gone.
    held.open();
    const a2op = await a2run.finished;
    expect(a2op.state).toBe("succeeded");
    expect((await readdir(join(root(dir), a2))).sort()).toEqual(["data.bin", "manifest.json"]);

    // Both restart (catalogs rebuilt from the store, retention applied): still nothing of the other is deleted.
    const A2 = runnerAt(config(dir, { uid: "uid-a" }), { t: T0 + 15 * 60_000 });
    await A2.init();
    const B2 = runnerAt(config(dir, { uid: "uid-b" }), { t: T0 + 15 * 60_000 });
    await B2.init();
    expect(await ids(dir)).toEqual([a1, a2, b1, b3].sort());
    expect(A2.status().foreignOwners).toEqual([{ owner: B.owner, backups: 2, inProgress: 0 }]);
    expect(A2.retentionDecision().keep).toEqual([a1, a2]);
    expect(B2.retentionDecision().keep).toEqual([b1, b3]);
    // "latest" is this runner's newest; another owner's backup can still be restored by id.
    expect(A2.latest()?.manifest.id).toBe(a2);
    expect(A2.resolveBackup(b3).manifest.id).toBe(b3);

    // Each takes one more backup: each deletes only its own unlabelled one.
    const a3 = await backup(A2, { t: 0 }, T0 + 16 * 60_000);
    const b4 = await backup(B2, { t: 0 }, T0 + 17 * 60_000);
    expect(await ids(dir)).toEqual([a1, a3, b1, b4].sort());
    expect(b2).not.toBe(b4);
  });

  it("manifests without an owner (written before owners were recorded) are treated as this runner's own", async () => {
    const dir = await tempDir();
    const clock = { t: T0 };
    const old = runnerAt(config(dir, { uid: "uid-old" }), clock);
    await old.init();
    const l1 = await backup(old, clock, T0);
    const l2 = await backup(old, clock, T0 + 60_000);
    for (const id of [l1, l2]) {
      const path = join(root(dir), id, "manifest.json");
      const m = JSON.parse(await readFile(path, "utf8")) as Record<string, unknown>;
      delete m["owner"];
      await writeFile(path, JSON.stringify(m));
    }
    const C = runnerAt(config(dir, { uid: "uid-new" }), clock);
    await C.init();
    expect(C.status().foreignOwners).toEqual([]);
    await backup(C, clock, T0 + 120_000);
    expect(await ids(dir)).not.toContain(l2); // deleted by C's retention: legacy counts as own
    expect(await ids(dir)).toContain(l1);
  });
});

describe("incomplete backups at start", () => {
  async function leftover(dir: string, at: number, marker: { owner: Owner; startedAt: string } | "garbage" | undefined, filesAgeMs = 0): Promise<string> {
    const id = newBackupId(new Date(at));
    const d = join(root(dir), id);
    await mkdir(d, { recursive: true });
    await writeFile(join(d, "data.bin"), "partial");
    if (marker) await writeFile(join(d, "inprogress.json"), marker === "garbage" ? "{" : JSON.stringify(marker));
    if (filesAgeMs) {
      const t = new Date(Date.now() - filesAgeMs);
      for (const f of await readdir(d)) await utimes(join(d, f), t, t);
    }
    return id;
  }

  it("removes its own at once, others' and unmarked ones only once idle longer than the timeout", async () => {
    const dir = await tempDir();
    const now = Date.now();
    const H = 3_600_000;
    const cfg = config(dir, { uid: "uid-r", cleanupHours: 2 });
    const self = runnerOwner(cfg);
    const other: Owner = { uid: "uid-x", id: "0123456789abcdef" };
    const own = await leftover(dir, now - 10 * 60_000, { owner: self, startedAt: new Date(now - 10 * 60_000).toISOString() });
    const foreignRecent = await leftover(dir, now - H, { owner: other, startedAt: new Date(now - H).toISOString() }, H);
    const foreignIdle = await leftover(dir, now - 5 * H, { owner: other, startedAt: new Date(now - 5 * H).toISOString() }, 3 * H);
    const foreignStillWriting = await leftover(dir, now - 5 * H, { owner: other, startedAt: new Date(now - 5 * H).toISOString() }, 0);
    const unmarkedRecent = await leftover(dir, now - 30 * 60_000, undefined);
    const unmarkedIdle = await leftover(dir, now - 5 * H, undefined, 3 * H);
    const garbageMarkerRecent = await leftover(dir, now - 30 * 60_000, "garbage");

    const r = runnerAt(cfg, { t: now });
    await r.init();
    expect(await ids(dir)).toEqual([foreignRecent, foreignStillWriting, unmarkedRecent, garbageMarkerRecent].sort());
    expect(r.status().foreignOwners).toEqual([{ owner: other, backups: 0, inProgress: 2 }]);

    // With the default timeout (24 h), the idle foreign one is kept too.
    const dir2 = await tempDir();
    const idle2 = await leftover(dir2, now - 5 * H, { owner: other, startedAt: new Date(now - 5 * H).toISOString() }, 3 * H);
    const r2 = runnerAt(config(dir2, { uid: "uid-r" }), { t: now });
    await r2.init();
    expect(await ids(dir2)).toEqual([idle2]);
    // 25 hours later (by the runner's clock, and files that old) it goes.
    const later = runnerAt(config(dir2, { uid: "uid-r" }), { t: now + 25 * H });
    await later.init();
    expect(await ids(dir2)).toEqual([]);
  });

  it("a failed backup removes its own objects and marker", async () => {
    const dir = await tempDir();
    const engine = new FakeEngine();
    const clock = { t: T0 };
    const r = runnerAt(config(dir, { uid: "uid-r" }), clock, engine);
    await r.init();
    engine.gate = Promise.reject(new Error("engine broke"));
    engine.gate.catch(() => undefined);
    const op = await r.startBackup("api").finished;
    expect(op.state).toBe("failed");
    expect(await ids(dir)).toEqual([]);
  });

  it("single mode writes the marker too, and refuses a target another runner is writing", async () => {
    const dir = await tempDir();
    const engine = new FakeEngine();
    const held = gate();
    engine.gate = held.promise;
    const clock = { t: Date.now() };
    const A = runnerAt(config(dir, { uid: "uid-a", mode: "single" }), clock, engine);
    const run = A.startSingleBackup("exports/one");
    await engine.atGate();
    const target = join(dir, "exports", "one");
    expect((await readdir(target)).sort()).toEqual(["data.bin", "inprogress.json"]);
    const B = runnerAt(config(dir, { uid: "uid-b", mode: "single" }), clock);
    const refused = await B.startSingleBackup("exports/one").finished;
    expect(refused.state).toBe("failed");
    expect(refused.error).toMatch(/backup in progress by another runner \(uid uid-a/);
    held.open();
    expect((await run.finished).state).toBe("succeeded");
    expect((await readdir(target)).sort()).toEqual(["data.bin", "manifest.json"]);
    expect((JSON.parse(await readFile(join(target, "manifest.json"), "utf8")) as { owner: Owner }).owner).toEqual(A.owner);
  });
});
