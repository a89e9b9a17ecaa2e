// The desired objects, field by field, from a definition, a location and Secrets.
import { describe, expect, it } from "vitest";
import { parseRunnerConfigText } from "../apis/index.ts";
import { checkStorageLocation, namespaceAllowed, planRunnerConfig, selectorMatches, type PlanInput, type PlanSuccess } from "./plan.ts";
import { configHash, renderRunnerObjects } from "./render.ts";
import { runnerName } from "./names.ts";
import { desiredHash } from "./diff.ts";
import { parseControllerSettings } from "./settings.ts";
import type { BackupDefinitionObject, SecretObject, StorageLocationObject } from "./types.ts";

const settings = parseControllerSettings({
  namespace: "chbackup-system",
  runnerImage: "reg/runner:1",
  imagePullSecrets: ["regcred"],
  leaderElection: { identity: "c" },
});
const b64 = (s: string) => Buffer.from(s).toString("base64");
const secrets: Record<string, SecretObject> = {
  "shop/ch": { metadata: { name: "ch", namespace: "shop" }, data: { password: b64("pw-1") } },
  "chbackup-system/s3": { metadata: { name: "s3", namespace: "chbackup-system" }, data: { accessKeyId: b64("AK"), secretAccessKey: b64("SK") } },
};
const locations: Record<string, StorageLocationObject> = {
  minio: { metadata: { name: "minio" }, spec: { s3: { endpoint: "http://minio:9000", region: "us-east-1", bucket: "backups", prefix: "p", forcePathStyle: true, partSizeMiB: 8, concurrency: 2, credentialsSecretRef: { name: "s3", accessKeyIdKey: "accessKeyId", secretAccessKeyKey: "secretAccessKey" } } } as never },
  disk: { metadata: { name: "disk" }, spec: { filesystem: { path: "/backups" } } },
  nfs: { metadata: { name: "nfs" }, spec: { filesystem: { path: "/mnt/nfs", claimName: "nfs-backups" } } },
};
const def = (spec: Record<string, unknown> = {}): BackupDefinitionObject =>
  ({
    metadata: { name: "orders", namespace: "shop", generation: 3 },
    spec: { storageLocation: "minio", clickhouse: { url: "http://ch:8123", passwordSecretRef: { name: "ch", key: "password" } }, schedule: { cron: "0 * * * *" }, ...spec },
  }) as BackupDefinitionObject;
const input = (d: BackupDefinitionObject, over: Partial<PlanInput> = {}): PlanInput => ({
  definition: d,
  controllerNamespace: "chbackup-system",
  location: (n) => locations[n],
  secret: (ns, n) => secrets[`${ns}/${n}`],
  token: "token-0123456789abcdef",
  ...over,
});
const ok = (p: ReturnType<typeof planRunnerConfig>): PlanSuccess => {
  if (!p.ok) throw new Error(`${p.reason}: ${p.message}`);
  return p;
};

describe("planRunnerConfig", () => {
  it("resolves every secret into a config the runner accepts", () => {
    const p = ok(planRunnerConfig(input(def())));
    const cfg = parseRunnerConfigText(p.configJson, "test");
    expect(cfg.definition).toMatchObject({ namespace: "shop", name: "orders", engine: "clickhouse", mode: "scheduled", retention: { hourly: 24, daily: 7, weekly: 4, monthly: 12 } });
    expect(cfg.definition.clickhouse.password).toBe("pw-1");
    expect(cfg.storage.s3).toMatchObject({ bucket: "backups", prefix: "p", accessKeyId: "AK", secretAccessKey: "SK" });
    expect(cfg.api).toEqual({ token: "token-0123456789abcdef", port: 8080, host: "0.0.0.0" });
    expect(p.configJson).not.toContain("passwordSecretRef");
    expect(p.configJson).not.toContain("credentialsSecretRef");
  });

  it("refuses pod labels and annotations under the controller's keys, naming each one", () => {
    const bad = planRunnerConfig(input(def({ runner: { podLabels: { "chbackup.dev/x": "1", "app.kubernetes.io/component": "y", team: "ok" }, podAnnotations: { "chbackup.dev/config-hash": "0", "app.kubernetes.io/component": "fine" } } })));
    expect(bad).toMatchObject({ ok: false, reason: "InvalidSpec" });
    const msg = (bad as { message: string }).message;
    expect(msg).toContain("spec.runner.podLabels.chbackup.dev/x: is reserved for the controller");
    expect(msg).toContain("spec.runner.podLabels.app.kubernetes.io/component: is reserved");
    expect(msg).toContain("spec.runner.podAnnotations.chbackup.dev/config-hash: is reserved");
    expect(msg).not.toContain("podLabels.team");
    expect(msg).not.toContain("podAnnotations.app.kubernetes.io");
    expect(planRunnerConfig(input(def({ runner: { serviceAccountName: "Not_A_Name" } })))).toMatchObject({ ok: false, reason: "InvalidSpec", message: expect.stringContaining("spec.runner.serviceAccountName") });
  });

  it("names the missing piece, never a secret value", () => {
    expect(planRunnerConfig(input(def({ storageLocation: "nope" })))).toMatchObject({ ok: false, reason: "StorageLocationNotFound", message: expect.stringContaining("chbackup-system/nope") });
    expect(planRunnerConfig(input(def(), { secret: () => undefined }))).toMatchObject({ ok: false, reason: "SecretNotFound", message: expect.stringContaining("shop/ch") });
    const wrongKey = planRunnerConfig(input(def({ clickhouse: { url: "http://ch:8123", passwordSecretRef: { name: "ch", key: "pass" } } })));
    expect(wrongKey).toMatchObject({ ok: false, reason: "SecretKeyNotFound" });
    expect(JSON.stringify(wrongKey)).not.toContain("pw-1");
    const bad = planRunnerConfig(input(def({ schedule: { cron: "61 * * * *" } })));
    expect(bad).toMatchObject({ ok: false, reason: "InvalidSpec", message: 'spec.schedule.cron: is not a valid cron expression: the minute (0-59) field cannot be "61"' });
  });

  it("refuses an empty retention in scheduled mode as InvalidSpec naming spec.retention (if it got past the CRD rule)", () => {
    for (const retention of [{}, { hourly: 0, daily: 0 }]) {
      const p = planRunnerConfig(input(def({ retention })));
      expect(p).toMatchObject({ ok: false, reason: "InvalidSpec", message: expect.stringMatching(/^spec\.retention: must keep at least one label/) });
    }
    expect(ok(planRunnerConfig(input(def({ mode: "single", schedule: undefined, singleBackup: { target: "exports/x" }, retention: {} })))).config.definition.mode).toBe("single");
  });

  it("refuses a single-backup target outside the location and native with lz4 as InvalidSpec naming the field (if they got past the CRD rules)", () => {
    for (const target of ["../../etc", "a//b", "./x", "a\\b"]) {
      const p = planRunnerConfig(input(def({ mode: "single", schedule: undefined, singleBackup: { target } })));
      expect(p, target).toMatchObject({ ok: false, reason: "InvalidSpec", message: expect.stringMatching(/^spec\.singleBackup\.target: must be a relative path inside the storage location/) });
    }
    expect(planRunnerConfig(input(def({ clickhouse: { url: "http://ch:8123", method: "native", compression: "lz4" } })))).toMatchObject({
      ok: false,
      reason: "InvalidSpec",
      message: expect.stringMatching(/^spec\.clickhouse\.compression: compression lz4 applies to the dump method only/),
    });
  });

  it("lets a definition use a location only from an allowed namespace (names, or a label selector)", () => {
    const restricted: StorageLocationObject = { metadata: { name: "r" }, spec: { ...locations["minio"]!.spec, allowedNamespaces: { names: ["team-a"], selector: { matchLabels: { tier: "prod" }, matchExpressions: [{ key: "frozen", operator: "DoesNotExist" }] } } } };
    const plan = (labels: Record<string, string> | undefined) => planRunnerConfig(input(def({ storageLocation: "r" }), { location: () => restricted, namespaceLabels: () => labels }));
    expect(plan({})).toMatchObject({ ok: false, reason: "StorageLocationNotAllowed", message: "StorageLocation chbackup-system/r does not allow namespace shop (allowedNamespaces: names team-a; or namespaces labelled tier=prod, frozen DoesNotExist)" });
    expect(plan(undefined)).toMatchObject({ ok: false, reason: "StorageLocationNotAllowed" });
    expect(plan({ tier: "prod" }).ok).toBe(true);
    expect(plan({ tier: "prod", frozen: "1" }).ok).toBe(false);
    expect(namespaceAllowed(undefined, "any", undefined)).toBe(true);
    expect(namespaceAllowed({ names: ["shop"] }, "shop", undefined)).toBe(true);
    expect(selectorMatches({ matchExpressions: [{ key: "a", operator: "In", values: ["1", "2"] }, { key: "b", operator: "NotIn", values: ["x"] }, { key: "c", operator: "Exists" }] }, { a: "2", b: "y", c: "" })).toBe(true);
    expect(selectorMatches({ matchExpressions: [{ key: "a", operator: "In", values: ["1"] }] }, {})).toBe(false);
    expect(selectorMatches({ matchExpressions: [{ key: "b", operator: "NotIn", values: ["x"] }] }, {})).toBe(true);
  });

  it("checks a StorageLocation: its spec and its credentials Secret", () => {
    const check = (loc: StorageLocationObject, secret: PlanInput["secret"] = (ns, n) => secrets[`${ns}/${n}`]) => checkStorageLocation(loc, "chbackup-system", secret);
    expect(check(locations["minio"]!)).toEqual({ status: "True", reason: "Available", message: "S3 bucket backups, prefix p at http://minio:9000, credentials from Secret chbackup-system/s3; the runners check the storage itself when they start" });
    expect(check(locations["nfs"]!)).toMatchObject({ status: "True", message: expect.stringContaining("directory /mnt/nfs on claim nfs-backups") });
    expect(check(locations["minio"]!, () => undefined)).toMatchObject({ status: "False", reason: "SecretNotFound", message: expect.stringContaining("chbackup-system/s3") });
    expect(check(locations["minio"]!, () => ({ metadata: { name: "s3" }, data: { accessKeyId: b64("AK") } }))).toMatchObject({ status: "False", reason: "SecretKeyNotFound" });
    expect(check({ metadata: { name: "bad" }, spec: { s3: { bucket: "b" } } as never })).toMatchObject({ status: "False", reason: "InvalidSpec", message: expect.stringContaining("spec.s3.bucket") });
  });

  it("names an unknown spec field by its path", () => {
    expect(planRunnerConfig(input(def({ retension: { daily: 7 } })))).toMatchObject({ ok: false, reason: "InvalidSpec", message: "spec.retension: unknown field" });
  });

  it("passes the definition's uid and cleanup timeout, and nothing the strict runner schema would refuse", () => {
    const withUid = { ...def({ incompleteCleanupAfterHours: 6 }), metadata: { name: "orders", namespace: "shop", uid: "5f0c7c1e-aaaa-4bbb-8ccc-123456789abc" } } as BackupDefinitionObject;
    for (const d of [withUid, def({ runner: { storageSize: "2Gi" }, storageLocation: "nfs" })]) {
      const p = ok(planRunnerConfig(input(d)));
      // The runner parses it strictly: an extra field anywhere would make it exit 2.
      expect(() => parseRunnerConfigText(p.configJson, "test")).not.toThrow();
    }
    const cfg = ok(planRunnerConfig(input(withUid))).config;
    expect(cfg.definition.uid).toBe("5f0c7c1e-aaaa-4bbb-8ccc-123456789abc");
    expect(cfg.definition.incompleteCleanupAfterHours).toBe(6);
    expect(ok(planRunnerConfig(input(def()))).config.definition.uid).toBeUndefined();
  });

  it("is deterministic: the same inputs give the same config hash", () => {
    const a = ok(planRunnerConfig(input(def())));
    const b = ok(planRunnerConfig(input(def())));
    expect(configHash(a.configJson)).toBe(configHash(b.configJson));
    const rotated = ok(planRunnerConfig(input(def(), { secret: (ns, n) => (n === "ch" ? { metadata: { name: "ch" }, data: { password: b64("pw-2") } } : secrets[`${ns}/${n}`]) })));
    expect(configHash(rotated.configJson)).not.toBe(configHash(a.configJson));
  });
});

describe("renderRunnerObjects", () => {
  it("renders the Secret, StatefulSet and Service", () => {
    const p = ok(planRunnerConfig(input(def({ runner: { resources: { limits: { memory: "1Gi" } }, tolerations: [{ key: "backup", operator: "Exists", effect: "NoSchedule" }], storageSize: "5Gi", storageClassName: "fast" } }))));
    const o = renderRunnerObjects(p, settings);
    expect(o.name).toBe(runnerName("shop", "orders"));
    expect(o.name).toMatch(/^runner-shop-orders-[0-9a-f]{8}$/);
    for (const obj of [o.secret, o.statefulSet, o.service]) {
      expect(obj.metadata).toMatchObject({ name: o.name, namespace: "chbackup-system" });
      expect(obj.metadata.labels).toMatchObject({ "app.kubernetes.io/managed-by": "chbackup-controller", "chbackup.dev/definition-namespace": "shop", "chbackup.dev/definition-name": "orders" });
      expect(obj.metadata.annotations).toEqual({ "chbackup.dev/definition": "shop/orders", "chbackup.dev/desired-hash": desiredHash(obj) });
    }
    expect(Buffer.from(o.secret.data!["config.json"]!, "base64").toString()).toBe(p.configJson);
    const sts = o.statefulSet.spec!;
    expect(sts.replicas).toBe(1);
    // S3: no volume claim; the scratch volume (the operation journal) is an emptyDir of storageSize.
    expect(sts.persistentVolumeClaimRetentionPolicy).toBeUndefined();
    expect(sts.volumeClaimTemplates).toBeUndefined();
    expect(sts.template.spec!.volumes).toContainEqual({ name: "scratch", emptyDir: { sizeLimit: "5Gi" } });
    const pod = sts.template.spec!;
    expect(sts.template.metadata!.annotations!["chbackup.dev/config-hash"]).toBe(o.configHash);
    expect(pod.automountServiceAccountToken).toBe(false);
    expect(pod.imagePullSecrets).toEqual([{ name: "regcred" }]);
    expect(pod.tolerations).toEqual([{ key: "backup", operator: "Exists", effect: "NoSchedule" }]);
    expect(pod.affinity).toBeUndefined();
    const c = pod.containers[0]!;
    expect(c.image).toBe("reg/runner:1");
    expect(c.resources).toEqual({ limits: { memory: "1Gi" } });
    expect(c.securityContext).toEqual({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, runAsNonRoot: true, capabilities: { drop: ["ALL"] } });
    expect(c.env).toEqual([{ name: "RUNNER_SHUTDOWN_GRACE_MS", value: "45000" }]);
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(45);
    // Filesystem: the scratch claim, of storageSize and storageClassName, goes with the StatefulSet when backups are on a claim of their own.
    const nfs = renderRunnerObjects(ok(planRunnerConfig(input(def({ storageLocation: "nfs", runner: { storageSize: "5Gi", storageClassName: "fast" } })))), settings).statefulSet.spec!;
    expect(nfs.volumeClaimTemplates![0]!.spec).toEqual({ accessModes: ["ReadWriteOnce"], resources: { requests: { storage: "5Gi" } }, storageClassName: "fast" });
    expect(nfs.persistentVolumeClaimRetentionPolicy).toEqual({ whenDeleted: "Delete", whenScaled: "Retain" });
    expect(nfs.template.spec!.volumes!.find((v) => v.name === "scratch")).toBeUndefined();
    expect(o.service.spec!.selector).toEqual(sts.selector.matchLabels);
    // The StatefulSet's serviceName names a headless Service.
    expect(sts.serviceName).toBe(o.service.metadata.name);
    expect(o.service.spec!.clusterIP).toBe("None");
    expect(o.service.spec!.type).toBe("ClusterIP");
  });

  it("stamps each object with the hash of its complete self, which changes when a field is removed", () => {
    const withSel = renderRunnerObjects(ok(planRunnerConfig(input(def({ runner: { nodeSelector: { pool: "backup" } } })))), settings);
    const without = renderRunnerObjects(ok(planRunnerConfig(input(def()))), settings);
    expect(without.statefulSet.spec!.template.spec!.nodeSelector).toBeUndefined();
    const h = (o: { metadata: { annotations?: Record<string, string> } }) => o.metadata.annotations!["chbackup.dev/desired-hash"];
    expect(h(withSel.statefulSet)).not.toBe(h(without.statefulSet));
    expect(h(withSel.service)).toBe(h(without.service));
    expect(h(withSel.secret)).toBe(h(without.secret));
    const noPullSecrets = renderRunnerObjects(ok(planRunnerConfig(input(def()))), { ...settings, imagePullSecrets: [] });
    expect(noPullSecrets.statefulSet.spec!.template.spec!.imagePullSecrets).toBeUndefined();
    expect(h(noPullSecrets.statefulSet)).not.toBe(h(without.statefulSet));
  });

  it("renders the runner's pod options: serviceAccountName (its token mounted), pod labels and annotations, priorityClassName", () => {
    const runner = { serviceAccountName: "backup-irsa", podLabels: { team: "data", "example.com/cost": "db" }, podAnnotations: { "example.com/note": "x" }, priorityClassName: "backup-high" };
    const o = renderRunnerObjects(ok(planRunnerConfig(input(def({ runner })))), settings);
    const tpl = o.statefulSet.spec!.template;
    expect(tpl.spec!.serviceAccountName).toBe("backup-irsa");
    expect(tpl.spec!.serviceAccount).toBe("backup-irsa");
    expect(tpl.spec!.automountServiceAccountToken).toBe(true);
    expect(tpl.spec!.priorityClassName).toBe("backup-high");
    expect(tpl.metadata!.labels).toEqual({ ...o.statefulSet.metadata.labels, team: "data", "example.com/cost": "db" });
    expect(tpl.metadata!.annotations).toEqual({ "example.com/note": "x", "chbackup.dev/definition": "shop/orders", "chbackup.dev/config-hash": o.configHash });
    // Only the pod template: the StatefulSet, Service and Secret keep the controller's metadata alone.
    for (const obj of [o.secret, o.statefulSet, o.service]) {
      expect(obj.metadata.labels).not.toHaveProperty("team");
      expect(obj.metadata.annotations).not.toHaveProperty("example.com/note");
    }
    expect(o.statefulSet.spec!.selector.matchLabels).not.toHaveProperty("team");
  });

  it("leaves the pod options out when they are not set: no ServiceAccount, its token not mounted, no priority class", () => {
    const o = renderRunnerObjects(ok(planRunnerConfig(input(def()))), settings);
    const tpl = o.statefulSet.spec!.template;
    expect(tpl.spec).not.toHaveProperty("serviceAccountName");
    expect(tpl.spec).not.toHaveProperty("serviceAccount");
    expect(tpl.spec!.automountServiceAccountToken).toBe(false);
    expect(tpl.spec).not.toHaveProperty("priorityClassName");
    expect(tpl.metadata!.labels).toEqual(o.statefulSet.metadata.labels);
    expect(tpl.metadata!.annotations).toEqual({ "chbackup.dev/definition": "shop/orders", "chbackup.dev/config-hash": o.configHash });
    const h = (x: { metadata: { annotations?: Record<string, string> } }) => x.metadata.annotations!["chbackup.dev/desired-hash"];
    const withPrio = renderRunnerObjects(ok(planRunnerConfig(input(def({ runner: { priorityClassName: "p" } })))), settings);
    expect(h(withPrio.statefulSet)).not.toBe(h(o.statefulSet));
  });

  it("never lets a pod label or annotation override the controller's own", () => {
    // Validation refuses these keys; the renderer still puts the controller's values last.
    const runner = { podLabels: { "app.kubernetes.io/instance": "other", "chbackup.dev/definition-name": "x" }, podAnnotations: { "chbackup.dev/config-hash": "0", "chbackup.dev/definition": "a/b" } };
    const p = ok(planRunnerConfig(input(def())));
    const o = renderRunnerObjects({ ...p, spec: { ...p.spec, runner } } as PlanSuccess, settings);
    const tpl = o.statefulSet.spec!.template;
    expect(tpl.metadata!.labels).toEqual(o.statefulSet.metadata.labels);
    expect(tpl.metadata!.annotations).toEqual({ "chbackup.dev/definition": "shop/orders", "chbackup.dev/config-hash": o.configHash });
  });

  it("uses the controller's runner defaults when the definition sets none", () => {
    const o = renderRunnerObjects(ok(planRunnerConfig(input(def()))), settings);
    expect(o.statefulSet.spec!.template.spec!.containers[0]!.resources).toEqual({ requests: { cpu: "250m", memory: "256Mi" }, limits: { memory: "512Mi" } });
    expect(o.statefulSet.spec!.template.spec!.volumes).toContainEqual({ name: "scratch", emptyDir: { sizeLimit: "1Gi" } });
    const disk = renderRunnerObjects(ok(planRunnerConfig(input(def({ storageLocation: "disk" })))), settings);
    expect(disk.statefulSet.spec!.volumeClaimTemplates![0]!.spec!.resources!.requests).toEqual({ storage: "1Gi" });
  });

  it("puts the runner's operation journal (definition.stateDir) on its scratch volume, so it survives a pod restart", () => {
    const p = ok(planRunnerConfig(input(def())));
    const stateDir = p.config.definition.stateDir!;
    const mounts = renderRunnerObjects(p, settings).statefulSet.spec!.template.spec!.containers[0]!.volumeMounts!;
    const scratch = mounts.find((m) => m.name === "scratch" && !m.subPath)!;
    expect(stateDir.startsWith(`${scratch.mountPath}/`)).toBe(true);
    expect(mounts.filter((m) => m.readOnly).every((m) => !stateDir.startsWith(`${m.mountPath}/`))).toBe(true);
  });

  it("mounts filesystem storage: a named claim, or the runner's own claim kept on deletion", () => {
    const nfs = renderRunnerObjects(ok(planRunnerConfig(input(def({ storageLocation: "nfs" })))), settings).statefulSet.spec!;
    expect(nfs.template.spec!.volumes).toContainEqual({ name: "backups", persistentVolumeClaim: { claimName: "nfs-backups" } });
    expect(nfs.template.spec!.containers[0]!.volumeMounts).toContainEqual({ name: "backups", mountPath: "/mnt/nfs" });
    const disk = renderRunnerObjects(ok(planRunnerConfig(input(def({ storageLocation: "disk" })))), settings).statefulSet.spec!;
    expect(disk.template.spec!.containers[0]!.volumeMounts).toContainEqual({ name: "scratch", mountPath: "/backups", subPath: "backups" });
    expect(disk.persistentVolumeClaimRetentionPolicy!.whenDeleted).toBe("Retain");
  });
});
