// The README's first command must keep working on a fresh machine: `npm run
// demo` (here the same script, run with this Node 24, as npm would) takes
// scheduled backups with label retention, restores through the runner's
// HTTP API and verifies the data. The checks are on the figures it prints.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { execa } from "execa";
import { describe, expect, it } from "vitest";
import { isPortOpen, repoRoot } from "./env/index.ts";

const ID = String.raw`\d{8}T\d{6}Z-[0-9a-f]{6}`;

function one(out: string, re: RegExp): RegExpExecArray {
  const m = re.exec(out);
  if (!m) throw new Error(`no line matches ${re}\n--- output ---\n${out}`);
  return m;
}

describe("npm run demo", () => {
  it("takes scheduled backups with retention, restores latest through the API, and verifies the data", async () => {
    const r = await execa(process.execPath, [join(repoRoot, "scripts", "demo.ts")], { reject: false, cwd: repoRoot, timeout: 150_000 });
    const out = r.stdout;
    expect(r.stderr).toBe("");
    expect(r.exitCode).toBe(0);

    // The engine is chDB: ClickHouse 26.x in-process, no external server.
    expect(out).toMatch(/ClickHouse 26\.\d+\S* \(chDB\)/);

    // Source and restored figures are printed, and equal.
    const src = one(out, /^\[demo\] source: demo\.orders has (\d+) rows, checksum (\d+); view demo\.big_orders has (\d+) rows$/m);
    const dst = one(out, /^\[demo\] restored: demo\.orders has (\d+) rows, checksum (\d+); view demo\.big_orders has (\d+) rows$/m);
    expect(Number(src[1])).toBe(1_000_000);
    expect(Number(src[3])).toBeGreaterThan(0);
    expect(src[2]).not.toBe("0");
    expect(dst[1]).toBe(src[1]);
    expect(dst[2]).toBe(src[2]);
    expect(dst[3]).toBe(src[3]);
    expect(out).toMatch(/^\[demo\] OK: restored data equals the source$/m);

    // At least three backups, all started by the scheduler: the first because the empty catalog counts as a missed run, the rest by cron ticks.
    const backups = [
      ...out.matchAll(
        new RegExp(String.raw`^\[demo\]    backup (\d+): (${ID}) by the schedule \(trigger (missed|schedule)\), ([\d,]+) rows, .*, labels \[([^\]]*)\]; retention deleted: (.*)$`, "gm"),
      ),
    ];
    expect(backups.length).toBeGreaterThanOrEqual(3);
    expect(backups.map((b) => Number(b[1]))).toEqual(backups.map((_, i) => i + 1));
    expect(backups[0]![3]).toBe("missed");
    for (const b of backups.slice(1)) expect(b[3]).toBe("schedule");
    for (const b of backups) expect(b[4]).toBe("1,000,000");
    // The first backup is the first of its hour and day on empty storage.
    expect(backups[0]![5]).toBe("hourly, daily");
    const taken = backups.map((b) => b[2]!);
    expect(new Set(taken).size).toBe(taken.length);

    // Retention deleted at least one backup, each one that had been taken earlier and holds no label.
    const deleted = backups.flatMap((b) => (b[6] === "none" ? [] : b[6]!.split(", ")));
    expect(deleted.length).toBeGreaterThan(0);
    for (const id of deleted) {
      expect(id).toMatch(new RegExp(`^${ID}$`));
      const at = taken.indexOf(id);
      expect(at).toBeGreaterThanOrEqual(0);
      expect(backups[at]![5]).toBe("");
    }
    expect(deleted).not.toContain(taken[taken.length - 1]);
    const summary = one(out, /^\[demo\] summary: (\d+) scheduled backups, retention deleted (\d+), catalog held (\d+), restored (\S+)$/m);
    expect(Number(summary[1])).toBe(taken.length);
    expect(Number(summary[2])).toBe(deleted.length);

    // The catalog from GET /api/v1/backups: taken minus deleted, newest first, sizes and rows shown.
    const catalog = [...out.matchAll(new RegExp(String.raw`^\[demo\]    (${ID})\s+(missed|schedule)\s+(\d+)\s+([\d.]+) (MiB|KiB)\s+(.*)$`, "gm"))];
    const listed = catalog.map((c) => c[1]!);
    expect([...listed].sort()).toEqual(taken.filter((id) => !deleted.includes(id)).sort());
    expect(Number(summary[3])).toBe(listed.length);
    expect(listed[0]).toBe(taken[taken.length - 1]);
    for (const c of catalog) {
      expect(Number(c[3])).toBe(1_000_000);
      expect(Number(c[4])).toBeGreaterThan(0);
    }
    expect(catalog.find((c) => c[1] === taken[0])?.[6]).toBe("hourly, daily");
    expect(catalog[0]![6]).toMatch(/kept as the newest|hourly/);

    // The restore was requested over HTTP for "latest" and restored the newest backup.
    const restore = one(out, new RegExp(String.raw`^\[demo\]    202 Accepted, Location: /api/v1/restores/([0-9a-f-]{36}) \(restore of (${ID}), the newest backup\)$`, "m"));
    expect(restore[2]).toBe(listed[0]);
    expect(summary[4]).toBe(listed[0]);
    expect(out).toMatch(new RegExp(String.raw`^\[demo\]    GET /api/v1/restores/${restore[1]} -> succeeded in [\d.]+ s: 1,000,000 rows`, "m"));
    expect(out).toMatch(/GET \/api\/v1\/status: schedule suspended, next run none, \d+ backups/);

    // Clean shutdown: the API port is closed and the temp dir is gone.
    const down = one(out, /^\[demo\]    runner service stopped, API closed \(port (\d+) refuses connections\), chDB closed, (\S+) removed$/m);
    expect(await isPortOpen(Number(down[1]))).toBe(false);
    expect(existsSync(down[2]!)).toBe(false);
    // It says how long it took (the README's "under a minute" is a measurement, not asserted here: timing is the bench's job).
    const done = one(out, /^\[demo\] done in ([\d.]+) s$/m);
    expect(Number(done[1])).toBeGreaterThan(0);
  });
});
