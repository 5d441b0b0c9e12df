/**
 * The Raft log as the core sees it: the durable {@link LogStore} plus an in-memory "unstable"
 * tail of entries (and possibly a received snapshot) that the driver has not persisted yet,
 * together with the commit and apply cursors.
 *
 * @module
 */
import { CompactedError, type LogStore, UnavailableError } from "./storage.ts";
import type { Entry, Snapshot } from "./types.ts";

/** Sums the payload sizes of entries (the unit of the byte limits). */
export function entrySize(e: Entry): number {
  return e.data.length + 16;
}

/** Entries not yet persisted, starting at `offset`, maybe preceded by an unpersisted snapshot. */
class Unstable {
  snapshot: Snapshot | null = null;
  entries: Entry[] = [];
  offset: number;
  /** Entries below this index were already handed out in a Ready. */
  offsetInProgress: number;
  snapshotInProgress = false;

  constructor(offset: number) {
    this.offset = offset;
    this.offsetInProgress = offset;
  }

  maybeLastIndex(): number | undefined {
    if (this.entries.length) return this.offset + this.entries.length - 1;
    if (this.snapshot) return this.snapshot.meta.index;
    return undefined;
  }

  maybeTerm(i: number): number | undefined {
    if (i < this.offset) {
      if (this.snapshot && this.snapshot.meta.index === i) return this.snapshot.meta.term;
      return undefined;
    }
    const last = this.maybeLastIndex();
    if (last === undefined || i > last) return undefined;
    return this.entries[i - this.offset].term;
  }

  nextEntries(): Entry[] {
    const start = this.offsetInProgress - this.offset;
    if (start >= this.entries.length) return [];
    return start <= 0 ? this.entries.slice() : this.entries.slice(start);
  }

  acceptInProgress(): void {
    if (this.entries.length) {
      this.offsetInProgress = this.offset + this.entries.length;
    }
    if (this.snapshot) this.snapshotInProgress = true;
  }

  stableTo(i: number, t: number): void {
    const gt = this.maybeTerm(i);
    if (gt === undefined || gt !== t || i < this.offset) return;
    const n = i + 1 - this.offset;
    this.entries = n >= this.entries.length ? [] : this.entries.slice(n);
    this.offset = i + 1;
    if (this.offsetInProgress < this.offset) this.offsetInProgress = this.offset;
  }

  stableSnapTo(i: number): void {
    if (this.snapshot && this.snapshot.meta.index === i) {
      this.snapshot = null;
      this.snapshotInProgress = false;
    }
  }

  restore(s: Snapshot): void {
    this.offset = s.meta.index + 1;
    this.offsetInProgress = this.offset;
    this.entries = [];
    this.snapshot = s;
    this.snapshotInProgress = false;
  }

  truncateAndAppend(ents: Entry[]): void {
    const from = ents[0].index;
    const end = this.offset + this.entries.length;
    if (from === end) {
      for (const e of ents) this.entries.push(e);
    } else if (from <= this.offset) {
      this.offset = from;
      this.entries = ents.slice();
    } else {
      this.entries = this.entries.slice(0, from - this.offset);
      for (const e of ents) this.entries.push(e);
    }
    if (this.offsetInProgress > from) this.offsetInProgress = from;
  }

  slice(lo: number, hi: number): Entry[] {
    return this.entries.slice(lo - this.offset, hi - this.offset);
  }
}

/** The core's view of the log. */
export class RaftLog {
  readonly storage: LogStore;
  readonly unstable: Unstable;
  /** Highest index known committed. */
  committed: number;
  /** Highest index handed out for application in a Ready. */
  applying: number;
  /** Highest index the application reported applied. */
  applied: number;

  constructor(storage: LogStore) {
    this.storage = storage;
    const first = storage.firstIndex();
    const last = storage.lastIndex();
    this.unstable = new Unstable(last + 1);
    this.committed = first - 1;
    this.applied = first - 1;
    this.applying = first - 1;
  }

  firstIndex(): number {
    if (this.unstable.snapshot) return this.unstable.snapshot.meta.index + 1;
    return this.storage.firstIndex();
  }

  lastIndex(): number {
    const u = this.unstable.maybeLastIndex();
    if (u !== undefined) return u;
    return this.storage.lastIndex();
  }

  /** The last index that is durable (not waiting in the unstable tail). */
  persistedLastIndex(): number {
    if (this.unstable.snapshot) return 0;
    if (this.unstable.entries.length) return this.unstable.offset - 1;
    return this.storage.lastIndex();
  }

  /** The term at `i`; throws CompactedError/UnavailableError when out of range. */
  term(i: number): number {
    const t = this.unstable.maybeTerm(i);
    if (t !== undefined) return t;
    const dummy = this.firstIndex() - 1;
    if (i < dummy) throw new CompactedError(i);
    if (i > this.lastIndex()) throw new UnavailableError(i);
    return this.storage.term(i);
  }

  /** The term at `i`, or undefined when it is out of range (no exception on the hot path: a
   * follower asks for the term of every new entry it appends). */
  #termIfAvailable(i: number): number | undefined {
    const t = this.unstable.maybeTerm(i);
    if (t !== undefined) return t;
    if (i < this.firstIndex() - 1 || i > this.lastIndex()) return undefined;
    try {
      return this.storage.term(i);
    } catch {
      return undefined;
    }
  }

  /** The term at `i`, or 0 when it is not available. */
  termOrZero(i: number): number {
    return this.#termIfAvailable(i) ?? 0;
  }

  lastTerm(): number {
    return this.termOrZero(this.lastIndex());
  }

  matchTerm(i: number, t: number): boolean {
    const term = this.#termIfAvailable(i);
    return term !== undefined && term === t;
  }

  /** Raft §5.4.1: is a log ending at (lasti, term) at least as up to date as ours? */
  isUpToDate(lasti: number, term: number): boolean {
    const lt = this.lastTerm();
    return term > lt || (term === lt && lasti >= this.lastIndex());
  }

  /** The index of the first entry whose term conflicts with ours (0 if none; or the first new). */
  findConflict(ents: Entry[]): number {
    for (const e of ents) {
      if (!this.matchTerm(e.index, e.term)) return e.index;
    }
    return 0;
  }

  /**
   * The largest index ≤ `index` whose term is ≤ `term` (for the fast backtracking hint); returns
   * `index` itself when its term is unknown.
   */
  findConflictByTerm(index: number, term: number): number {
    for (let i = index; i > 0; i--) {
      let t: number;
      try {
        t = this.term(i);
      } catch {
        return i;
      }
      if (t <= term) return i;
    }
    return 0;
  }

  /**
   * Appends leader entries after (index, logTerm) if they match; returns the last new index or
   * -1 on mismatch. Truncates only from the first real conflict.
   */
  maybeAppend(index: number, logTerm: number, committed: number, ents: Entry[]): number {
    if (!this.matchTerm(index, logTerm)) return -1;
    const lastnewi = index + ents.length;
    const ci = this.findConflict(ents);
    if (ci !== 0) {
      if (ci <= this.committed) {
        // A committed entry conflicts: impossible with a correct leader; refuse quietly.
        return -1;
      }
      this.append(ents.slice(ci - (index + 1)));
    }
    this.commitTo(Math.min(committed, lastnewi));
    return lastnewi;
  }

  /** Appends entries to the unstable tail (truncating a conflicting suffix). */
  append(ents: Entry[]): number {
    if (ents.length === 0) return this.lastIndex();
    this.unstable.truncateAndAppend(ents);
    return this.lastIndex();
  }

  commitTo(c: number): void {
    if (c > this.committed) {
      const last = this.lastIndex();
      this.committed = c > last ? last : c;
    }
  }

  appliedTo(i: number): void {
    if (i > this.applied) this.applied = i;
    if (i > this.applying) this.applying = i;
  }

  /** Entries in [lo, hi), at most `maxBytes` after the first. */
  slice(lo: number, hi: number, maxBytes = Infinity): Entry[] {
    if (lo >= hi) return [];
    const first = this.firstIndex();
    if (lo < first) throw new CompactedError(lo);
    const last = this.lastIndex();
    if (hi > last + 1) hi = last + 1;
    let out: Entry[] = [];
    const off = this.unstable.offset;
    if (lo < off) {
      out = this.storage.entries(lo, Math.min(hi, off), maxBytes);
      if (out.length < Math.min(hi, off) - lo) return out; // limited by size
    }
    if (hi > off) {
      const u = this.unstable.slice(Math.max(lo, off), hi);
      if (out.length === 0) out = u;
      else for (const e of u) out.push(e);
    }
    return limitSize(out, maxBytes);
  }

  /** Entries from `i` on, limited by size. */
  entriesFrom(i: number, maxBytes: number): Entry[] {
    if (i > this.lastIndex()) return [];
    return this.slice(i, this.lastIndex() + 1, maxBytes);
  }

  hasNextCommittedEnts(): boolean {
    if (this.unstable.snapshot) return false;
    return this.committed > this.applying;
  }

  nextCommittedEnts(maxBytes: number): Entry[] {
    if (!this.hasNextCommittedEnts()) return [];
    const lo = Math.max(this.applying + 1, this.firstIndex());
    return this.slice(lo, this.committed + 1, maxBytes);
  }

  stableTo(i: number, t: number): void {
    this.unstable.stableTo(i, t);
  }

  stableSnapTo(i: number): void {
    this.unstable.stableSnapTo(i);
  }

  /** Replaces the log with a received snapshot (kept unstable until persisted). */
  restore(s: Snapshot): void {
    this.committed = s.meta.index;
    this.unstable.restore(s);
  }
}

function limitSize(ents: Entry[], maxBytes: number): Entry[] {
  if (maxBytes === Infinity || ents.length <= 1) return ents;
  let size = entrySize(ents[0]);
  let n = 1;
  for (; n < ents.length; n++) {
    size += entrySize(ents[n]);
    if (size > maxBytes) break;
  }
  return n === ents.length ? ents : ents.slice(0, n);
}
