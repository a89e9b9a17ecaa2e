// npm run bench: dump-method throughput and memory against baselines measured
// in the same run, on ClickHouse 18.16 (local process) and MinIO.
//
// For each data size it prints:
//   raw export      SELECT * FORMAT Native over HTTP to /dev/null with curl (baseline)
//   node export     the same read by Node through @clickhouse/client (a second, slower
//                   baseline: Node's HTTP client costs about 1 s of CPU per GiB here)
//   raw insert      INSERT ... FORMAT Native of the same data from a local file (baseline)
// and, for each compression of the dump method:
//   runner backup   backup-runner backup --once to MinIO
//   runner restore  backup-runner restore --from (download, decompress, INSERT)
// with the runner's peak RSS (GNU time's maximum resident set size).
// Ratios compare the runner's operation time (it reports it) with the
// baseline; the process wall time, including Node start-up, is shown too.
// "cpu" is the CPU time (user + system) that the runner process, ClickHouse
// and MinIO each used during the step: on a 2-core machine the three share
// the cores, so their sum bounds how fast a step can be.
//
// Before each measured step the machine settles (no merge running, dirty pages
// written back), so no step pays for background work an earlier one left.
//
// With --baseline REF the same steps also run with the runner as it was at the
// git commit REF (checked out into a temporary worktree and compiled), in the
// same run, and the rows "vs baseline" give this runner's speed against that
// one: how much row counting and staged restores cost, for example.
//
// With --encryption each compression is also measured with client-side encryption (age, one
// X25519 recipient; the restore with --identity), right after the unencrypted steps, and the
// rows "age backup" / "age restore" give its speed against the unencrypted runner of the same run.
//
// Usage: npm run bench [-- --sizes 0.25,1.1] [--compression zstd,lz4] [--level N] [--repeat N] [--pin] [--baseline REF] [--encryption] [--cpu-prof DIR]
//   --cpu-prof DIR  write a V8 CPU profile of every runner process into DIR (profiling slows the runner)
//   --repeat N  measure everything N times per size (one data load), to see the spread
//   --pin       a cluster-like split of the 2 cores: ClickHouse and MinIO on CPU 0, the client
//               side (the runner, and this process for the raw baselines) on CPU 1 (taskset)
import { randomBytes } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { readFile, stat, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { pipeline } from "node:stream/promises";
import { Writable } from "node:stream";
import { parseArgs } from "node:util";
import { generateX25519Identity, identityToRecipient } from "age-encryption";
import { execa } from "execa";
import { startClickHouse, startMinio, makeTempDir, removeDir, repoRoot, type ClickHouseServer } from "../test/env/index.ts";

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;
// Five columns as in the design's reference measurement: ~36 bytes per row as Native.
const BYTES_PER_ROW = 35.9;

const { values } = parseArgs({
  options: {
    sizes: { type: "string", default: "0.25,1.1" },
    level: { type: "string" },
    compression: { type: "string", default: "zstd,lz4" },
    repeat: { type: "string", default: "1" },
    pin: { type: "boolean", default: false },
    baseline: { type: "string" },
    encryption: { type: "boolean", default: false },
    "cpu-prof": { type: "string" },
  },
});
const sizes = values.sizes.split(",").map(Number);
const level = values.level === undefined ? undefined : Number(values.level);
const codecs = values.compression.split(",") as ("zstd" | "lz4")[];
const repeat = Math.max(1, Number(values.repeat));
const pin = values.pin;
const SERVER_CPU = "0";
const CLIENT_CPU = "1";

const out = (s: string) => process.stdout.write(`${s}\n`);

async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const t = performance.now();
  const value = await fn();
  return { ms: performance.now() - t, value };
}

const clockTicks = Number((await execa("getconf", ["CLK_TCK"])).stdout) || 100;

/** CPU time (user + system, ms) a process has used so far, all threads. */
async function procCpuMs(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return ((Number(f[11]) + Number(f[12])) * 1000) / clockTicks; // utime, stime
}

/** CPU used by the servers while `fn` runs. */
async function serverCpu<T>(pids: { ch: number; minio: number }, fn: () => Promise<T>): Promise<{ value: T; chMs: number; minioMs: number }> {
  const [c0, m0] = [await procCpuMs(pids.ch), await procCpuMs(pids.minio)];
  const value = await fn();
  return { value, chMs: (await procCpuMs(pids.ch)) - c0, minioMs: (await procCpuMs(pids.minio)) - m0 };
}

/** Pins every thread of a process to `cpus` (taskset). */
async function pinProcess(pid: number, cpus: string): Promise<void> {
  await execa("taskset", ["-a", "-p", "-c", cpus, String(pid)]);
}

/**
 * Runs a client-side command under GNU time (and on the client CPU with --pin):
 * its result with the command's peak RSS and CPU time (user + system).
 */
async function timedClient(cmd: string[], opts: { input?: string; env?: Record<string, string> } = {}) {
  const timeArgs = ["-f", "MAXRSS %M CPU %U %S", ...cmd];
  const r = await execa(pin ? "taskset" : "/usr/bin/time", pin ? ["-c", CLIENT_CPU, "/usr/bin/time", ...timeArgs] : timeArgs, { ...opts, reject: false });
  const m = /MAXRSS (\d+) CPU ([\d.]+) ([\d.]+)/.exec(r.stderr);
  return { ...r, maxRssKiB: Number(m?.[1] ?? 0), cpuMs: (Number(m?.[2] ?? 0) + Number(m?.[3] ?? 0)) * 1000 };
}

/** SELECT ... FORMAT Native to /dev/null with curl: the export with the least client-side cost. */
async function curlExport(ch: ClickHouseServer): Promise<{ bytes: number; cpuMs: number }> {
  // credentials through curl's config on stdin, not the command line
  const config = `user = "${ch.username}:${ch.password}"\n`;
  const r = await timedClient(
    ["curl", "-sS", "--fail", "-K", "-", "-o", "/dev/null", "-w", "%{size_download}", "--data-binary", "SELECT * FROM bench.t FORMAT Native", ch.url],
    { input: config },
  );
  if (r.exitCode !== 0) throw new Error(`curl export failed:\n${r.stderr}`);
  return { bytes: Number(r.stdout), cpuMs: r.cpuMs };
}

async function rawExport(ch: ClickHouseServer, file?: string): Promise<number> {
  const c = ch.client();
  try {
    const rs = await c.exec({ query: "SELECT * FROM bench.t FORMAT Native" });
    let n = 0;
    const sink = file
      ? createWriteStream(file)
      : new Writable({
          write(chunk: Buffer, _e, cb) {
            n += chunk.length;
            cb();
          },
        });
    await pipeline(rs.stream, sink);
    return file ? (await stat(file)).size : n;
  } finally {
    await c.close();
  }
}

async function rawInsert(ch: ClickHouseServer, file: string, table: string): Promise<void> {
  const c = ch.client();
  try {
    await c.exec({ query: `INSERT INTO ${table} FORMAT Native`, values: createReadStream(file, { highWaterMark: 1024 * 1024 }) });
  } finally {
    await c.close();
  }
}

interface RunnerRun {
  ms: number;
  opMs: number;
  maxRssKiB: number;
  /** user + system CPU of the runner process, start-up included */
  cpuMs: number;
  bytes: number;
}

async function runRunner(args: string[], configPath: string, root = repoRoot): Promise<RunnerRun> {
  const t = performance.now();
  // bin/backup-runner: the compiled runner with the V8 limits it is deployed with.
  const r = await timedClient([join(root, "bin", "backup-runner"), ...args, "--config", configPath], {
    env: {
      LOG_LEVEL: "warn",
      PATH: `${dirname(process.execPath)}:${process.env["PATH"] ?? ""}`,
      // --cpu-prof DIR: a V8 CPU profile of every runner process, for where the runner's CPU goes
      ...(values["cpu-prof"] ? { BACKUP_RUNNER_NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${values["cpu-prof"]}` } : {}),
    },
  });
  const ms = performance.now() - t;
  if (r.exitCode !== 0) throw new Error(`backup-runner ${args.join(" ")} failed:\n${r.stdout}\n${r.stderr}`);
  const res = JSON.parse(r.stdout.trim().split("\n").pop() ?? "{}") as { durationMs?: number; result?: { bytes?: number } };
  return {
    ms,
    opMs: res.durationMs ?? ms,
    maxRssKiB: r.maxRssKiB,
    cpuMs: r.cpuMs,
    bytes: res.result?.bytes ?? 0,
  };
}

const mbps = (bytes: number, ms: number) => bytes / MiB / (ms / 1000);

/**
 * Lets the machine settle before a measured step, so that no step pays for
 * the background work an earlier one left behind: ClickHouse merges of the
 * parts a load or restore wrote, and the kernel writing back the page cache
 * that inserts and MinIO uploads dirtied (on its own clock, 30 s later, in
 * the middle of whatever runs then).
 */
async function settle(ch: ClickHouseServer): Promise<void> {
  for (let i = 0; i < 1200; i++) {
    const [m] = await ch.query<{ c: string }>("SELECT toString(count()) AS c FROM system.merges");
    if (m?.c === "0") break;
    await new Promise((r) => setTimeout(r, 100));
  }
  await execa("sync");
}

/** OPTIMIZE ... FINAL is a no-op while a background merge holds the parts: repeat until the table is one part. */
async function mergeToOnePart(ch: ClickHouseServer, database: string, table: string): Promise<void> {
  for (let i = 0; i < 600; i++) {
    await ch.exec(`OPTIMIZE TABLE ${database}.${table} FINAL`);
    const [p] = await ch.query<{ c: string }>(
      `SELECT toString(count()) AS c FROM system.parts WHERE database = '${database}' AND table = '${table}' AND active`,
    );
    if (p?.c === "1") return;
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`${database}.${table} did not merge into one part`);
}

async function benchSize(gib: number): Promise<void> {
  const rows = Math.round((gib * GiB) / BYTES_PER_ROW);
  const [ch, minio] = await Promise.all([startClickHouse(), startMinio()]);
  const dir = await makeTempDir("bench");
  try {
    const pids = { ch: ch.pid(), minio: minio.pid() };
    if (pin) {
      await pinProcess(pids.ch, SERVER_CPU);
      await pinProcess(pids.minio, SERVER_CPU);
      await pinProcess(process.pid, CLIENT_CPU);
    }
    const bucket = await minio.createBucket("bench");
    await ch.exec("CREATE DATABASE bench");
    await ch.exec("CREATE TABLE bench.t (id UInt64, ts DateTime, user UInt32, value Float64, label String) ENGINE = MergeTree ORDER BY id");
    out(`\n== ${gib} GiB target: loading ${rows.toLocaleString("en")} rows into ClickHouse ${ch.version} ...`);
    await ch.exec(
      `INSERT INTO bench.t SELECT number, toDateTime('2026-01-01 00:00:00') + number % 31536000, number % 100000, number / 7, concat('label-', toString(number % 1000)) FROM system.numbers LIMIT ${rows}`,
    );
    // One part, no background merges competing with the measurements.
    await mergeToOnePart(ch, "bench", "t");
    const nativeFile = join(dir, "t.native");
    // Warms the page cache, and keeps a Native copy for the raw insert baseline.
    const bytes = await rawExport(ch, nativeFile);
    out(`Native data: ${(bytes / MiB).toFixed(0)} MiB (${(bytes / GiB).toFixed(2)} GiB), ${rows.toLocaleString("en")} rows`);
    if (pin) out(`pinned: ClickHouse and MinIO on CPU ${SERVER_CPU}; the runner and the raw baselines' client (this process) on CPU ${CLIENT_CPU}`);

    const row = (name: string, ms: number, base?: number, extra = "") =>
      out(
        `${name.padEnd(16)} ${(ms / 1000).toFixed(2).padStart(6)} s ${mbps(bytes, ms).toFixed(0).padStart(5)} MiB/s${base ? `   ratio ${(base / ms).toFixed(2)}x` : ""}${extra}`,
      );
    const cpu = (s: { chMs: number; minioMs: number }, runnerMs?: number) =>
      `   cpu${runnerMs === undefined ? "" : ` runner ${(runnerMs / 1000).toFixed(2)}`} clickhouse ${(s.chMs / 1000).toFixed(2)} minio ${(s.minioMs / 1000).toFixed(2)} s`;

    // operation times per codec and step, for the medians printed at the end (--encryption)
    const times = new Map<string, number[]>();
    const note = (key: string, ms: number) => times.set(key, [...(times.get(key) ?? []), ms]);
    for (let rep = 1; rep <= repeat; rep++) {
      if (repeat > 1) out(`-- run ${rep} of ${repeat}`);
      await settle(ch);
      const exp = await serverCpu(pids, () => timed(() => curlExport(ch)));
      if (exp.value.value.bytes !== bytes) throw new Error(`curl export: ${exp.value.value.bytes} bytes, expected ${bytes}`);
      await settle(ch);
      const nodeExp = await serverCpu(pids, () => timed(() => rawExport(ch)));
      await ch.exec("CREATE TABLE bench.scratch AS bench.t");
      await settle(ch);
      const ins = await serverCpu(pids, () => timed(() => rawInsert(ch, nativeFile, "bench.scratch")));
      await ch.exec("DROP TABLE bench.scratch");
      row("raw export", exp.value.ms, undefined, `${cpu(exp)}, curl ${(exp.value.value.cpuMs / 1000).toFixed(2)} s`);
      row("node export", nodeExp.value.ms, undefined, cpu(nodeExp));
      row("raw insert", ins.value.ms, undefined, cpu(ins));
      for (const codec of codecs) {
        const target = `bench-${codec}-${rep}`;
        const config = {
          definition: {
            namespace: "bench",
            name: "t",
            clickhouse: {
              url: ch.url,
              username: ch.username,
              password: ch.password,
              databases: { include: ["bench"] },
              compression: codec,
              ...(level === undefined ? {} : { compressionLevel: level }),
            },
            mode: "single",
            singleBackup: { target },
          },
          storage: {
            s3: { endpoint: minio.endpoint, region: minio.region, bucket, forcePathStyle: true, accessKeyId: minio.accessKeyId, secretAccessKey: minio.secretAccessKey },
          },
          api: { token: randomBytes(16).toString("hex") },
        };
        const configPath = join(dir, `config-${codec}-${rep}.json`);
        await writeFile(configPath, JSON.stringify(config));
        await settle(ch);
        const backup = await serverCpu(pids, () => runRunner(["backup", "--once"], configPath));
        await ch.exec("RENAME TABLE bench.t TO bench.keep");
        await settle(ch);
        const restore = await serverCpu(pids, () => runRunner(["restore", "--from", target], configPath));
        const [check] = await ch.query<{ c: string }>("SELECT toString(count()) AS c FROM bench.t");
        if (Number(check?.c) !== rows) throw new Error(`restore check: ${check?.c} rows, expected ${rows}`);
        await ch.exec("DROP TABLE bench.t");
        await ch.exec("RENAME TABLE bench.keep TO bench.t");
        const b = backup.value;
        const r = restore.value;
        out(`-- dump, compression ${codec}: ${(b.bytes / MiB).toFixed(0)} MiB stored (${(bytes / b.bytes).toFixed(1)}:1)`);
        row("runner backup", b.opMs, exp.value.ms, ` (${(nodeExp.value.ms / b.opMs).toFixed(2)}x node export)   wall ${(b.ms / 1000).toFixed(2)} s, peak RSS ${(b.maxRssKiB / 1024).toFixed(0)} MiB${cpu(backup, b.cpuMs)}`);
        row("runner restore", r.opMs, ins.value.ms, `   wall ${(r.ms / 1000).toFixed(2)} s, peak RSS ${(r.maxRssKiB / 1024).toFixed(0)} MiB${cpu(restore, r.cpuMs)}`);
        if (values.encryption) {
          // the same two steps with the backup encrypted to one age recipient, restored with its identity
          const identity = await generateX25519Identity();
          const keyFile = join(dir, "age-identity.txt");
          await writeFile(keyFile, `${identity}\n`, { mode: 0o600 });
          const encTarget = `${target}-age`;
          const encConfig = join(dir, `config-${codec}-${rep}-age.json`);
          await writeFile(
            encConfig,
            JSON.stringify({ ...config, definition: { ...config.definition, singleBackup: { target: encTarget }, encryption: { recipients: [await identityToRecipient(identity)] } } }),
          );
          await settle(ch);
          const eb = await serverCpu(pids, () => runRunner(["backup", "--once"], encConfig));
          await ch.exec("RENAME TABLE bench.t TO bench.keep");
          await settle(ch);
          const er = await serverCpu(pids, () => runRunner(["restore", "--from", encTarget, "--identity", keyFile], encConfig));
          const [echeck] = await ch.query<{ c: string }>("SELECT toString(count()) AS c FROM bench.t");
          if (Number(echeck?.c) !== rows) throw new Error(`encrypted restore check: ${echeck?.c} rows, expected ${rows}`);
          await ch.exec("DROP TABLE bench.t");
          await ch.exec("RENAME TABLE bench.keep TO bench.t");
          note(`${codec} backup`, b.opMs);
          note(`${codec} restore`, r.opMs);
          note(`${codec} age backup`, eb.value.opMs);
          note(`${codec} age restore`, er.value.opMs);
          out(`-- dump, compression ${codec}, encrypted (age): ${(eb.value.bytes / MiB).toFixed(0)} MiB stored`);
          row("age backup", eb.value.opMs, exp.value.ms, `   ${(b.opMs / eb.value.opMs).toFixed(2)}x unencrypted speed, peak RSS ${(eb.value.maxRssKiB / 1024).toFixed(0)} MiB${cpu(eb, eb.value.cpuMs)}`);
          row("age restore", er.value.opMs, ins.value.ms, `   ${(r.opMs / er.value.opMs).toFixed(2)}x unencrypted speed, peak RSS ${(er.value.maxRssKiB / 1024).toFixed(0)} MiB${cpu(er, er.value.cpuMs)}`);
        }
        if (baselineRoot) {
          // the same two steps with the baseline runner (its own backup, into its own target)
          const baseTarget = `${target}-baseline`;
          const baseConfig = join(dir, `config-${codec}-${rep}-baseline.json`);
          await writeFile(baseConfig, JSON.stringify({ ...config, definition: { ...config.definition, singleBackup: { target: baseTarget } } }));
          await settle(ch);
          const bb = await serverCpu(pids, () => runRunner(["backup", "--once"], baseConfig, baselineRoot));
          await ch.exec("RENAME TABLE bench.t TO bench.keep");
          await settle(ch);
          const br = await serverCpu(pids, () => runRunner(["restore", "--from", baseTarget], baseConfig, baselineRoot));
          await ch.exec("DROP TABLE bench.t");
          await ch.exec("RENAME TABLE bench.keep TO bench.t");
          row("baseline backup", bb.value.opMs, exp.value.ms, `   this runner ${(bb.value.opMs / b.opMs).toFixed(2)}x the baseline's speed, peak RSS ${(bb.value.maxRssKiB / 1024).toFixed(0)} MiB${cpu(bb, bb.value.cpuMs)}`);
          row("baseline restore", br.value.opMs, ins.value.ms, `   this runner ${(br.value.opMs / r.opMs).toFixed(2)}x the baseline's speed, peak RSS ${(br.value.maxRssKiB / 1024).toFixed(0)} MiB${cpu(br, br.value.cpuMs)}`);
        }
      }
    }
    if (values.encryption && repeat > 1) {
      // Each pair (unencrypted, then encrypted) shares the machine's state of the moment; the medians over all runs
      // are steadier than any one pair on a machine whose speed drifts by 10-20% from minute to minute.
      const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
      out(`-- encryption, medians of ${repeat} runs (operation time)`);
      for (const codec of codecs) {
        for (const step of ["backup", "restore"]) {
          const plain = times.get(`${codec} ${step}`) ?? [];
          const enc = times.get(`${codec} age ${step}`) ?? [];
          if (!plain.length || !enc.length) continue;
          out(`${`${codec} ${step}`.padEnd(14)} unencrypted ${(median(plain) / 1000).toFixed(2)} s, age ${(median(enc) / 1000).toFixed(2)} s: ${(median(plain) / median(enc)).toFixed(2)}x unencrypted speed`);
        }
      }
    }
  } finally {
    await ch.stop();
    await minio.stop();
    await removeDir(dir);
  }
}

/** Checks `ref` out into a temporary worktree (sharing this checkout's node_modules) and compiles it. */
async function prepareBaseline(ref: string): Promise<{ root: string; sha: string; remove: () => Promise<void> }> {
  const sha = (await execa("git", ["rev-parse", "--verify", `${ref}^{commit}`], { cwd: repoRoot })).stdout.trim();
  const root = join(await makeTempDir("bench-baseline"), "repo");
  await execa("git", ["worktree", "add", "--detach", root, sha], { cwd: repoRoot });
  await execa("ln", ["-s", join(repoRoot, "node_modules"), join(root, "node_modules")]);
  await execa("tsc", ["-p", join(root, "tsconfig.json")], { preferLocal: true, cwd: root, stdio: "inherit" });
  return { root, sha, remove: async () => void (await execa("git", ["worktree", "remove", "--force", root], { cwd: repoRoot, reject: false })) };
}

// Measure the runner as deployed: compiled (bin/backup-runner runs dist/ when it exists).
out("building the runner (tsc) ...");
await execa("tsc", ["-p", join(repoRoot, "tsconfig.json")], { preferLocal: true, cwd: repoRoot, stdio: "inherit" });
const baseline = values.baseline ? await prepareBaseline(values.baseline) : undefined;
const baselineRoot = baseline?.root;
if (baseline) out(`baseline: the runner at ${values.baseline} (${baseline.sha.slice(0, 12)}), compiled in ${baseline.root}`);
try {
  for (const s of sizes) await benchSize(s);
} finally {
  await baseline?.remove();
}
out("\nratio = baseline time / runner operation time (process start-up excluded; see wall): backup against the raw (curl) export, restore against the raw insert");
out("cpu = user + system time of each process during the step (the runner's includes its start-up)");
