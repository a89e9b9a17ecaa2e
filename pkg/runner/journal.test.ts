import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { waitUntil } from "../../test/env/proc.ts";
import { createLogger } from "./logging.ts";
import { OperationJournal, journalFileName, markInterrupted, maybeStillRunning, parseJournalEntry } from "./journal.ts";
import type { Operation } from "./runner.ts";

const owner = { id: "runner-a" };
const silent = createLogger({ silent: true });

function op(id: string, startedAt: string, extra: Partial<Operation> = {}): Operation {
  return { id, kind: "restore", trigger: "api", state: "running", startedAt, progress: { phase: "starting", tablesDone: 0, tablesTotal: 0, bytes: 0, rows: 0 }, ...extra };
}

describe("operation journal", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "journal-"));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const read = async (o: Operation) => parseJournalEntry(await readFile(join(dir, journalFileName(o)), "utf8"), "test");

  it("writes at start, on phase changes and at the end; progress ticks only after the throttle interval", async () => {
    const j = new OperationJournal({ dir, owner, logger: silent, throttleMs: 60_000 });
    const o = op("a", "2026-01-01T00:00:00.000Z");
    j.begin(o);
    await j.flush();
    expect((await read(o)).operation.state).toBe("running");
    // a progress tick in the same phase is not written at once
    o.progress = { ...o.progress, rows: 10 };
    j.update(o);
    await j.flush();
    expect((await read(o)).operation.progress.rows).toBe(0);
    // a phase change is
    o.progress = { phase: "staging", tablesDone: 1, tablesTotal: 3, bytes: 100, rows: 20, currentTable: "db.t" };
    j.update(o);
    await j.flush();
    expect((await read(o)).operation.progress).toEqual({ phase: "staging", tablesDone: 1, tablesTotal: 3, bytes: 100, rows: 20, currentTable: "db.t" });
    o.state = "succeeded";
    o.endedAt = "2026-01-01T00:01:00.000Z";
    await j.end(o);
    const e = await read(o);
    expect(e.operation.state).toBe("succeeded");
    expect(e.owner).toEqual(owner);
    expect(e.pid).toBe(process.pid);
    // no temp file is left
    expect(await readdir(dir)).toEqual([journalFileName(o)]);
  });

  it("a trailing write records the last progress of a quiet spell", async () => {
    const j = new OperationJournal({ dir, owner, logger: silent, throttleMs: 50 });
    const o = op("b", "2026-01-01T00:00:00.000Z");
    j.begin(o);
    await j.flush();
    o.progress = { ...o.progress, rows: 42 };
    j.update(o);
    // no flush before the file shows it: the trailing write alone must record it
    await waitUntil("trailing write", async () => (await read(o)).operation.progress.rows === 42, { timeoutMs: 10_000, intervalMs: 10 });
  });

  it("at load, running operations of a dead process become interrupted, once", async () => {
    const j = new OperationJournal({ dir, owner, logger: silent });
    const running = op("run", "2026-01-01T00:00:00.000Z", { progress: { phase: "staging", tablesDone: 1, tablesTotal: 2, bytes: 5, rows: 7, currentTable: "db.t" } });
    const done = op("done", "2026-01-01T00:00:01.000Z", { state: "succeeded", endedAt: "2026-01-01T00:00:02.000Z" });
    j.begin(running);
    j.begin(done);
    await j.end(done);
    await j.flush();
    // pretend the process that wrote them is gone
    for (const name of await readdir(dir)) {
      const text = JSON.parse(await readFile(join(dir, name), "utf8")) as Record<string, unknown>;
      await writeFile(join(dir, name), JSON.stringify({ ...text, pid: 999_999_999 }));
    }
    const fresh = new OperationJournal({ dir, owner, logger: silent });
    const loaded = await fresh.load(() => false);
    expect(loaded.operations.map((o) => [o.id, o.state])).toEqual([
      ["run", "interrupted"],
      ["done", "succeeded"],
    ]);
    expect(loaded.interrupted).toHaveLength(1);
    const i = loaded.interrupted[0]!;
    expect(i.progress).toEqual(running.progress);
    expect(i.error).toMatch(/^interrupted: the runner stopped/);
    expect(i.error).toContain("1/2 tables");
    expect(i.error).toContain("at db.t");
    expect(i.endedAt).toBeDefined();
    // the file now says interrupted: a second start does not report it again
    const again = await new OperationJournal({ dir, owner, logger: silent }).load(() => false);
    expect(again.interrupted).toEqual([]);
    expect(again.operations.find((o) => o.id === "run")?.state).toBe("interrupted");
  });

  it("a running operation of another live process on this host is left alone", () => {
    expect(maybeStillRunning({ host: "h", pid: 10 }, { host: "h", pid: 11 }, () => true)).toBe(true);
    expect(maybeStillRunning({ host: "h", pid: 10 }, { host: "h", pid: 11 }, () => false)).toBe(false);
    // the same pid is this process's previous life (a restarted container), not a live one
    expect(maybeStillRunning({ host: "h", pid: 1 }, { host: "h", pid: 1 }, () => true)).toBe(false);
    expect(maybeStillRunning({ host: "other", pid: 10 }, { host: "h", pid: 11 }, () => true)).toBe(false);
  });

  it("keeps the newest N files, never the one being written", async () => {
    const j = new OperationJournal({ dir, owner, logger: silent, keep: 3 });
    for (let i = 0; i < 6; i++) {
      const o = op(`op${i}`, `2026-01-01T00:00:0${i}.000Z`, { state: "succeeded" });
      j.begin(o);
      await j.end(o);
    }
    await j.flush();
    await waitUntil("old files pruned", async () => (await readdir(dir)).length <= 4, { timeoutMs: 10_000, intervalMs: 10 });
    const names = (await readdir(dir)).sort();
    expect(names.length).toBeLessThanOrEqual(4);
    expect(names.at(-1)).toContain("op5");
    expect(names.some((n) => n.includes("op0"))).toBe(false);
  });

  it("a state directory that cannot be written does not fail anything; it is logged once", async () => {
    const lines: string[] = [];
    const { Writable } = await import("node:stream");
    const logger = createLogger({ stream: new Writable({ write: (c: Buffer, _e, cb) => (lines.push(c.toString()), cb()) }) });
    await writeFile(join(dir, "file"), "x");
    const j = new OperationJournal({ dir: join(dir, "file", "sub"), owner, logger });
    const o = op("c", "2026-01-01T00:00:00.000Z");
    j.begin(o);
    o.progress = { ...o.progress, phase: "next" };
    j.update(o);
    o.state = "failed";
    await j.end(o);
    await j.flush();
    expect(lines.filter((l) => l.includes("operation journal write failed"))).toHaveLength(1);
  });

  it("without a state directory nothing is written locally, and load finds nothing", async () => {
    const j = new OperationJournal({ dir: undefined, owner, logger: silent });
    const o = op("d", "2026-01-01T00:00:00.000Z");
    j.begin(o);
    await j.end(o);
    expect((await j.load()).operations).toEqual([]);
  });

  it("markInterrupted says what it means for each kind", () => {
    const base = op("e", "2026-01-01T00:00:00.000Z");
    expect(markInterrupted(base, "2026-01-01T00:00:05.000Z")).toMatchObject({ state: "interrupted", durationMs: 5000, retryable: true });
    expect(markInterrupted(base, "x").error).toContain("staging tables");
    expect(markInterrupted({ ...base, kind: "backup" }, "x").error).toContain("never listed");
    expect(markInterrupted({ ...base, kind: "verify" }, "x").error).toContain("nothing was changed");
  });
});
