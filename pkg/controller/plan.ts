// From a BackupDefinition, its StorageLocation and the Secrets they reference
// to the runner's resolved configuration: a pure function. Failures are
// reasons for the Ready condition, never exceptions, and never hold a secret value.
import {
  backupDefinitionSpec,
  storageLocationSpec,
  runnerConfig,
  formatIssues,
  parseRecipientsText,
  recipientProblem,
  type BackupDefinitionSpec,
  type RunnerConfig,
  type RunnerConfigInput,
  type StorageLocationSpec,
} from "../apis/index.ts";
import type { AllowedNamespaces, LabelSelector } from "../apis/storagelocation.ts";
import { RUNNER_CONTAINER } from "./contract.ts";
import type { BackupDefinitionObject, SecretObject, StorageLocationObject } from "./types.ts";

export type FailureReason = "InvalidSpec" | "StorageLocationNotFound" | "StorageLocationNotAllowed" | "SecretNotFound" | "SecretKeyNotFound";

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
  /** Labels of a namespace (for a location's allowedNamespaces.selector); undefined if unknown. */
  namespaceLabels?: (namespace: string) => Record<string, string> | undefined;
}

/** Do the labels satisfy the selector? (Kubernetes semantics: every matchLabels entry and every expression.) */
export function selectorMatches(selector: LabelSelector, labels: Record<string, string>): boolean {
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const e of selector.matchExpressions ?? []) {
    const has = Object.hasOwn(labels, e.key);
    const inValues = has && (e.values ?? []).includes(labels[e.key]!);
    if (e.operator === "In" && !inValues) return false;
    if (e.operator === "NotIn" && inValues) return false;
    if (e.operator === "Exists" && !has) return false;
    if (e.operator === "DoesNotExist" && has) return false;
  }
  return true;
}

/** May definitions of `namespace` use a location with these allowedNamespaces? (Left out: every namespace.) */
export function namespaceAllowed(allowed: AllowedNamespaces | undefined, namespace: string, labels: Record<string, string> | undefined): boolean {
  if (!allowed) return true;
  if (allowed.names?.includes(namespace)) return true;
  return allowed.selector !== undefined && labels !== undefined && selectorMatches(allowed.selector, labels);
}

function describeAllowed(a: AllowedNamespaces): string {
  const parts: string[] = [];
  if (a.names) parts.push(`names ${a.names.join(", ") || "(none)"}`);
  if (a.selector) {
    const sel = [
      ...Object.entries(a.selector.matchLabels ?? {}).map(([k, v]) => `${k}=${v}`),
      ...(a.selector.matchExpressions ?? []).map((e) => `${e.key} ${e.operator}${e.values ? ` (${e.values.join(", ")})` : ""}`),
    ];
    parts.push(`namespaces labelled ${sel.join(", ") || "(anything)"}`);
  }
  return parts.join("; or ");
}

/** Secret references of a definition and its location, for the Secret → definition index. */
export function referencedSecrets(def: BackupDefinitionObject, location: StorageLocationObject | undefined, controllerNamespace: string): { namespace: string; name: string }[] {
  const refs: { namespace: string; name: string }[] = [];
  const pw = def.spec?.clickhouse?.passwordSecretRef?.name;
  if (pw) refs.push({ namespace: def.metadata.namespace ?? "", name: pw });
  const rcp = (def.spec as { encryption?: { recipientsSecretRef?: { name?: string } } } | undefined)?.encryption?.recipientsSecretRef?.name;
  if (rcp) refs.push({ namespace: def.metadata.namespace ?? "", name: rcp });
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

/** The Ready condition of a StorageLocation: its spec and its credentials Secret (the bucket is the runners' to check). */
export interface LocationCheck {
  status: "True" | "False";
  reason: "Available" | "InvalidSpec" | "SecretNotFound" | "SecretKeyNotFound";
  message: string;
}

export function checkStorageLocation(
  location: StorageLocationObject,
  controllerNamespace: string,
  secret: (namespace: string, name: string) => SecretObject | undefined,
): LocationCheck {
  const parsed = storageLocationSpec.safeParse(location.spec);
  if (!parsed.success) return { status: "False", reason: "InvalidSpec", message: formatIssues(parsed.error, "spec").join("; ") };
  const spec = parsed.data;
  const input = { secret } as PlanInput;
  const ref = spec.s3?.credentialsSecretRef;
  if (ref) {
    for (const key of [ref.accessKeyIdKey, ref.secretAccessKeyKey]) {
      const v = secretValue(input, controllerNamespace, ref.name, key, "s3.credentialsSecretRef");
      if (!v.ok) return { status: "False", reason: v.reason as LocationCheck["reason"], message: v.message };
    }
  }
  const where = spec.s3
    ? `S3 bucket ${spec.s3.bucket}${spec.s3.prefix ? `, prefix ${spec.s3.prefix}` : ""}${spec.s3.endpoint ? ` at ${spec.s3.endpoint}` : ""}${ref ? `, credentials from Secret ${controllerNamespace}/${ref.name}` : ", the pods' own credentials"}`
    : `directory ${spec.filesystem!.path}${spec.filesystem!.claimName ? ` on claim ${spec.filesystem!.claimName}` : " on each runner's own claim"}`;
  return { status: "True", reason: "Available", message: `${where}; the runners check the storage itself when they start` };
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
  if (!namespaceAllowed(location.allowedNamespaces, ns, input.namespaceLabels?.(ns))) {
    return {
      ok: false,
      reason: "StorageLocationNotAllowed",
      message: `StorageLocation ${input.controllerNamespace}/${spec.storageLocation} does not allow namespace ${ns} (allowedNamespaces: ${describeAllowed(location.allowedNamespaces!)})`,
    };
  }

  let password = "";
  const { passwordSecretRef, ...clickhouse } = spec.clickhouse;
  if (passwordSecretRef) {
    const v = secretValue(input, ns, passwordSecretRef.name, passwordSecretRef.key, "clickhouse.passwordSecretRef");
    if (!v.ok) return v;
    password = v.value;
  }

  // Encryption: only recipients (public keys) reach the runner; an identity never passes through the controller.
  let recipients: string[] | undefined = spec.encryption?.recipients;
  const rref = spec.encryption?.recipientsSecretRef;
  if (rref) {
    const v = secretValue(input, ns, rref.name, rref.key, "encryption.recipientsSecretRef");
    if (!v.ok) return v;
    recipients = parseRecipientsText(v.value);
    const where = `Secret ${ns}/${rref.name} key "${rref.key}" (encryption.recipientsSecretRef)`;
    if (recipients.length === 0) return { ok: false, reason: "InvalidSpec", message: `${where} holds no recipient (age1…, one per line)` };
    const bad = recipients.map((r, i) => ({ i, p: recipientProblem(r) })).filter((x) => x.p !== undefined);
    if (bad.length) return { ok: false, reason: "InvalidSpec", message: `${where}: ${bad.map((b) => `recipient ${b.i + 1} ${b.p}`).join("; ")}` };
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
      ...(recipients ? { encryption: { recipients, identityDir: RUNNER_CONTAINER.identityDir } } : {}),
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
