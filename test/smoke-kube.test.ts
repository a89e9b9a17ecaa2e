// Smoke test: a real kube-apiserver (+ etcd) from the test environment serves
// our generated CRDs, watches, and server-side apply.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ApiextensionsV1Api,
  CustomObjectsApi,
  PatchStrategy,
  Watch,
  setHeaderOptions,
  type KubeConfig,
} from "@kubernetes/client-node";
import { startKubeApiServer, assertPortsClosed, type KubeApiServer } from "./env/index.ts";
import { CRDS, crdManifest, API_GROUP, API_VERSION } from "../pkg/apis/index.ts";

async function waitEstablished(ext: ApiextensionsV1Api, name: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const crd = await ext.readCustomResourceDefinition({ name });
    if (crd.status?.conditions?.some((c) => c.type === "Established" && c.status === "True")) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`CRD ${name} not established`);
}

describe("kube-apiserver", () => {
  let kube: KubeApiServer;
  let kc: KubeConfig;
  beforeAll(async () => {
    kube = await startKubeApiServer();
    kc = kube.kubeConfig();
  });
  afterAll(async () => {
    await kube?.stop();
  });

  it("applies our CRDs, creates and watches an object, and server-side applies a patch", async () => {
    const ext = kc.makeApiClient(ApiextensionsV1Api);
    for (const def of CRDS) {
      // Raw server-side apply: the typed client's serializer would drop x-kubernetes-validations.
      const name = `${def.plural}.${API_GROUP}`;
      await kube.apply(`/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${name}`, crdManifest(def), "smoke-test");
      await waitEstablished(ext, name);
    }
    const co = kc.makeApiClient(CustomObjectsApi);
    const events: { type: string; name: string; cron: string }[] = [];
    const watch = new Watch(kc);
    // (Re)starts the watch whenever it ends with an error, until the test aborts it.
    let req: { abort(): void } | undefined;
    let stopped = false;
    const startWatch = async (): Promise<void> => {
      req = await watch.watch(
        `/apis/${API_GROUP}/${API_VERSION}/namespaces/default/backupdefinitions`,
        {},
        (type, obj: { metadata: { name: string }; spec: { schedule?: { cron: string } } }) => {
          if (!events.some((e) => e.type === type && e.cron === (obj.spec.schedule?.cron ?? ""))) {
            events.push({ type, name: obj.metadata.name, cron: obj.spec.schedule?.cron ?? "" });
          }
        },
        (err: unknown) => {
          if (stopped) return;
          if (err) watchErrors.push(err);
          if (watchErrors.length < 20) setTimeout(() => void startWatch(), 200);
        },
      );
    };
    const watchErrors: unknown[] = [];
    await startWatch();
    try {
      const target = { group: API_GROUP, version: API_VERSION, namespace: "default", plural: "backupdefinitions" };
      await co.createNamespacedCustomObject({
        ...target,
        body: {
          apiVersion: `${API_GROUP}/${API_VERSION}`,
          kind: "BackupDefinition",
          metadata: { name: "orders" },
          spec: { storageLocation: "minio", clickhouse: { url: "http://ch:8123" }, schedule: { cron: "0 * * * *" } },
        },
      });
      // CEL rule from the zod schema is enforced by the server.
      await expect(
        co.createNamespacedCustomObject({
          ...target,
          body: {
            apiVersion: `${API_GROUP}/${API_VERSION}`,
            kind: "BackupDefinition",
            metadata: { name: "bad" },
            spec: { storageLocation: "minio", clickhouse: { url: "http://ch:8123" }, mode: "single" },
          },
        }),
      ).rejects.toThrow(/singleBackup is required/);
      // Server-side apply with one field manager changes the schedule.
      const applied = (await co.patchNamespacedCustomObject(
        {
          ...target,
          name: "orders",
          fieldManager: "smoke-test",
          force: true,
          body: {
            apiVersion: `${API_GROUP}/${API_VERSION}`,
            kind: "BackupDefinition",
            metadata: { name: "orders" },
            spec: { storageLocation: "minio", clickhouse: { url: "http://ch:8123" }, schedule: { cron: "30 2 * * *" } },
          },
        },
        setHeaderOptions("Content-Type", PatchStrategy.ServerSideApply),
      )) as { spec: { schedule: { cron: string; timeZone: string } }; metadata: { managedFields: { manager: string }[] } };
      expect(applied.spec.schedule).toEqual({ cron: "30 2 * * *", timeZone: "UTC" });
      expect(applied.metadata.managedFields.map((m) => m.manager)).toContain("smoke-test");
      for (let i = 0; i < 300 && events.length < 2; i++) await new Promise((r) => setTimeout(r, 100));
      expect(watchErrors.length).toBeLessThan(20);
      expect(events).toEqual([
        { type: "ADDED", name: "orders", cron: "0 * * * *" },
        { type: "MODIFIED", name: "orders", cron: "30 2 * * *" },
      ]);
    } finally {
      stopped = true;
      req?.abort();
    }
  });

  it("leaves no process and no open port after stop", async () => {
    const other = await startKubeApiServer();
    const pids = other.pids();
    await other.stop();
    expect(await assertPortsClosed(other.ports)).toEqual([]);
    for (const pid of pids) expect(() => process.kill(pid, 0)).toThrow();
  });
});
