// The catalog: which complete backups exist. The bucket is the source of
// truth: a backup is complete exactly when its manifest exists; the catalog is
// rebuilt from the manifests on start and kept in step as the runner works.
import type { Logger } from "winston";
import type { ObjectStore } from "../storage/index.ts";
import { Readable } from "node:stream";
import { text } from "node:stream/consumers";
import { BackupNotFoundError } from "./errors.ts";
import { isBackupId } from "./ids.ts";
import { MANIFEST_NAME, PIN_NAME, parseManifest, type Manifest } from "./manifest.ts";

export interface CatalogEntry {
  manifest: Manifest;
  pinned: boolean;
}

export interface IncompleteBackup {
  id: string;
  keys: string[];
  newest: Date | undefined;
}

/** Reads and validates `<dir>/manifest.json`. */
export async function readManifestAt(store: ObjectStore, dir: string, signal?: AbortSignal): Promise<Manifest> {
  const key = `${dir}/${MANIFEST_NAME}`;
  return parseManifest(await text(await store.get(key, { signal })), key);
}

/** Writes `<dir>/manifest.json`; the last object of every backup. */
export async function writeManifestAt(store: ObjectStore, dir: string, manifest: Manifest, signal?: AbortSignal): Promise<void> {
  const body = Buffer.from(JSON.stringify(manifest, null, 2));
  await store.put(`${dir}/${MANIFEST_NAME}`, Readable.from([body]), { signal, contentType: "application/json" });
}

/** Layout: `<root>/<backup-id>/...` where root is `<namespace>/<definition>` inside the storage location. */
export class Catalog {
  readonly #store: ObjectStore;
  readonly #root: string;
  readonly #logger: Logger;
  #entries = new Map<string, CatalogEntry>();

  constructor(store: ObjectStore, root: string, logger: Logger) {
    this.#store = store;
    this.#root = root.replace(/\/+$/, "");
    this.#logger = logger;
  }

  get root(): string {
    return this.#root;
  }

  dir(id: string): string {
    if (!isBackupId(id)) throw new Error(`invalid backup id "${id}"`);
    return `${this.#root}/${id}`;
  }

  /** Lists the bucket and reads every manifest. Returns the backups without a manifest. */
  async rebuild(signal?: AbortSignal): Promise<IncompleteBackup[]> {
    const byId = new Map<string, { keys: string[]; newest: Date | undefined; manifest: boolean; pin: boolean }>();
    for await (const obj of this.#store.list(`${this.#root}/`, { signal })) {
      const rest = obj.key.slice(this.#root.length + 1);
      const id = rest.split("/")[0] ?? "";
      if (!isBackupId(id)) continue;
      const e = byId.get(id) ?? { keys: [], newest: undefined, manifest: false, pin: false };
      e.keys.push(obj.key);
      if (obj.lastModified && (!e.newest || obj.lastModified > e.newest)) e.newest = obj.lastModified;
      if (rest === `${id}/${MANIFEST_NAME}`) e.manifest = true;
      if (rest === `${id}/${PIN_NAME}`) e.pin = true;
      byId.set(id, e);
    }
    const entries = new Map<string, CatalogEntry>();
    const incomplete: IncompleteBackup[] = [];
    for (const [id, e] of [...byId].sort(([a], [b]) => a.localeCompare(b))) {
      if (!e.manifest) {
        incomplete.push({ id, keys: e.keys, newest: e.newest });
        continue;
      }
      try {
        const manifest = await this.readManifest(id, signal);
        entries.set(id, { manifest, pinned: e.pin });
      } catch (err: unknown) {
        // A manifest that cannot be read does not make a backup we could restore; say so loudly, keep the data.
        this.#logger.error("unreadable manifest", { backupId: id, error: String(err) });
      }
    }
    this.#entries = entries;
    return incomplete;
  }

  async readManifest(id: string, signal?: AbortSignal): Promise<Manifest> {
    const m = await readManifestAt(this.#store, this.dir(id), signal);
    if (m.id !== id) throw new Error(`manifest of ${this.dir(id)}: id ${m.id} does not match its directory`);
    return m;
  }

  /** Newest first (by start time to the millisecond; ids only resolve seconds). */
  list(): CatalogEntry[] {
    return [...this.#entries.values()].sort(
      (a, b) => Date.parse(b.manifest.startedAt) - Date.parse(a.manifest.startedAt) || b.manifest.id.localeCompare(a.manifest.id),
    );
  }

  get(id: string): CatalogEntry | undefined {
    return this.#entries.get(id);
  }

  latest(): CatalogEntry | undefined {
    return this.list()[0];
  }

  /** Writes the manifest (last object of a backup) and records the backup. */
  async commit(manifest: Manifest, signal?: AbortSignal): Promise<void> {
    await writeManifestAt(this.#store, this.dir(manifest.id), manifest, signal);
    this.#entries.set(manifest.id, { manifest, pinned: false });
  }

  async setPinned(id: string, pinned: boolean): Promise<CatalogEntry> {
    const e = this.#entries.get(id);
    if (!e) throw new BackupNotFoundError(id);
    const key = `${this.dir(id)}/${PIN_NAME}`;
    if (pinned) {
      await this.#store.put(key, Readable.from([Buffer.from(JSON.stringify({ pinnedAt: new Date().toISOString() }))]), { contentType: "application/json" });
    } else {
      await this.#store.delete([key]);
    }
    e.pinned = pinned;
    return e;
  }

  /**
   * Deletes a backup: the manifest first (so it is never listed as complete
   * again, even if the rest fails half-way), then everything else under its directory.
   */
  async remove(id: string, signal?: AbortSignal): Promise<number> {
    const dir = this.dir(id);
    await this.#store.delete([`${dir}/${MANIFEST_NAME}`]);
    this.#entries.delete(id);
    return this.removeKeys(dir, signal);
  }

  /** Deletes every object under a backup directory (incomplete leftovers). */
  async removeKeys(dir: string, signal?: AbortSignal): Promise<number> {
    const keys: string[] = [];
    for await (const o of this.#store.list(`${dir}/`, { signal })) keys.push(o.key);
    if (keys.length) await this.#store.delete(keys);
    return keys.length;
  }
}
