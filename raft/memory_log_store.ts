/**
 * A simple in-memory {@link LogStore} used by the raft tests, driver tests and benchmark. It
 * can simulate a crash: {@link MemoryLogStore.crash} drops whatever was not `sync()`ed.
 *
 * @module
 */
import { CompactedError, type InitialState, type LogStore, UnavailableError } from "./storage.ts";
import {
  emptyConfState,
  type Entry,
  type HardState,
  type Snapshot,
  type SnapshotMeta,
} from "./types.ts";

interface State {
  hs: HardState;
  snap: Snapshot;
  /** entries[i] has index snap.meta.index + 1 + i */
  ents: Entry[];
}

function cloneState(s: State): State {
  return { hs: { ...s.hs }, snap: s.snap, ents: s.ents.slice() };
}

/** An in-memory log store with an explicit durable copy. */
export class MemoryLogStore implements LogStore {
  private cur: State;
  private durable: State;
  /** Number of sync() calls (for tests). */
  syncCount = 0;
  /** Bytes of entry data appended (for tests and benchmarks). */
  appendedBytes = 0;

  /** @param crashable keep a durable copy on every sync so {@link crash} works (O(n) per sync;
   * benchmarks pass false). */
  constructor(private readonly crashable = true) {
    this.cur = {
      hs: { term: 0, vote: 0, commit: 0 },
      snap: { meta: { index: 0, term: 0, conf: emptyConfState() }, data: new Uint8Array(0) },
      ents: [],
    };
    this.durable = cloneState(this.cur);
  }

  /** Reopens: a new store seeing only what was synced (the rest is lost as in a crash). */
  crash(): MemoryLogStore {
    const s = new MemoryLogStore();
    s.cur = cloneState(this.durable);
    s.durable = cloneState(this.durable);
    return s;
  }

  initialState(): InitialState {
    return { hardState: { ...this.cur.hs }, confState: this.cur.snap.meta.conf };
  }

  entries(lo: number, hi: number, maxBytes = Infinity): Entry[] {
    const first = this.firstIndex();
    if (lo < first) throw new CompactedError(lo);
    if (hi > this.lastIndex() + 1) throw new UnavailableError(hi - 1);
    const off = this.cur.snap.meta.index + 1;
    const out: Entry[] = [];
    let size = 0;
    for (let i = lo; i < hi; i++) {
      const e = this.cur.ents[i - off];
      size += e.data.length + 16;
      if (out.length > 0 && size > maxBytes) break;
      out.push(e);
    }
    return out;
  }

  term(index: number): number {
    const si = this.cur.snap.meta.index;
    if (index === si) return this.cur.snap.meta.term;
    if (index < si) throw new CompactedError(index);
    if (index > this.lastIndex()) throw new UnavailableError(index);
    return this.cur.ents[index - si - 1].term;
  }

  firstIndex(): number {
    return this.cur.snap.meta.index + 1;
  }

  lastIndex(): number {
    return this.cur.snap.meta.index + this.cur.ents.length;
  }

  snapshotMeta(): SnapshotMeta {
    return this.cur.snap.meta;
  }

  snapshot(): Snapshot {
    return this.cur.snap;
  }

  append(entries: Entry[]): void {
    if (entries.length === 0) return;
    const first = this.firstIndex();
    let es = entries;
    if (es[es.length - 1].index < first) return;
    if (es[0].index < first) es = es.slice(first - es[0].index);
    const at = es[0].index - first;
    if (at > this.cur.ents.length) {
      throw new Error(`append: gap (last ${this.lastIndex()}, got ${es[0].index})`);
    }
    if (at < this.cur.ents.length) this.cur.ents.length = at;
    for (const e of es) {
      this.cur.ents.push(e);
      this.appendedBytes += e.data.length;
    }
  }

  setHardState(hs: HardState): void {
    this.cur.hs = { ...hs };
  }

  applySnapshot(snap: Snapshot): void {
    const i = snap.meta.index;
    let keep: Entry[] = [];
    if (i <= this.lastIndex() && i >= this.firstIndex() && this.term(i) === snap.meta.term) {
      keep = this.cur.ents.slice(i - this.cur.snap.meta.index);
    }
    this.cur.snap = snap;
    this.cur.ents = keep;
    if (this.cur.hs.commit < i) this.cur.hs = { ...this.cur.hs, commit: i };
  }

  createSnapshot(snap: Snapshot): void {
    const i = snap.meta.index;
    if (i <= this.cur.snap.meta.index) return;
    if (i > this.lastIndex()) throw new UnavailableError(i);
    const keep = this.cur.ents.slice(i - this.cur.snap.meta.index);
    this.cur.snap = snap;
    this.cur.ents = keep;
  }

  sync(): Promise<void> {
    this.syncNow();
    return Promise.resolve();
  }

  /** Like sync() but synchronous (for deterministic tests and the benchmark). */
  syncNow(): void {
    this.syncCount++;
    if (this.crashable) this.durable = cloneState(this.cur);
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
