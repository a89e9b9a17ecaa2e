// examples/ cannot go stale: every custom resource there is parsed with the
// zod spec schemas the CRDs come from, and every Secret and StorageLocation
// it refers to is among the examples, with the keys it names.
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { API_GROUP, API_VERSION, backupDefinitionSpec, formatIssues, isAgeRecipient, parseRecipientsText, storageLocationSpec } from "../apis/index.ts";
import { restoreSpec } from "../apis/restore.ts";
import { RUNNER_CONTAINER } from "../controller/contract.ts";
import { parseYamlDocs } from "./kustomize.ts";
import { BASE_NAMESPACE } from "./values.ts";

const dir = join(import.meta.dirname, "..", "..", "examples");
const files = readdirSync(dir).filter((f) => f.endsWith(".yaml")).sort();
const docs = files.flatMap((file) => parseYamlDocs(readFileSync(join(dir, file), "utf8")).map((obj) => ({ file, obj: obj as any })));
const ofKind = (kind: string) => docs.filter((d) => d.obj.kind === kind).map((d) => d.obj);
const secretKeys = (ns: string, name: string): string[] | undefined => {
  const s = ofKind("Secret").find((x) => x.metadata.namespace === ns && x.metadata.name === name);
  return s ? Object.keys({ ...s.stringData, ...s.data }) : undefined;
};

describe("examples", () => {
  it("are the expected set", () => {
    expect(files).toEqual(["backupdefinition-altinity-cluster.yaml", "backupdefinition-encrypted.yaml", "backupdefinition.yaml", "export-single.yaml", "restore.yaml", "storagelocation-aws-s3.yaml", "storagelocation-minio.yaml"]);
    for (const { file, obj } of docs) {
      expect(obj.metadata?.name, file).toBeTruthy();
      expect(obj.metadata?.namespace, `${file}: every example names its namespace`).toBeTruthy();
    }
  });

  for (const { file, obj } of docs.filter((d) => !["Secret", "Role", "RoleBinding"].includes(d.obj.kind))) {
    it(`${file}: ${obj.kind} ${obj.metadata.namespace}/${obj.metadata.name} is valid`, () => {
      expect(obj.apiVersion).toBe(`${API_GROUP}/${API_VERSION}`);
      const schema = obj.kind === "StorageLocation" ? storageLocationSpec : obj.kind === "BackupDefinition" ? backupDefinitionSpec : obj.kind === "Restore" ? restoreSpec : undefined;
      expect(schema, `unexpected kind ${obj.kind}`).toBeDefined();
      const r = schema!.safeParse(obj.spec);
      expect(r.success ? [] : formatIssues(r.error)).toEqual([]);
    });
  }

  it("StorageLocations live in the controller namespace, with their credentials Secrets there", () => {
    const locations = ofKind("StorageLocation");
    expect(locations.map((l) => l.metadata.name).sort()).toEqual(["aws-s3", "minio"]);
    for (const l of locations) {
      expect(l.metadata.namespace).toBe(BASE_NAMESPACE);
      const spec = storageLocationSpec.parse(l.spec);
      const ref = spec.s3!.credentialsSecretRef!;
      expect(secretKeys(l.metadata.namespace, ref.name)?.sort()).toEqual([ref.accessKeyIdKey, ref.secretAccessKeyKey].sort());
    }
    expect(storageLocationSpec.parse(locations.find((l) => l.metadata.name === "minio").spec).s3).toMatchObject({ forcePathStyle: true });
  });

  it("BackupDefinitions refer to example StorageLocations and password Secrets in their own namespace", () => {
    const defs = ofKind("BackupDefinition");
    for (const d of defs) {
      const spec = backupDefinitionSpec.parse(d.spec);
      expect(ofKind("StorageLocation").map((l) => l.metadata.name)).toContain(spec.storageLocation);
      const ref = spec.clickhouse.passwordSecretRef!;
      expect(secretKeys(d.metadata.namespace, ref.name)).toContain(ref.key);
    }
    const scheduled = backupDefinitionSpec.parse(defs.find((d) => d.metadata.name === "orders").spec);
    expect(scheduled.mode).toBe("scheduled");
    expect(scheduled.retention).toEqual({ hourly: 24, daily: 7, weekly: 4, monthly: 12 });
    const cluster = backupDefinitionSpec.parse(defs.find((d) => d.metadata.name === "events-cluster").spec);
    expect(cluster.clickhouse.cluster).toMatchObject({ name: "main", httpPort: 8123 });
    expect(cluster.runner?.databaseAffinity?.podLabels).toEqual({ "clickhouse.altinity.com/chi": "events", "clickhouse.altinity.com/cluster": "main" });
    // encryption: the recipients come from an example Secret of the definition's namespace, and are well-formed
    const encrypted = backupDefinitionSpec.parse(defs.find((d) => d.metadata.name === "orders-encrypted").spec);
    const rref = encrypted.encryption!.recipientsSecretRef!;
    const recipients = ofKind("Secret").find((x) => x.metadata.namespace === "shop" && x.metadata.name === rref.name).stringData[rref.key] as string;
    expect(parseRecipientsText(recipients).map(isAgeRecipient)).toEqual([true, true]);
    const single = backupDefinitionSpec.parse(defs.find((d) => d.metadata.name === "shop-export").spec);
    expect(single).toMatchObject({ mode: "single", singleBackup: { target: "exports/shop-2026-11" } });
  });
});

describe("examples/restore.yaml", () => {
  it("restores a BackupDefinition of its own namespace; the team's Role grants Restores in that namespace only", () => {
    const restores = ofKind("Restore");
    expect(restores).toHaveLength(1);
    for (const r of restores) {
      const spec = restoreSpec.parse(r.spec);
      expect(ofKind("BackupDefinition").some((d) => d.metadata.namespace === r.metadata.namespace && d.metadata.name === spec.backupDefinition)).toBe(true);
    }
    const role = ofKind("Role").find((x) => x.metadata.name === "chbackup-restore");
    expect(role.metadata.namespace).toBe(restores[0].metadata.namespace);
    expect(role.rules).toContainEqual({ apiGroups: [API_GROUP], resources: ["restores"], verbs: ["get", "list", "watch", "create", "delete"] });
    // Nothing that writes definitions or reaches the runner's Secret.
    expect(role.rules.flatMap((r: { resources: string[] }) => r.resources).sort()).toEqual(["backupdefinitions", "restores"]);
    const binding = ofKind("RoleBinding").find((x) => x.metadata.name === "chbackup-restore");
    expect(binding.roleRef).toEqual({ kind: "Role", name: "chbackup-restore", apiGroup: "rbac.authorization.k8s.io" });
  });
});

describe("examples/restore.sh", () => {
  const script = readFileSync(join(dir, "restore.sh"), "utf8");
  const readme = readFileSync(join(dir, "..", "README.md"), "utf8");

  it("is valid bash", () => {
    execFileSync("bash", ["-n", join(dir, "restore.sh")]);
  });

  it("uses the runner Secret's token key and the runner port", () => {
    expect(script).toContain(`-o jsonpath='{.data.${RUNNER_CONTAINER.tokenKey}}'`);
    expect(script).toContain(`"$LOCAL_PORT:${RUNNER_CONTAINER.port}"`);
  });

  it("runs the README's curl lines", () => {
    for (const line of [
      `curl -fsS -H "Authorization: Bearer $TOKEN" "$RUNNER/api/v1/status"`,
      `curl -fsS -H "Authorization: Bearer $TOKEN" "$RUNNER/api/v1/backups"`,
      `curl -fsS -X POST -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" \\`,
      `"$RUNNER/api/v1/restores"                                                              # 202, Location: /api/v1/restores/<id>`,
      `curl -fsS -H "Authorization: Bearer $TOKEN" "$RUNNER/api/v1/restores/$ID"`,
    ]) {
      expect(readme, "README").toContain(line);
      expect(script, "restore.sh").toContain(line);
    }
  });
});
