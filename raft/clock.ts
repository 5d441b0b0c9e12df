/**
 * The time source of the Raft driver ({@link RaftNode}): a monotonic clock and timers. The
 * production default ({@link systemClock}) uses `performance.now()`, `setTimeout` and
 * `setInterval`; the simulator (raft/sim/) passes a virtual clock whose timers fire only when the
 * simulation advances time, so a seeded run of the real driver replays exactly.
 *
 * @module
 */

/** An opaque timer handle returned by {@link Clock.setTimeout} / {@link Clock.setInterval}. */
export type TimerHandle = number | ReturnType<typeof setTimeout>;

/** A monotonic clock with timers. */
export interface Clock {
  /** Milliseconds on a monotonic clock (only differences are meaningful). */
  now(): number;
  /** Calls `fn` once after `ms` milliseconds. */
  setTimeout(fn: () => void, ms: number): TimerHandle;
  /** Cancels a timer of {@link Clock.setTimeout} (unknown or fired handles are ignored). */
  clearTimeout(handle: TimerHandle): void;
  /** Calls `fn` every `ms` milliseconds. */
  setInterval(fn: () => void, ms: number): TimerHandle;
  /** Cancels a timer of {@link Clock.setInterval}. */
  clearInterval(handle: TimerHandle): void;
}

/** The real clock: `performance.now()` and the runtime's timers. */
export const systemClock: Clock = {
  now: () => performance.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as number),
  setInterval: (fn, ms) => setInterval(fn, ms),
  clearInterval: (h) => clearInterval(h as number),
};
