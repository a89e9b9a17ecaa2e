// Readiness of the storage: reachable (the store's own cheap check, every
// time) and writable (a tiny probe object written and deleted; on a
// filesystem also enough free space), the latter cached so that probes stay
// cheap: a success for a minute, a failure for a few seconds.
import { randomBytes } from "node:crypto";
import { statfs } from "node:fs/promises";
import { Readable } from "node:stream";
import type { ObjectStore } from "../storage/index.ts";

const MiB = 1024 * 1024;

/** Storage that cannot take a backup; the message says why. */
export class StorageNotWritableError extends Error {
  constructor(message: string, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = "StorageNotWritableError";
  }
}

export interface StorageProbeOptions {
  store: ObjectStore;
  /** Key prefix (a directory) the probe object is written under; never a backup id. */
  prefix: string;
  /** The filesystem store's root directory, for the free-space check. */
  filesystemRoot?: string | undefined;
  /** Least free space on a filesystem store (default 16 MiB). */
  minFreeBytes?: number | undefined;
  /** How long a successful write probe is trusted (default 60 s) and a failed one repeated (default 5 s). */
  okCacheMs?: number | undefined;
  failCacheMs?: number | undefined;
  now?: () => number;
}

export function formatMiB(bytes: number): string {
  return `${(bytes / MiB).toFixed(1)} MiB`;
}

export class StorageProbe {
  readonly #o: StorageProbeOptions;
  readonly #now: () => number;
  #cached: { at: number; error: Error | undefined } | undefined;
  #inFlight: Promise<void> | undefined;

  constructor(opts: StorageProbeOptions) {
    this.#o = opts;
    this.#now = opts.now ?? Date.now;
  }

  /** Throws when the storage cannot be reached or written; the message says why. */
  async check(signal: AbortSignal): Promise<void> {
    await this.#o.store.check(signal);
    const c = this.#cached;
    const now = this.#now();
    if (c && now - c.at < (c.error ? (this.#o.failCacheMs ?? 5_000) : (this.#o.okCacheMs ?? 60_000))) {
      if (c.error) throw c.error;
      return;
    }
    this.#inFlight ??= this.#probe(signal).finally(() => {
      this.#inFlight = undefined;
    });
    await this.#inFlight;
  }

  /** Forgets the cached result (the next check probes again). */
  reset(): void {
    this.#cached = undefined;
  }

  async #probe(signal: AbortSignal): Promise<void> {
    let error: Error | undefined;
    try {
      await this.#writeProbe(signal);
    } catch (err: unknown) {
      if (signal.aborted) throw err; // a probe cut short proves nothing: not cached
      error = err instanceof StorageNotWritableError ? err : new StorageNotWritableError(`storage is not writable: ${err instanceof Error ? err.message : String(err)}`, err);
    }
    this.#cached = { at: this.#now(), error };
    if (error) throw error;
  }

  async #writeProbe(signal: AbortSignal): Promise<void> {
    const root = this.#o.filesystemRoot;
    if (root !== undefined) {
      const min = this.#o.minFreeBytes ?? 16 * MiB;
      const st = await statfs(root);
      const free = Number(st.bavail) * Number(st.bsize);
      if (free < min) {
        throw new StorageNotWritableError(`storage is full: ${formatMiB(free)} free in ${root} (less than ${formatMiB(min)}); backups would fail with ENOSPC`);
      }
    }
    const key = `${this.#o.prefix.replace(/\/+$/, "")}/readyz-probe-${randomBytes(6).toString("hex")}`;
    await this.#o.store.put(key, Readable.from([Buffer.from("probe")]), { signal, contentType: "text/plain" });
    await this.#o.store.delete([key]);
  }
}
