// What both demos (npm run demo, npm run demo:kubernetes) share: numbered
// steps and figures printed as "[demo] …", checks that fail by their message
// alone, waits that Ctrl-C ends, and how the process exits.

/** A failed check, a timeout or an interruption: reported by its message alone. */
export class DemoError extends Error {}

/** A check of the demo: throws its message when it does not hold. */
export function check(ok: boolean, what: string): asserts ok {
  if (!ok) throw new DemoError(what);
}

export function createDemo() {
  /** Aborted by Ctrl-C / SIGTERM: waits stop, everything is cleaned up. */
  const interrupted = new AbortController();
  const say = (msg: string) => process.stdout.write(`[demo] ${msg}\n`);
  const block = (text: string) => {
    for (const line of text.split("\n")) say(`   ${line}`);
  };
  let stepNo = 0;
  const step = (msg: string) => {
    interrupted.signal.throwIfAborted();
    say(`${++stepNo}. ${msg}`);
  };
  const int = (n: number) => n.toLocaleString("en-US");
  const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
  const sleep = async (ms: number) => {
    interrupted.signal.throwIfAborted();
    await new Promise<void>((r) => setTimeout(r, ms));
    interrupted.signal.throwIfAborted();
  };
  /** Polls `fn` until it returns a value (not undefined/false/null); past the deadline, fails saying what it waited for and what it saw last. */
  async function until<T>(what: string, timeoutMs: number, fn: () => Promise<T | undefined | false | null>, intervalMs = 250, seen?: () => string): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    let lastError: unknown;
    for (;;) {
      try {
        const v = await fn();
        if (v !== undefined && v !== false && v !== null) return v;
      } catch (err: unknown) {
        if (err instanceof DemoError) throw err;
        lastError = err;
      }
      if (Date.now() > deadline) {
        const last = seen?.() ?? (lastError instanceof Error ? lastError.message : lastError === undefined ? "" : String(lastError));
        throw new DemoError(`timed out after ${secs(timeoutMs)} waiting for ${what}${last ? `; last seen: ${last}` : ""}`);
      }
      await sleep(intervalMs);
    }
  }
  /** Ctrl-C / SIGTERM: stop waiting, clean up, exit 130; a second one exits at once. Returns the undo. */
  const onSignals = (): (() => void) => {
    const onSignal = (sig: NodeJS.Signals) => {
      if (interrupted.signal.aborted) process.exit(130);
      interrupted.abort(new DemoError(`interrupted by ${sig}`));
    };
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
    return () => {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
    };
  };
  return { interrupted, say, block, step, int, secs, sleep, until, onSignals };
}

/** Runs a demo's main: on success nothing is left running, so Node exits by itself (the proof of a clean shutdown). */
export function runDemo(main: () => Promise<number>): void {
  main().then(
    (code) => {
      if (code !== 0) process.exit(code);
    },
    (err: unknown) => {
      process.stderr.write(`[demo] FAILED: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exit(1);
    },
  );
}
