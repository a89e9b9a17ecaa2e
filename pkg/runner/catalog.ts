// The catalog: which complete backups exist. The bucket is the source of
// truth: a backup is complete exactly when its manifest exists; the catalog is
// rebuilt from the manifests on start and kept in step as the runner works.
import type { Logger } from "winston";
import type { ObjectStore } from "../storage/index.ts";
import { Readable } from "node:stream";
import { text } from "node:stream/consumers";
import { setTimeout as sleep } from "node:timers/promises";
import { Mutex } from "../concurrency/mutex.ts";
import { BackupNotFoundError, BackupUnreadableError, describeError } from "./errors.ts";
import { backupIdTime, isBackupId } from "./ids.ts";
import { INPROGRESS_NAME, MANIFEST_NAME, PIN_NAME, inProgressSchema, parseManifest, type InProgressMarker, type Manifest } from "./manifest.ts";

export interface CatalogEntry {
  manifest: Manifest;
  pinned: boolean;
}

/** A backup whose manifest exists but could not be read (after retries): kept, listed, never deleted, not restorable. */
export interface UnreadableBackup {
  id: string;
  /** Start time from the id (to the second). */
  time: Date;
  error: string;
  pinned: boolean;
}

/** A restore's journal copy next to its backup (`<backup dir>/restores/<operation id>.json`). */
export interface RestoreJournalObject {
  backupId: string;
  key: string;
  operationId: string;
  lastModified: Date | undefined;
}

export interface IncompleteBackup {
  id: string;
  keys: string[];
  newest: Date | undefined;
  /** The in-progress marker, when there is one and it could be read. */
  marker?: InProgressMarker | undefined;
  /** Why an existing marker could not be read. */
  markerError?: string | undefined;
}

/** How often, and how patiently, a failing manifest read is retried while the catalog is rebuilt. */
export interface ReadRetry {
  /** Attempts in all (default 4). */
  attempts: number;
  /** Wait before the second attempt; doubles each time (default 250 ms). */
  baseDelayMs: number;
}

export const DEFAULT_READ_RETRY: ReadRetry = { attempts: 4, baseDelayMs: 250 };

/** Reads and validates `<dir>/manifest.json`. */
export async function readManifestAt(store: ObjectStore, dir: string, signal?: AbortSignal): Promise<Manifest> {
  const key = `${dir}/${MANIFEST_NAME}`;
  return parseManifest(await text(await store.get(key, { signal })), key);
}

/** Reads a whole object as text, retrying failures of the read itself (not of what is read) with backoff. */
async function readTextWithRetry(store: ObjectStore, key: string, retry: ReadRetry, signal: AbortSignal | undefined, onRetry: (attempt: number, err: unknown) => void): Promise<string> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await text(await store.get(key, { signal }));
    } catch (err: unknown) {
      if (signal?.aborted || attempt >= retry.attempts) throw err;
      onRetry(attempt, err);
      await sleep(retry.baseDelayMs * 2 ** (attempt - 1), undefined, signal ? { signal } : undefined);
    }
  }
}

/** Writes `<dir>/inprogress.json`: the first object of every backup. */
export async function writeInProgressAt(store: ObjectStore, dir: string, marker: InProgressMarker, signal?: AbortSignal): Promise<void> {
  const body = Buffer.from(JSON.stringify(marker));
  await store.put(`${dir}/${INPROGRESS_NAME}`, Readable.from([body]), { signal, contentType: "application/json" });
}

/** Reads `<dir>/inprogress.json`; undefined when there is none. */
export async function readInProgressAt(store: ObjectStore, dir: string): Promise<InProgressMarker | undefined> {
  const key = `${dir}/${INPROGRESS_NAME}`;
  if ((await store.head(key)) === undefined) return undefined;
  return parseInProgress(await text(await store.get(key)), key);
}

function parseInProgress(body: string, key: string): InProgressMarker {
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    throw new Error(`${key}: not valid JSON`);
  }
  const r = inProgressSchema.safeParse(json);
  if (!r.success) throw new Error(`${key}: ${r.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`);
  return r.data;
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
  readonly #retry: ReadRetry;
  /** Serializes pins, commits and retention passes (decide + delete), so that a pin that succeeded is never deleted. */
  readonly #lock = new Mutex();
  #entries = new Map<string, CatalogEntry>();
  #unreadable = new Map<string, UnreadableBackup>();
  #restoreJournals: RestoreJournalObject[] = [];

  constructor(store: ObjectStore, root: string, logger: Logger, opts: { readRetry?: ReadRetry } = {}) {
    this.#store = store;
    this.#root = root.replace(/\/+$/, "");
    this.#logger = logger;
    this.#retry = opts.readRetry ?? DEFAULT_READ_RETRY;
  }

  /**
   * Runs `fn` while no pin, commit or other exclusive section runs. A
   * retention pass decides and deletes inside one such section. Not
   * reentrant: `fn` must not call setPinned or commit.
   */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    return this.#lock.run(fn);
  }

  get root(): string {
    return this.#root;
  }

  dir(id: string): string {
    if (!isBackupId(id)) throw new Error(`invalid backup id "${id}"`);
    return `${this.#root}/${id}`;
  }

  /**
   * Lists the bucket and reads every manifest. A manifest read that fails is
   * retried with backoff; one that still fails, or that does not validate,
   * makes the backup `unreadable` (kept, listed, never deleted, not
   * restorable). Returns the backups without a manifest, with their in-progress markers.
   */
  async rebuild(signal?: AbortSignal): Promise<IncompleteBackup[]> {
    const byId = new Map<string, { keys: string[]; newest: Date | undefined; manifest: boolean; pin: boolean; marker: boolean }>();
    const journals: RestoreJournalObject[] = [];
    for await (const obj of this.#store.list(`${this.#root}/`, { signal })) {
      const rest = obj.key.slice(this.#root.length + 1);
      const id = rest.split("/")[0] ?? "";
      if (!isBackupId(id)) continue;
      const j = /^[^/]+\/restores\/([^/]+)\.json$/.exec(rest);
      if (j) journals.push({ backupId: id, key: obj.key, operationId: j[1]!, lastModified: obj.lastModified });
      const e = byId.get(id) ?? { keys: [], newest: undefined, manifest: false, pin: false, marker: false };
      e.keys.push(obj.key);
      if (obj.lastModified && (!e.newest || obj.lastModified > e.newest)) e.newest = obj.lastModified;
      if (rest === `${id}/${MANIFEST_NAME}`) e.manifest = true;
      if (rest === `${id}/${PIN_NAME}`) e.pin = true;
      if (rest === `${id}/${INPROGRESS_NAME}`) e.marker = true;
      byId.set(id, e);
    }
    const entries = new Map<string, CatalogEntry>();
    const unreadable = new Map<string, UnreadableBackup>();
    const incomplete: IncompleteBackup[] = [];
    for (const [id, e] of [...byId].sort(([a], [b]) => a.localeCompare(b))) {
      const dir = this.dir(id);
      if (!e.manifest) {
        const inc: IncompleteBackup = { id, keys: e.keys, newest: e.newest };
        if (e.marker) {
          const key = `${dir}/${INPROGRESS_NAME}`;
          try {
            inc.marker = parseInProgress(await this.#readText(key, id, signal), key);
          } catch (err: unknown) {
            signal?.throwIfAborted();
            inc.markerError = describeError(err);
          }
        }
        incomplete.push(inc);
        continue;
      }
      const key = `${dir}/${MANIFEST_NAME}`;
      try {
        const manifest = parseManifest(await this.#readText(key, id, signal), key);
        if (manifest.id !== id) throw new Error(`manifest of ${dir}: id ${manifest.id} does not match its directory`);
        entries.set(id, { manifest, pinned: e.pin });
      } catch (err: unknown) {
        signal?.throwIfAborted();
        // Not a backup we could restore, nor one we may delete: keep the data and say so loudly.
        const error = describeError(err);
        this.#logger.error("unreadable manifest: the backup is kept and listed as unreadable", { backupId: id, error });
        unreadable.set(id, { id, time: backupIdTime(id) ?? new Date(0), error, pinned: e.pin });
      }
    }
    this.#entries = entries;
    this.#unreadable = unreadable;
    // Journal copies of restores belong to complete backups (a restore reads a complete backup).
    this.#restoreJournals = journals.filter((j) => entries.has(j.backupId) || unreadable.has(j.backupId));
    return incomplete;
  }

  #readText(key: string, id: string, signal: AbortSignal | undefined): Promise<string> {
    return readTextWithRetry(this.#store, key, this.#retry, signal, (attempt, err) =>
      this.#logger.warn("reading a backup object failed; retrying", { backupId: id, key, attempt, error: describeError(err) }),
    );
  }

  /** Journal copies of restores found by the last rebuild, newest first. */
  restoreJournals(): RestoreJournalObject[] {
    return [...this.#restoreJournals].sort((a, b) => (b.lastModified?.getTime() ?? 0) - (a.lastModified?.getTime() ?? 0));
  }

  /** Backups whose manifest could not be read, newest first. */
  unreadable(): UnreadableBackup[] {
    return [...this.#unreadable.values()].sort((a, b) => b.time.getTime() - a.time.getTime() || b.id.localeCompare(a.id));
  }

  getUnreadable(id: string): UnreadableBackup | undefined {
    return this.#unreadable.get(id);
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
    await this.#lock.run(async () => {
      await writeManifestAt(this.#store, this.dir(manifest.id), manifest, signal);
      this.#entries.set(manifest.id, { manifest, pinned: false });
    });
  }

  /**
   * Pins or unpins a backup. Waits for a running retention pass; a backup
   * that pass deleted is not found (BackupNotFoundError), so a pin that
   * succeeded always refers to a backup that retention will keep.
   */
  async setPinned(id: string, pinned: boolean): Promise<CatalogEntry> {
    return this.#lock.run(async () => {
      const e = this.#entries.get(id);
      if (!e) {
        const u = this.#unreadable.get(id);
        if (u) throw new BackupUnreadableError(id, u.error);
        throw new BackupNotFoundError(id);
      }
      const key = `${this.dir(id)}/${PIN_NAME}`;
      if (pinned) {
        await this.#store.put(key, Readable.from([Buffer.from(JSON.stringify({ pinnedAt: new Date().toISOString() }))]), { contentType: "application/json" });
      } else {
        await this.#store.delete([key]);
      }
      e.pinned = pinned;
      return e;
    });
  }

  /**
   * Deletes a backup: the manifest first (so it is never listed as complete
   * again, even if the rest fails half-way), then everything else under its
   * directory. Callers hold `exclusive` (a retention pass). Refuses unreadable backups.
   */
  async remove(id: string, signal?: AbortSignal): Promise<number> {
    if (this.#unreadable.has(id)) throw new BackupUnreadableError(id, this.#unreadable.get(id)!.error);
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
