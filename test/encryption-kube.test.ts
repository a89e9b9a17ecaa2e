// Encryption settings on a real kube-apiserver (issue #17): the CRD refuses a malformed recipient
// (naming it), both sources of recipients, and encryption with the native method; the controller
// resolves recipientsSecretRef into the runner config (recipients only, re-rendered when the
// Secret changes) and mounts the optional identity Secret, which it never reads.
import { generateX25519Identity, identityToRecipient } from "age-encryption";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runnerConfig } from "../pkg/apis/index.ts";
import type { ControllerApp } from "../pkg/controller/index.ts";
import { RUNNER_CONTAINER } from "../pkg/controller/contract.ts";
import { runnerName } from "../pkg/controller/names.ts";
import { startKubeApiServer, type KubeApiServer } from "./env/index.ts";
import { GV, createNamespace, installCrds, must, secretBody, startTestController, waitFor, waitReady } from "./helpers/kube.ts";

const CTRL_NS = "chbackup-enc";
const APP_NS = "shop-enc";
const defPath = (name = "") => `/apis/${GV}/namespaces/${APP_NS}/backupdefinitions${name ? `/${name}` : ""}`;
const secretPath = (ns: string, name = "") => `/api/v1/namespaces/${ns}/secrets${name ? `/${name}` : ""}`;
type Obj = { data?: Record<string, string>; spec?: { template?: { spec?: { volumes?: unknown[]; containers?: { volumeMounts?: unknown[] }[] } } } };

const definition = (name: string, encryption: unknown, method = "dump") => ({
  apiVersion: GV,
  kind: "BackupDefinition",
  metadata: { name, namespace: APP_NS },
  spec: { storageLocation: "disk", clickhouse: { url: "http://ch:8123", method }, schedule: { cron: "0 * * * *" }, encryption },
});

describe("encryption settings on kube-apiserver", () => {
  let kube: KubeApiServer;
  let app: ControllerApp;
  let r1: string, r2: string, r3: string, identity: string;

  beforeAll(async () => {
    identity = await generateX25519Identity();
    [r1, r2, r3] = [await identityToRecipient(identity), await identityToRecipient(await generateX25519Identity()), await identityToRecipient(await generateX25519Identity())];
    kube = await startKubeApiServer();
    await installCrds(kube);
    for (const ns of [CTRL_NS, APP_NS]) await createNamespace(kube, ns);
    await must(kube, "POST", `/apis/${GV}/namespaces/${CTRL_NS}/storagelocations`, { apiVersion: GV, kind: "StorageLocation", metadata: { name: "disk", namespace: CTRL_NS }, spec: { filesystem: { path: "/backups" } } });
    app = await startTestController({ kube, namespace: CTRL_NS });
    await waitFor("leader", async () => app.isLeader() && app.controller()!.ready);
  });
  afterAll(async () => {
    await app?.stop();
    await kube?.stop();
  });

  it("refuses at admission: a malformed recipient (named), both sources, encryption with method native", async () => {
    const bad = `${r1.slice(0, 10)}!${r1.slice(11)}`;
    const a = await kube.request("POST", `${defPath()}?dryRun=All`, definition("bad-key", { recipients: [r1, bad] }));
    expect(a.status).toBe(422);
    expect(JSON.stringify(a.body)).toContain("spec.encryption.recipients[1]");
    expect(JSON.stringify(a.body)).toContain(bad);
    const both = await kube.request("POST", `${defPath()}?dryRun=All`, definition("both", { recipients: [r1], recipientsSecretRef: { name: "k", key: "k" } }));
    expect(both.status).toBe(422);
    expect(JSON.stringify(both.body)).toContain("set exactly one of recipients and recipientsSecretRef");
    const native = await kube.request("POST", `${defPath()}?dryRun=All`, definition("native", { recipients: [r1] }, "native"));
    expect(native.status).toBe(422);
    expect(JSON.stringify(native.body)).toContain("encryption applies to the dump method only");
    await must(kube, "POST", `${defPath()}?dryRun=All`, definition("fine", { recipients: [r1, r2] }));
  });

  it("resolves recipientsSecretRef into the runner config (recipients only), follows the Secret, mounts the optional identity Secret", async () => {
    await must(kube, "POST", secretPath(APP_NS), secretBody(APP_NS, "backup-recipients", { "recipients.txt": `# team\n${r1}\n# break-glass\n${r2}\n` }));
    await must(kube, "POST", defPath(), definition("orders", { recipientsSecretRef: { name: "backup-recipients", key: "recipients.txt" } }));
    await waitReady(kube, APP_NS, "orders");
    const name = runnerName(APP_NS, "orders");
    const config = async () => {
      const s = await must<Obj>(kube, "GET", secretPath(CTRL_NS, name));
      const json = Buffer.from(s.data!["config.json"]!, "base64").toString("utf8");
      expect(json).not.toContain(identity);
      expect(json).not.toContain("recipientsSecretRef");
      return runnerConfig.parse(JSON.parse(json));
    };
    expect((await config()).definition.encryption).toEqual({ recipients: [r1, r2], identityDir: RUNNER_CONTAINER.identityDir });
    const sts = await must<Obj>(kube, "GET", `/apis/apps/v1/namespaces/${CTRL_NS}/statefulsets/${name}`);
    expect(sts.spec!.template!.spec!.volumes).toContainEqual({ name: "identity", secret: { secretName: `${name}-identity`, optional: true, defaultMode: 0o440 } });
    expect(sts.spec!.template!.spec!.containers![0]!.volumeMounts).toContainEqual({ name: "identity", mountPath: RUNNER_CONTAINER.identityDir, readOnly: true });

    // Rotation: a new recipient in the Secret reaches the runner config.
    await must(kube, "PUT", secretPath(APP_NS, "backup-recipients"), secretBody(APP_NS, "backup-recipients", { "recipients.txt": `${r2}\n${r3}\n` }));
    await waitFor("the new recipients in the runner config", async () => JSON.stringify((await config()).definition.encryption?.recipients) === JSON.stringify([r2, r3]));
    // A malformed recipient in the Secret: InvalidSpec naming its line, the runner keeps its config.
    await must(kube, "PUT", secretPath(APP_NS, "backup-recipients"), secretBody(APP_NS, "backup-recipients", { "recipients.txt": `${r2}\nage1oops\n` }));
    const c = await waitReady(kube, APP_NS, "orders", "InvalidSpec");
    expect(c.message).toContain('recipient 2 "age1oops" is not an age X25519 recipient');
    expect((await config()).definition.encryption?.recipients).toEqual([r2, r3]);
  });
});
