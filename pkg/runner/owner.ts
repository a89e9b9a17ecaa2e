// Ownership: every backup records which runner wrote it, so that a runner
// deletes only its own backups (retention, incomplete-backup cleanup) even if
// another runner writes to the same prefix by mistake.
import { createHash } from "node:crypto";
import type { RunnerConfig } from "../apis/index.ts";
import type { Owner } from "./manifest.ts";

/**
 * Where the backups live, for the identity: bucket and prefix, or the
 * directory. The endpoint and region are left out on purpose: pointing the
 * same bucket at another endpoint URL does not make the backups someone else's.
 */
export function storageIdentity(storage: RunnerConfig["storage"]): string {
  if (storage.s3) return `s3://${storage.s3.bucket}/${storage.s3.prefix}`;
  if (storage.filesystem) return `file://${storage.filesystem.path}`;
  return "";
}

/**
 * This runner's identity: the definition's uid (when the config has one) and
 * `id`, a stable hash of namespace, name, uid and storage location. The same
 * config always gives the same identity, across restarts and hosts.
 */
export function runnerOwner(config: Pick<RunnerConfig, "definition" | "storage">): Owner {
  const d = config.definition;
  const id = createHash("sha256")
    .update(JSON.stringify(["chbackup-runner/v1", d.namespace, d.name, d.uid ?? "", storageIdentity(config.storage)]))
    .digest("hex")
    .slice(0, 16);
  return d.uid ? { uid: d.uid, id } : { id };
}

/**
 * Whether a backup (or marker) with this owner is `self`'s: no owner recorded
 * (written before owners were recorded), the same runner identity, or the same
 * definition uid (the same BackupDefinition object, e.g. after its storage path changed).
 */
export function isOwnedBy(owner: Owner | undefined, self: Owner): boolean {
  if (!owner) return true;
  if (owner.id === self.id) return true;
  return owner.uid !== undefined && owner.uid === self.uid;
}

/** "uid 1234…/id abcd…" for logs and messages. */
export function describeOwner(owner: Owner): string {
  return owner.uid ? `uid ${owner.uid}, id ${owner.id}` : `id ${owner.id} (no uid)`;
}
