import { pipeline } from "node:stream/promises";
import { ChecksumStream } from "./checksum.ts";
import type { StorageOp } from "./errors.ts";

export type PutBody = AsyncIterable<Uint8Array> | NodeJS.ReadableStream;

export interface HashedBody {
  /** The body's bytes, hashed and counted on the way through. */
  stream: ChecksumStream;
  /** Errors the pipeline (destroying the source and `stream`) with `err`, e.g. when the sink failed. */
  destroy(err?: Error): void;
}

/**
 * Pipes `body` through a ChecksumStream. The caller consumes `stream`; errors
 * of the source (and abort of `signal`) destroy `stream` with that error, and
 * destroying `stream` destroys / returns the source. Nothing is buffered beyond
 * the streams' high-water marks.
 */
export function hashBody(
  body: PutBody,
  opts: { signal?: AbortSignal | undefined; onProgress?: ((bytes: number) => void) | undefined; op: StorageOp; key: string },
): HashedBody {
  // The stores iterate over it: chunks come out as they went in (never concatenated), so pooled ones can be handed back.
  const stream = new ChecksumStream({ onProgress: opts.onProgress, op: opts.op, key: opts.key, chunksAhead: 2 });
  const signal = opts.signal;
  // Errors surface through `stream` (pipeline destroys it); the promise itself is only observed to avoid an unhandled rejection.
  pipeline(body, stream, signal === undefined ? {} : { signal }).catch(() => {});
  // A store that fails after the body has ended (the last write hits ENOSPC) destroys `stream` with its error
  // once the pipeline has let go of it: the store reports that error itself, it must not also be an uncaught 'error'.
  stream.on("error", () => undefined);
  return {
    stream,
    destroy(err?: Error) {
      if (!stream.destroyed) stream.destroy(err);
    },
  };
}
