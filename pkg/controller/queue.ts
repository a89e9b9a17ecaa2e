// A work queue of keys: each key is reconciled by one worker at a time, a key
// added while it is being reconciled runs once more afterwards, failures are
// retried with per-key exponential backoff, and successes reset the backoff.

export interface QueueOptions {
  workers: number;
  handle: (key: string) => Promise<{ requeueAfterMs?: number } | void>;
  onError?: (key: string, err: unknown, retryInMs: number) => void;
  baseDelayMs?: number;
  maxDelayMs?: number;
}

export class WorkQueue {
  readonly #opts: Required<Omit<QueueOptions, "onError">> & Pick<QueueOptions, "onError">;
  readonly #pending: string[] = [];
  readonly #queued = new Set<string>();
  readonly #active = new Set<string>();
  readonly #dirty = new Set<string>();
  readonly #failures = new Map<string, number>();
  readonly #timers = new Map<string, NodeJS.Timeout>();
  #running = 0;
  #stopped = true;
  #idleWaiters: (() => void)[] = [];

  constructor(opts: QueueOptions) {
    this.#opts = { baseDelayMs: 250, maxDelayMs: 120_000, ...opts };
  }

  get length(): number {
    return this.#pending.length;
  }

  get active(): number {
    return this.#running;
  }

  start(): void {
    this.#stopped = false;
    this.#pump();
  }

  add(key: string): void {
    if (this.#stopped) return;
    const t = this.#timers.get(key);
    if (t) {
      clearTimeout(t);
      this.#timers.delete(key);
    }
    if (this.#active.has(key)) {
      this.#dirty.add(key);
      return;
    }
    if (this.#queued.has(key)) return;
    this.#queued.add(key);
    this.#pending.push(key);
    this.#pump();
  }

  addAfter(key: string, ms: number): void {
    if (this.#stopped) return;
    if (this.#timers.has(key) || this.#queued.has(key)) return;
    const t = setTimeout(() => {
      this.#timers.delete(key);
      this.add(key);
    }, ms);
    t.unref();
    this.#timers.set(key, t);
  }

  /** Resolves when nothing is queued, running or waiting for a retry timer. */
  idle(): Promise<void> {
    if (this.#isIdle()) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  /** Stops taking keys; waits for running reconciles to finish. */
  async stop(): Promise<void> {
    this.#stopped = true;
    for (const t of this.#timers.values()) clearTimeout(t);
    this.#timers.clear();
    this.#pending.length = 0;
    this.#queued.clear();
    this.#dirty.clear();
    while (this.#running > 0) await new Promise((r) => setTimeout(r, 10));
    this.#notifyIdle();
  }

  #isIdle(): boolean {
    return this.#pending.length === 0 && this.#running === 0 && this.#timers.size === 0;
  }

  #notifyIdle(): void {
    if (!this.#isIdle()) return;
    for (const w of this.#idleWaiters.splice(0)) w();
  }

  #pump(): void {
    while (!this.#stopped && this.#running < this.#opts.workers && this.#pending.length > 0) {
      const key = this.#pending.shift()!;
      this.#queued.delete(key);
      this.#active.add(key);
      this.#running++;
      void this.#run(key); // never rejects: every failure is caught inside
    }
  }

  async #run(key: string): Promise<void> {
    let retryIn: number | undefined;
    try {
      const r = await this.#opts.handle(key);
      this.#failures.delete(key);
      if (r && r.requeueAfterMs !== undefined) retryIn = r.requeueAfterMs;
    } catch (err: unknown) {
      const n = (this.#failures.get(key) ?? 0) + 1;
      this.#failures.set(key, n);
      retryIn = Math.min(this.#opts.baseDelayMs * 2 ** (n - 1), this.#opts.maxDelayMs);
      try {
        this.#opts.onError?.(key, err, retryIn);
      } catch {
        // A failing error report must not stop the queue.
      }
    } finally {
      this.#active.delete(key);
      this.#running--;
    }
    if (this.#dirty.delete(key)) this.add(key);
    else if (retryIn !== undefined) this.addAfter(key, retryIn);
    this.#pump();
    this.#notifyIdle();
  }
}
