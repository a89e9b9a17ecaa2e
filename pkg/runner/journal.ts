// The operation journal: one small JSON file per backup, restore and verify
// in the runner's state directory (on its volume), written when the
// operation starts, when its phase changes (and at most once a second
// while it makes progress) and when it ends. A restarted runner reads it back:
// an operation the journal still shows as running was interrupted (the
// process was killed or crashed) and is reported as such. Restores also keep
// a copy next to their backup in storage (`<backup dir>/restores/<id>.json`),
// so the record survives the loss of the volume.
//
// Journal writes never fail an operation: a write that fails is logged (once
// per target until one succeeds again) and the operation goes on.
import { processAlive } from "../common/process.ts";
import { hostname } from "node:os";
import { mkdir, open, readdir, readFile, rename, unlink } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import type { Logger } from "winston";
import { z } from "zod";
import type { ObjectStore } from "../storage/index.ts";
import { describeError } from "./errors.ts";
import { ownerSchema, type Owner } from "./manifest.ts";
import type { Operation } from "./runner.ts";

export const JOURNAL_FORMAT = 1;
/** Subdirectory of a backup that holds the journal copies of its restores. */
export const RESTORES_DIR = "restores";

const progressSchema = z.object({
  phase: z.string(),
  tablesDone: z.number(),
  tablesTotal: z.number(),
  bytes: z.number(),
  rows: z.number(),
  currentTable: z.string().optional(),
});

export const journalOperationSchema = z.object({
  id: z.string().min(1),
  kind: z.enum(["backup", "restore", "verify"]),
  trigger: z.string(),
  state: z.enum(["running", "succeeded", "failed", "aborted", "cancelled", "interrupted"]),
  startedAt: z.string(),
  endedAt: z.string().optional(),
  durationMs: z.number().optional(),
  progress: progressSchema,
  backupId: z.string().optional(),
  target: z.string().optional(),
  error: z.string().optional(),
  retryable: z.boolean().optional(),
  result: z.record(z.string(), z.unknown()).optional(),
  idempotencyKey: z.string().optional(),
});

export const journalEntrySchema = z.object({
  format: z.literal(JOURNAL_FORMAT),
  operation: journalOperationSchema,
  /** The runner that ran it. */
  owner: ownerSchema,
  /** The process that ran it: a journal that says running is that process's only while it lives. */
  host: z.string(),
  pid: z.number().int(),
  updatedAt: z.string(),
});
export type JournalEntry = z.infer<typeof journalEntrySchema>;

/** Parses a journal file's text; throws naming what is wrong. */
export function parseJournalEntry(text: string, where: string): JournalEntry {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new Error(`journal ${where}: not valid JSON`);
  }
  const r = journalEntrySchema.safeParse(json);
  if (!r.success) throw new Error(`journal ${where}: ${r.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`);
  return r.data;
}

/** The operation fields a journal keeps (a copy: the live operation goes on changing). */
export function operationRecord(op: Operation): Operation {
  const rec: Operation = { id: op.id, kind: op.kind, trigger: op.trigger, state: op.state, startedAt: op.startedAt, progress: { ...op.progress } };
  if (op.endedAt !== undefined) rec.endedAt = op.endedAt;
  if (op.durationMs !== undefined) rec.durationMs = op.durationMs;
  if (op.backupId !== undefined) rec.backupId = op.backupId;
  if (op.target !== undefined) rec.target = op.target;
  if (op.error !== undefined) rec.error = op.error;
  if (op.retryable !== undefined) rec.retryable = op.retryable;
  if (op.result !== undefined) rec.result = op.result;
  if (op.idempotencyKey !== undefined) rec.idempotencyKey = op.idempotencyKey;
  return rec;
}

/** `20261124T031000123Z-<id>.json`: file names sort by start time. */
export function journalFileName(op: Pick<Operation, "id" | "startedAt">): string {
  const t = new Date(op.startedAt);
  const stamp = Number.isFinite(t.getTime()) ? t.toISOString().replace(/[-:.]/g, "") : "00000000T000000000Z";
  return `${stamp}-${op.id}.json`;
}

/** Whether a process that wrote "running" may still be running it: another live process on this host. */
export function maybeStillRunning(entry: Pick<JournalEntry, "host" | "pid">, self: { host: string; pid: number }, alive: (pid: number) => boolean): boolean {
  return entry.host === self.host && entry.pid !== self.pid && alive(entry.pid);
}


/**
 * What an interrupted operation left: the journal said running, nothing is
 * running it any more. The state becomes `interrupted`, with the last
 * progress it recorded and a message saying what that means for its kind.
 */
export function markInterrupted(op: Operation, lastSeen: string): Operation {
  const p = op.progress;
  const done = `last recorded progress: phase ${p.phase}, ${p.tablesDone}/${p.tablesTotal} tables, ${p.rows} rows, ${p.bytes} bytes${p.currentTable ? `, at ${p.currentTable}` : ""}`;
  const what =
    op.kind === "restore"
      ? "tables are restored into staging tables and swapped in only once proven, so tables not yet swapped are as they were; staging tables it left are removed when the runner starts (see its log); run the restore again"
      : op.kind === "backup"
        ? "the backup has no manifest, is never listed, and its objects are removed when the runner starts"
        : "nothing was changed; run verify again";
  return {
    ...op,
    state: "interrupted",
    endedAt: op.endedAt ?? lastSeen,
    durationMs: op.durationMs ?? Math.max(0, Date.parse(lastSeen) - Date.parse(op.startedAt)),
    error: `interrupted: the runner stopped (killed or crashed) while this ${op.kind} was running; ${done}; ${what}`,
    retryable: true,
  };
}

/** One target (file or object) written by one writer at a time; a request while writing makes one more write with the newest state. */
class Coalescer {
  #writing: Promise<void> | undefined;
  #dirty = false;
  readonly #write: () => Promise<void>;
  constructor(write: () => Promise<void>) {
    this.#write = write;
  }
  request(): Promise<void> {
    this.#dirty = true;
    this.#writing ??= (async () => {
      try {
        while (this.#dirty) {
          this.#dirty = false;
          await this.#write();
        }
      } finally {
        this.#writing = undefined;
      }
    })();
    return this.#writing;
  }
  idle(): Promise<void> {
    return this.#writing ?? Promise.resolve();
  }
}

export interface JournalOptions {
  /** The state directory; undefined: no local journal (storage copies of restores are still written). */
  dir: string | undefined;
  owner: Owner;
  logger: Logger;
  /** Journal files kept (the newest; default 100). */
  keep?: number | undefined;
  /** Least time between two writes of a running operation whose phase did not change (default 1 s local, 30 s storage). */
  throttleMs?: number | undefined;
  remoteThrottleMs?: number | undefined;
  /** How long one write to storage may take (default 10 s). */
  remoteTimeoutMs?: number | undefined;
  clock?: () => Date;
}

/** Where an operation's storage copy goes (restores). */
export interface RemoteTarget {
  store: ObjectStore;
  key: string;
}

interface Tracked {
  op: Operation;
  local: Coalescer | undefined;
  remote: Coalescer | undefined;
  lastWrite: number;
  lastRemoteWrite: number;
  lastPhase: string;
  lastState: string;
  timer: NodeJS.Timeout | undefined;
}

/** The result of reading the journal at start. */
export interface LoadedJournal {
  /** Every journaled operation, oldest first; the interrupted ones already marked. */
  operations: Operation[];
  /** Operations that were running when the runner stopped (now `interrupted`). */
  interrupted: Operation[];
  /** Operations another live process on this host is running (left as they are). */
  runningElsewhere: Operation[];
  /** Files that could not be read. */
  unreadable: { file: string; error: string }[];
}

export class OperationJournal {
  readonly #dir: string | undefined;
  readonly #owner: Owner;
  readonly #log: Logger;
  readonly #keep: number;
  readonly #throttleMs: number;
  readonly #remoteThrottleMs: number;
  readonly #remoteTimeoutMs: number;
  readonly #now: () => Date;
  readonly #tracked = new Map<string, Tracked>();
  readonly #failing = new Set<string>();
  readonly #self = { host: hostname(), pid: process.pid };
  #dirReady: Promise<void> | undefined;

  constructor(opts: JournalOptions) {
    this.#dir = opts.dir;
    this.#owner = opts.owner;
    this.#log = opts.logger;
    this.#keep = Math.max(1, opts.keep ?? 100);
    this.#throttleMs = opts.throttleMs ?? 1_000;
    this.#remoteThrottleMs = opts.remoteThrottleMs ?? 30_000;
    this.#remoteTimeoutMs = opts.remoteTimeoutMs ?? 10_000;
    this.#now = opts.clock ?? (() => new Date());
  }

  /** The state directory, if there is one. */
  get dir(): string | undefined {
    return this.#dir;
  }

  entryFor(op: Operation): JournalEntry {
    return { format: JOURNAL_FORMAT, operation: operationRecord(op), owner: this.#owner, host: this.#self.host, pid: this.#self.pid, updatedAt: this.#now().toISOString() };
  }

  /**
   * Reads every journal file. Operations still marked running whose process
   * is gone are marked interrupted, and their files are rewritten so (a
   * restart later) they are reported once, not again as new.
   */
  async load(alive: (pid: number) => boolean = processAlive): Promise<LoadedJournal> {
    const out: LoadedJournal = { operations: [], interrupted: [], runningElsewhere: [], unreadable: [] };
    if (!this.#dir) return out;
    let names: string[];
    try {
      names = (await readdir(this.#dir)).filter((n) => n.endsWith(".json")).sort();
    } catch (err: unknown) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return out;
      throw new Error(`reading the operation journal in ${this.#dir}`, { cause: err });
    }
    for (const name of names) {
      const file = join(this.#dir, name);
      let entry: JournalEntry;
      try {
        entry = parseJournalEntry(await readFile(file, "utf8"), file);
      } catch (err: unknown) {
        out.unreadable.push({ file, error: describeError(err) });
        continue;
      }
      let op = entry.operation as Operation;
      if (op.state === "running") {
        if (maybeStillRunning(entry, this.#self, alive)) {
          out.runningElsewhere.push(op);
          out.operations.push(op);
          continue;
        }
        op = markInterrupted(op, entry.updatedAt);
        out.interrupted.push(op);
        await this.#writeLocal(name, { ...entry, operation: operationRecord(op), updatedAt: this.#now().toISOString() }).catch((err: unknown) =>
          this.#writeFailed("local", file, err),
        );
      }
      out.operations.push(op);
    }
    return out;
  }

  /** Starts journaling an operation: writes it now (and its storage copy, when given). */
  begin(op: Operation, remote?: RemoteTarget): void {
    const name = journalFileName(op);
    const t: Tracked = {
      op,
      local: this.#dir ? new Coalescer(() => this.#writeLocal(name, this.entryFor(op))) : undefined,
      remote: remote ? new Coalescer(() => this.#writeRemote(remote, this.entryFor(op))) : undefined,
      lastWrite: 0,
      lastRemoteWrite: 0,
      lastPhase: op.progress.phase,
      lastState: op.state,
      timer: undefined,
    };
    this.#tracked.set(op.id, t);
    this.#flushNow(t, true);
    void this.#prune();
  }

  /** The operation changed: written at once on a phase or state change, else at most every throttle interval. */
  update(op: Operation): void {
    const t = this.#tracked.get(op.id);
    if (!t) return;
    if (op.progress.phase !== t.lastPhase || op.state !== t.lastState) {
      this.#flushNow(t, true);
      return;
    }
    const now = Date.now();
    const dueLocal = now - t.lastWrite >= this.#throttleMs;
    const dueRemote = t.remote !== undefined && now - t.lastRemoteWrite >= this.#remoteThrottleMs;
    if (dueLocal || dueRemote) {
      this.#flushNow(t, dueRemote);
      return;
    }
    // A trailing write, so the last progress before a quiet spell (or a crash) is on disk.
    t.timer ??= setTimeout(() => {
      t.timer = undefined;
      this.#flushNow(t, false);
    }, this.#throttleMs - (now - t.lastWrite)).unref();
  }

  /** The operation ended: its final state is written; resolves once the local file is (the storage copy goes on; see flush). */
  async end(op: Operation): Promise<void> {
    const t = this.#tracked.get(op.id);
    if (!t) return;
    if (t.timer) clearTimeout(t.timer);
    t.timer = undefined;
    this.#flushNow(t, true);
    await t.local?.idle();
    const remote = t.remote;
    void (remote ? remote.idle() : Promise.resolve()).finally(() => {
      if (this.#tracked.get(op.id) === t) this.#tracked.delete(op.id);
    });
  }

  /** Waits for every pending write (storage copies included), at most `timeoutMs`. */
  async flush(timeoutMs = 10_000): Promise<void> {
    const pending = [...this.#tracked.values()].flatMap((t) => [t.local?.idle(), t.remote?.idle()]).filter((p): p is Promise<void> => p !== undefined);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.allSettled(pending), new Promise((r) => (timer = setTimeout(r, timeoutMs)))]);
    clearTimeout(timer);
  }

  #flushNow(t: Tracked, remoteToo: boolean): void {
    t.lastPhase = t.op.progress.phase;
    t.lastState = t.op.state;
    t.lastWrite = Date.now();
    void t.local?.request();
    if (remoteToo && t.remote) {
      t.lastRemoteWrite = Date.now();
      void t.remote.request();
    }
  }

  async #writeLocal(name: string, entry: JournalEntry): Promise<void> {
    const dir = this.#dir;
    if (!dir) return;
    const file = join(dir, name);
    try {
      this.#dirReady ??= mkdir(dir, { recursive: true, mode: 0o700 }).then(() => undefined);
      await this.#dirReady;
      const tmp = `${file}.tmp`;
      const fh = await open(tmp, "w", 0o600);
      try {
        await fh.writeFile(JSON.stringify(entry));
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(tmp, file);
      this.#recovered("local", dir);
    } catch (err: unknown) {
      this.#dirReady = undefined;
      this.#writeFailed("local", file, err);
    }
  }

  async #writeRemote(target: RemoteTarget, entry: JournalEntry): Promise<void> {
    try {
      const body = Buffer.from(JSON.stringify(entry, null, 2));
      await target.store.put(target.key, Readable.from([body]), { signal: AbortSignal.timeout(this.#remoteTimeoutMs), contentType: "application/json" });
      this.#recovered("storage", target.key);
    } catch (err: unknown) {
      this.#writeFailed("storage", target.key, err);
    }
  }

  #writeFailed(where: "local" | "storage", path: string, err: unknown): void {
    const k = `${where}:${where === "local" ? this.#dir : "store"}`;
    if (this.#failing.has(k)) return;
    this.#failing.add(k);
    this.#log.warn("operation journal write failed; the operation goes on", { where, path, error: describeError(err) });
  }

  #recovered(where: "local" | "storage", _path: string): void {
    const k = `${where}:${where === "local" ? this.#dir : "store"}`;
    if (this.#failing.delete(k)) this.#log.info("operation journal writes work again", { where });
  }

  /** Keeps the newest `keep` files; never removes the file of an operation being journaled. */
  async #prune(): Promise<void> {
    const dir = this.#dir;
    if (!dir) return;
    try {
      const names = (await readdir(dir)).filter((n) => n.endsWith(".json")).sort();
      const live = new Set([...this.#tracked.values()].map((t) => journalFileName(t.op)));
      const excess = names.length - this.#keep;
      if (excess <= 0) return;
      for (const n of names.slice(0, excess)) {
        if (live.has(n)) continue;
        await unlink(join(dir, n)).catch(() => undefined);
      }
    } catch (err: unknown) {
      this.#writeFailed("local", dir, err);
    }
  }
}

/** Storage key of a restore's journal copy, inside the backup's directory. */
export function remoteJournalKey(backupDir: string, operationId: string): string {
  return `${backupDir}/${RESTORES_DIR}/${operationId}.json`;
}
