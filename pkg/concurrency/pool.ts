// Bounded concurrency shared by the engines, the controller and the benchmarks.

/** The error to throw once the caller's signal is aborted. */
export function abortReason(signal: AbortSignal): Error {
  const r: unknown = signal.reason;
  if (r instanceof Error) return r;
  return new DOMException(typeof r === "string" ? r : "The operation was aborted", "AbortError");
}

const ABORT_NAMES = new Set(["AbortError", "StorageAbortedError"]);

/**
 * True for an error that only says "aborted" (an AbortError, a storage
 * operation cut short by its signal, Node's ABORT_ERR): the consequence of
 * an abort, not the reason for it.
 */
export function isAbortError(err: unknown): boolean {
  if (!(err instanceof Error) && !(err instanceof DOMException)) return false;
  const e = err as { name?: unknown; code?: unknown };
  return (typeof e.name === "string" && ABORT_NAMES.has(e.name)) || e.code === "ABORT_ERR";
}

/**
 * The first real cause among failures in the order they happened: the first
 * that is not an abort (an abort is what the others got once the first one
 * failed), else the first.
 */
export function firstCause(failures: readonly unknown[]): unknown {
  return failures.find((f) => !isAbortError(f)) ?? failures[0];
}

/**
 * Runs `fn` over the items with at most `concurrency` at a time. On the first
 * failure no new item starts and the shared signal is aborted (with that
 * failure as its reason) so running ones stop. Once every running item has
 * ended, the first real cause is thrown: the first failure that is not an
 * abort, so an item that was aborted before the failing one reported its
 * error never hides that error. An abort of the caller's signal throws its
 * reason.
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
  const failures: unknown[] = [];
  const worker = async () => {
    while (failures.length === 0 && !ac.signal.aborted && next < items.length) {
      const item = items[next++] as T;
      try {
        await fn(item, ac.signal);
      } catch (err) {
        failures.push(err);
        // A real cause is the abort's reason; an abort error is not (a later real cause replaces it below).
        if (!ac.signal.aborted) ac.abort(err);
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
  if (signal.aborted) throw abortReason(signal);
  if (failures.length) throw firstCause(failures);
}
