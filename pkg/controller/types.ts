// The shapes of the Kubernetes objects the controller reads, as far as it reads them.
import type { BackupDefinitionSpec, StorageLocationSpec } from "../apis/index.ts";
import type { z } from "zod";
import type { backupDefinitionStatus, Condition } from "../apis/resources.ts";

export interface ObjectMeta {
  name: string;
  namespace?: string;
  uid?: string;
  generation?: number;
  resourceVersion?: string;
  finalizers?: string[];
  deletionTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  creationTimestamp?: string;
}

export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMeta;
}

export type BackupDefinitionStatus = z.infer<typeof backupDefinitionStatus>;
export type { Condition };

export interface BackupDefinitionObject extends KubeObject {
  /** As stored; validated by the reconcile before use. */
  spec: BackupDefinitionSpec;
  status?: BackupDefinitionStatus;
}

export interface StorageLocationObject extends KubeObject {
  spec: StorageLocationSpec;
}

export interface SecretObject extends KubeObject {
  type?: string;
  data?: Record<string, string>;
}
