import type { Logger } from "winston";
import { createFilesystemStore } from "./filesystem.ts";
import { createS3Store, type S3StoreConfig } from "./s3.ts";
import type { ObjectStore } from "./types.ts";

export type {
  GetOptions,
  ListOptions,
  ObjectInfo,
  ObjectStore,
  PutOptions,
  PutResult,
  StoreKind,
} from "./types.ts";
export {
  ChecksumMismatchError,
  errorMessage,
  InvalidKeyError,
  isRetryableStorageError,
  isStorageError,
  NotFoundError,
  StorageAbortedError,
  StorageAuthError,
  StorageError,
  type ChecksumActual,
  type ChecksumExpectation,
  type StorageErrorOptions,
  type StorageOp,
} from "./errors.ts";
export { ChecksumStream, sha256Hex, verifiedReadable, type ChecksumStreamOptions } from "./checksum.ts";
export { assertValidKey, assertValidPrefix, keyProblem, MAX_KEY_BYTES } from "./keys.ts";
export { createFilesystemStore, type FilesystemStore, type FilesystemStoreConfig } from "./filesystem.ts";
export {
  abortIncompleteUploads,
  createS3Store,
  DEFAULT_PART_SIZE,
  DEFAULT_QUEUE_SIZE,
  MAX_OBJECT_SIZE,
  MAX_PARTS,
  MIN_PART_SIZE,
  type S3Store,
  type S3StoreConfig,
} from "./s3.ts";
export { pieceKey, putSplit, type PutSplitOptions } from "./split.ts";
export type { PutBody } from "./body.ts";

/** Storage section of the configuration (the zod schema in pkg/apis maps onto this). */
export type StorageConfig =
  | { s3: Omit<S3StoreConfig, "logger">; filesystem?: undefined }
  | { filesystem: { path: string }; s3?: undefined };

export interface CreateStoreOptions {
  logger?: Logger | undefined;
}

/** Creates the store selected by `cfg` (exactly one of `s3` / `filesystem`). */
export function createStore(cfg: StorageConfig, opts: CreateStoreOptions = {}): ObjectStore {
  if (cfg.s3 !== undefined && cfg.filesystem !== undefined) {
    throw new TypeError("storage config: set exactly one of s3 / filesystem, not both");
  }
  if (cfg.s3 !== undefined) return createS3Store({ ...cfg.s3, logger: opts.logger });
  if (cfg.filesystem !== undefined) return createFilesystemStore({ root: cfg.filesystem.path, logger: opts.logger });
  throw new TypeError("storage config: one of s3 / filesystem is required");
}
