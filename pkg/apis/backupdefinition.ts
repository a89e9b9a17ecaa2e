// BackupDefinition: what to back up, when, how long to keep it. Lives in the app namespace.
import { z } from "zod";
import { k8sName } from "./common.ts";
import { clickhouseSpec, clickhouseRunnerConfig } from "./clickhouse.ts";

export const retentionPolicy = z
  .object({
    hourly: z.int().min(0).optional().describe("Keep the first backup of each of the last N hours"),
    daily: z.int().min(0).optional().describe("Keep the first backup of each of the last N days"),
    weekly: z.int().min(0).optional().describe("Keep the first backup of each of the last N ISO weeks"),
    monthly: z.int().min(0).optional().describe("Keep the first backup of each of the last N months"),
    yearly: z.int().min(0).optional().describe("Keep the first backup of each of the last N years"),
  })
  .describe("Label retention: a backup that holds no label is deleted (the newest, pinned and depended-on backups are always kept)");
export type RetentionPolicyConfig = z.infer<typeof retentionPolicy>;

const cronExpr = z
  .string()
  .regex(/^\s*\S+(\s+\S+){4,5}\s*$/, "must be a cron expression with 5 or 6 fields")
  .describe('Cron expression, e.g. "0 * * * *" (5 fields, or 6 with seconds)');

export const scheduleSpec = z
  .object({
    cron: cronExpr,
    timeZone: z.string().min(1).default("UTC").describe("IANA time zone for the schedule and the retention periods"),
  })
  .describe("When backups run");

const modeEnum = z.enum(["scheduled", "single"]);

const definitionShared = {
  mode: modeEnum.default("scheduled").describe("scheduled: backups on a schedule with retention; single: one backup to singleBackup.target and nothing else"),
  schedule: scheduleSpec.optional().describe("Required in scheduled mode"),
  retention: retentionPolicy.default({ hourly: 24, daily: 7, weekly: 4, monthly: 12 }),
  singleBackup: z
    .object({ target: z.string().min(1).describe("Key prefix (S3) or directory (filesystem), relative to the storage location, that receives exactly this one backup") })
    .optional()
    .describe("Required in single mode"),
  suspend: z.boolean().default(false).describe("Pause scheduled backups (the runner keeps serving restores)"),
};

const modeRules = <T extends { mode: string; schedule?: unknown; singleBackup?: unknown }>(s: T, ctx: z.RefinementCtx) => {
  if (s.mode === "scheduled" && !s.schedule) ctx.addIssue({ code: "custom", path: ["schedule"], message: "required when mode is scheduled" });
  if (s.mode === "single" && !s.singleBackup) ctx.addIssue({ code: "custom", path: ["singleBackup"], message: "required when mode is single" });
};
/** Run the cross-field rules even when other fields failed, so every problem is listed at once. */
export const alwaysCheck = { when: (p: { value: unknown }) => typeof p.value === "object" && p.value !== null };

export const definitionValidations = [
  { rule: "self.mode != 'scheduled' || has(self.schedule)", message: "schedule is required when mode is scheduled" },
  { rule: "self.mode != 'single' || has(self.singleBackup)", message: "singleBackup is required when mode is single" },
];

export const backupDefinitionSpec = z
  .object({
    storageLocation: k8sName.describe("Name of a StorageLocation in the controller's namespace"),
    clickhouse: clickhouseSpec.describe("The ClickHouse to back up"),
    ...definitionShared,
  })
  .superRefine(modeRules, alwaysCheck)
  .describe("BackupDefinition spec");
export type BackupDefinitionSpec = z.infer<typeof backupDefinitionSpec>;

/** The definition as the runner gets it: identity plus resolved engine settings. */
export const definitionRunnerConfig = z
  .object({
    namespace: z.string().min(1).describe("Namespace of the BackupDefinition (part of the backup path)"),
    name: z.string().min(1).describe("Name of the BackupDefinition (part of the backup path)"),
    engine: z.literal("clickhouse").default("clickhouse").describe("Backup engine"),
    clickhouse: clickhouseRunnerConfig.describe("ClickHouse engine settings"),
    ...definitionShared,
  })
  .superRefine(modeRules, alwaysCheck);
