// The manifest: written last, it is what makes a backup complete.
import { z } from "zod";

export const MANIFEST_NAME = "manifest.json";
export const PIN_NAME = "pinned.json";
export const MANIFEST_FORMAT = 1;
/** Written when a backup starts (before any data), deleted once its manifest is written. */
export const INPROGRESS_NAME = "inprogress.json";

/** Who wrote a backup: the definition's uid (when the config has one) and the runner identity (see owner.ts). */
export const ownerSchema = z.object({ uid: z.string().optional(), id: z.string().min(1) });
export type Owner = z.infer<typeof ownerSchema>;

/** Content of `<dir>/inprogress.json`. */
export const inProgressSchema = z.object({ owner: ownerSchema, startedAt: z.string(), backupId: z.string().optional() });
export type InProgressMarker = z.infer<typeof inProgressSchema>;

const writtenObject = z.object({ name: z.string(), size: z.number().int().min(0), sha256: z.string().regex(/^[0-9a-f]{64}$/) });

export const manifestSchema = z.object({
  format: z.literal(MANIFEST_FORMAT),
  id: z.string(),
  namespace: z.string(),
  definition: z.string(),
  mode: z.enum(["scheduled", "single"]),
  trigger: z.enum(["schedule", "api", "missed", "cli", "single"]),
  engine: z.string(),
  method: z.string(),
  engineVersion: z.string(),
  startedAt: z.string(),
  endedAt: z.string(),
  durationMs: z.number().min(0),
  databases: z.array(z.string()),
  tables: z.array(
    z.object({
      database: z.string(),
      name: z.string(),
      engine: z.string(),
      rows: z.number().min(0),
      bytes: z.number().min(0),
      dataObject: z.string().optional(),
      /** Every piece of the data in order, when the storage capped the size of one object. */
      dataObjects: z.array(z.string()).optional(),
      /** Cluster backups: the host the data came from ("host:port" in system.clusters) and its shard. */
      host: z.string().optional(),
      shard: z.number().optional(),
    }),
  ),
  objects: z.array(writtenObject),
  totalBytes: z.number().min(0),
  totalRows: z.number().min(0),
  baseBackupId: z.string().optional(),
  /** Labels the backup got when it was created (retention recomputes them). */
  labels: z.array(z.string()),
  details: z.record(z.string(), z.unknown()),
  /** Absent in manifests written before ownership was recorded (treated as the reading runner's own). */
  owner: ownerSchema.optional(),
  /**
   * Present when the data objects are age files (`….age`): the fingerprints
   * (first 16 hex digits of the SHA-256 of the recipient string) of the
   * recipients whose identities open them. Never a key.
   */
  encryption: z
    .object({
      format: z.literal("age"),
      recipients: z.array(z.object({ fingerprint: z.string().regex(/^[0-9a-f]{16}$/) })).min(1),
    })
    .optional(),
});
export type Manifest = z.infer<typeof manifestSchema>;

export function parseManifest(text: string, where: string): Manifest {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err: unknown) {
    throw new Error(`manifest ${where}: not valid JSON`, { cause: err });
  }
  const r = manifestSchema.safeParse(json);
  if (!r.success) throw new Error(`manifest ${where}: ${r.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`);
  return r.data;
}
