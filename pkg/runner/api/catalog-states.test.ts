// What the API shows of backups that are not simply this runner's complete
// ones: unreadable manifests (listed with their error, not restorable) and
// another owner's backups (listed as foreign; a warning in status and readyz).
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { apiClient } from "../../../test/helpers/api-http.ts";
import { fakeRunner, type FakeRunner } from "../../../test/helpers/api-fake.ts";
import { newBackupId } from "../ids.ts";
import { createLogger } from "../logging.ts";
import { RunnerMetrics } from "./metrics.ts";
import { startApiServer, type ApiServer } from "./server.ts";

const TOKEN = "catalog-states-token-0123456789";
const silent = createLogger({ silent: true });

describe("API: unreadable and foreign backups", () => {
  let fr: FakeRunner;
  let server: ApiServer;
  let api: ReturnType<typeof apiClient>;
  let own: string;
  let foreign: string;
  let unreadable: string;
  const other = { uid: "uid-other", id: "fedcba9876543210" };

  beforeAll(async () => {
    fr = await fakeRunner({ token: TOKEN, logger: silent });
    own = (await fr.runner.startBackup("api").finished).backupId!;
    const root = join(fr.dir, "shop", "orders");
    // Another runner's backup: a copy of ours with another id and owner.
    foreign = newBackupId(new Date(Date.now() - 60_000));
    const m = JSON.parse(await readFile(join(root, own, "manifest.json"), "utf8")) as Record<string, unknown>;
    await mkdir(join(root, foreign));
    await writeFile(join(root, foreign, "data.bin"), await readFile(join(root, own, "data.bin")));
    await writeFile(join(root, foreign, "manifest.json"), JSON.stringify({ ...m, id: foreign, owner: other }));
    // A backup whose manifest is not a manifest, newer than both.
    unreadable = newBackupId(new Date(Date.now() + 60_000));
    await mkdir(join(root, unreadable));
    await writeFile(join(root, unreadable, "manifest.json"), '{"format": 1');
    await fr.runner.init(); // rebuild, as after a restart
    server = await startApiServer({
      service: { runner: fr.runner, ready: true, nextRun: () => undefined },
      metrics: new RunnerMetrics({ defaultMetrics: false }),
      logger: silent,
      token: TOKEN,
      host: "127.0.0.1",
      port: 0,
    });
    api = apiClient(server.url, TOKEN);
  });
  afterAll(async () => {
    await server?.close(1000);
    await fr?.cleanup();
  });

  it("lists every backup with its state, owner and the error of an unreadable one", async () => {
    const r = await api.get("/api/v1/backups");
    expect(r.status).toBe(200);
    const byId = new Map((r.json.backups as { id: string }[]).map((b) => [b.id, b as Record<string, unknown>]));
    expect((r.json.backups as { id: string }[]).map((b) => b.id)).toEqual([unreadable, own, foreign]);
    expect(byId.get(unreadable)).toMatchObject({ state: "unreadable", endedAt: null, error: expect.stringContaining("not valid JSON"), labels: [], pinned: false });
    expect(byId.get(own)).toMatchObject({ state: "complete", foreign: false, owner: fr.runner.owner });
    expect(byId.get(foreign)).toMatchObject({ state: "complete", foreign: true, owner: other, labels: [] });
    const one = await api.get(`/api/v1/backups/${unreadable}`);
    expect(one.status).toBe(200);
    expect(one.json).toMatchObject({ backup: { id: unreadable, state: "unreadable" }, manifest: null });
  });

  it("refuses to restore or pin an unreadable backup, with a clear error", async () => {
    const restore = await api.post("/api/v1/restores", { backup: unreadable });
    expect(restore.status).toBe(409);
    expect(restore.json.error).toMatchObject({ code: "backup_unreadable", message: expect.stringContaining("manifest could not be read") });
    const pin = await api.post(`/api/v1/backups/${unreadable}/pin`);
    expect(pin.status).toBe(409);
    expect(pin.json.error.code).toBe("backup_unreadable");
  });

  it("says so in status and readyz, without making the runner unready", async () => {
    const st = await api.get("/api/v1/status");
    expect(st.json).toMatchObject({ owner: fr.runner.owner, foreignOwners: [{ owner: other, backups: 1, inProgress: 0 }], unreadableBackups: 1 });
    const warnings = st.json.warnings as string[];
    expect(warnings.some((w) => w.includes("another runner") && w.includes("uid uid-other") && w.includes(fr.runner.owner.id))).toBe(true);
    expect(warnings.some((w) => w.includes(unreadable))).toBe(true);
    const ready = await api.raw({ path: "/readyz" });
    expect(ready.status).toBe(200);
    expect(ready.json.warnings).toEqual(warnings);
  });
});
