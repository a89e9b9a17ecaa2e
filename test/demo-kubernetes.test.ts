// `npm run demo:kubernetes` (here the same script, run with this Node 24, as npm
// would): the shipped CRDs and RBAC on the test kube-apiserver, the controller
// under its own ServiceAccount, a runner started from the Secret the controller
// wrote, scheduled backups seen through `kubectl get` tables, and a Restore
// object that reaches Succeeded with the source's rows. The checks are on
// what it prints; then that no process or port of it is left.
import { processAlive } from "../pkg/common/process.ts";
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

/** The rows of every table the demo printed under `$ kubectl get <what>`, as column name → cell (cut at the header's column positions); a row is a line that starts with one of `names`. */
function tables(lines: string[], what: string, names: string[]): Record<string, string>[][] {
  const out: Record<string, string>[][] = [];
  const indent = "[demo]    ";
  for (let i = 0; i < lines.length; i++) {
    if (!lines[i]!.startsWith(`${indent}$ kubectl get ${what} `)) continue;
    const header = lines[i + 1]!.slice(indent.length);
    // kubectl separates columns by 3 spaces at least; a header name has single spaces ("LAST BACKUP").
    const cols = header.split(/\s{3,}/);
    const starts: number[] = [];
    for (const c of cols) starts.push(header.indexOf(c, starts.length ? starts[starts.length - 1]! + 1 : 0));
    const rows: Record<string, string>[] = [];
    for (let j = i + 2; j < lines.length; j++) {
      const line = lines[j]!.startsWith(indent) ? lines[j]!.slice(indent.length) : "";
      if (!names.some((n) => line.startsWith(`${n} `))) break;
      rows.push(Object.fromEntries(cols.map((c, k) => [c, line.slice(starts[k], starts[k + 1]).trim()])));
    }
    out.push(rows);
  }
  return out;
}


describe("npm run demo:kubernetes", () => {
  it("backs up on schedule and restores through a Restore object, with the shipped CRDs and RBAC, and leaves nothing running", async () => {
    const r = await execa(process.execPath, [join(repoRoot, "scripts", "demo-kubernetes.ts")], { reject: false, cwd: repoRoot, timeout: 150_000 });
    const out = r.stdout;
    if (r.exitCode !== 0) throw new Error(`exit ${r.exitCode}\n--- stderr ---\n${r.stderr}\n--- stdout ---\n${out}`);
    expect(r.stderr).toBe("");
    const lines = out.split("\n");

    // The steps, in order.
    const steps = [...out.matchAll(/^\[demo\] (\d+)\. (.*)$/gm)].map((m) => [Number(m[1]), m[2]!] as const);
    expect(steps.map(([n]) => n)).toEqual(steps.map((_, i) => i + 1));
    const titles = [
      /^Start the test servers: kube-apiserver \+ etcd, ClickHouse 18\.16, MinIO/,
      /^Install the shipped manifests/,
      /^Start the controller in this process, as ServiceAccount chbackup-system\/chbackup-controller/,
      /^Load sample data into ClickHouse/,
      /^Apply a StorageLocation \(MinIO\) and a BackupDefinition/,
      /^Play the kubelet: start `bin\/backup-runner serve` from the Secret the controller wrote/,
      /^Watch the definition while scheduled backups happen/,
      /^Create a Restore of latest into a renamed database/,
      /^Check the restored data in ClickHouse/,
      /^Shut down/,
    ];
    expect(steps.length).toBe(titles.length);
    titles.forEach((re, i) => expect(steps[i]![1]).toMatch(re));

    // The servers and their versions.
    expect(out).toMatch(/^\[demo\]    kube-apiserver v1\.\d+\.\d+ at https:\/\/127\.0\.0\.1:\d+, etcd 3\.\d+\.\d+ /m);
    expect(out).toMatch(/^\[demo\]    ClickHouse 18\.16\.\d+ at http:\/\/127\.0\.0\.1:\d+ /m);
    expect(out).toMatch(/^\[demo\]    MinIO \S+ at http:\/\/127\.0\.0\.1:\d+ /m);

    // The shipped manifests: CRDs and RBAC applied, the controller refused nothing under them.
    for (const o of ["customresourcedefinition/backupdefinitions.chbackup.dev", "customresourcedefinition/restores.chbackup.dev", "serviceaccount/chbackup-controller", "clusterrole/chbackup-controller", "clusterrolebinding/chbackup-controller", "role/chbackup-controller", "rolebinding/chbackup-controller"]) {
      expect(out).toContain(`[demo]    ${o}`);
    }
    const api = one(out, /^\[demo\]    the controller made (\d+) API requests as its ServiceAccount; refused \(403\): (\d+)$/m);
    expect(Number(api[1])).toBeGreaterThan(0);
    expect(api[2]).toBe("0");

    // The YAML applied.
    expect(out).toMatch(/^\[demo\]    kind: StorageLocation$/m);
    expect(out).toMatch(/^\[demo\]    kind: BackupDefinition$/m);
    expect(out).toMatch(/^\[demo\]    kind: Restore$/m);

    // kubectl get backupdefinitions: before the runner runs, RUNNER False; at the end True everywhere, with at least 2 backups.
    const defTables = tables(lines, "backupdefinitions", ["orders"]);
    expect(defTables.length).toBeGreaterThanOrEqual(3);
    for (const t of defTables) expect(Object.keys(t[0]!).slice(0, 4)).toEqual(["NAME", "READY", "RUNNER", "HEALTHY"]);
    expect(defTables[0]![0]).toMatchObject({ NAME: "orders", READY: "True", RUNNER: "False" });
    const last = defTables[defTables.length - 1]![0]!;
    expect(last).toMatchObject({ NAME: "orders", READY: "True", RUNNER: "True", HEALTHY: "True", FAILURES: "0", REASON: "RecentBackup" });
    expect(Number(last["BACKUPS"])).toBeGreaterThanOrEqual(2);
    const narrow = defTables.filter((t) => !("REASON" in t[0]!));
    expect(narrow[narrow.length - 1]![0]).toMatchObject({ READY: "True", RUNNER: "True", HEALTHY: "True" });
    expect(out).toMatch(/^\[demo\]    BackupHealthy=True RecentBackup: /m);

    // The source's figures.
    const source = new Map([...out.matchAll(/^\[demo\] source: shop\.(\w+) has (\d+) rows, checksum (\d+)$/gm)].map((m) => [m[1]!, { rows: Number(m[2]), sum: m[3]! }]));
    expect([...source.keys()].sort()).toEqual(["customers", "orders"]);
    expect(source.get("orders")!.rows).toBe(1_000_000);
    const sourceRows = [...source.values()].reduce((n, f) => n + f.rows, 0);

    // kubectl get restores: the Restore reaches Succeeded, with the rows restored equal to the source's.
    const restoreTables = tables(lines, "restores", ["orders-to-shop-restored"]);
    expect(restoreTables.length).toBeGreaterThanOrEqual(2);
    const done = restoreTables[restoreTables.length - 1]![0]!;
    expect(done).toMatchObject({ NAME: "orders-to-shop-restored", DEFINITION: "orders", PHASE: "Succeeded", ROWS: String(sourceRows) });
    expect(done["BACKUP"]).toMatch(new RegExp(`^${ID}$`));
    const rows = one(out, /^\[demo\] restore: status\.rowsRestored (\d+), the source has (\d+) rows$/m);
    expect(Number(rows[1])).toBe(sourceRows);
    expect(Number(rows[2])).toBe(sourceRows);

    // ClickHouse: the renamed database holds what the source holds.
    const restored = new Map([...out.matchAll(/^\[demo\] restored: shop_restored\.(\w+) has (\d+) rows, checksum (\d+)$/gm)].map((m) => [m[1]!, { rows: Number(m[2]), sum: m[3]! }]));
    expect(restored).toEqual(source);
    expect(out).toMatch(/^\[demo\] OK: the renamed database's row counts and checksums equal the source's$/m);

    // Nothing left: every process the demo started is gone, every port it used refuses connections.
    const gone = one(out, /^\[demo\]    no process left: (.*) are gone$/m);
    const pids = gone[1]!.split(", ").map((s) => s.split(" "));
    expect(pids.map(([name]) => name)).toEqual(["backup-runner", "etcd", "kube-apiserver", "clickhouse-server", "minio"]);
    for (const [, pid] of pids) expect(processAlive(Number(pid))).toBe(false);
    const ports = one(out, /^\[demo\]    ports ([\d, ]+) refuse connections$/m)[1]!.split(", ").map(Number);
    expect(ports.length).toBeGreaterThanOrEqual(6);
    for (const p of ports) expect(await isPortOpen(p)).toBe(false);

    // It says how long it took (not asserted: timing is the bench's job).
    const total = one(out, /^\[demo\] done in ([\d.]+) s$/m);
    expect(Number(total[1])).toBeGreaterThan(0);
  });

  it("without the test servers it says which are missing and which command builds them, and starts nothing", async () => {
    // An empty tools cache: kube-apiserver and MinIO are not found there (clickhouse-server and etcd come from Debian packages).
    const r = await execa(process.execPath, [join(repoRoot, "scripts", "demo-kubernetes.ts")], {
      reject: false,
      cwd: repoRoot,
      timeout: 30_000,
      env: { BACKUP_TOOLS_CACHE: join(repoRoot, "test", "no-such-tools-cache"), KUBE_APISERVER_BIN: undefined, MINIO_BIN: undefined },
    });
    expect(r.exitCode).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr).toMatch(/^\[demo\] FAILED: this demo runs on the test servers, and \d+ of them (is|are) not installed:$/m);
    expect(r.stderr).toMatch(/^\[demo\]   kube-apiserver not found .*bash scripts\/setup\.sh --test/m);
    expect(r.stderr).toMatch(/^\[demo\]   minio not found .*bash scripts\/setup\.sh --test/m);
    expect(r.stderr).toMatch(/^\[demo\] Run `bash scripts\/setup\.sh --test` once .*then `npm run demo:kubernetes` again\.$/m);
  });
});
