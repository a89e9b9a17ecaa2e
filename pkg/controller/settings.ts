// Controller settings: validated once by cmd/backup-controller from flags and
// environment, then passed in. Nothing in pkg/ reads the environment.
import { z } from "zod";
import { formatIssues, k8sName, k8sNamespace } from "../apis/common.ts";
import { runnerSpec } from "../apis/backupdefinition.ts";

export const runnerDefaults = z
  .object({
    resources: runnerSpec.shape.resources.default({ requests: { cpu: "250m", memory: "256Mi" }, limits: { memory: "512Mi" } }),
    storageSize: z.string().min(1).default("1Gi"),
    storageClassName: z.string().min(1).optional(),
  })
  .describe("Runner settings a definition does not set itself");

export const controllerSettings = z.object({
  namespace: k8sNamespace.describe("The controller's namespace: StorageLocations and the runner objects live here"),
  runnerImage: z.string().min(1).describe("Default runner image"),
  runnerImagePullPolicy: z.enum(["Always", "IfNotPresent", "Never"]).optional(),
  imagePullSecrets: z.array(k8sName).default([]),
  resyncSeconds: z.int().min(5).max(86_400).default(300).describe("Full resync (and orphan sweep) period"),
  workers: z.int().min(1).max(64).default(4).describe("Reconciles running at once (never two for the same definition)"),
  leaderElection: z
    .object({
      enabled: z.boolean().default(true),
      leaseName: k8sName.default("chbackup-controller"),
      identity: z.string().min(1),
      leaseDurationSeconds: z.number().positive().default(15),
      renewDeadlineSeconds: z.number().positive().default(10),
      retryPeriodSeconds: z.number().positive().default(2),
    })
    .refine((l) => l.renewDeadlineSeconds < l.leaseDurationSeconds && l.retryPeriodSeconds < l.renewDeadlineSeconds, {
      message: "need retryPeriodSeconds < renewDeadlineSeconds < leaseDurationSeconds",
    }),
  probePort: z.int().min(0).max(65535).default(8081),
  probeHost: z.string().default("0.0.0.0"),
  runnerDefaults: runnerDefaults.prefault({}),
  /** How often the runners' status is read for status.lastBackup (0 = never). */
  runnerStatusSeconds: z.int().min(0).default(60).describe("How often each runner's API is read into its definition's status (0: never)"),
  runnerUrlTemplate: z
    .string()
    .regex(/^https?:\/\/.*\{service\}/, "an http(s) URL with {service} (and optionally {namespace}), e.g. http://{service}.{namespace}.svc:8080")
    .optional()
    .describe("Where runners answer; default: their Service's cluster DNS name and port 8080. For a controller outside the cluster (with a proxy) and for benchmarks"),
  backupHealthTolerance: z
    .number()
    .min(1)
    .default(2)
    .describe("BackupHealthy turns False when the newest backup is older than this many times the schedule's longest interval (a definition's spec.staleAfter overrides it)"),
  cacheSyncTimeoutSeconds: z
    .int()
    .min(1)
    .max(86400)
    .default(300)
    .describe("A leader whose caches are not synced after this long fails /healthz, so that Kubernetes restarts it"),
  /** Objects per page when the caches list (limit/continue). */
  listPageSize: z.int().min(1).max(10_000).default(500),
  /** While the caches are not synced, what they wait for is logged this often. */
  syncReportSeconds: z.number().positive().default(60),
});
export type ControllerSettings = z.infer<typeof controllerSettings>;
export type ControllerSettingsInput = z.input<typeof controllerSettings>;

export class SettingsError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(`invalid controller settings:\n  ${problems.join("\n  ")}`);
    this.name = "SettingsError";
    this.problems = problems;
  }
}

export function parseControllerSettings(input: unknown): ControllerSettings {
  const r = controllerSettings.safeParse(input);
  if (!r.success) throw new SettingsError(formatIssues(r.error));
  return r.data;
}
