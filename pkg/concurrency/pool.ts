// Bounded concurrency shared by the engines, the controller and the benchmarks.

/** The error to throw once the caller's signal is aborted. */
export function abortReason(signal: AbortSignal): unknown {
  const r: unknown = signal.reason;
  if (r instanceof Error) return r;
  return new DOMException(typeof r === "string" ? r : "The operation was aborted", "AbortError");
}

/**
 * Runs `fn` over the items with at most `concurrency` at a time. On the first
 * failure no new item starts, the shared signal is aborted so running ones
 * stop, and that first failure is thrown.
 */
export async function runPool<T>(
  items: readonly T[],
  concurrency: number,
  signal: AbortSignal,
  fn: (item: T, signal: AbortSignal) => Promise<void>,
): Promise<void> {
  const ac = new AbortController();
  const onAbort = () => ac.abort(signal.reason);
  signal.addEventListener("abort", onAbort, { once: true });
  if (signal.aborted) onAbort();
  let next = 0;
  let failure: { err: unknown } | undefined;
  const worker = async () => {
    while (!failure && !ac.signal.aborted && next < items.length) {
      const item = items[next++] as T;
      try {
        await fn(item, ac.signal);
      } catch (err) {
        if (!failure) {
          failure = { err };
          ac.abort(err);
        }
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
  if (signal.aborted) throw abortReason(signal);
  if (failure) throw failure.err;
}
