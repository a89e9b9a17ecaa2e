// From a BackupDefinition, its StorageLocation and the Secrets they reference
// to the runner's resolved configuration: a pure function. Failures are
// reasons for the Ready condition, never exceptions, and never hold a secret value.
import { backupDefinitionSpec, storageLocationSpec, runnerConfig, formatIssues, type BackupDefinitionSpec, type RunnerConfig, type RunnerConfigInput, type StorageLocationSpec } from "../apis/index.ts";
import { RUNNER_CONTAINER } from "./contract.ts";
import type { BackupDefinitionObject, SecretObject, StorageLocationObject } from "./types.ts";

export type FailureReason = "InvalidSpec" | "StorageLocationNotFound" | "SecretNotFound" | "SecretKeyNotFound";

export interface PlanFailure {
  ok: false;
  reason: FailureReason;
  message: string;
}

export interface PlanSuccess {
  ok: true;
  spec: BackupDefinitionSpec;
  location: StorageLocationSpec;
  config: RunnerConfig;
  /** Canonical JSON of the config (what the runner reads). */
  configJson: string;
}

export interface PlanInput {
  definition: BackupDefinitionObject;
  /** The controller's namespace (where locations and their Secrets live). */
  controllerNamespace: string;
  location: (name: string) => StorageLocationObject | undefined;
  secret: (namespace: string, name: string) => SecretObject | undefined;
  /** The API token: the one already in the runner Secret, or a new one. */
  token: string;
}

/** Secret references of a definition and its location, for the Secret → definition index. */
export function referencedSecrets(def: BackupDefinitionObject, location: StorageLocationObject | undefined, controllerNamespace: string): { namespace: string; name: string }[] {
  const refs: { namespace: string; name: string }[] = [];
  const pw = def.spec?.clickhouse?.passwordSecretRef?.name;
  if (pw) refs.push({ namespace: def.metadata.namespace ?? "", name: pw });
  const cred = location?.spec?.s3?.credentialsSecretRef?.name;
  if (cred) refs.push({ namespace: controllerNamespace, name: cred });
  return refs;
}

function secretValue(
  input: PlanInput,
  namespace: string,
  name: string,
  key: string,
  what: string,
): { ok: true; value: string } | PlanFailure {
  const s = input.secret(namespace, name);
  if (!s) return { ok: false, reason: "SecretNotFound", message: `Secret ${namespace}/${name} (${what}) not found` };
  const b64 = s.data?.[key];
  if (b64 === undefined) return { ok: false, reason: "SecretKeyNotFound", message: `Secret ${namespace}/${name} (${what}) has no key "${key}"` };
  return { ok: true, value: Buffer.from(b64, "base64").toString("utf8") };
}

export function planRunnerConfig(input: PlanInput): PlanSuccess | PlanFailure {
  const def = input.definition;
  const ns = def.metadata.namespace ?? "";
  const parsed = backupDefinitionSpec.safeParse(def.spec);
  if (!parsed.success) return { ok: false, reason: "InvalidSpec", message: formatIssues(parsed.error, "spec").join("; ") };
  const spec = parsed.data;

  const locObj = input.location(spec.storageLocation);
  if (!locObj) {
    return { ok: false, reason: "StorageLocationNotFound", message: `StorageLocation ${input.controllerNamespace}/${spec.storageLocation} not found` };
  }
  const loc = storageLocationSpec.safeParse(locObj.spec);
  if (!loc.success) {
    return { ok: false, reason: "InvalidSpec", message: `StorageLocation ${spec.storageLocation}: ${formatIssues(loc.error, "spec").join("; ")}` };
  }
  const location = loc.data;

  let password = "";
  const { passwordSecretRef, ...clickhouse } = spec.clickhouse;
  if (passwordSecretRef) {
    const v = secretValue(input, ns, passwordSecretRef.name, passwordSecretRef.key, "clickhouse.passwordSecretRef");
    if (!v.ok) return v;
    password = v.value;
  }

  let storage: RunnerConfigInput["storage"];
  if (location.s3) {
    const { credentialsSecretRef, ...s3 } = location.s3;
    let creds: { accessKeyId?: string; secretAccessKey?: string } = {};
    if (credentialsSecretRef) {
      const what = `StorageLocation ${spec.storageLocation} credentials`;
      const id = secretValue(input, input.controllerNamespace, credentialsSecretRef.name, credentialsSecretRef.accessKeyIdKey, what);
      if (!id.ok) return id;
      const key = secretValue(input, input.controllerNamespace, credentialsSecretRef.name, credentialsSecretRef.secretAccessKeyKey, what);
      if (!key.ok) return key;
      creds = { accessKeyId: id.value, secretAccessKey: key.value };
    }
    storage = { s3: { ...s3, ...creds } };
  } else {
    storage = { filesystem: { path: location.filesystem!.path } };
  }

  const raw: RunnerConfigInput = {
    definition: {
      namespace: ns,
      name: def.metadata.name,
      ...(def.metadata.uid ? { uid: def.metadata.uid } : {}),
      engine: spec.engine,
      clickhouse: { ...clickhouse, password },
      mode: spec.mode,
      ...(spec.schedule ? { schedule: spec.schedule } : {}),
      retention: spec.retention,
      ...(spec.singleBackup ? { singleBackup: spec.singleBackup } : {}),
      suspend: spec.suspend,
      incompleteCleanupAfterHours: spec.incompleteCleanupAfterHours,
      stateDir: RUNNER_CONTAINER.stateDir,
    },
    storage,
    api: { token: input.token, port: RUNNER_CONTAINER.port, host: "0.0.0.0" },
  };
  const cfg = runnerConfig.safeParse(raw);
  if (!cfg.success) return { ok: false, reason: "InvalidSpec", message: `runner config: ${formatIssues(cfg.error).join("; ")}` };
  if (cfg.data.definition.clickhouse.method === "native" && !cfg.data.storage.s3) {
    return { ok: false, reason: "InvalidSpec", message: "clickhouse.method native needs an S3 StorageLocation (ClickHouse writes the backup itself)" };
  }
  return { ok: true, spec, location, config: cfg.data, configJson: `${JSON.stringify(cfg.data, null, 2)}\n` };
}
