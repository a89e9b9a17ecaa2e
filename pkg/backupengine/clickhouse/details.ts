// The engine-specific part of a backup's manifest (EngineBackupResult.details):
// written by backup, read back (from JSON) by restore.
import { z } from "zod";

const database = z.object({
  name: z.string(),
  engine: z.string(),
  /** CREATE DATABASE statement as the server showed it. */
  ddl: z.string(),
});

export const DUMP_FORMAT = "clickhouse-dump/1";
export const NATIVE_FORMAT = "clickhouse-native/1";

export const dumpTable = z.object({
  database: z.string(),
  name: z.string(),
  engine: z.string(),
  /** data: own data; view-data: materialized view without TO (data restored by INSERT into the view); schema: DDL only */
  kind: z.enum(["data", "view-data", "schema"]),
  ddl: z.string(),
  /** Object holding the table's data as Native (`SELECT <columns> ... FORMAT Native`), compressed; the first piece when there are several. */
  dataObject: z.string().optional(),
  /** Every piece of the data in order, when the storage capped the size of one object (restore concatenates them). */
  dataObjects: z.array(z.string()).optional(),
  /** How this table's object is compressed, when it differs from the backup's codec (an lz4 backup stores a table as zstd when the server's compressed answer was unusable). */
  codec: z.enum(["zstd", "lz4"]).optional(),
  /** The columns SELECT * returns, in the table's order (what a restore into an existing table compares); absent in backups made before this was recorded. */
  columns: z.array(z.object({ name: z.string(), type: z.string() })).optional(),
  /** The column names in the order of the data, when it differs from `columns` (columns the Native walker cannot size go last); the restore's INSERT names them in this order. */
  streamColumns: z.array(z.string()).optional(),
  /** Rows: counted in the Native blocks of the stream (rowsFrom "stream"), or count() when the table was dumped (older backups). */
  rows: z.number(),
  /** Compressed bytes written. */
  bytes: z.number(),
  /** Native bytes before compression. */
  uncompressedBytes: z.number(),
});
export type DumpTable = z.infer<typeof dumpTable>;

export const dumpDetails = z.object({
  format: z.literal(DUMP_FORMAT),
  serverVersion: z.string(),
  /** "stream": every table's rows were counted from its Native blocks as it streamed; absent: from a count() query (older backups). */
  rowsFrom: z.enum(["stream"]).optional(),
  /** frameBytes: written as independent zstd frames of that many input bytes (read in parallel); absent: one frame. */
  compression: z.object({
    codec: z.enum(["zstd", "lz4"]),
    /** zstd level (zstd only). */
    level: z.number().optional(),
    frameBytes: z.number().int().positive().optional(),
  }),
  databases: z.array(database),
  tables: z.array(dumpTable),
});
export type DumpDetails = z.infer<typeof dumpDetails>;

export const nativeTable = z.object({
  database: z.string(),
  name: z.string(),
  engine: z.string(),
  ddl: z.string(),
  rows: z.number(),
  bytes: z.number(),
});

export const nativeDetails = z.object({
  format: z.literal(NATIVE_FORMAT),
  serverVersion: z.string(),
  native: z.object({
    /** Name passed to nativeS3Target() for this backup's directory. */
    object: z.string(),
    /** Where ClickHouse wrote the backup (no credentials). */
    url: z.string(),
    /** ClickHouse's id of the BACKUP operation. */
    operationId: z.string(),
    incremental: z.boolean(),
    /** Backup id (the runner's) of the base backup, for incrementals. Retention must keep it. */
    baseBackupId: z.string().optional(),
    baseUrl: z.string().optional(),
    numFiles: z.number().optional(),
    totalSize: z.number().optional(),
    uncompressedSize: z.number().optional(),
    compressedSize: z.number().optional(),
  }),
  /** The BACKUP statement's element list ("DATABASE `a`, TABLE `b`.`t`"). */
  elements: z.string(),
  /** Whether whole databases or single tables were backed up. */
  scope: z.enum(["databases", "tables"]),
  databases: z.array(database),
  tables: z.array(nativeTable),
});
export type NativeDetails = z.infer<typeof nativeDetails>;
