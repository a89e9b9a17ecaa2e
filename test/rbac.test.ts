// The controller's RBAC is exactly what it uses: the deploy base's
// ServiceAccount, ClusterRole, Role and bindings are applied to a real
// kube-apiserver, the controller runs with that ServiceAccount's token
// through a lifecycle (create, rotate a Secret, a Restore, delete, leader
// Lease, Events), no request is refused, and every granted verb is used.
import { join } from "node:path";
import { KubeConfig } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CONTROLLER_PERMISSIONS, type ControllerApp, type RequestRecord } from "../pkg/controller/index.ts";
import { loadKustomization } from "../pkg/deploy/kustomize.ts";
import { startKubeApiServer, repoRoot, type KubeApiServer } from "./env/index.ts";
import { GV, createNamespace, installCrds, must, secretBody, startTestController, waitFor, waitReady } from "./helpers/kube.ts";

type Obj = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string } };

const PATHS: Record<string, (o: Obj) => string> = {
  ServiceAccount: (o) => `/api/v1/namespaces/${o.metadata.namespace}/serviceaccounts/${o.metadata.name}`,
  ClusterRole: (o) => `/apis/rbac.authorization.k8s.io/v1/clusterroles/${o.metadata.name}`,
  ClusterRoleBinding: (o) => `/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/${o.metadata.name}`,
  Role: (o) => `/apis/rbac.authorization.k8s.io/v1/namespaces/${o.metadata.namespace}/roles/${o.metadata.name}`,
  RoleBinding: (o) => `/apis/rbac.authorization.k8s.io/v1/namespaces/${o.metadata.namespace}/rolebindings/${o.metadata.name}`,
};

describe("controller RBAC", () => {
  let kube: KubeApiServer;
  let app: ControllerApp | undefined;
  const requests: RequestRecord[] = [];
  let ns = "";

  beforeAll(async () => {
    kube = await startKubeApiServer();
    await installCrds(kube);
    const objs = loadKustomization(join(repoRoot, "deploy", "base")) as Obj[];
    const sa = objs.find((o) => o.kind === "ServiceAccount")!;
    ns = sa.metadata.namespace!;
    await createNamespace(kube, ns);
    await createNamespace(kube, "shop");
    for (const o of objs) if (PATHS[o.kind]) await kube.apply(PATHS[o.kind]!(o), o, "rbac-test");
    // The ServiceAccount's token, as the pod would have it mounted.
    const tr = await must<{ status: { token: string } }>(kube, "POST", `/api/v1/namespaces/${ns}/serviceaccounts/${sa.metadata.name}/token`, {
      apiVersion: "authentication.k8s.io/v1",
      kind: "TokenRequest",
      spec: { expirationSeconds: 3600 },
    });
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: "test", server: kube.server, caData: Buffer.from(kube.caPem).toString("base64"), skipTLSVerify: false }],
      users: [{ name: "controller", token: tr.status.token }],
      contexts: [{ name: "test", cluster: "test", user: "controller" }],
      currentContext: "test",
    });
    const asController = { ...kube, kubeConfig: () => kc } as KubeApiServer;
    await must(kube, "POST", "/api/v1/namespaces/shop/secrets", secretBody("shop", "ch", { password: "p1" }));
    await must(kube, "POST", `/api/v1/namespaces/${ns}/secrets`, secretBody(ns, "s3", { accessKeyId: "a", secretAccessKey: "b" }));
    await must(kube, "POST", `/apis/${GV}/namespaces/${ns}/storagelocations`, { apiVersion: GV, kind: "StorageLocation", metadata: { name: "s3" }, spec: { s3: { bucket: "bkt", credentialsSecretRef: { name: "s3" } } } });
    app = await startTestController({ kube: asController, namespace: ns, observe: (r) => requests.push(r) });
    await waitFor("controller leading", async () => app!.isLeader() && app!.controller()?.ready);
  });
  afterAll(async () => {
    await app?.stop();
    await kube?.stop();
  });

  it("runs a whole lifecycle under its own ServiceAccount, refused nothing, and uses every grant", async () => {
    const def = (name: string) => ({ apiVersion: GV, kind: "BackupDefinition", metadata: { name }, spec: { storageLocation: "s3", clickhouse: { url: "http://ch:8123", passwordSecretRef: { name: "ch", key: "password" } }, schedule: { cron: "0 * * * *" } } });
    await must(kube, "POST", `/apis/${GV}/namespaces/shop/backupdefinitions`, def("orders"));
    await waitReady(kube, "shop", "orders");
    await must(kube, "PUT", "/api/v1/namespaces/shop/secrets/ch", secretBody("shop", "ch", { password: "p2" }));
    // A Restore of a definition that does not exist: its status says so (restores/status patch).
    await must(kube, "POST", `/apis/${GV}/namespaces/shop/restores`, { apiVersion: GV, kind: "Restore", metadata: { name: "r1" }, spec: { backupDefinition: "nope" } });
    await waitFor("restore pending", async () => ((await must<{ status?: { reason?: string } }>(kube, "GET", `/apis/${GV}/namespaces/shop/restores/r1`)).status?.reason === "DefinitionNotFound" ? true : undefined));
    await must(kube, "DELETE", `/apis/${GV}/namespaces/shop/backupdefinitions/orders`);
    await waitFor("definition gone", async () => (await kube.request("GET", `/apis/${GV}/namespaces/shop/backupdefinitions/orders`)).status === 404);
    await app!.stop(); // releases the Lease (update)
    app = undefined;

    expect(requests.filter((r) => r.status === 403)).toEqual([]);
    // What was used, as RBAC sees it: a list implies the informer's watch, and an apply that
    // created its object (201) needed the create verb besides patch.
    const used = new Set<string>();
    for (const r of requests) {
      const res = `${r.group}/${r.resource}`;
      used.add(`${res} ${r.verb}`);
      if (r.verb === "list") used.add(`${res} watch`);
      if (r.verb === "patch" && r.status === 201) used.add(`${res} create`);
    }
    const granted: string[] = [];
    for (const rule of [...CONTROLLER_PERMISSIONS.cluster, ...CONTROLLER_PERMISSIONS.namespaced]) {
      for (const g of rule.apiGroups) for (const res of rule.resources) for (const v of rule.verbs) granted.push(`${g}/${res} ${v}`);
    }
    expect(granted.filter((g) => !used.has(g))).toEqual([]);
  });
});
