// StorageLocation: where backups go. Lives in the controller's namespace.
import { z } from "zod";
import { k8sName, k8sNamespace, secretKeyRef } from "./common.ts";

const s3Base = z.strictObject({
  endpoint: z
    .string()
    .regex(/^https?:\/\/\S+$/, "must be an http(s) URL")
    .optional()
    .describe("S3 endpoint URL; omit for AWS (the region's endpoint)"),
  region: z.string().min(1).default("us-east-1").describe("S3 region"),
  bucket: z.string().min(3).max(63).describe("Bucket name (must exist)"),
  prefix: z
    .string()
    .regex(/^[^/]([^\\]*[^/])?$|^$/, "must not start or end with / nor contain a backslash")
    .default("")
    .describe("Key prefix inside the bucket"),
  forcePathStyle: z.boolean().default(false).describe("Use path-style URLs (MinIO, Ceph)"),
  partSizeMiB: z.int().min(5).max(5120).default(8).describe("Multipart upload part size in MiB (an object can have at most 10,000 parts)"),
  concurrency: z.int().min(1).max(64).default(2).describe("Parts uploaded at once per object (memory = partSize × (concurrency + 1) per object being uploaded)"),
  maxParts: z
    .int()
    .min(1)
    .max(10_000)
    .default(10_000)
    .describe("Most parts of one multipart upload (S3 allows 10,000): one object holds at most partSize × maxParts, and a larger table is stored as several objects. Lower it for testing and for S3-compatible servers with lower limits"),
});

export const labelSelector = z
  .strictObject({
    matchLabels: z.record(z.string().min(1), z.string()).optional().describe("Labels the namespace must have, each with this value"),
    matchExpressions: z
      .array(
        z.strictObject({
          key: z.string().min(1).describe("Label key"),
          operator: z.enum(["In", "NotIn", "Exists", "DoesNotExist"]),
          values: z.array(z.string()).optional().describe("Values for In and NotIn"),
        }),
      )
      .optional()
      .describe("Requirements on the namespace's labels; all must hold"),
  })
  .describe("A label selector (as in Kubernetes)");
export type LabelSelector = z.infer<typeof labelSelector>;

export const allowedNamespaces = z
  .strictObject({
    names: z.array(k8sNamespace).optional().describe("Namespaces, by name"),
    selector: labelSelector.optional().describe("Namespaces whose labels match"),
  })
  .describe(
    "Namespaces whose BackupDefinitions may use this location: those named and those whose labels match the selector. Default (left out): every namespace. A definition elsewhere gets Ready=False reason StorageLocationNotAllowed",
  );
export type AllowedNamespaces = z.infer<typeof allowedNamespaces>;

export const storageLocationSpec = z
  .strictObject({
    allowedNamespaces: allowedNamespaces.optional(),
    s3: s3Base
      .extend({
        credentialsSecretRef: z
          .strictObject({
            name: z.string().min(1).describe("Secret in the controller's namespace"),
            accessKeyIdKey: z.string().min(1).default("accessKeyId"),
            secretAccessKeyKey: z.string().min(1).default("secretAccessKey"),
          })
          .optional()
          .describe("Secret with the access key; omit to use the pod's ambient credentials"),
      })
      .optional()
      .describe("S3-compatible object storage"),
    filesystem: z
      .strictObject({
        path: z.string().regex(/^\//, "must be an absolute path").describe("Directory inside the runner pod where the backups are written"),
        claimName: k8sName
          .optional()
          .describe("PersistentVolumeClaim (in the controller's namespace) mounted at path; without it the runner's own scratch volume claim holds the backups"),
      })
      .optional()
      .describe("A directory on a mounted volume"),
  })
  .refine((s) => (s.s3 ? 1 : 0) + (s.filesystem ? 1 : 0) === 1, { message: "exactly one of s3 or filesystem must be set", when: (p) => typeof p.value === "object" && p.value !== null })
  .refine((s) => !s.allowedNamespaces || s.allowedNamespaces.names !== undefined || s.allowedNamespaces.selector !== undefined, {
    message: "needs names or a selector (leave it out to allow every namespace)",
    path: ["allowedNamespaces"],
    when: (p) => typeof p.value === "object" && p.value !== null,
  })
  .describe("StorageLocation spec");
export type StorageLocationSpec = z.infer<typeof storageLocationSpec>;
export const storageLocationValidations = [
  { rule: "has(self.s3) != has(self.filesystem)", message: "exactly one of s3 or filesystem must be set" },
  {
    rule: "!has(self.allowedNamespaces) || has(self.allowedNamespaces.names) || has(self.allowedNamespaces.selector)",
    message: "allowedNamespaces needs names or a selector (leave it out to allow every namespace)",
    fieldPath: ".allowedNamespaces",
  },
];

/** Storage as the runner gets it: credentials resolved. */
export const storageRunnerConfig = z
  .strictObject({
    s3: s3Base
      .extend({
        accessKeyId: z.string().optional().describe("Access key id (resolved from credentialsSecretRef)"),
        secretAccessKey: z.string().optional().describe("Secret access key (resolved from credentialsSecretRef)"),
      })
      .optional()
      .describe("S3-compatible object storage"),
    filesystem: z.strictObject({ path: z.string().min(1).describe("Directory the backups are written to") }).optional().describe("A directory"),
  })
  .refine((s) => (s.s3 ? 1 : 0) + (s.filesystem ? 1 : 0) === 1, { message: "exactly one of s3 or filesystem must be set", when: (p) => typeof p.value === "object" && p.value !== null });
export type StorageRunnerConfig = z.infer<typeof storageRunnerConfig>;
