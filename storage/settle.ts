/**
 * Promise helper: synchronous implementations of async interfaces report errors as rejections.
 *
 * @module
 */

/** Runs `fn`, turning its result or exception into a promise. */
export function settle<T>(fn: () => T): Promise<T> {
  try {
    return Promise.resolve(fn());
  } catch (e) {
    return Promise.reject(e);
  }
}

/** Resolves on a later turn of the event loop (after timers and I/O that are due have run). */
export function yieldToLoop(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/**
 * Splits long synchronous work (serializing or checking a large snapshot) into slices of at most
 * `sliceMs` milliseconds, so that the event loop keeps serving heartbeats, requests and timers:
 * call {@link Pacer.pace} between units of work; it yields to the loop once a slice is used up.
 */
export class Pacer {
  #since = performance.now();
  /** Times it yielded (for tests and stats). */
  yields = 0;

  /** A pacer that lets `sliceMs` of work (default 4 ms) run between yields. */
  constructor(private readonly sliceMs = 4) {}

  /** True when the current slice is used up. */
  get due(): boolean {
    return performance.now() - this.#since >= this.sliceMs;
  }

  /** Yields to the event loop if the current slice is used up. */
  async pace(): Promise<void> {
    if (!this.due) return;
    await yieldToLoop();
    this.yields++;
    this.#since = performance.now();
  }
}
