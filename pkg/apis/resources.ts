// The custom resources and their CRDs. The zod schemas are the single source
// of truth: TypeScript types are inferred from them and the CRD manifests in
// deploy/crds/ are generated from them (npm run gen; a test fails when stale).
import { z } from "zod";
import { API_GROUP, API_VERSION } from "./common.ts";
import { storageLocationSpec, storageLocationValidations } from "./storagelocation.ts";
import { backupDefinitionSpec, definitionValidations } from "./backupdefinition.ts";
import { restorePrinterColumns, restoreSpec, restoreStatus, restoreValidations } from "./restore.ts";

import { condition } from "./common.ts";
export { condition, type Condition } from "./common.ts";

export const backupDefinitionStatus = z.object({
  observedGeneration: z.int().optional(),
  conditions: z.array(condition).optional(),
  runner: z
    .object({
      namespace: z.string(),
      secret: z.string(),
      statefulSet: z.string(),
      service: z.string(),
      configHash: z.string().optional(),
    })
    .optional(),
  lastBackup: z
    .object({
      id: z.string(),
      time: z.string().describe("End time of the newest backup the runner reports"),
      durationSeconds: z.int().optional(),
      bytes: z.number().optional().describe("Bytes stored"),
      rows: z.number().optional().describe("Rows backed up, counted in the data stream"),
      checkedAt: z.string().optional(),
    })
    .optional()
    .describe("Newest complete backup of this definition's runner, as its API reports it"),
  lastFailure: z
    .object({ time: z.string(), message: z.string(), retryable: z.boolean().optional() })
    .optional()
    .describe("Newest failed (or cancelled, aborted, interrupted) backup attempt"),
  consecutiveFailures: z.int().optional().describe("Operations that failed in a row since the last success"),
  nextRun: z.string().optional().describe("Next scheduled backup"),
  backups: z
    .object({
      count: z.int(),
      oldest: z.string().optional(),
      newest: z.string().optional(),
      totalBytes: z.number(),
      size: z.string().describe("totalBytes for people, e.g. 1.5 GiB"),
    })
    .optional()
    .describe("The runner's own complete backups"),
  lastVerified: z.object({ backupId: z.string(), time: z.string(), ok: z.boolean() }).optional().describe("The newest verify operation"),
  currentOperation: z
    .object({
      id: z.string(),
      kind: z.string(),
      startedAt: z.string(),
      phase: z.string(),
      tablesDone: z.int(),
      tablesTotal: z.int(),
      bytes: z.number(),
      rows: z.number(),
    })
    .optional()
    .describe("The operation running on the runner now, with its progress"),
});
export const storageLocationStatus = z.object({
  observedGeneration: z.int().optional(),
  conditions: z.array(condition).optional(),
});

export interface CrdDefinition {
  kind: string;
  plural: string;
  singular: string;
  shortNames: string[];
  scope: "Namespaced";
  spec: z.ZodType;
  status: z.ZodType;
  validations: { rule: string; message: string; fieldPath?: string }[];
  printerColumns: { name: string; type: string; jsonPath: string; description?: string; priority?: number }[];
  /** What docs/reference.md says of the kind (default: the BackupDefinition's sentence). */
  reference?: string;
}

export const CRDS: CrdDefinition[] = [
  {
    kind: "StorageLocation",
    plural: "storagelocations",
    singular: "storagelocation",
    // Not "bsl": that is Velero's BackupStorageLocation, and clusters run both.
    shortNames: ["chsl"],
    scope: "Namespaced",
    spec: storageLocationSpec,
    status: storageLocationStatus,
    validations: storageLocationValidations,
    printerColumns: [
      { name: "Bucket", type: "string", jsonPath: ".spec.s3.bucket" },
      { name: "Path", type: "string", jsonPath: ".spec.filesystem.path" },
      { name: "Ready", type: "string", jsonPath: '.status.conditions[?(@.type=="Ready")].status' },
      { name: "Reason", type: "string", jsonPath: '.status.conditions[?(@.type=="Ready")].reason', priority: 1 },
      { name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp" },
    ],
  },
  {
    kind: "BackupDefinition",
    plural: "backupdefinitions",
    singular: "backupdefinition",
    shortNames: ["bdef"],
    scope: "Namespaced",
    spec: backupDefinitionSpec,
    status: backupDefinitionStatus,
    validations: definitionValidations,
    printerColumns: [
      { name: "Ready", type: "string", jsonPath: '.status.conditions[?(@.type=="Ready")].status' },
      { name: "Runner", type: "string", jsonPath: '.status.conditions[?(@.type=="RunnerReady")].status', description: "RunnerReady: the runner pod is ready and its API answers" },
      { name: "Healthy", type: "string", jsonPath: '.status.conditions[?(@.type=="BackupHealthy")].status', description: "BackupHealthy: the newest backup is recent enough" },
      { name: "Last Backup", type: "date", jsonPath: ".status.lastBackup.time" },
      { name: "Backups", type: "integer", jsonPath: ".status.backups.count" },
      { name: "Next Run", type: "string", jsonPath: ".status.nextRun" },
      { name: "Failures", type: "integer", jsonPath: ".status.consecutiveFailures" },
      { name: "Size", type: "string", jsonPath: ".status.backups.size", priority: 1 },
      { name: "Mode", type: "string", jsonPath: ".spec.mode", priority: 1 },
      { name: "Storage", type: "string", jsonPath: ".spec.storageLocation", priority: 1 },
      { name: "Reason", type: "string", jsonPath: '.status.conditions[?(@.type=="BackupHealthy")].reason', priority: 1 },
      { name: "Runner Reason", type: "string", jsonPath: '.status.conditions[?(@.type=="RunnerReady")].reason', priority: 1 },
      { name: "Ready Reason", type: "string", jsonPath: '.status.conditions[?(@.type=="Ready")].reason', priority: 1 },
      { name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp" },
    ],
  },
  {
    kind: "Restore",
    plural: "restores",
    singular: "restore",
    shortNames: ["chrestore"],
    scope: "Namespaced",
    spec: restoreSpec,
    status: restoreStatus,
    validations: restoreValidations,
    printerColumns: restorePrinterColumns,
    reference:
      "Lives in the application's namespace, next to its BackupDefinition. One restore of one backup: the controller sends it to the definition's runner once and mirrors the runner's operation into `status`. The spec cannot change once created.",
  },
];

type JsonSchema = Record<string, unknown>;

/** Converts a zod schema to a Kubernetes structural schema (OpenAPI v3, no unions, no additionalProperties:false). */
export function toStructuralSchema(schema: z.ZodType): JsonSchema {
  const raw = z.toJSONSchema(schema, { target: "openapi-3.0", io: "input", unrepresentable: "throw" }) as JsonSchema;
  // inProperties: node is a `properties` map, whose keys are field names (a field may be called "id").
  const clean = (node: unknown, inProperties = false): unknown => {
    if (Array.isArray(node)) return node.map((n) => clean(n));
    if (!node || typeof node !== "object") return node;
    const out: JsonSchema = {};
    for (const [k, v] of Object.entries(node as JsonSchema)) {
      if (inProperties) {
        out[k] = clean(v);
        continue;
      }
      if (k === "$schema" || k === "id" || k === "$id") continue;
      if (k === "additionalProperties" && v === false) continue;
      if (k === "anyOf" || k === "oneOf" || k === "allOf") throw new Error(`structural schemas cannot hold ${k}; use sibling optional fields and CEL rules`);
      out[k] = clean(v, k === "properties");
    }
    // Integers in JSON Schema from zod carry safe-integer bounds; Kubernetes wants int64 format.
    if (out["type"] === "integer") {
      if (out["minimum"] === Number.MIN_SAFE_INTEGER) delete out["minimum"];
      if (out["maximum"] === Number.MAX_SAFE_INTEGER) delete out["maximum"];
      out["format"] = "int64";
    }
    return out;
  };
  return clean(raw) as JsonSchema;
}

export function crdManifest(def: CrdDefinition): Record<string, unknown> {
  const spec = toStructuralSchema(def.spec);
  if (def.validations.length) spec["x-kubernetes-validations"] = def.validations;
  return {
    apiVersion: "apiextensions.k8s.io/v1",
    kind: "CustomResourceDefinition",
    metadata: { name: `${def.plural}.${API_GROUP}` },
    spec: {
      group: API_GROUP,
      names: { kind: def.kind, listKind: `${def.kind}List`, plural: def.plural, singular: def.singular, shortNames: def.shortNames },
      scope: def.scope,
      versions: [
        {
          name: API_VERSION,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: def.printerColumns,
          schema: {
            openAPIV3Schema: {
              type: "object",
              required: ["spec"],
              properties: {
                apiVersion: { type: "string" },
                kind: { type: "string" },
                metadata: { type: "object" },
                spec,
                status: toStructuralSchema(def.status),
              },
            },
          },
        },
      ],
    },
  };
}
