// A small async mutex: callers of `run` execute one at a time, in arrival order.

export class Mutex {
  #tail: Promise<void> = Promise.resolve();
  #held = false;

  /** True while some `run` callback is executing. */
  get locked(): boolean {
    return this.#held;
  }

  /**
   * Runs `fn` once every earlier caller's `fn` has settled, and resolves or
   * rejects with its result. Not reentrant: calling `run` from inside `fn`
   * deadlocks.
   */
  run<T>(fn: () => Promise<T> | T): Promise<T> {
    const prev = this.#tail;
    let release!: () => void;
    this.#tail = new Promise<void>((r) => (release = r));
    return prev.then(async () => {
      this.#held = true;
      try {
        return await fn();
      } finally {
        this.#held = false;
        release();
      }
    });
  }
}
