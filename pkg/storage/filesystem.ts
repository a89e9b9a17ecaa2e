import { randomBytes } from "node:crypto";
import type { Dirent } from "node:fs";
import { constants as fsConstants } from "node:fs";
import { access, lstat, mkdir, open, opendir, readdir, rename, rmdir, stat, unlink, type FileHandle } from "node:fs/promises";
import path from "node:path";
import type { Readable } from "node:stream";
import type { Logger } from "winston";
import { hashBody, type PutBody } from "./body.ts";
import { verifiedReadable } from "./checksum.ts";
import {
  errorMessage,
  isTransientSystemError,
  NotFoundError,
  StorageAbortedError,
  StorageError,
  type StorageOp,
} from "./errors.ts";
import { assertValidKey, assertValidPrefix, TEMP_INFIX } from "./keys.ts";
import type { GetOptions, ListOptions, ObjectInfo, ObjectStore, PutOptions, PutResult } from "./types.ts";

export interface FilesystemStoreConfig {
  /** Directory holding the objects; keys map to paths below it. Created on first put if missing. */
  root: string;
  logger?: Logger | undefined;
}

export interface FilesystemStore extends ObjectStore {
  readonly kind: "filesystem";
  readonly root: string;
  cleanupIncomplete(prefix: string, olderThan: Date): Promise<number>;
}

function errCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}

function fsError(op: StorageOp, key: string | undefined, err: unknown, signal?: AbortSignal): StorageError {
  if (err instanceof StorageError) return err;
  if (signal?.aborted) return new StorageAbortedError({ op, key, cause: signal.reason });
  const code = errCode(err);
  if (code === "ENOENT" || code === "ENOTDIR") return new NotFoundError("no such object", { op, key, cause: err });
  if (code === "EACCES" || code === "EPERM") {
    return new StorageError(`permission denied: ${errorMessage(err)}`, { op, key, retryable: false, cause: err });
  }
  return new StorageError(errorMessage(err), { op, key, retryable: isTransientSystemError(err), cause: err });
}

/** fsync a directory so that entries created/renamed in it are durable. */
async function fsyncDir(dir: string): Promise<void> {
  let fh: FileHandle | undefined;
  try {
    fh = await open(dir, fsConstants.O_RDONLY);
    await fh.sync();
  } catch (err) {
    // Some filesystems / platforms do not support fsync on directories.
    const code = errCode(err);
    if (code !== "EINVAL" && code !== "EISDIR" && code !== "EPERM" && code !== "ENOTSUP") throw err;
  } finally {
    await fh?.close().catch(() => {});
  }
}

async function writeAll(fh: FileHandle, chunk: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < chunk.byteLength) {
    const { bytesWritten } = await fh.write(chunk, offset, chunk.byteLength - offset);
    offset += bytesWritten;
  }
}

/** Compares entry names so that a depth-first walk yields full keys in lexicographic order (S3 list order). */
function walkOrder(a: Dirent, b: Dirent): number {
  const ka = a.isDirectory() ? `${a.name}/` : a.name;
  const kb = b.isDirectory() ? `${b.name}/` : b.name;
  return ka < kb ? -1 : ka > kb ? 1 : 0;
}

/**
 * Object store on a local (or mounted) filesystem directory.
 *
 * put writes `<final>.tmp-<random>` next to the final path, fsyncs it, renames
 * it over the final path and fsyncs the directory, so readers only ever see
 * complete objects and a crash leaves at most a temp file (which list ignores
 * and cleanupIncomplete removes). Symlinks under the root are not followed by
 * list; keys cannot contain `..`, so paths never leave the root.
 */
export function createFilesystemStore(cfg: FilesystemStoreConfig): FilesystemStore {
  if (typeof cfg.root !== "string" || cfg.root === "") throw new TypeError("filesystem store: root must be a non-empty path");
  const root = path.resolve(cfg.root);
  const logger = cfg.logger;

  function pathOf(key: string, op: StorageOp): string {
    assertValidKey(key, op);
    const p = path.join(root, ...key.split("/"));
    // Defence in depth: keyProblem already rules out traversal.
    if (!p.startsWith(root + path.sep)) throw new StorageError("key resolves outside the root", { op, key });
    return p;
  }

  /** Creates the parent directories of `file` (mkdir -p) and fsyncs the parents of any directory it created. */
  async function ensureParent(file: string): Promise<void> {
    const dir = path.dirname(file);
    const firstCreated = await mkdir(dir, { recursive: true });
    if (firstCreated === undefined) return;
    // Make the new directory entries durable: fsync each newly created directory's parent.
    let d = dir;
    const created: string[] = [];
    while (d.length >= firstCreated.length) {
      created.push(d);
      d = path.dirname(d);
    }
    for (const c of created) await fsyncDir(path.dirname(c));
  }

  /** Removes now-empty parent directories of `file` up to (not including) the root. */
  async function pruneEmptyDirs(file: string): Promise<void> {
    let dir = path.dirname(file);
    while (dir.startsWith(root + path.sep)) {
      try {
        await rmdir(dir);
      } catch {
        return; // ENOTEMPTY, ENOENT, EBUSY...: stop
      }
      dir = path.dirname(dir);
    }
  }

  async function put(key: string, body: PutBody, opts: PutOptions = {}): Promise<PutResult> {
    const final = pathOf(key, "put");
    const { signal } = opts;
    if (signal?.aborted) throw new StorageAbortedError({ op: "put", key, cause: signal.reason });
    const tmp = `${final}${TEMP_INFIX}${randomBytes(8).toString("hex")}`;
    const hashed = hashBody(body, { signal, onProgress: opts.onProgress, op: "put", key });
    let fh: FileHandle | undefined;
    let tmpCreated = false;
    try {
      // A concurrent delete in the same directory (another put that failed, an engine removing an object it
      // will write again) prunes directories that are empty at that instant: it may remove one while
      // mkdir -p walks down through it, or between the mkdir and the open. Either shows as ENOENT: retry.
      for (let attempt = 0; ; attempt++) {
        try {
          await ensureParent(final);
          fh = await open(tmp, "wx", 0o644);
          break;
        } catch (err) {
          if (errCode(err) !== "ENOENT" || attempt >= 5) throw err;
        }
      }
      tmpCreated = true;
      // Not destroyed when a write fails and the loop is left: the catch below destroys it (and so the
      // body) with the write's own error, so the body's producer learns ENOSPC, not "aborted".
      for await (const chunk of hashed.stream.iterator({ destroyOnReturn: false })) {
        await writeAll(fh, chunk as Uint8Array);
        // Written (and hashed before that): the producer may have the chunk back (see PutOptions.release).
        opts.release?.(chunk as Uint8Array);
      }
      await fh.sync();
      await fh.close();
      fh = undefined;
      if (signal?.aborted) throw new StorageAbortedError({ op: "put", key, cause: signal.reason });
      const sha256 = hashed.stream.sha256;
      if (sha256 === undefined) throw new StorageError("internal: body stream ended without a checksum", { op: "put", key });
      const size = hashed.stream.bytesSeen;
      await rename(tmp, final);
      tmpCreated = false;
      await fsyncDir(path.dirname(final));
      if (signal?.aborted) {
        // Aborted while committing: honour it like the S3 store does, leave no object.
        await unlink(final).catch(() => {});
        throw new StorageAbortedError({ op: "put", key, cause: signal.reason });
      }
      logger?.debug("storage: put complete", { store: describe(), key, size, sha256 });
      return { key, size, sha256 };
    } catch (err) {
      const failure = fsError("put", key, err, signal);
      hashed.destroy(failure);
      await fh?.close().catch(() => {});
      if (tmpCreated) {
        await unlink(tmp).catch((e: unknown) => {
          if (errCode(e) !== "ENOENT") logger?.warn("storage: could not remove temp file", { path: tmp, error: errorMessage(e) });
        });
      }
      // The directories this put created for nothing (a failed backup's `<id>/data/<db>/`) go too.
      await pruneEmptyDirs(final);
      throw failure;
    }
  }

  async function get(key: string, opts: GetOptions = {}): Promise<Readable> {
    const file = pathOf(key, "get");
    const { signal } = opts;
    if (signal?.aborted) throw new StorageAbortedError({ op: "get", key, cause: signal.reason });
    let fh: FileHandle;
    try {
      fh = await open(file, "r");
    } catch (err) {
      throw fsError("get", key, err, signal);
    }
    try {
      const st = await fh.stat();
      if (!st.isFile()) throw new NotFoundError("no such object (path is not a regular file)", { op: "get", key });
    } catch (err) {
      await fh.close().catch(() => {});
      throw fsError("get", key, err, signal);
    }
    const source = fh.createReadStream({ highWaterMark: 256 * 1024 });
    return verifiedReadable(source, {
      expectedSha256: opts.expectedSha256,
      expectedSize: opts.expectedSize,
      signal,
      op: "get",
      key,
      mapError: (err) => fsError("get", key, err, signal),
    });
  }

  async function head(key: string): Promise<ObjectInfo | undefined> {
    const file = pathOf(key, "head");
    try {
      const st = await stat(file);
      if (!st.isFile()) return undefined;
      return { key, size: st.size, lastModified: st.mtime };
    } catch (err) {
      const code = errCode(err);
      if (code === "ENOENT" || code === "ENOTDIR") return undefined;
      throw fsError("head", key, err);
    }
  }

  /** Depth-first walk of `dir` (whose key prefix is `dirKey`, "" or ending in "/"), in lexicographic key order. */
  async function* walk(
    dir: string,
    dirKey: string,
    prefix: string,
    op: StorageOp,
    signal: AbortSignal | undefined,
    includeTemp: boolean,
  ): AsyncGenerator<{ key: string; file: string; isTemp: boolean }> {
    if (signal?.aborted) throw new StorageAbortedError({ op, key: prefix, cause: signal.reason });
    let entries: Dirent[];
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (err) {
      const code = errCode(err);
      if (code === "ENOENT" || code === "ENOTDIR") return;
      throw fsError(op, prefix, err);
    }
    entries.sort(walkOrder);
    for (const e of entries) {
      const key = dirKey + e.name;
      if (e.isDirectory()) {
        const sub = `${key}/`;
        // Descend only if the subtree can contain keys matching the prefix.
        if (sub.startsWith(prefix) || prefix.startsWith(sub)) {
          yield* walk(path.join(dir, e.name), sub, prefix, op, signal, includeTemp);
        }
      } else if (e.isFile() && key.startsWith(prefix)) {
        const isTemp = e.name.includes(TEMP_INFIX);
        if (isTemp && !includeTemp) continue;
        yield { key, file: path.join(dir, e.name), isTemp };
      }
    }
  }

  /** Deepest directory that contains every key starting with `prefix`. */
  function walkStart(prefix: string): { dir: string; dirKey: string } {
    const slash = prefix.lastIndexOf("/");
    if (slash < 0) return { dir: root, dirKey: "" };
    const dirKey = prefix.slice(0, slash + 1);
    return { dir: path.join(root, ...dirKey.slice(0, -1).split("/")), dirKey };
  }

  async function* list(prefix: string, opts: ListOptions = {}): AsyncGenerator<ObjectInfo> {
    assertValidPrefix(prefix, "list");
    const { signal } = opts;
    const { dir, dirKey } = walkStart(prefix);
    for await (const entry of walk(dir, dirKey, prefix, "list", signal, false)) {
      let st;
      try {
        st = await lstat(entry.file);
      } catch (err) {
        if (errCode(err) === "ENOENT") continue; // deleted meanwhile
        throw fsError("list", entry.key, err);
      }
      yield { key: entry.key, size: st.size, lastModified: st.mtime };
    }
  }

  async function del(keys: readonly string[]): Promise<void> {
    const files = keys.map((k) => pathOf(k, "delete"));
    for (const [i, file] of files.entries()) {
      const key = keys[i];
      try {
        await unlink(file);
      } catch (err) {
        const code = errCode(err);
        if (code === "ENOENT" || code === "ENOTDIR") continue;
        if (code === "EISDIR" || code === "EPERM") {
          // A "directory" is not an object: nothing to delete.
          const st = await lstat(file).catch(() => undefined);
          if (st?.isDirectory()) continue;
        }
        throw fsError("delete", key, err);
      }
      await pruneEmptyDirs(file);
    }
  }

  async function check(signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) throw new StorageAbortedError({ op: "check", cause: signal.reason });
    try {
      const st = await stat(root);
      if (!st.isDirectory()) throw new StorageError(`${root} is not a directory`, { op: "check" });
      await access(root, fsConstants.R_OK | fsConstants.W_OK | fsConstants.X_OK);
      // Make sure the directory can actually be read (e.g. a stale NFS mount fails here).
      const d = await opendir(root);
      await d.close();
    } catch (err) {
      if (errCode(err) === "ENOENT") {
        throw new NotFoundError(`root directory ${root} does not exist`, { op: "check", cause: err });
      }
      throw fsError("check", undefined, err);
    }
  }

  async function cleanupIncomplete(prefix: string, olderThan: Date): Promise<number> {
    assertValidPrefix(prefix, "cleanup");
    const { dir, dirKey } = walkStart(prefix);
    let removed = 0;
    for await (const entry of walk(dir, dirKey, prefix, "cleanup", undefined, true)) {
      if (!entry.isTemp) continue;
      try {
        const st = await lstat(entry.file);
        if (st.mtime.getTime() >= olderThan.getTime()) continue;
        await unlink(entry.file);
        removed++;
        logger?.info("storage: removed stale temp file", { store: describe(), path: entry.file });
        await pruneEmptyDirs(entry.file);
      } catch (err) {
        if (errCode(err) === "ENOENT") continue;
        throw fsError("cleanup", entry.key, err);
      }
    }
    await removeEmptyDirsUnder(prefix, olderThan);
    return removed;
  }

  /**
   * Removes empty directories (and directories holding only empty ones)
   * under `prefix` not modified since `olderThan`: what failed backups left
   * before puts pruned after themselves. A recent one may be a put's that is
   * about to create its file, so it stays.
   */
  async function removeEmptyDirsUnder(prefix: string, olderThan: Date): Promise<void> {
    const { dir, dirKey } = walkStart(prefix);
    const sweep = async (d: string, key: string): Promise<boolean> => {
      let entries: Dirent[];
      let mtime: number;
      try {
        // mtime before the children are swept: removing them touches it.
        mtime = (await lstat(d)).mtime.getTime();
        entries = await readdir(d, { withFileTypes: true });
      } catch {
        return false;
      }
      let empty = true;
      for (const e of entries) {
        const sub = `${key}${e.name}/`;
        if (e.isDirectory() && (sub.startsWith(prefix) || prefix.startsWith(sub))) {
          if (!(await sweep(path.join(d, e.name), sub))) empty = false;
        } else {
          empty = false;
        }
      }
      // Never the root, nor a directory the prefix lies inside of (only what lies under the prefix).
      if (!empty || d === root || !key.startsWith(prefix) || key === "") return false;
      if (mtime >= olderThan.getTime()) return false;
      try {
        await rmdir(d);
        logger?.info("storage: removed empty directory", { store: describe(), path: d });
        return true;
      } catch {
        return false;
      }
    };
    await sweep(dir, dirKey);
  }

  function describe(): string {
    return `file://${root}`;
  }

  return {
    kind: "filesystem",
    root,
    maxObjectBytes: Number.POSITIVE_INFINITY,
    describe,
    put,
    get,
    head,
    list,
    delete: del,
    check,
    cleanupIncomplete,
  };
}
