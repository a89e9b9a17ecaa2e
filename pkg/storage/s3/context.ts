// What every S3 store operation works with: the client, the validated
// settings, key mapping under the store prefix, and error mapping.
import type { S3Client } from "@aws-sdk/client-s3";
import type { Logger } from "winston";
import { StorageError, type StorageOp } from "../errors.ts";
import { assertValidKey, assertValidPrefix, MAX_KEY_BYTES } from "../keys.ts";
import { createS3Client, resolveS3Config, type ResolvedS3Config, type S3StoreConfig } from "./config.ts";
import { createErrorMapper, type S3ErrorMapper } from "./errors.ts";

export interface S3Context extends ResolvedS3Config, S3ErrorMapper {
  client: S3Client;
  logger: Logger | undefined;
  /** `<prefix>/<key>` after validating the key. */
  fullKey(key: string, op: StorageOp): string;
  /** `<prefix>/<p>` after validating the list prefix. */
  fullPrefix(p: string, op: StorageOp): string;
  /** The store-relative key of a full bucket key. */
  relKey(full: string): string;
}

export function createS3Context(cfg: S3StoreConfig): S3Context {
  const r = resolveS3Config(cfg);
  const client = createS3Client(cfg, r);
  const { prefix } = r;

  function fullKey(key: string, op: StorageOp): string {
    assertValidKey(key, op);
    const full = prefix === "" ? key : `${prefix}/${key}`;
    if (Buffer.byteLength(full, "utf8") > MAX_KEY_BYTES) {
      throw new StorageError(`key with store prefix is longer than ${MAX_KEY_BYTES} bytes`, { op, key });
    }
    return full;
  }

  function fullPrefix(p: string, op: StorageOp): string {
    assertValidPrefix(p, op);
    return prefix === "" ? p : `${prefix}/${p}`;
  }

  function relKey(full: string): string {
    return prefix === "" ? full : full.slice(prefix.length + 1);
  }

  return {
    ...r,
    ...createErrorMapper(r),
    client,
    logger: cfg.logger,
    fullKey,
    fullPrefix,
    relKey,
  };
}
