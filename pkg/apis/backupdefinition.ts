// BackupDefinition: what to back up, when, how long to keep it. Lives in the app namespace.
import cron from "node-cron";
import { z } from "zod";
import { k8sName } from "./common.ts";
import { clickhouseSpec, clickhouseRunnerConfig, CLUSTER_NATIVE_MESSAGE } from "./clickhouse.ts";
import { encryptionRunnerConfig, encryptionSpec, encryptionValidations, NATIVE_ENCRYPTION_MESSAGE } from "./encryption.ts";

export const retentionPolicy = z
  .strictObject({
    hourly: z.int().min(0).optional().describe("Keep the first backup of each of the last N hours"),
    daily: z.int().min(0).optional().describe("Keep the first backup of each of the last N days"),
    weekly: z.int().min(0).optional().describe("Keep the first backup of each of the last N ISO weeks"),
    monthly: z.int().min(0).optional().describe("Keep the first backup of each of the last N months"),
    yearly: z.int().min(0).optional().describe("Keep the first backup of each of the last N years"),
  })
  .describe("Label retention: a backup that holds no label is deleted (the newest, pinned and depended-on backups are always kept)");
export type RetentionPolicyConfig = z.infer<typeof retentionPolicy>;

const RETENTION_KEYS = ["hourly", "daily", "weekly", "monthly", "yearly"] as const;

/** True when the policy keeps at least one label (some count is 1 or more). */
export function retentionKeepsSomething(r: RetentionPolicyConfig | undefined): boolean {
  return !!r && RETENTION_KEYS.some((k) => (r[k] ?? 0) > 0);
}

const cronExpr = z
  .string()
  .regex(/^\s*\S+(\s+\S+){4,5}\s*$/, "must be a cron expression with 5 or 6 fields")
  .describe('Cron expression, e.g. "0 * * * *" (5 fields, or 6 with seconds)');

/**
 * Answers of isTimeZone: building an Intl.DateTimeFormat is the costliest step of validating a
 * definition (the controller validates one per reconcile), and the answer for a name never
 * changes within a process. A pure memo, bounded.
 */
const timeZoneAnswers = new Map<string, boolean>();

/** True when the runtime knows the IANA time zone. */
export function isTimeZone(tz: string): boolean {
  const known = timeZoneAnswers.get(tz);
  if (known !== undefined) return known;
  let ok: boolean;
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: tz });
    ok = true;
  } catch {
    ok = false;
  }
  if (timeZoneAnswers.size >= 1000) timeZoneAnswers.clear();
  timeZoneAnswers.set(tz, ok);
  return ok;
}

const CRON_FIELDS: Record<string, string> = {
  second: "second (0-59)",
  minute: "minute (0-59)",
  hour: "hour (0-23)",
  dayOfMonth: "day of month (1-31)",
  month: "month (1-12 or jan-dec)",
  dayOfWeek: "day of week (0-7 or sun-sat)",
};

/** Why node-cron refuses an expression, field by field: "the hour field (0-23) cannot be 25". */
export function cronMessage(errors: readonly { field: string; value?: unknown; message: string }[]): string {
  const why = errors.map((e) => (CRON_FIELDS[e.field] ? `the ${CRON_FIELDS[e.field]} field cannot be "${String(e.value)}"` : e.message));
  return `is not a valid cron expression: ${why.join("; ") || "refused"}`;
}

export const scheduleSpec = z
  .strictObject({
    cron: cronExpr.superRefine((c, ctx) => {
      const r = cron.validateDetailed(c);
      if (!r.valid) ctx.addIssue({ code: "custom", message: cronMessage(r.errors) });
    }),
    timeZone: z
      .string()
      .min(1)
      .default("UTC")
      .refine(isTimeZone, "must be an IANA time zone such as UTC or Europe/Berlin")
      .describe("IANA time zone for the schedule and the retention periods"),
  })
  .describe("When backups run");

const modeEnum = z.enum(["scheduled", "single"]);

export const SINGLE_TARGET_MESSAGE =
  "must be a relative path inside the storage location, like exports/2026-11-24: no '.' or '..' segments, no empty segments (a//b), no backslash";

/** A single-backup target as the runner accepts it: relative (leading and trailing slashes are ignored), no dot or empty segments. */
export function isSafeTarget(target: string): boolean {
  const t = target.replace(/^\/+|\/+$/g, "");
  return t !== "" && !t.split("/").some((seg) => seg === "" || seg === "." || seg === "..") && !/[\\\0]/.test(t);
}

const definitionShared = {
  mode: modeEnum.default("scheduled").describe("scheduled: backups on a schedule with retention; single: one backup to singleBackup.target and nothing else"),
  schedule: scheduleSpec.optional().describe("Required in scheduled mode"),
  retention: retentionPolicy.default({ hourly: 24, daily: 7, weekly: 4, monthly: 12 }),
  singleBackup: z
    .strictObject({
      target: z
        .string()
        .min(1)
        .max(1024)
        .refine(isSafeTarget, SINGLE_TARGET_MESSAGE)
        .describe("Key prefix (S3) or directory (filesystem), relative to the storage location, that receives exactly this one backup"),
    })
    .optional()
    .describe("Required in single mode"),
  suspend: z.boolean().default(false).describe("Pause scheduled backups (the runner keeps serving restores)"),
  incompleteCleanupAfterHours: z
    .int()
    .min(1)
    .default(24)
    .describe(
      "When the runner starts, a backup without a manifest that another runner (another owner) started, or that has no in-progress marker, is removed only once its marker and newest object are older than this many hours; this runner's own leftovers are removed at once",
    ),
};

export const EMPTY_RETENTION_MESSAGE =
  "must keep at least one label when mode is scheduled: set hourly, daily, weekly, monthly or yearly to 1 or more (an empty or all-zero policy would delete every backup but the newest)";

const modeRules = <T extends { mode: string; schedule?: unknown; singleBackup?: unknown; retention?: RetentionPolicyConfig }>(s: T, ctx: z.RefinementCtx) => {
  if (s.mode === "scheduled" && !s.schedule) ctx.addIssue({ code: "custom", path: ["schedule"], message: "required when mode is scheduled" });
  if (s.mode === "single" && !s.singleBackup) ctx.addIssue({ code: "custom", path: ["singleBackup"], message: "required when mode is single" });
  if (s.mode === "scheduled" && typeof s.retention === "object" && s.retention !== null && !retentionKeepsSomething(s.retention)) {
    ctx.addIssue({ code: "custom", path: ["retention"], message: EMPTY_RETENTION_MESSAGE });
  }
};
export const NATIVE_LZ4_MESSAGE =
  "compression lz4 applies to the dump method only: with method native ClickHouse writes the backup itself (leave compression out, or use method dump)";

/** Rules of the BackupDefinition spec only (the runner config carries no such combination). */
const specRules = (s: { clickhouse?: { method?: string; compression?: string } }, ctx: z.RefinementCtx) => {
  if (s.clickhouse?.method === "native" && s.clickhouse.compression === "lz4") ctx.addIssue({ code: "custom", path: ["clickhouse", "compression"], message: NATIVE_LZ4_MESSAGE });
};

/** Encryption wraps the objects the runner writes: the native method's objects are written by ClickHouse. */
const encryptionRules = (s: { clickhouse?: { method?: string }; encryption?: unknown }, ctx: z.RefinementCtx) => {
  if (s.encryption !== undefined && s.clickhouse?.method === "native") ctx.addIssue({ code: "custom", path: ["encryption"], message: NATIVE_ENCRYPTION_MESSAGE });
};

/** Run the cross-field rules even when other fields failed, so every problem is listed at once. */
export const alwaysCheck = { when: (p: { value: unknown }) => typeof p.value === "object" && p.value !== null };

/** Label and annotation keys the controller sets on the runner pod itself: a user's pod label or annotation may not name them. */
export const RESERVED_PREFIX = "chbackup.dev/";
const RESERVED_LABELS = ["app.kubernetes.io/managed-by", "app.kubernetes.io/name", "app.kubernetes.io/component", "app.kubernetes.io/instance"] as const;
export const RESERVED_KEY_MESSAGE = `is reserved for the controller (keys under ${RESERVED_PREFIX}, and the app.kubernetes.io labels managed-by, name, component and instance)`;
function isReservedKey(k: string, reserved: readonly string[]): boolean {
  return k.startsWith(RESERVED_PREFIX) || reserved.includes(k);
}
const podMetadataMap = z.record(z.string().min(1), z.string());
const reservedLabelCel = RESERVED_LABELS.map((l) => `k != '${l}'`).join(" && ");

const keeps = (label: string) => `(has(self.retention.${label}) && self.retention.${label} > 0)`;

export const definitionValidations: { rule: string; message: string; fieldPath?: string }[] = [
  { rule: "self.mode != 'scheduled' || has(self.schedule)", message: "schedule is required when mode is scheduled" },
  { rule: "self.mode != 'single' || has(self.singleBackup)", message: "singleBackup is required when mode is single" },
  {
    rule: `self.mode != 'scheduled' || !has(self.retention) || ${RETENTION_KEYS.map(keeps).join(" || ")}`,
    message: "retention must keep at least one label when mode is scheduled (set hourly, daily, weekly, monthly or yearly to 1 or more)",
    fieldPath: ".retention",
  },
  {
    // The runner refuses these targets when it runs (isSafeTarget); a backslash is checked apart from the regex.
    rule: "!has(self.singleBackup) || !(self.singleBackup.target.matches('(^|/)[.][.]?(/|$)|[^/]//+[^/]|^/*$') || self.singleBackup.target.contains('\\\\'))",
    message: `singleBackup.target ${SINGLE_TARGET_MESSAGE}`,
    fieldPath: ".singleBackup.target",
  },
  {
    rule: `!has(self.runner) || !has(self.runner.podLabels) || self.runner.podLabels.all(k, !k.startsWith('${RESERVED_PREFIX}') && ${reservedLabelCel})`,
    message: `runner.podLabels: a key ${RESERVED_KEY_MESSAGE}`,
    fieldPath: ".runner.podLabels",
  },
  {
    rule: `!has(self.runner) || !has(self.runner.podAnnotations) || self.runner.podAnnotations.all(k, !k.startsWith('${RESERVED_PREFIX}'))`,
    message: `runner.podAnnotations: a key under ${RESERVED_PREFIX} is reserved for the controller`,
    fieldPath: ".runner.podAnnotations",
  },
  {
    rule: "!has(self.clickhouse.method) || self.clickhouse.method != 'native' || !has(self.clickhouse.compression) || self.clickhouse.compression != 'lz4'",
    message: NATIVE_LZ4_MESSAGE,
    fieldPath: ".clickhouse.compression",
  },
  {
    rule: "!has(self.clickhouse.cluster) || !has(self.clickhouse.method) || self.clickhouse.method != 'native'",
    message: CLUSTER_NATIVE_MESSAGE,
    fieldPath: ".clickhouse.cluster",
  },
  ...encryptionValidations,
];

const quantity = z
  .string()
  .regex(/^[+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+|[numkKMGTPE]i?)?$/, "must be a Kubernetes quantity such as 500m, 2 or 1Gi");
const resourceList = z.record(z.string().min(1), quantity);

export const runnerSpec = z
  .strictObject({
    image: z.string().min(1).optional().describe("Runner image; default: the controller's RUNNER_IMAGE"),
    resources: z
      .strictObject({
        requests: resourceList.optional().describe('e.g. {"cpu": "500m", "memory": "256Mi"}'),
        limits: resourceList.optional().describe('e.g. {"memory": "512Mi"}'),
      })
      .optional()
      .describe("Container resources; default: the controller's runner defaults"),
    nodeSelector: z.record(z.string().min(1), z.string()).optional().describe("Node labels the runner pod must run on"),
    tolerations: z
      .array(
        z.strictObject({
          key: z.string().optional(),
          operator: z.enum(["Exists", "Equal"]).optional(),
          value: z.string().optional(),
          effect: z.enum(["NoSchedule", "PreferNoSchedule", "NoExecute"]).optional(),
          tolerationSeconds: z.int().optional(),
        }),
      )
      .optional()
      .describe("Tolerations of the runner pod"),
    databaseAffinity: z
      .strictObject({
        podLabels: z.record(z.string().min(1), z.string()).describe("Labels of the database's pods (in the definition's namespace)"),
        topologyKey: z.string().min(1).default("kubernetes.io/hostname").describe("Topology domain to share with them"),
        weight: z.int().min(1).max(100).default(100).describe("Preference weight"),
      })
      .optional()
      .describe("Prefer to schedule the runner next to the database's pods (preferred pod affinity)"),
    storageSize: quantity
      .optional()
      .describe(
        "Size of the runner's scratch volume: a volume claim with a filesystem StorageLocation, the size limit of an emptyDir with S3 (which needs no claim); default: the controller's runner defaults (1Gi)",
      ),
    storageClassName: z.string().min(1).optional().describe("Storage class of the scratch volume claim (filesystem StorageLocations only; S3 runners get no claim)"),
    serviceAccountName: k8sName
      .optional()
      .describe(
        "ServiceAccount of the runner pod, in the controller's namespace (you create it). Left out, the pod runs as the namespace's default ServiceAccount with automountServiceAccountToken false. Named, the token is mounted, since workload identity (EKS IRSA, GKE Workload Identity, Azure Workload Identity) needs the projected token; the runner itself never calls the Kubernetes API, so give the ServiceAccount no RBAC",
      ),
    podLabels: podMetadataMap.optional().describe(`Labels added to the runner pod; keys under ${RESERVED_PREFIX} and the app.kubernetes.io labels the controller sets are refused`),
    podAnnotations: podMetadataMap.optional().describe(`Annotations added to the runner pod; keys under ${RESERVED_PREFIX} are refused`),
    priorityClassName: k8sName.optional().describe("PriorityClass of the runner pod"),
  })
  .superRefine((r, ctx) => {
    for (const [field, reserved] of [["podLabels", RESERVED_LABELS], ["podAnnotations", []]] as const) {
      for (const k of Object.keys(r[field] ?? {})) {
        if (isReservedKey(k, reserved)) ctx.addIssue({ code: "custom", path: [field, k], message: RESERVED_KEY_MESSAGE });
      }
    }
  }, alwaysCheck)
  .describe("How the runner pod runs");
export type RunnerSpec = z.infer<typeof runnerSpec>;

export const backupDefinitionSpec = z
  .strictObject({
    storageLocation: k8sName.describe("Name of a StorageLocation in the controller's namespace"),
    engine: z.enum(["clickhouse"]).default("clickhouse").describe("Backup engine"),
    clickhouse: clickhouseSpec.describe("The ClickHouse to back up"),
    ...definitionShared,
    runner: runnerSpec.optional(),
    encryption: encryptionSpec.optional(),
    staleAfter: z
      .string()
      .regex(/^([0-9]+d)?([0-9]+h)?([0-9]+m)?([0-9]+s)?$/, 'a duration such as "26h", "90m" or "1d12h" (units d, h, m, s)')
      .refine((v) => /[1-9]/.test(v), "must be longer than zero")
      .optional()
      .describe(
        "How old the newest backup may be before the BackupHealthy condition turns False (reason NoRecentBackup or BackupsFailing). Default: 2 × the longest gap between two runs of the schedule",
      ),
  })
  .superRefine(modeRules, alwaysCheck)
  .superRefine(specRules, alwaysCheck)
  .superRefine(encryptionRules, alwaysCheck)
  .describe("BackupDefinition spec");
export type BackupDefinitionSpec = z.infer<typeof backupDefinitionSpec>;

/** The definition as the runner gets it: identity plus resolved engine settings. */
export const definitionRunnerConfig = z
  .strictObject({
    namespace: z.string().min(1).describe("Namespace of the BackupDefinition (part of the backup path)"),
    name: z.string().min(1).describe("Name of the BackupDefinition (part of the backup path)"),
    uid: z
      .string()
      .min(1)
      .optional()
      .describe("metadata.uid of the BackupDefinition (the controller sets it); part of the runner's owner identity recorded in every backup"),
    engine: z.literal("clickhouse").default("clickhouse").describe("Backup engine"),
    clickhouse: clickhouseRunnerConfig.describe("ClickHouse engine settings"),
    ...definitionShared,
    stateDir: z
      .string()
      .min(1)
      .refine((s) => s.startsWith("/"), "must be an absolute path")
      .optional()
      .describe(
        "Directory on the runner's own volume for the operation journal (one JSON file per backup, restore and verify; a restarted runner reports the ones it interrupted). The controller sets it to a directory on the runner's scratch volume; without it, operations are not journaled locally (restores still write their journal next to the backup)",
      ),
    encryption: encryptionRunnerConfig.optional(),
  })
  .superRefine(modeRules, alwaysCheck)
  .superRefine(encryptionRules, alwaysCheck);
