// verify: proves a dump backup whole from storage alone. Every object is
// read and checked against the manifest's size and SHA-256 (by the source),
// decompressed, and its Native blocks walked to count the rows, which must
// equal the manifest's. No ClickHouse is needed. A damaged backup is not an
// error of verify: the result names every table that is not whole.
import { Writable, type Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { Progress, VerifiedTable, VerifyRequest, VerifyResult } from "../types.ts";
import { EngineError } from "../types.ts";
import { CompressedStreamCheck } from "./compressed.ts";
import { dumpDetails, type DumpDetails, type DumpTable } from "./details.ts";
import { abortReason, messageOf } from "./errors.ts";
import { progressReporter } from "./dump.ts";
import { NativeCountStream, NativeWalker } from "./nativewalk.ts";
import { ByteCounter, dumpZstdDecompressor, IdleWatch } from "./streams.ts";
import { chunkReleaseOf } from "../../storage/bufferpool.ts";

/** Reads and discards a stream; the end of a verify's pipeline, where a pooled chunk, read by the stages before, is handed back. */
const drain = (release?: (chunk: Uint8Array) => void) =>
  new Writable({
    write(chunk: Buffer, _enc, cb) {
      release?.(chunk);
      cb();
    },
  });

/** The objects holding a table's data, in order. */
export function dataObjectsOf(t: Pick<DumpTable, "dataObject" | "dataObjects">): string[] {
  return t.dataObjects ?? (t.dataObject ? [t.dataObject] : []);
}

async function open(req: VerifyRequest, names: readonly string[]): Promise<Readable> {
  if (names.length === 1) return req.source.getObject(names[0]!, req.signal);
  if (!req.source.getObjects) throw new EngineError(`the data is stored in ${names.length} pieces and this storage cannot read them`, { retryable: false });
  return req.source.getObjects(names, req.signal);
}

/** Counts the rows of one table's data; throws with what is wrong. */
async function countTable(
  req: VerifyRequest,
  details: DumpDetails,
  t: DumpTable,
  opts: VerifyOptions,
  onBytes: (n: number) => void,
): Promise<{ rows: number; bytes: number; uncompressed: number }> {
  const idleMs = opts.idleTimeoutMs;
  const names = dataObjectsOf(t);
  const key = `${t.database}.${t.name}`;
  const walker = new NativeWalker({ what: key });
  const codec = t.codec ?? details.compression.codec;
  const src = await open(req, names);
  const stored = new ByteCounter(onBytes);
  const idle = new IdleWatch(idleMs, { upstream: "the storage", downstream: "the runner", what: `verifying ${key}` });
  if (codec === "lz4") {
    await pipeline(
      src,
      idle,
      stored,
      new CompressedStreamCheck(undefined, {
        verifyChecksums: true,
        onDecoded: (d) => walker.pushQuietly(d),
      }),
      // (the check copies what it decodes: the source's pooled chunks go back once it has passed them on)
      drain(chunkReleaseOf(src)),
      { signal: req.signal },
    );
    walker.end();
  } else {
    // pooled frames and input chunks, each handed back once walked (the walker copies what it keeps)
    const unzstd = dumpZstdDecompressor(details, t, { poison: opts.debugPoolPoison, inputRelease: chunkReleaseOf(src) });
    await pipeline(src, idle, stored, unzstd.stream, new NativeCountStream(walker), drain(unzstd.release), { signal: req.signal });
  }
  return { rows: walker.rows, bytes: stored.bytes, uncompressed: walker.bytes };
}

export interface VerifyOptions {
  idleTimeoutMs: number;
  /** Tests: the decompressed frames' pool poisons released blocks and checks their use. */
  debugPoolPoison?: boolean | undefined;
}

export async function verifyDump(req: VerifyRequest, opts: VerifyOptions): Promise<VerifyResult> {
  const parsed = dumpDetails.safeParse(req.backup.details);
  if (!parsed.success) throw new EngineError(`backup details are not a ClickHouse dump (${parsed.error.issues[0]?.message ?? "invalid"})`, { retryable: false });
  const details = parsed.data;
  const withData = details.tables.filter((t) => t.dataObject !== undefined || t.kind !== "schema");
  const progress: Progress = { phase: "verify", tablesDone: 0, tablesTotal: withData.length, bytes: 0, rows: 0 };
  const report = progressReporter(req.onProgress);
  report({ ...progress }, true);
  const tables: VerifiedTable[] = [];
  const used = new Set<string>();
  for (const t of withData) {
    req.signal.throwIfAborted();
    const names = dataObjectsOf(t);
    for (const n of names) used.add(n);
    const entry: VerifiedTable = {
      database: t.database,
      name: t.name,
      objects: names,
      expectedRows: t.rows,
      rows: 0,
      bytes: 0,
      uncompressedBytes: 0,
      ok: false,
    };
    progress.currentTable = `${t.database}.${t.name}`;
    try {
      if (names.length === 0) throw new Error("the manifest names no object for its data");
      const r = await countTable(req, details, t, opts, (n) => {
        progress.bytes += n;
        report({ ...progress });
      });
      entry.rows = r.rows;
      entry.bytes = r.bytes;
      entry.uncompressedBytes = r.uncompressed;
      if (r.rows !== t.rows) {
        const how = details.rowsFrom === "stream" ? "the manifest" : "the manifest (a count() taken while the table was dumped)";
        throw new Error(`the data holds ${r.rows} rows, ${how} says ${t.rows}`);
      }
      if (t.uncompressedBytes !== r.uncompressed && details.rowsFrom === "stream") {
        throw new Error(`the data holds ${r.uncompressed} bytes of Native, the manifest says ${t.uncompressedBytes}`);
      }
      entry.ok = true;
    } catch (err: unknown) {
      if (req.signal.aborted) throw abortReason(req.signal);
      entry.error = messageOf(err);
    }
    tables.push(entry);
    progress.tablesDone++;
    progress.rows += entry.rows;
    report({ ...progress }, true);
  }
  const otherObjects: VerifyResult["otherObjects"] = [];
  for (const o of req.backup.objects) {
    if (used.has(o.name)) continue;
    try {
      await pipeline(await req.source.getObject(o.name, req.signal), drain(), { signal: req.signal });
      otherObjects.push({ name: o.name, ok: true });
    } catch (err: unknown) {
      if (req.signal.aborted) throw abortReason(req.signal);
      otherObjects.push({ name: o.name, ok: false, error: messageOf(err) });
    }
  }
  progress.currentTable = undefined;
  report({ ...progress }, true);
  return { ok: tables.every((t) => t.ok) && otherObjects.every((o) => o.ok), tables, otherObjects };
}
