// Error descriptions shared by the controller, the runner and their commands. pkg/common imports
// no other package of this repository, so sharing it makes no package depend on another.

const ABORT_NAMES = new Set(["AbortError", "StorageAbortedError"]);

/**
 * Message of an error with its causes, for status output and logs. An
 * "aborted" wrapper whose cause says why (ENOSPC, a checksum mismatch) adds
 * nothing and is left out, so the first real cause is what one reads.
 */
export function describeError(err: unknown): string {
  const parts: string[] = [];
  let cur: unknown = err;
  for (let depth = 0; cur !== undefined && cur !== null && depth < 8; depth++) {
    if (cur instanceof Error || cur instanceof DOMException) {
      const e = cur as Error;
      const abortWrapper = ABORT_NAMES.has(e.name) && (e.cause instanceof Error || e.cause instanceof DOMException);
      if (!abortWrapper && !parts.some((p) => p.includes(e.message))) parts.push(e.message);
      cur = e.cause;
    } else {
      parts.push(String(cur));
      break;
    }
  }
  return parts.join(": ");
}
