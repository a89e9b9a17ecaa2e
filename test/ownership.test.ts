// One writer per backup set, on real storage: two runners (two Runner
// instances, one store and prefix, different definition uids) on MinIO and on
// the filesystem. A backup of runner A is held mid-upload (a multipart upload
// in flight on S3, a temp file on disk) while runner B starts, backs up and
// applies retention: B touches none of A's objects or uploads, A's backup then
// completes, and after both restart neither deletes the other's backups.
import { ListMultipartUploadsCommand } from "@aws-sdk/client-s3";
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseRunnerConfig, type RunnerConfig, type RunnerConfigInput } from "../pkg/apis/index.ts";
import type { BackupEngine, BackupRequest, EngineBackupResult, RestoreResult } from "../pkg/backupengine/types.ts";
import { storeFromConfig } from "../pkg/runner/app.ts";
import { createLogger } from "../pkg/runner/logging.ts";
import { Runner } from "../pkg/runner/runner.ts";
import type { ObjectStore } from "../pkg/storage/index.ts";
import { startMinio, makeTempDir, removeDir, type MinioServer } from "./env/index.ts";

const MiB = 1024 * 1024;
const silent = createLogger({ silent: true });

/** Streams one object; when `hold` is set it stops after the first 6 MiB until `hold` resolves. */
class StreamingEngine implements BackupEngine {
  readonly name = "fake";
  hold: Promise<void> | undefined;
  async check(): Promise<{ version: string }> {
    return { version: "1" };
  }
  async backup(req: BackupRequest): Promise<EngineBackupResult> {
    const hold = this.hold;
    async function* body() {
      yield randomBytes(6 * MiB);
      if (hold) await hold;
      yield randomBytes(MiB);
    }
    const obj = await req.sink.putObject("data.bin", body(), req.signal);
    req.onProgress?.({ phase: "dump", tablesDone: 1, tablesTotal: 1, bytes: obj.size, rows: 1 });
    return { engineVersion: "1", method: "dump", databases: ["db"], tables: [{ database: "db", name: "t", engine: "MergeTree", rows: 1, bytes: obj.size, dataObject: "data.bin" }], objects: [obj], details: {} };
  }
  async restore(): Promise<RestoreResult> {
    throw new Error("not used");
  }
  async close(): Promise<void> {}
}

function config(storage: RunnerConfigInput["storage"], uid: string): RunnerConfig {
  return parseRunnerConfig({
    definition: { namespace: "team", name: "shared", uid, clickhouse: { url: "http://127.0.0.1:9" }, schedule: { cron: "0 0 1 1 *", timeZone: "UTC" }, retention: { hourly: 1 } },
    storage,
    api: { token: "ownership-it-token-0123" },
  });
}

async function ids(store: ObjectStore): Promise<string[]> {
  const out = new Set<string>();
  for await (const o of store.list("team/shared/")) out.add(o.key.split("/")[2]!);
  return [...out].sort();
}

async function waitFor(what: string, cond: () => Promise<boolean> | boolean, timeoutMs = 20_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function twoRunners(name: string, setup: () => Promise<{ storage: RunnerConfigInput["storage"]; inFlight: () => Promise<boolean>; leftovers: () => Promise<unknown[]>; done: () => Promise<void> }>) {
  describe(`two runners on one prefix (${name})`, () => {
    let env: Awaited<ReturnType<typeof setup>>;
    beforeAll(async () => {
      env = await setup();
    });
    afterAll(async () => {
      await env?.done();
    });

    it("neither deletes the other's in-progress or complete backups, nor aborts the other's upload", async () => {
      // The clocks run in the current hour, a minute apart, so retention has work to do.
      const base = Math.floor(Date.now() / 3_600_000) * 3_600_000;
      const clock = { t: base };
      const mk = (uid: string, engine: BackupEngine) => {
        const cfg = config(env.storage, uid);
        return new Runner({ config: cfg, store: storeFromConfig(cfg.storage, silent), engine, logger: silent, clock: () => new Date(clock.t) });
      };
      const at = async (r: Runner, minute: number) => {
        clock.t = base + minute * 60_000;
        const op = await r.startBackup("api").finished;
        expect(op.error).toBeUndefined();
        return op.backupId!;
      };
      const engineA = new StreamingEngine();
      const A = mk("uid-a", engineA);
      await A.init();
      const a1 = await at(A, 0);

      // a2 is held half-way through its data.
      let release!: () => void;
      engineA.hold = new Promise<void>((r) => (release = r));
      clock.t = base + 10 * 60_000;
      const a2run = A.startBackup("api");
      const a2 = a2run.operation.backupId!;
      await waitFor("a2's upload in flight", env.inFlight);

      const B = mk("uid-b", new StreamingEngine());
      // B starts at the real time: uploads started before "now" are the ones a careless cleanup would abort.
      clock.t = Date.now() + 1000;
      await B.init();
      expect(B.status().foreignOwners).toEqual([{ owner: A.owner, backups: 1, inProgress: 1 }]);
      expect(B.status().warnings[0]).toContain("another runner writes to team/shared");
      const b1 = await at(B, 12);
      const b2 = await at(B, 13);
      const b3 = await at(B, 14);
      expect(await ids(storeFromConfig(config(env.storage, "x").storage, silent))).toEqual([a1, a2, b1, b3].sort());

      release();
      const a2op = await a2run.finished;
      expect(a2op.error).toBeUndefined();
      expect(a2op.state).toBe("succeeded");

      // Both restart; each takes one more backup: each deletes only its own unlabelled backup.
      const A2 = mk("uid-a", new StreamingEngine());
      const B2 = mk("uid-b", new StreamingEngine());
      await A2.init();
      await B2.init();
      expect(A2.retentionDecision().keep).toEqual([a1, a2]);
      expect(B2.retentionDecision().keep).toEqual([b1, b3]);
      const a3 = await at(A2, 15);
      const b4 = await at(B2, 16);
      const store = storeFromConfig(config(env.storage, "x").storage, silent);
      expect(await ids(store)).toEqual([a1, a3, b1, b4].sort());
      expect(b2).not.toBe(b4);
      for (const id of [a1, a3]) expect(A2.catalog.get(id)?.manifest.owner).toEqual(A.owner);
      // Every marker is gone with its backup complete, and no upload is left behind.
      for await (const o of store.list("team/shared/")) expect(o.key).not.toMatch(/inprogress\.json$/);
      expect(await env.leftovers()).toEqual([]);
    });
  });
}

let minio: MinioServer | undefined;

twoRunners("MinIO", async () => {
  minio = await startMinio();
  const bucket = await minio.createBucket();
  const m = minio;
  const storage = { s3: { endpoint: m.endpoint, region: m.region, bucket, prefix: "owners", forcePathStyle: true, accessKeyId: m.accessKeyId, secretAccessKey: m.secretAccessKey, partSizeMiB: 5, concurrency: 1 } };
  const uploads = async () => {
    const s3 = m.s3();
    try {
      const res = await s3.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
      return (res.Uploads ?? []).filter((u) => u.Key?.startsWith("owners/team/shared/"));
    } finally {
      s3.destroy();
    }
  };
  return {
    storage,
    inFlight: async () => (await uploads()).length > 0,
    leftovers: uploads,
    done: async () => {
      await m.stop();
    },
  };
});

twoRunners("filesystem", async () => {
  const dir = await makeTempDir("owners-fs");
  const { readdir } = await import("node:fs/promises");
  const { join } = await import("node:path");
  // Files of the store that are not objects (temp files of puts in progress).
  const temps = async (): Promise<string[]> => {
    const out: string[] = [];
    const walk = async (d: string): Promise<void> => {
      for (const e of await readdir(d, { withFileTypes: true }).catch(() => [])) {
        const p = join(d, e.name);
        if (e.isDirectory()) await walk(p);
        else if (!/\.(bin|json)$/.test(e.name)) out.push(p);
      }
    };
    await walk(join(dir, "team", "shared"));
    return out;
  };
  return {
    storage: { filesystem: { path: dir } },
    // A data object's temp file: the in-progress marker is written (by a temp file of its own) and
    // renamed into place before any data, so its temp file alone does not mean the upload is under way.
    inFlight: async () => (await temps()).some((p) => !/\/inprogress\.json\.tmp-/.test(p)),
    leftovers: temps,
    done: () => removeDir(dir),
  };
});
