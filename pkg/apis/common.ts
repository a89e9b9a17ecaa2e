import { z } from "zod";

export const API_GROUP = "chbackup.dev";
export const API_VERSION = "v1alpha1";

const dnsLabel = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

export const k8sName = z.string().min(1).max(253).regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, "must be a lowercase RFC 1123 name");
export const k8sNamespace = z.string().min(1).max(63).regex(dnsLabel, "must be a lowercase RFC 1123 label");

export const secretKeyRef = z
  .strictObject({
    name: k8sName.describe("Secret name"),
    key: z.string().min(1).describe("Key in the Secret"),
  })
  .describe("A key of a Secret");
export type SecretKeyRef = z.infer<typeof secretKeyRef>;

/**
 * Every zod issue as "path: message"; never includes input values. An unknown
 * field is reported at its own path ("definition.retension: unknown field").
 * `prefix` ("spec") is put in front of every path.
 */
export function formatIssues(error: z.ZodError, prefix = ""): string[] {
  const at = (path: readonly PropertyKey[]) => {
    const parts = [prefix, ...path.map(String)].filter((p) => p !== "");
    return parts.length ? parts.join(".") : "(root)";
  };
  return error.issues.flatMap((i) =>
    i.code === "unrecognized_keys" ? i.keys.map((k) => `${at([...i.path, k])}: unknown field`) : [`${at(i.path)}: ${i.message}`],
  );
}

/** A status condition, as Kubernetes objects carry them (metav1.Condition). */
export const condition = z.object({
  type: z.string(),
  status: z.enum(["True", "False", "Unknown"]),
  reason: z.string(),
  message: z.string().default(""),
  lastTransitionTime: z.string(),
  observedGeneration: z.int().optional(),
});
export type Condition = z.infer<typeof condition>;
