/**
 * The in-memory Raft log shared by every {@link LogStore} backend: snapshot metadata, the live
 * entries after it and the hard state. The disk backends wrap it and persist its changes.
 *
 * @module
 */
import { CompactedError, type InitialState, UnavailableError } from "../raft/storage.ts";
import {
  type ConfState,
  emptyConfState,
  type Entry,
  type HardState,
  type SnapshotMeta,
} from "../raft/types.ts";
import { LogGapError } from "./errors.ts";

/** Copies a configuration. */
export function cloneConf(c: ConfState): ConfState {
  return {
    voters: [...c.voters],
    votersOutgoing: [...c.votersOutgoing],
    learners: [...c.learners],
    learnersNext: [...c.learnersNext],
  };
}

/** Copies snapshot metadata (`memberContexts` only when there are some). */
export function cloneMeta(m: SnapshotMeta): SnapshotMeta {
  const out: SnapshotMeta = { index: m.index, term: m.term, conf: cloneConf(m.conf) };
  if (m.memberContexts && m.memberContexts.length > 0) {
    out.memberContexts = m.memberContexts.map((c) => ({ id: c.id, context: c.context.slice() }));
  }
  return out;
}

/** The live log. `ents[i].index === snap.index + 1 + i`. */
export class LogCore {
  /** The latest snapshot's metadata (index 0 when none). */
  snap: SnapshotMeta = { index: 0, term: 0, conf: emptyConfState() };
  /** The entries after the snapshot. */
  ents: Entry[] = [];
  /** The hard state. */
  hs: HardState = { term: 0, vote: 0, commit: 0 };

  /** Snapshot index + 1. */
  firstIndex(): number {
    return this.snap.index + 1;
  }

  /** The last index (the snapshot index when empty). */
  lastIndex(): number {
    return this.snap.index + this.ents.length;
  }

  /** See {@link LogStore.term}. */
  term(index: number): number {
    if (index === this.snap.index) return this.snap.term;
    if (index < this.snap.index) throw new CompactedError(index);
    if (index > this.lastIndex()) throw new UnavailableError(index);
    return this.ents[index - this.snap.index - 1].term;
  }

  /** See {@link LogStore.entries}. */
  entries(lo: number, hi: number, maxBytes = Infinity): Entry[] {
    if (lo <= this.snap.index) throw new CompactedError(lo);
    if (hi > this.lastIndex() + 1) throw new UnavailableError(hi - 1);
    if (lo >= hi) return [];
    const off = this.snap.index + 1;
    const out: Entry[] = [this.ents[lo - off]];
    let size = out[0].data.length;
    for (let i = lo + 1; i < hi; i++) {
      const e = this.ents[i - off];
      size += e.data.length;
      if (size > maxBytes) break;
      out.push(e);
    }
    return out;
  }

  /**
   * Appends entries, replacing any suffix from `entries[0].index` on. Entries at or below the
   * snapshot index are skipped. Returns the entries actually added (what a backend persists).
   */
  append(entries: Entry[]): Entry[] {
    if (entries.length === 0) return entries;
    let first = entries[0].index;
    if (first <= this.snap.index) {
      entries = entries.slice(this.snap.index + 1 - first);
      if (entries.length === 0) return entries;
      first = entries[0].index;
    }
    const last = this.lastIndex();
    if (first > last + 1) throw new LogGapError(last + 1, first);
    for (let i = 1; i < entries.length; i++) {
      if (entries[i].index !== first + i) throw new LogGapError(first + i, entries[i].index);
    }
    this.ents.length = first - this.snap.index - 1;
    for (const e of entries) this.ents.push(e);
    return entries;
  }

  /**
   * Installs snapshot metadata received from a leader. Keeps the entries after it when the log
   * holds an entry matching its index and term; discards the whole log otherwise. Returns whether
   * entries were kept, or undefined when the snapshot is not newer than the current one.
   */
  install(meta: SnapshotMeta): boolean | undefined {
    if (meta.index <= this.snap.index) return undefined;
    const keep = meta.index <= this.lastIndex() && this.term(meta.index) === meta.term;
    this.#reset(meta, keep);
    return keep;
  }

  /**
   * Compacts behind a locally made snapshot: drops entries up to `meta.index`. Returns false when
   * the snapshot is not newer than the current one. Throws {@link UnavailableError} when the log
   * does not reach `meta.index`.
   */
  compact(meta: SnapshotMeta): boolean {
    if (meta.index <= this.snap.index) return false;
    if (meta.index > this.lastIndex()) throw new UnavailableError(meta.index);
    this.#reset(meta, true);
    return true;
  }

  /** Sets the snapshot to `meta`, keeping (or not) the entries after it. */
  #reset(meta: SnapshotMeta, keep: boolean): void {
    this.ents = keep ? this.ents.slice(meta.index - this.snap.index) : [];
    this.snap = cloneMeta(meta);
  }
}

/**
 * The read side of a {@link LogStore} answered from a {@link LogCore}: shared by every backend,
 * which add persistence (append, hard state, snapshots, sync).
 */
export abstract class LogCoreReads {
  /** The in-memory log the reads are answered from. */
  protected readonly core: LogCore = new LogCore();

  /** See {@link LogStore.initialState}. */
  initialState(): InitialState {
    return { hardState: { ...this.core.hs }, confState: cloneConf(this.core.snap.conf) };
  }

  /** See {@link LogStore.entries}. */
  entries(lo: number, hi: number, maxBytes?: number): Entry[] {
    return this.core.entries(lo, hi, maxBytes);
  }

  /** See {@link LogStore.term}. */
  term(index: number): number {
    return this.core.term(index);
  }

  /** See {@link LogStore.firstIndex}. */
  firstIndex(): number {
    return this.core.firstIndex();
  }

  /** See {@link LogStore.lastIndex}. */
  lastIndex(): number {
    return this.core.lastIndex();
  }

  /** See {@link LogStore.snapshotMeta}. */
  snapshotMeta(): SnapshotMeta {
    return cloneMeta(this.core.snap);
  }
}
