// The catalog under races and bad storage, with a real filesystem store and a
// fake engine: pins against retention passes (a pin that succeeded is never
// deleted), and manifests that cannot be read (retried, then kept as unreadable).
import { mkdir, mkdtemp, rm, writeFile, readdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { parseRunnerConfig, type RunnerConfig } from "../apis/index.ts";
import { createFilesystemStore, StorageError } from "../storage/index.ts";
import { FakeEngine } from "../../test/helpers/api-fake.ts";
import { heldGate, hookStore } from "../../test/helpers/hooked-store.ts";
import { BackupNotFoundError, BackupUnreadableError } from "./errors.ts";
import { newBackupId } from "./ids.ts";
import { createLogger } from "./logging.ts";
import { Runner } from "./runner.ts";

const silent = createLogger({ silent: true });
const T0 = Date.parse("2026-03-02T10:00:00Z");
const dirs: string[] = [];

afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

function config(dir: string, retention: Record<string, number> = { hourly: 1 }): RunnerConfig {
  return parseRunnerConfig({
    definition: {
      namespace: "shop",
      name: "orders",
      clickhouse: { url: "http://127.0.0.1:9" },
      schedule: { cron: "0 0 1 1 *", timeZone: "UTC" },
      retention,
    },
    storage: { filesystem: { path: dir } },
    api: { token: "catalog-test-token-0123" },
  });
}

/** A runner whose clock reads `now.t` (ms). */
async function setup(retention?: Record<string, number>) {
  const dir = await mkdtemp(join(tmpdir(), "catalog-unit-"));
  dirs.push(dir);
  const store = hookStore(createFilesystemStore({ root: dir }));
  const now = { t: T0 };
  const make = (opts: { retry?: boolean } = {}) =>
    new Runner({
      config: config(dir, retention),
      store,
      engine: new FakeEngine(),
      logger: silent,
      clock: () => new Date(now.t),
      manifestReadRetry: { attempts: opts.retry === false ? 1 : 4, baseDelayMs: 1 },
    });
  const runner = make();
  await runner.init();
  const backup = async (atMs: number) => {
    now.t = atMs;
    const op = await runner.startBackup("api").finished;
    expect(op.error).toBeUndefined();
    return op.backupId!;
  };
  const exists = async (id: string) => (await readdir(join(dir, "shop", "orders"))).includes(id);
  return { dir, store, runner, now, make, backup, exists };
}

const settled = async <T>(p: Promise<T>): Promise<"pending" | "fulfilled" | "rejected"> => {
  let state: "pending" | "fulfilled" | "rejected" = "pending";
  p.then(
    () => (state = "fulfilled"),
    () => (state = "rejected"),
  );
  for (let i = 0; i < 20; i++) await new Promise((r) => setTimeout(r, 2));
  return state;
};

describe("pin and retention are serialized", () => {
  it("a pin that arrives while retention is deleting the backup waits, then gets not-found; it never succeeds for a deleted backup", async () => {
    const s = await setup({ hourly: 1 });
    const b1 = await s.backup(T0);
    const b2 = await s.backup(T0 + 60_000); // kept as the newest
    // The third backup makes b2 deletable; hold the deletion of b2's manifest.
    const gate = heldGate();
    s.store.hooks.delete = async (keys) => {
      if (keys.some((k) => k.endsWith(`${b2}/manifest.json`))) await gate.wait();
    };
    s.now.t = T0 + 120_000;
    const third = s.runner.startBackup("api").finished;
    await gate.reached; // retention has decided to delete b2 and is deleting it
    const pin = s.runner.catalog.setPinned(b2, true);
    expect(await settled(pin)).toBe("pending");
    gate.open();
    await expect(pin).rejects.toBeInstanceOf(BackupNotFoundError);
    const op = await third;
    expect((op.result as { deleted: string[] }).deleted).toEqual([b2]);
    expect(await s.exists(b2)).toBe(false);
    expect(s.runner.catalog.get(b2)).toBeUndefined();
    expect(await s.exists(b1)).toBe(true);
  });

  it("a retention pass that starts while a pin is being written waits for it, and keeps the pinned backup", async () => {
    const s = await setup({ hourly: 1 });
    await s.backup(T0);
    const b2 = await s.backup(T0 + 60_000);
    const gate = heldGate();
    s.store.hooks.put = async (key) => {
      if (key.endsWith(`${b2}/pinned.json`)) await gate.wait();
    };
    const pin = s.runner.catalog.setPinned(b2, true);
    await gate.reached; // the pin is being written
    s.now.t = T0 + 120_000;
    const third = s.runner.startBackup("api").finished;
    expect(await settled(third)).toBe("pending");
    gate.open();
    expect((await pin).pinned).toBe(true);
    const op = await third;
    expect(op.state).toBe("succeeded");
    expect((op.result as { deleted: string[] }).deleted).toEqual([]);
    expect(s.runner.catalog.get(b2)?.pinned).toBe(true);
    expect(await s.exists(b2)).toBe(true);
    expect(s.runner.retentionDecision().reasons.get(b2)).toContain("pinned");
  });
});

describe("unreadable manifests", () => {
  it("retries a manifest read that fails transiently, with a bound", async () => {
    const s = await setup();
    const b1 = await s.backup(T0);
    let failures = 2;
    s.store.hooks.get = (key) => {
      if (key.endsWith(`${b1}/manifest.json`) && failures-- > 0) throw new StorageError("connection reset", { op: "get", key, retryable: true });
    };
    const fresh = s.make();
    await fresh.init();
    expect(fresh.catalog.get(b1)).toBeDefined();
    expect(fresh.catalog.unreadable()).toEqual([]);
    expect(s.store.gets.filter((k) => k.endsWith(`${b1}/manifest.json`)).length).toBeGreaterThanOrEqual(3);

    // A read that keeps failing is tried exactly `attempts` times.
    s.store.gets.length = 0;
    s.store.hooks.get = (key) => {
      if (key.endsWith(`${b1}/manifest.json`)) throw new StorageError("connection reset", { op: "get", key, retryable: true });
    };
    const again = s.make();
    await again.init();
    expect(s.store.gets.filter((k) => k.endsWith(`${b1}/manifest.json`))).toHaveLength(4);
    expect(again.catalog.unreadable().map((u) => u.id)).toEqual([b1]);
    expect(again.catalog.unreadable()[0]!.error).toMatch(/connection reset/);
  });

  it("keeps a backup whose manifest stays unreadable: listed, never deleted, not restorable, not the newest", async () => {
    const s = await setup({ hourly: 1 });
    const b1 = await s.backup(T0); // first of its hour: holds the label
    const b2 = await s.backup(T0 + 60_000); // kept only as the newest
    // Two more backups whose manifests cannot be read: an older one with garbage, a newer one whose reads keep failing.
    const u1 = newBackupId(new Date(T0 - 3_600_000));
    const u2 = newBackupId(new Date(T0 + 120_000));
    for (const [id, body] of [
      [u1, "{ not json"],
      [u2, "{}"],
    ] as const) {
      await mkdir(join(s.dir, "shop", "orders", id), { recursive: true });
      await writeFile(join(s.dir, "shop", "orders", id, "data.bin"), "x");
      await writeFile(join(s.dir, "shop", "orders", id, "manifest.json"), body);
    }
    s.store.hooks.get = (key) => {
      if (key.endsWith(`${u2}/manifest.json`)) throw new StorageError("internal error", { op: "get", key, retryable: true });
    };
    const fresh = s.make();
    await fresh.init(); // incomplete cleanup and a retention pass ran
    expect(fresh.catalog.unreadable().map((u) => [u.id, u.error])).toEqual([
      [u2, expect.stringContaining("internal error")],
      [u1, expect.stringContaining("not valid JSON")],
    ]);
    expect(fresh.catalog.list().map((e) => e.manifest.id)).toEqual([b2, b1]);
    // u2 is newer than b2 but does not count as the newest: b2 is still kept as "latest".
    expect(fresh.retentionDecision().reasons.get(b2)).toEqual(["latest"]);
    expect(fresh.latest()?.manifest.id).toBe(b2);
    expect(fresh.status().unreadableBackups).toBe(2);
    expect(fresh.status().warnings.join("\n")).toContain(u2);
    for (const id of [b1, b2, u1, u2]) expect(await s.exists(id)).toBe(true);

    // Not restorable, not pinnable, not removable, with a clear error.
    expect(() => fresh.resolveBackup(u2)).toThrow(BackupUnreadableError);
    expect(() => fresh.startRestore({ backup: u2, existingTables: "fail" })).toThrow(/manifest could not be read/);
    await expect(fresh.catalog.setPinned(u2, true)).rejects.toBeInstanceOf(BackupUnreadableError);
    await expect(fresh.catalog.remove(u1)).rejects.toBeInstanceOf(BackupUnreadableError);

    // A new backup: retention deletes b2 (no label, no longer the newest) and leaves the unreadable ones.
    s.now.t = T0 + 180_000;
    const op = await fresh.startBackup("api").finished;
    expect((op.result as { deleted: string[] }).deleted).toEqual([b2]);
    for (const id of [b1, u1, u2]) expect(await s.exists(id)).toBe(true);
    expect(fresh.catalog.unreadable()).toHaveLength(2);
  });

  it("does not retry what was read but is not a valid manifest", async () => {
    const s = await setup();
    const b1 = await s.backup(T0);
    await writeFile(join(s.dir, "shop", "orders", b1, "manifest.json"), JSON.stringify({ format: 1, id: b1 }));
    s.store.gets.length = 0;
    const fresh = s.make();
    await fresh.init();
    expect(s.store.gets.filter((k) => k.endsWith(`${b1}/manifest.json`))).toHaveLength(1);
    expect(fresh.catalog.unreadable()[0]?.error).toMatch(/manifest .*namespace/);
  });
});
