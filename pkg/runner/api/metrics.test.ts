// RunnerMetrics fed through its observer hooks, without a runner.
import { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { parsePrometheusText } from "../../../test/helpers/api-http.ts";
import type { Operation } from "../runner.ts";
import { RunnerMetrics } from "./metrics.ts";

const op = (over: Partial<Operation>): Operation => ({
  id: "op",
  kind: "backup",
  trigger: "api",
  state: "running",
  startedAt: "2026-01-01T00:00:00.000Z",
  progress: { phase: "x", tablesDone: 0, tablesTotal: 0, bytes: 0, rows: 0 },
  ...over,
});

const scrape = async (m: RunnerMetrics) => parsePrometheusText(await m.registry.metrics());

describe("RunnerMetrics", () => {
  it("starts every series at 0 and uses its own registry", async () => {
    const m = new RunnerMetrics({ defaultMetrics: false });
    const s = await scrape(m);
    for (const kind of ["backup", "restore", "verify"]) {
      for (const result of ["succeeded", "failed", "aborted", "cancelled"]) expect(s.get(`chbackup_runner_operations_total{kind="${kind}",result="${result}"}`)).toBe(0);
      expect(s.get(`chbackup_runner_bytes_total{kind="${kind}"}`)).toBe(0);
      expect(s.get(`chbackup_runner_rows_total{kind="${kind}"}`)).toBe(0);
      expect(s.get(`chbackup_runner_current_operation{kind="${kind}"}`)).toBe(0);
    }
    expect(s.get("chbackup_runner_consecutive_failures")).toBe(0);
    // a second instance does not clash (no global registry)
    const other = new RunnerMetrics();
    expect((await other.registry.metrics()).includes("process_cpu_user_seconds_total")).toBe(true);
  });

  it("registers in a given registry", async () => {
    const registry = new Registry();
    const m = new RunnerMetrics({ registry, defaultMetrics: false });
    expect(m.registry).toBe(registry);
    expect(await registry.getSingleMetric("chbackup_runner_backups")).toBeDefined();
  });

  it("tracks a backup, a failed restore and retention", async () => {
    const m = new RunnerMetrics({ defaultMetrics: false });
    const o = m.observer();
    const b = op({ kind: "backup" });
    o.operationStarted?.(b);
    expect((await scrape(m)).get('chbackup_runner_current_operation{kind="backup"}')).toBe(1);
    o.bytes?.("backup", 1000);
    o.bytes?.("backup", 24);
    o.rows?.("backup", 10);
    Object.assign(b, { state: "succeeded", endedAt: "2026-01-01T00:01:30.000Z", durationMs: 90_000 });
    o.operationFinished?.(b);
    o.retention?.({ hourly: 1, daily: 1 }, 3);

    const r = op({ id: "r", kind: "restore" });
    o.operationStarted?.(r);
    r.progress = { ...r.progress, bytes: 500 };
    expect((await scrape(m)).get('chbackup_runner_bytes_total{kind="restore"}')).toBe(500); // live while running
    r.progress = { ...r.progress, bytes: 800 };
    o.rows?.("restore", 5);
    Object.assign(r, { state: "failed", endedAt: "2026-01-01T00:02:00.000Z", durationMs: 2000, error: "boom" });
    o.operationFinished?.(r);
    const a = op({ id: "a", kind: "backup" });
    o.operationStarted?.(a);
    Object.assign(a, { state: "aborted", durationMs: 10 });
    o.operationFinished?.(a);

    const s = await scrape(m);
    expect(s.get('chbackup_runner_operations_total{kind="backup",result="succeeded"}')).toBe(1);
    expect(s.get('chbackup_runner_operations_total{kind="backup",result="aborted"}')).toBe(1);
    expect(s.get('chbackup_runner_operations_total{kind="restore",result="failed"}')).toBe(1);
    expect(s.get('chbackup_runner_bytes_total{kind="backup"}')).toBe(1024);
    expect(s.get('chbackup_runner_bytes_total{kind="restore"}')).toBe(800);
    expect(s.get('chbackup_runner_rows_total{kind="backup"}')).toBe(10);
    expect(s.get('chbackup_runner_rows_total{kind="restore"}')).toBe(5);
    expect(s.get('chbackup_runner_last_success_timestamp_seconds{kind="backup"}')).toBe(Date.parse("2026-01-01T00:01:30.000Z") / 1000);
    expect(s.get('chbackup_runner_last_success_timestamp_seconds{kind="restore"}')).toBeUndefined();
    expect(s.get("chbackup_runner_consecutive_failures")).toBe(2);
    expect(s.get('chbackup_runner_current_operation{kind="backup"}')).toBe(0);
    expect(s.get('chbackup_runner_current_operation{kind="restore"}')).toBe(0);
    expect(s.get("chbackup_runner_backups")).toBe(3);
    expect(s.get('chbackup_runner_backups_by_label{label="hourly"}')).toBe(1);
    expect(s.get('chbackup_runner_backups_by_label{label="weekly"}')).toBe(0);
    expect(s.get('chbackup_runner_operation_duration_seconds_bucket{le="60",kind="backup"}')).toBe(1); // the aborted 10 ms one
    expect(s.get('chbackup_runner_operation_duration_seconds_bucket{le="120",kind="backup"}')).toBe(2);
    expect(s.get('chbackup_runner_operation_duration_seconds_sum{kind="backup"}')).toBeCloseTo(90.01);
  });

  it("does not double-count restore bytes reported both ways", async () => {
    const m = new RunnerMetrics({ defaultMetrics: false });
    const o = m.observer();
    const r = op({ kind: "restore" });
    o.operationStarted?.(r);
    o.bytes?.("restore", 300);
    r.progress = { ...r.progress, bytes: 300 };
    o.bytes?.("restore", 200);
    r.progress = { ...r.progress, bytes: 500 };
    Object.assign(r, { state: "succeeded", durationMs: 1 });
    o.operationFinished?.(r);
    expect((await scrape(m)).get('chbackup_runner_bytes_total{kind="restore"}')).toBe(500);
  });
});
