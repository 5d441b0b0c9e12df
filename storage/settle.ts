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
