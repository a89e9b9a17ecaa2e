// The engine interface: a backup engine streams a database's backup into a
// sink the runner gives it and restores from a source, honouring an AbortSignal.
// The runner knows nothing engine-specific; engines know nothing about
// catalogs, labels or where the bytes end up.
import type { Readable } from "node:stream";
import type { Logger } from "winston";

/** One object written into the backup (relative name inside the backup's directory). */
export interface WrittenObject {
  name: string;
  size: number;
  sha256: string;
}

/** Options of BackupSink.putObject(s). */
export interface PutObjectOptions {
  /**
   * The engine reuses the body's chunks (blocks of a BufferPool: `release:
   * pool.release`). A sink may call it with each chunk, once, when it has
   * copied or written the chunk and will never read it again; the engine may
   * overwrite the chunk's bytes as soon as it returns. A sink that never
   * calls it is correct too (the chunks are garbage collected).
   */
  release?: ((chunk: Uint8Array) => void) | undefined;
}

/** Where an engine writes a backup. Names are relative to the backup's directory. */
export interface BackupSink {
  /** Streams one object; resolves with its size and SHA-256 once it is durably stored. */
  putObject(name: string, body: AsyncIterable<Uint8Array> | NodeJS.ReadableStream, signal: AbortSignal, opts?: PutObjectOptions): Promise<WrittenObject>;
  /**
   * Streams one logical object of any size, stored as one or more pieces
   * (`name`, then numbered continuations) when the storage caps the size of
   * one object. Resolves with the pieces in order. Engines that may write
   * large objects use this when the sink has it.
   */
  putObjects?(name: string, body: AsyncIterable<Uint8Array> | NodeJS.ReadableStream, signal: AbortSignal, opts?: PutObjectOptions): Promise<WrittenObject[]>;
  /** Deletes objects this backup wrote that it no longer needs (a table dumped again another way). */
  removeObjects?(names: readonly string[], signal: AbortSignal): Promise<void>;
  /**
   * For engines whose database writes straight to object storage (ClickHouse
   * BACKUP ... TO S3): the S3 URL of a directory inside this backup and the
   * credentials to reach it. Undefined when the storage is not S3.
   */
  nativeS3Target?(name: string): NativeS3Target | undefined;
}

export interface NativeS3Target {
  url: string;
  accessKeyId: string;
  secretAccessKey: string;
}

/** Where an engine reads a backup from. Checksums are verified by the source. */
export interface BackupSource {
  getObject(name: string, signal: AbortSignal): Promise<Readable>;
  /** The pieces of one logical object (see BackupSink.putObjects) as one stream, each piece verified. */
  getObjects?(names: readonly string[], signal: AbortSignal): Promise<Readable>;
  nativeS3Target?(name: string): NativeS3Target | undefined;
}

export interface Progress {
  phase: string;
  tablesDone: number;
  tablesTotal: number;
  bytes: number;
  rows: number;
  currentTable?: string | undefined;
}

export interface TableEntry {
  database: string;
  name: string;
  engine: string;
  /** Rows counted in the data stream itself, and compressed bytes written (0 for DDL-only tables). */
  rows: number;
  bytes: number;
  /** Object holding the table's data, if it has its own data (the first piece, see dataObjects). */
  dataObject?: string | undefined;
  /** Every piece of the table's data in order, when it was stored as more than one object. */
  dataObjects?: string[] | undefined;
  /** Cluster backups: the host ("host:port" in system.clusters) the data came from, and its shard. */
  host?: string | undefined;
  shard?: number | undefined;
}

/** What an engine reports about a finished backup; stored in the manifest. */
export interface EngineBackupResult {
  engineVersion: string;
  method: string;
  databases: string[];
  tables: TableEntry[];
  objects: WrittenObject[];
  /** The backup this one is incremental on (BackupRequest.base), if the engine used it; retention keeps it. */
  baseBackupId?: string | undefined;
  /** Bytes stored when they are not objects of the sink (a database that writes to storage itself). */
  storedBytes?: number | undefined;
  /** Engine-specific details needed for restore (for example the native backup's location). */
  details: Record<string, unknown>;
}

export interface BackupRequest {
  backupId: string;
  signal: AbortSignal;
  sink: BackupSink;
  logger: Logger;
  onProgress?: ((p: Progress) => void) | undefined;
  /** The previous backup this one may build on (native incremental backups). */
  base?: { backupId: string; source: BackupSource; result: EngineBackupResult } | undefined;
}

export type ExistingTablePolicy = "fail" | "drop" | "append";

export interface RestoreOptions {
  /** Databases to restore (default: all in the backup). */
  databases?: string[] | undefined;
  /** Tables to restore as "db.table" (default: all in the selected databases). */
  tables?: string[] | undefined;
  /** Restore database `from` into database `to`. */
  renameDatabases?: Record<string, string> | undefined;
  /**
   * Cluster backups: restore every shard into the one server the engine is
   * configured for (replicated tables become their plain MergeTree engine,
   * Distributed tables a Merge table over their local table).
   */
  mergeShards?: boolean | undefined;
  existingTables: ExistingTablePolicy;
  /**
   * Allows "drop" for objects that cannot be restored through a staging
   * table and an atomic rename (replicated tables, materialized views with an
   * inner table in a database whose RENAME does not carry the inner table).
   * Their old version is dropped before the new data is proven.
   */
  allowUnstagedDrop?: boolean | undefined;
}

export interface RestoreRequest {
  signal: AbortSignal;
  source: BackupSource;
  backup: EngineBackupResult;
  options: RestoreOptions;
  logger: Logger;
  onProgress?: ((p: Progress) => void) | undefined;
}

export interface RestoreResult {
  databases: string[];
  /** Rows counted in the data the restore sent (not taken from the manifest). */
  tables: { database: string; name: string; rows: number }[];
}

export interface VerifyRequest {
  signal: AbortSignal;
  source: BackupSource;
  backup: EngineBackupResult;
  logger: Logger;
  onProgress?: ((p: Progress) => void) | undefined;
}

/** One table of a verified backup. */
export interface VerifiedTable {
  database: string;
  name: string;
  /** Cluster backups: the host ("host:port" in system.clusters) whose data this is. */
  host?: string | undefined;
  /** The objects holding its data. */
  objects: string[];
  /** Rows the manifest records, and rows found in the data. */
  expectedRows: number;
  rows: number;
  /** Bytes stored, and bytes of the data after decompression. */
  bytes: number;
  uncompressedBytes: number;
  ok: boolean;
  /** Why not, when not ok. */
  error?: string | undefined;
  /** false when only the stored bytes were checked (size and SHA-256: an encrypted backup verified without an identity). */
  contentChecked?: boolean | undefined;
}

export interface VerifyResult {
  ok: boolean;
  tables: VerifiedTable[];
  /** Objects of the backup that hold no table's data (checked for size and SHA-256 only). */
  otherObjects: { name: string; ok: boolean; error?: string | undefined }[];
  /** false when no table's content was checked, only the stored bytes (an encrypted backup verified without an identity). */
  contentChecked?: boolean | undefined;
}

/** What an engine found and did about objects an interrupted restore left behind. */
export interface InterruptedCleanup {
  /** Staging objects removed. */
  removed: string[];
  /** Pre-restore objects put back under their own name (the swap had not happened). */
  restored: string[];
  /** Pre-restore copies kept beside a restored object (the swap had happened): the user decides. */
  kept: string[];
}

export interface BackupEngine {
  readonly name: string;
  /** Connects and returns the database version; throws a typed error if unreachable or unauthorised. */
  check(signal: AbortSignal): Promise<{ version: string }>;
  backup(req: BackupRequest): Promise<EngineBackupResult>;
  restore(req: RestoreRequest): Promise<RestoreResult>;
  /**
   * Proves a backup whole from storage alone (no database needed): reads
   * every object, checks its size and SHA-256, decompresses it and counts the
   * rows in its data against the manifest. Never throws for a damaged
   * backup: the result says what is wrong, table by table.
   */
  verify?(req: VerifyRequest): Promise<VerifyResult>;
  /** Removes what an interrupted restore left behind (staging tables); called when the runner starts. */
  cleanupInterrupted?(signal: AbortSignal): Promise<InterruptedCleanup>;
  close(): Promise<void>;
}

/** Errors from engines say whether trying again may help. */
export class EngineError extends Error {
  readonly retryable: boolean;
  constructor(message: string, opts: { cause?: unknown; retryable: boolean }) {
    super(message, { cause: opts.cause });
    this.name = "EngineError";
    this.retryable = opts.retryable;
  }
}
