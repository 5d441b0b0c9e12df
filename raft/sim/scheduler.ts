/**
 * Virtual time for the simulator: a {@link Scheduler} holds every future event of a run
 * (timers of the nodes' clocks, message deliveries, fsync completions, client actions) in one
 * queue ordered by (time, insertion order), and a {@link VirtualClock} gives one node the
 * {@link Clock} interface of the Raft driver on top of it, optionally running at its own rate
 * and with its event loop stalled for a while (its timers then fire late and an interval fires
 * once for all the periods it missed, as `setInterval` does after a long synchronous task).
 *
 * Nothing here reads the real clock or uses a real timer: a seeded run replays exactly.
 *
 * @module
 */
import type { Clock, TimerHandle } from "../clock.ts";

interface SchedEvent {
  at: number;
  seq: number;
  fn: () => void;
  cancelled: boolean;
}

/** A cancellable scheduled event. */
export interface EventRef {
  /** Prevents the event from running (no effect once it ran). */
  cancel(): void;
}

/** One queue of timed events: a binary heap ordered by (time, insertion order). */
export class Scheduler {
  /** The current virtual time in milliseconds. */
  now = 0;
  #heap: SchedEvent[] = [];
  #seq = 0;
  /** Events run so far. */
  events = 0;

  /** Runs `fn` at virtual time `at` (at least now). */
  at(at: number, fn: () => void): EventRef {
    if (Number.isNaN(at)) throw new RangeError("event scheduled at NaN");
    const ev: SchedEvent = { at: Math.max(at, this.now), seq: this.#seq++, fn, cancelled: false };
    this.#push(ev);
    return { cancel: () => void (ev.cancelled = true) };
  }

  /** Runs `fn` after `delay` virtual milliseconds. */
  after(delay: number, fn: () => void): EventRef {
    return this.at(this.now + Math.max(0, delay), fn);
  }

  /** The time of the next event that will run, or undefined when none is queued. */
  nextTime(): number | undefined {
    while (this.#heap.length > 0 && this.#heap[0].cancelled) this.#pop();
    return this.#heap[0]?.at;
  }

  /** Runs the next event if it is due at or before `until`; returns false otherwise. */
  runNext(until = Infinity): boolean {
    const t = this.nextTime();
    if (t === undefined || t > until) return false;
    const ev = this.#pop()!;
    this.now = ev.at;
    this.events++;
    ev.fn();
    return true;
  }

  /** Events queued (cancelled ones included until they reach the front). */
  size(): number {
    return this.#heap.length;
  }

  #less(a: SchedEvent, b: SchedEvent): boolean {
    return a.at < b.at || (a.at === b.at && a.seq < b.seq);
  }

  #push(ev: SchedEvent): void {
    const h = this.#heap;
    h.push(ev);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.#less(h[i], h[p])) break;
      [h[i], h[p]] = [h[p], h[i]];
      i = p;
    }
  }

  #pop(): SchedEvent | undefined {
    const h = this.#heap;
    if (h.length === 0) return undefined;
    const top = h[0];
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1, r = l + 1;
        let m = i;
        if (l < h.length && this.#less(h[l], h[m])) m = l;
        if (r < h.length && this.#less(h[r], h[m])) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m], h[i]];
        i = m;
      }
    }
    return top;
  }
}

interface Timer {
  fn: () => void;
  /** Period in local milliseconds for intervals, null for one-shot timers. */
  period: number | null;
  ref: EventRef;
}

/** One node's {@link Clock} on a {@link Scheduler}: local time runs at `rate` × virtual time. */
export class VirtualClock implements Clock {
  readonly #sched: Scheduler;
  #rate: number;
  /** Local time at virtual time `#since`. */
  #base: number;
  #since: number;
  #timers = new Map<TimerHandle, Timer>();
  #nextId = 1;
  #stalledUntil = -Infinity;
  #dead = false;

  /** A clock on `sched` whose local time starts at `start` and runs at `rate`. */
  constructor(sched: Scheduler, rate = 1, start = 0) {
    this.#sched = sched;
    this.#rate = rate;
    this.#base = start;
    this.#since = sched.now;
  }

  /** Local monotonic time in milliseconds. */
  now(): number {
    return this.#base + (this.#sched.now - this.#since) * this.#rate;
  }

  /** The rate of local time to virtual time. */
  get rate(): number {
    return this.#rate;
  }

  /** Changes the clock's rate from now on (timers already armed keep their virtual deadline). */
  setRate(rate: number): void {
    this.#base = this.now();
    this.#since = this.#sched.now;
    this.#rate = rate;
  }

  /** Stalls the event loop for `ms` virtual milliseconds: nothing scheduled fires before. */
  stall(ms: number): void {
    this.#stalledUntil = Math.max(this.#stalledUntil, this.#sched.now + ms);
  }

  /** True while stalled. */
  stalled(): boolean {
    return this.#sched.now < this.#stalledUntil;
  }

  /** The virtual time the current stall ends (in the past when not stalled). */
  get stalledUntil(): number {
    return this.#stalledUntil;
  }

  /** True once {@link kill} was called. */
  get dead(): boolean {
    return this.#dead;
  }

  /** Runs `fn` now, or when the stall ends; never once the clock is dead. */
  exec(fn: () => void): void {
    this.#whenAwake(fn);
  }

  /** Cancels every timer for good (the process died): later timers never fire. */
  kill(): void {
    this.#dead = true;
    for (const t of this.#timers.values()) t.ref.cancel();
    this.#timers.clear();
  }

  /** Timers armed. */
  pending(): number {
    return this.#timers.size;
  }

  /** Calls `fn` once after `ms` local milliseconds. */
  setTimeout(fn: () => void, ms: number): TimerHandle {
    return this.#arm(fn, ms, null);
  }

  /** Calls `fn` every `ms` local milliseconds. */
  setInterval(fn: () => void, ms: number): TimerHandle {
    return this.#arm(fn, ms, Math.max(ms, 0.001));
  }

  /** Cancels a timeout. */
  clearTimeout(handle: TimerHandle): void {
    this.#timers.get(handle)?.ref.cancel();
    this.#timers.delete(handle);
  }

  /** Cancels an interval. */
  clearInterval(handle: TimerHandle): void {
    this.clearTimeout(handle);
  }

  /** Runs `fn` after `ms` local milliseconds unless the clock is dead, waiting out a stall. */
  run(ms: number, fn: () => void): void {
    if (this.#dead) return;
    this.#sched.after(Math.max(0, ms) / this.#rate, () => this.#whenAwake(fn));
  }

  #whenAwake(fn: () => void): void {
    if (this.#dead) return;
    if (this.stalled()) {
      this.#sched.at(this.#stalledUntil, () => this.#whenAwake(fn));
      return;
    }
    fn();
  }

  #arm(fn: () => void, ms: number, period: number | null): TimerHandle {
    const id = this.#nextId++;
    if (this.#dead) return id;
    const timer: Timer = { fn, period, ref: { cancel() {} } };
    this.#timers.set(id, timer);
    this.#schedule(id, timer, Math.max(0, ms));
    return id;
  }

  #schedule(id: TimerHandle, timer: Timer, ms: number): void {
    timer.ref = this.#sched.after(ms / this.#rate, () => this.#fire(id, timer));
  }

  #fire(id: TimerHandle, timer: Timer): void {
    if (this.#dead || this.#timers.get(id) !== timer) return;
    if (this.stalled()) {
      // Fires once when the loop is free again (missed interval periods are not made up).
      timer.ref = this.#sched.at(this.#stalledUntil, () => this.#fire(id, timer));
      return;
    }
    if (timer.period === null) this.#timers.delete(id);
    else this.#schedule(id, timer, timer.period);
    timer.fn();
  }
}

/** Lets pending promise callbacks run: `rounds` turns of the microtask queue. */
export async function drainMicrotasks(rounds = 12): Promise<void> {
  for (let i = 0; i < rounds; i++) await Promise.resolve();
}
