/**
 * Watches: a node's bounded history of committed user-key changes, and the reads watchers make
 * of it.
 *
 * The hub listens to the state machine's applied batches (`onChanges`) and keeps the changes of
 * the most recent commits, grouped per Raft entry (a batch entry holds many client commits, each
 * with its own versionstamp (index, position): an event's is that of its last change), bounded by
 * count and bytes (`limits.watch_history_events`, `limits.watch_history_bytes`). The history is
 * complete after its *floor*: the applied index when the hub attached (before the node replays its
 * log), raised when old commits are dropped or a snapshot replaces the state. A watch resuming
 * after a versionstamp at or above the floor gets every matching change after it, in commit
 * order; one below it gets {@link WatchCompactedError} naming the floor's versionstamp (the
 * oldest it can resume after), never a silent gap. Inside the floor entry itself (after a write of
 * a batch entry), a resume is served when nothing of that entry follows it: the hub knows the
 * position of the entry's last change when it dropped the entry from the history, and at start
 * from the state machine, which records it with the applied index
 * (`KvStateMachine.appliedLastChange`); when it is not known (after a snapshot install, or a
 * state written by an earlier version), such a resume is refused.
 *
 * A watch without `after` starts with the current state of its keys and prefixes, read from one
 * view of the state machine together with the applied index it reflects: the changes that follow
 * are exactly those of later commits.
 *
 * @module
 */
import type { KvChange, KvStateMachine } from "../storage/kv_state_machine.ts";
import {
  type KvEntry,
  makeVersionstamp,
  THROUGH_POSITION,
  throughVersionstamp,
  type ValueEncoding,
  VERSIONSTAMP_BYTES,
  versionstampHex,
  versionstampIndex,
  versionstampPosition,
} from "../storage/kv_model.ts";
import { hasPrefix } from "../storage/bytes.ts";
import { InvalidArgumentError, WatchCompactedError } from "../client/errors.ts";
import {
  checkKey,
  LimitError,
  MAX_WATCH_INITIAL_ENTRIES,
  MAX_WATCH_SELECTORS,
} from "../config/limits.ts";

/** What a watch selects: exact keys and key prefixes (at least one of either). */
export interface WatchSelector {
  /** Exact keys. */
  keys: Uint8Array[];
  /** Key prefixes (an empty prefix selects every key). */
  prefixes: Uint8Array[];
}

/** One commit's changes of selected keys. */
export interface WatchEvent {
  /** The versionstamp of its last change (a batch entry's commits share one event). */
  versionstamp: Uint8Array;
  /** The changed keys: the new entry, or null when deleted (also by expiry). */
  changes: { key: Uint8Array; entry: KvEntry | null }[];
}

/** A watch's initial state. */
export interface WatchInitial {
  /** The versionstamp of the applied index the state reflects (resume after it). */
  versionstamp: Uint8Array;
  /** The selected keys with their entries (null: absent): the exact keys, then every key under
   * each prefix. */
  entries: { key: Uint8Array; entry: KvEntry | null }[];
}

/** The answer to one poll of a watch. */
export interface WatchPoll {
  /** Present when the poll had no `after`: the current state. */
  initial?: WatchInitial;
  /** Matching commits after `after` (or after the initial state), in commit order. */
  events: WatchEvent[];
  /** The versionstamp through which this answer is complete: the `after` of the next poll. */
  position: Uint8Array;
}

/**
 * The commits of one applied batch: their changes packed in `buf` (one buffer per batch), and
 * per commit three numbers in `meta` (its index, the end of its changes in `buf` — a commit
 * starts where the previous one ends — and what it counts against `watch_history_bytes`). What
 * the history retains is thus a few objects per applied batch, none per commit or change: objects
 * kept per commit survive the young generation, and scavenges copying and promoting them cost a
 * put workload more than the packing does.
 */
interface Batch {
  buf: Uint8Array;
  meta: Float64Array;
  /** Commits in the batch. */
  n: number;
  /** The first commit not yet dropped. */
  first: number;
}

/** Numbers per commit in {@link Batch.meta}: index, end, bytes, position of its last change. */
const META = 4;

/** Flags of a packed change. */
const DELETED = 1, EXPIRES = 2;

/**
 * The packed form of a change: flags u8, encoding u8, versionstamp (10 bytes), expireAt f64 (if
 * EXPIRES), key length u32 + key, value length u32 + value (absent if DELETED); big-endian.
 */
function packedSize(c: KvChange): number {
  const e = c.entry;
  return 2 + VERSIONSTAMP_BYTES + 4 + c.key.length +
    (e ? 4 + e.value.length + (e.expireAt !== undefined ? 8 : 0) : 0);
}

/** Copies `src` into `dst` at `at` (a loop for short arrays: TypedArray.set costs more there). */
function copyInto(src: Uint8Array, dst: Uint8Array, at: number): void {
  if (src.length > 32) dst.set(src, at);
  else for (let i = 0; i < src.length; i++) dst[at + i] = src[i];
}

function pack(c: KvChange, buf: Uint8Array, dv: DataView, at: number): number {
  const e = c.entry;
  buf[at] = e ? (e.expireAt !== undefined ? EXPIRES : 0) : DELETED;
  buf[at + 1] = e ? e.encoding : 0;
  copyInto(c.versionstamp, buf, at + 2);
  at += 2 + VERSIONSTAMP_BYTES;
  if (e?.expireAt !== undefined) {
    dv.setFloat64(at, e.expireAt);
    at += 8;
  }
  dv.setUint32(at, c.key.length);
  copyInto(c.key, buf, at + 4);
  at += 4 + c.key.length;
  if (e) {
    dv.setUint32(at, e.value.length);
    copyInto(e.value, buf, at + 4);
    at += 4 + e.value.length;
  }
  return at;
}

/** Where the versionstamp of the last change {@link unpackMatching} returned starts. */
let lastMatchVsAt = 0;

/** The changes packed in `b[start, end)` whose keys `sel` selects (copies, in commit order; with
 * `afterPos`, only those whose versionstamp position is after it). */
function unpackMatching(
  b: Uint8Array,
  start: number,
  end: number,
  sel: WatchSelector,
  afterPos = -1,
): WatchEvent["changes"] {
  const out: WatchEvent["changes"] = [];
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  for (let at = start; at < end;) {
    const flags = b[at], encoding = b[at + 1];
    const vsAt = at + 2;
    at += 2 + VERSIONSTAMP_BYTES;
    let expireAt: number | undefined;
    if (flags & EXPIRES) {
      expireAt = dv.getFloat64(at);
      at += 8;
    }
    const keyLen = dv.getUint32(at);
    const key = b.subarray(at + 4, at + 4 + keyLen);
    at += 4 + keyLen;
    let valueAt = 0, valueLen = 0;
    if (!(flags & DELETED)) {
      valueLen = dv.getUint32(at);
      valueAt = at + 4;
      at = valueAt + valueLen;
    }
    if (!matches(sel, key)) continue;
    if (afterPos >= 0 && ((b[vsAt + 8] << 8) | b[vsAt + 9]) <= afterPos) continue;
    lastMatchVsAt = vsAt;
    const k = key.slice();
    if (flags & DELETED) {
      out.push({ key: k, entry: null });
      continue;
    }
    const entry: KvEntry = {
      key: k,
      value: b.slice(valueAt, valueAt + valueLen),
      encoding: encoding as ValueEncoding,
      versionstamp: b.slice(vsAt, vsAt + VERSIONSTAMP_BYTES),
    };
    if (expireAt !== undefined) entry.expireAt = expireAt;
    out.push({ key: k, entry });
  }
  return out;
}

/** Checks a selector against the limits. */
export function checkSelector(sel: WatchSelector): void {
  if (!Array.isArray(sel.keys) || !Array.isArray(sel.prefixes)) {
    throw new InvalidArgumentError("a watch has a list of keys and a list of prefixes");
  }
  const n = sel.keys.length + sel.prefixes.length;
  if (n === 0) throw new InvalidArgumentError("a watch needs at least one key or prefix");
  if (n > MAX_WATCH_SELECTORS) throw new LimitError("watch_selectors", MAX_WATCH_SELECTORS, n);
  for (const k of sel.keys) {
    if (k.length === 0) throw new InvalidArgumentError("empty key");
    checkKey(k);
  }
  for (const p of sel.prefixes) checkKey(p);
}

function matches(sel: WatchSelector, key: Uint8Array): boolean {
  for (const k of sel.keys) {
    if (k.length === key.length && hasPrefix(key, k)) return true;
  }
  for (const p of sel.prefixes) if (hasPrefix(key, p)) return true;
  return false;
}

/** The bounded change history of one node and the waits on it. */
export class WatchHub {
  #batches: Batch[] = [];
  #head = 0;
  #size = 0;
  #bytes = 0;
  #floor: number;
  /** The position of the floor entry's last change when known (-1: it changed nothing; known when
   * the entry was trimmed from the history, or at start from the state machine), else
   * {@link THROUGH_POSITION}: a resume after a position inside the floor entry is served only
   * when nothing of that entry follows it. */
  #floorLastPos: number;
  #last: number;
  #waiters = new Set<() => void>();

  /** Attaches to `sm` (before the node replays its log). */
  constructor(
    private readonly sm: KvStateMachine,
    private readonly limits: { maxEvents: number; maxBytes: number },
  ) {
    this.#floor = sm.appliedIndex();
    this.#floorLastPos = sm.appliedLastChange() ?? THROUGH_POSITION;
    this.#last = this.#floor;
    const prevChanges = sm.onChanges;
    sm.onChanges = (changes) => {
      prevChanges?.(changes);
      this.#record(changes);
    };
    const prevReset = sm.onReset;
    sm.onReset = (index) => {
      prevReset?.(index);
      this.#reset(index);
    };
  }

  /** The oldest versionstamp a watch can resume after. */
  get floor(): Uint8Array {
    return throughVersionstamp(this.#floor);
  }

  /** Commits held. */
  get size(): number {
    return this.#size;
  }

  /** Bytes held. */
  get bytes(): number {
    return this.#bytes;
  }

  #record(changes: KvChange[]): void {
    if (changes.length === 0) return;
    let size = 0;
    for (let i = 0; i < changes.length; i++) size += packedSize(changes[i]);
    const buf = new Uint8Array(size);
    const dv = new DataView(buf.buffer);
    // At most one commit per change; usually one per change (one put per entry).
    const meta = new Float64Array(META * changes.length);
    let n = 0;
    let at = 0;
    let top = -1;
    for (let i = 0; i < changes.length; i++) {
      const c = changes[i];
      const index = versionstampIndex(c.versionstamp);
      const bytes = c.key.length + (c.entry?.value.length ?? 0) + 32;
      at = pack(c, buf, dv, at);
      if (n > 0 && meta[top] === index) {
        meta[top + 1] = at;
        meta[top + 2] += bytes;
      } else {
        top = META * n++;
        meta[top] = index;
        meta[top + 1] = at;
        meta[top + 2] = bytes;
      }
      meta[top + 3] = versionstampPosition(c.versionstamp);
      this.#bytes += bytes;
      if (index > this.#last) this.#last = index;
    }
    this.#batches.push({ buf, meta, n, first: 0 });
    this.#size += n;
    this.#trim();
    if (this.#waiters.size > 0) { for (const w of [...this.#waiters]) w(); }
  }

  #trim(): void {
    while (
      this.#size > 1 &&
      (this.#size > this.limits.maxEvents || this.#bytes > this.limits.maxBytes)
    ) {
      const b = this.#batches[this.#head];
      const m = META * b.first++;
      this.#bytes -= b.meta[m + 2];
      this.#floor = b.meta[m];
      this.#floorLastPos = b.meta[m + 3];
      this.#size--;
      if (b.first === b.n) this.#head++;
    }
    if (this.#head > 1024 && this.#head * 2 > this.#batches.length) {
      this.#batches = this.#batches.slice(this.#head);
      this.#head = 0;
    }
  }

  #reset(index: number): void {
    this.#batches = [];
    this.#head = 0;
    this.#size = 0;
    this.#bytes = 0;
    if (index > this.#floor) this.#floorLastPos = THROUGH_POSITION;
    this.#floor = Math.max(this.#floor, index);
    this.#last = Math.max(this.#last, index);
    for (const w of [...this.#waiters]) w();
  }

  /** The matching commits after versionstamp (`after`, `afterPos`) (at most `max`), and the
   * entry index through which they are complete. A commit is one entry: of the entry `after`
   * itself (a batch entry), only the changes after position `afterPos`. Throws
   * {@link WatchCompactedError} when the history no longer reaches back to `after`. */
  since(
    sel: WatchSelector,
    after: number,
    max: number,
    afterPos: number = THROUGH_POSITION,
  ): { events: WatchEvent[]; position: number } {
    const partial = afterPos < THROUGH_POSITION;
    if (
      after < this.#floor || (partial && after === this.#floor && afterPos < this.#floorLastPos)
    ) {
      throw new WatchCompactedError(
        `this node's change history starts after ${versionstampHex(this.floor)}; ` +
          `cannot resume after ${versionstampHex(makeVersionstamp(after, afterPos))}`,
        versionstampHex(this.floor),
      );
    }
    // Of the entry `after` itself, the changes after `afterPos` are still to come.
    if (partial) after--;
    const events: WatchEvent[] = [];
    let position = Math.max(after, this.#last);
    const batches = this.#batches;
    // Binary search for the first batch whose last commit is after `after`.
    let lo = this.#head;
    let hi = batches.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const b = batches[mid];
      if (b.meta[META * (b.n - 1)] <= after) lo = mid + 1;
      else hi = mid;
    }
    // The index of the commit before the one being looked at (where an answer cut short by
    // `max` is complete).
    let prev = after;
    outer: for (let bi = lo; bi < batches.length; bi++) {
      const b = batches[bi];
      for (let i = b.first; i < b.n; i++) {
        const m = META * i;
        const index = b.meta[m];
        if (index <= after) continue;
        const start = i === 0 ? 0 : b.meta[m - META + 1];
        const changes = unpackMatching(
          b.buf,
          start,
          b.meta[m + 1],
          sel,
          partial && index === after + 1 ? afterPos : -1,
        );
        if (changes.length > 0) {
          if (events.length === max) {
            position = prev;
            break outer;
          }
          // The stamp of its last change: resuming after it continues inside a batch entry.
          const vs = b.buf.slice(lastMatchVsAt, lastMatchVsAt + VERSIONSTAMP_BYTES);
          events.push({ versionstamp: vs, changes });
        }
        prev = index;
      }
    }
    return { events, position };
  }

  /** Resolves when a commit after index `after` arrives (or the state is reset), after
   * `timeoutMs`, or when `signal` aborts. */
  wait(after: number, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    if (this.#last > after || signal?.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#waiters.delete(done);
        signal?.removeEventListener("abort", done);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      this.#waiters.add(done);
      signal?.addEventListener("abort", done);
    });
  }

  /**
   * One poll: without `after`, the initial state and what followed it; with `after`, the
   * matching commits after it — waiting up to `waitMs` (or until `signal` aborts) for at least
   * one. At most `max` commits.
   */
  async poll(
    sel: WatchSelector,
    after: Uint8Array | undefined,
    waitMs: number,
    max: number,
    signal?: AbortSignal,
  ): Promise<WatchPoll> {
    let initial: WatchInitial | undefined;
    let from: number;
    let fromPos = THROUGH_POSITION;
    if (after === undefined) {
      let st;
      try {
        st = await this.sm.watchState(sel.keys, sel.prefixes, MAX_WATCH_INITIAL_ENTRIES);
      } catch (e) {
        if (e instanceof RangeError) {
          throw new LimitError(
            "watch_initial_entries",
            MAX_WATCH_INITIAL_ENTRIES,
            undefined,
            `${e.message}: start the watch with an "after" versionstamp`,
          );
        }
        throw e;
      }
      from = st.appliedIndex;
      initial = {
        versionstamp: throughVersionstamp(from),
        entries: [
          ...sel.keys.map((key, i) => ({ key, entry: st.keys[i] })),
          ...st.prefixes.flat().map((e) => ({ key: e.key, entry: e })),
        ],
      };
      // The view is newer than the history's floor only if the history reached it: a view
      // older than the floor (a reset since) cannot be continued.
      if (from < this.#floor) {
        throw new WatchCompactedError(
          "the state was replaced while the watch started; start again",
          versionstampHex(this.floor),
        );
      }
    } else {
      from = versionstampIndex(after);
      fromPos = versionstampPosition(after);
    }
    const deadline = Date.now() + waitMs;
    for (;;) {
      const r = this.since(sel, from, max, fromPos);
      // Inside entry `from` (a partial resume) on a node that has not applied it yet: the
      // answer is complete only through `from - 1`, below `after`; stay at `after`.
      const reached = r.position >= from;
      const left = deadline - Date.now();
      if (initial || r.events.length > 0 || left <= 0 || signal?.aborted) {
        return {
          initial,
          events: r.events,
          position: reached ? throughVersionstamp(r.position) : makeVersionstamp(from, fromPos),
        };
      }
      // Nothing matched yet: continue from where this answer is complete.
      if (reached) {
        from = r.position;
        fromPos = THROUGH_POSITION;
      }
      await this.wait(fromPos < THROUGH_POSITION ? from - 1 : from, left, signal);
    }
  }
}
