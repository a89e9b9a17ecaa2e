// Restore: one restore of a backup of a BackupDefinition, requested as an object in the
// definition's namespace. The controller forwards the spec to the definition's runner
// (POST /api/v1/restores) and mirrors the runner's operation into status.
//
// The spec takes the same fields, with the same limits, as the runner API's request body
// (pkg/runner/api/views.ts restoreBody): what the CRD admits the runner accepts. Limits are
// patterns, lengths and CEL rules, so the apiserver refuses at admission what the runner would
// refuse later; restore.test.ts holds the two side by side.
import { z } from "zod";
import { condition, k8sName } from "./common.ts";

const MAX_NAME = 255;
/** No control characters (U+0000–U+001F, U+007F), as the runner API demands of every name. */
const NO_CONTROL = "[^\\x00-\\x1f\\x7f]";
export const SYSTEM_DATABASES = ["system", "INFORMATION_SCHEMA", "information_schema"] as const;
/** "latest" or a backup id (20261124T031000Z-a1b2c3). */
export const BACKUP_REF_PATTERN = /^(latest|[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6})$/;

const dbName = z
  .string()
  .min(1)
  .max(MAX_NAME)
  .regex(new RegExp(`^${NO_CONTROL}+$`), "must not contain control characters");

const tableName = z
  .string()
  .max(2 * MAX_NAME + 1)
  .regex(new RegExp(`^[^.\\x00-\\x1f\\x7f]+\\.${NO_CONTROL}+$`), 'must be "database.table" without control characters');

/** A path segment that is not empty, "." or "..", without "/" or control characters. */
const SEGMENT = "(?:[^/.\\x00-\\x1f\\x7f][^/\\x00-\\x1f\\x7f]*|[.][^/.\\x00-\\x1f\\x7f][^/\\x00-\\x1f\\x7f]*|[.][.][^/\\x00-\\x1f\\x7f]+)";
const systemList = SYSTEM_DATABASES.map((d) => `'${d}'`).join(", ");

export const EXISTING_TABLES = ["fail", "drop", "append"] as const;

export const restoreSpec = z
  .strictObject({
    backupDefinition: k8sName.describe("The BackupDefinition whose backups to restore from, in the Restore's own namespace (a Restore cannot name another namespace)"),
    backup: z
      .string()
      .regex(BACKUP_REF_PATTERN, 'must be "latest" or a backup id like 20261124T031000Z-a1b2c3')
      .default("latest")
      .describe('"latest" (the newest complete backup when the restore starts; status.backupId says which) or a backup id such as 20261124T031000Z-a1b2c3'),
    databases: z.array(dbName).min(1).max(1000).optional().describe("Databases to restore (default: every database of the backup)"),
    tables: z.array(tableName).min(1).max(10_000).optional().describe('Tables to restore, as "database.table" (default: every table of the selected databases)'),
    renameDatabases: z
      .record(
        z.string(),
        z
          .string()
          .min(1)
          .max(MAX_NAME)
          .regex(new RegExp(`^${NO_CONTROL}+$`), "must not contain control characters")
          .meta({ "x-kubernetes-validations": [{ rule: `!(self in [${systemList}])`, message: `must not be a system database (${SYSTEM_DATABASES.join(", ")})` }] }),
      )
      .meta({ maxProperties: 1000 })
      // The CEL rules say the same at admission (a structural schema has no propertyNames).
      .superRefine((r, ctx) => {
        const entries = Object.entries(r);
        if (entries.length > 1000) ctx.addIssue({ code: "custom", message: "too many renames (at most 1000)" });
        for (const [from, to] of entries) {
          if (from.length < 1 || from.length > MAX_NAME || /[\x00-\x1f\x7f]/.test(from)) ctx.addIssue({ code: "custom", path: [from], message: `a source name must be 1 to ${MAX_NAME} characters without control characters` });
          if ((SYSTEM_DATABASES as readonly string[]).includes(to)) ctx.addIssue({ code: "custom", path: [from], message: "must not be a system database" });
        }
      })
      .optional()
      .describe("Restore a database under another name: source → target (the target must not be a system database)"),
    existingTables: z
      .enum(EXISTING_TABLES)
      .default("fail")
      .describe("A target table that exists and holds rows: fail (refuse before anything changes), drop (replace it, swapped in once the new data is proven) or append"),
    allowUnstagedDrop: z
      .boolean()
      .default(false)
      .describe("Native (BACKUP/RESTORE) backups only: allow existingTables drop, which drops the target before the restore (it cannot be staged)"),
    mergeShards: z.boolean().default(false).describe("A cluster backup restored into one server: every shard's rows into one table (replicated engines made plain, Distributed as Merge)"),
    identityFile: z
      .string()
      .min(1)
      .max(1024)
      .regex(new RegExp(`^${SEGMENT}(/${SEGMENT})*$`), "must be a relative path inside the runner's identity directory, without empty, . or .. segments or control characters")
      .refine((f) => !/AGE-SECRET-KEY-/i.test(f), "must name an identity file, not hold the key")
      .optional()
      .describe("An encrypted backup: the age identity file that opens it, relative to the runner's identity directory (a key of its identity Secret, such as key.txt); never the key itself"),
  })
  .describe("What to restore. Immutable: create a new Restore to restore again");
export type RestoreSpec = z.infer<typeof restoreSpec>;
export type RestoreSpecInput = z.input<typeof restoreSpec>;

export const restoreValidations: { rule: string; message: string; fieldPath?: string }[] = [
  { rule: "self == oldSelf", message: "spec is immutable: create a new Restore to restore again" },
  {
    rule: `!has(self.renameDatabases) || self.renameDatabases.all(k, size(k) >= 1 && size(k) <= ${MAX_NAME} && !k.matches('[\\\\x00-\\\\x1f\\\\x7f]'))`,
    message: `renameDatabases: a source database name must be 1 to ${MAX_NAME} characters without control characters`,
    fieldPath: ".renameDatabases",
  },
  {
    rule: "!has(self.identityFile) || !self.identityFile.lowerAscii().contains('age-secret-key-')",
    message: "identityFile must name an identity file, not hold the key: put the key into the runner's identity Secret",
    fieldPath: ".identityFile",
  },
];

export const RESTORE_PHASES = ["Pending", "Running", "Succeeded", "Failed"] as const;
export type RestorePhase = (typeof RESTORE_PHASES)[number];


export const restoreStatus = z.object({
  observedGeneration: z.int().optional(),
  phase: z.enum(RESTORE_PHASES).optional().describe("Pending (waiting: see reason), Running, Succeeded or Failed"),
  reason: z
    .string()
    .optional()
    .describe("Why it is in its phase: DefinitionNotFound, RunnerNotReady, RunnerUnreachable, RunnerBusy, Submitted, Running, Succeeded, Failed, BackupNotFound, InvalidSpec, OperationLost"),
  message: z.string().optional(),
  operationId: z.string().optional().describe("The runner's operation id (GET /api/v1/restores/{id} on the runner)"),
  backupId: z.string().optional().describe("The backup restored (the one `latest` resolved to)"),
  runner: z.string().optional().describe("The runner Service that runs it, as namespace/name"),
  startedAt: z.string().optional(),
  completedAt: z.string().optional(),
  progress: z
    .object({
      phase: z.string().optional(),
      tablesDone: z.int().optional(),
      tablesTotal: z.int().optional(),
      bytes: z.int().optional(),
      rows: z.int().optional(),
    })
    .optional()
    .describe("The runner's progress while it runs"),
  rowsRestored: z.int().optional().describe("Rows the runner sent, counted in the data (once Succeeded)"),
  bytesRestored: z.int().optional().describe("Bytes read from the backup (once Succeeded)"),
  error: z.string().optional().describe("Why it failed (once Failed)"),
  conditions: z.array(condition).optional(),
});
export type RestoreStatus = z.infer<typeof restoreStatus>;

export const restorePrinterColumns = [
  { name: "Definition", type: "string", jsonPath: ".spec.backupDefinition" },
  { name: "Backup", type: "string", jsonPath: ".status.backupId" },
  { name: "Phase", type: "string", jsonPath: ".status.phase" },
  { name: "Rows", type: "integer", jsonPath: ".status.rowsRestored" },
  { name: "Reason", type: "string", jsonPath: ".status.reason", priority: 1 },
  { name: "Requested", type: "string", jsonPath: ".spec.backup", priority: 1 },
  { name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp" },
];
