/**
 * An in-memory {@link LogStore} for the simulator with an explicit durable part: writes go to a
 * volatile view at once (so reads see them) and are recorded as pending operations; `syncNow()`
 * replays the pending operations onto the durable view. `crash()` throws the volatile view away
 * and reopens from the durable one, which is exactly what a power loss does to unsynced writes.
 *
 * @module
 */
import type { LogStore } from "../storage.ts";
import { CompactedError, type InitialState, UnavailableError } from "../storage.ts";
import {
  type ConfState,
  emptyConfState,
  type Entry,
  type HardState,
  type Snapshot,
  type SnapshotMeta,
} from "../types.ts";

/** One view of the store's contents (volatile or durable). */
interface View {
  hardState: HardState;
  snapshot: Snapshot;
  /** Entries after the snapshot index, contiguous. */
  entries: Entry[];
}

type PendingOp =
  | { kind: "append"; entries: Entry[] }
  | { kind: "hardState"; hs: HardState }
  | { kind: "applySnapshot"; snap: Snapshot }
  | { kind: "createSnapshot"; snap: Snapshot };

/** Thrown when the store is used in a way a real backend would refuse (a gap in the log...). */
export class SimStoreError extends Error {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "SimStoreError";
  }
}

/** Observes every entry appended (the simulator's log-matching check hooks in here). */
export type AppendObserver = (entries: readonly Entry[], store: SimLogStore) => void;

/** The simulator's log store: volatile view, durable view, and the operations between them. */
export class SimLogStore implements LogStore {
  #live: View;
  #durable: View;
  #pending: PendingOp[] = [];
  /** Called after each `append` with the appended entries. */
  onAppend: AppendObserver | null = null;
  /** How many times `syncNow()` made something durable. */
  syncs = 0;
  /** Fault injection for testing the simulator itself: when true, `sync()` silently leaves the
   * hard state (term, vote, commit) volatile, like a disk that lies about flushing it. */
  lieAboutHardState = false;

  /** Creates an empty store. */
  constructor() {
    this.#durable = emptyView();
    this.#live = cloneView(this.#durable);
  }

  /** The hard state and configuration as of the last snapshot. */
  initialState(): InitialState {
    return {
      hardState: { ...this.#live.hardState },
      confState: cloneConf(this.#live.snapshot.meta.conf),
    };
  }

  /** Entries in [lo, hi), limited by `maxBytes` after the first. */
  entries(lo: number, hi: number, maxBytes = Infinity): Entry[] {
    const first = this.firstIndex();
    if (lo < first) throw new CompactedError(lo);
    if (hi > this.lastIndex() + 1) throw new UnavailableError(hi - 1);
    const out: Entry[] = [];
    let bytes = 0;
    for (let i = lo; i < hi; i++) {
      const e = this.#live.entries[i - first];
      bytes += e.data.length;
      if (out.length > 0 && bytes > maxBytes) break;
      out.push(e);
    }
    return out;
  }

  /** The term at `index` (the snapshot's term at the snapshot index). */
  term(index: number): number {
    const snapIndex = this.#live.snapshot.meta.index;
    if (index === snapIndex) return this.#live.snapshot.meta.term;
    if (index < snapIndex) throw new CompactedError(index);
    if (index > this.lastIndex()) throw new UnavailableError(index);
    return this.#live.entries[index - snapIndex - 1].term;
  }

  /** Snapshot index + 1. */
  firstIndex(): number {
    return this.#live.snapshot.meta.index + 1;
  }

  /** The last index (the snapshot index when empty). */
  lastIndex(): number {
    return this.#live.snapshot.meta.index + this.#live.entries.length;
  }

  /** The latest snapshot's metadata. */
  snapshotMeta(): SnapshotMeta {
    return this.#live.snapshot.meta;
  }

  /** The latest snapshot. */
  snapshot(): Snapshot {
    return this.#live.snapshot;
  }

  /** Appends entries, replacing any at or after `entries[0].index`. */
  append(entries: Entry[]): void {
    if (entries.length === 0) return;
    applyOp(this.#live, { kind: "append", entries });
    this.#pending.push({ kind: "append", entries });
    this.onAppend?.(entries, this);
  }

  /** Records a hard state. */
  setHardState(hs: HardState): void {
    const op: PendingOp = { kind: "hardState", hs: { ...hs } };
    applyOp(this.#live, op);
    this.#pending.push(op);
  }

  /** Installs a received snapshot. */
  applySnapshot(snap: Snapshot): void {
    const op: PendingOp = { kind: "applySnapshot", snap };
    applyOp(this.#live, op);
    this.#pending.push(op);
  }

  /** Stores a locally made snapshot and compacts the log up to it. */
  createSnapshot(snap: Snapshot): void {
    const op: PendingOp = { kind: "createSnapshot", snap };
    applyOp(this.#live, op);
    this.#pending.push(op);
  }

  /** Makes every pending write durable. */
  sync(): Promise<void> {
    this.syncNow();
    return Promise.resolve();
  }

  /** Synchronous `sync()` for the simulator's single-threaded loop: makes the first `count`
   * pending writes durable (default: all of them). */
  syncNow(count = Infinity): void {
    if (this.#pending.length === 0 || count <= 0) return;
    const ops = this.#pending.splice(0, count);
    for (const op of ops) {
      if (this.lieAboutHardState && op.kind === "hardState") continue;
      applyOp(this.#durable, op);
    }
    this.syncs++;
  }

  /** Writes waiting for a sync. */
  pendingWrites(): number {
    return this.#pending.length;
  }

  /** Nothing to release. */
  close(): Promise<void> {
    return Promise.resolve();
  }

  /** True when writes are waiting for a sync. */
  hasUnsynced(): boolean {
    return this.#pending.length > 0;
  }

  /** Simulates a power loss: everything not synced is lost. */
  crash(): void {
    this.#pending = [];
    this.#live = cloneView(this.#durable);
  }

  /** The durable hard state (what a restart will load). */
  durableHardState(): HardState {
    return { ...this.#durable.hardState };
  }

  /** The durable snapshot (what a restarted state machine restores). */
  durableSnapshot(): Snapshot {
    return this.#durable.snapshot;
  }

  /** Whether entry (`index`, `term`) survives a crash: in the durable log, or covered by the
   * durable snapshot. */
  durablyHas(index: number, term: number): boolean {
    const d = this.#durable;
    if (index <= d.snapshot.meta.index) return true;
    const e = d.entries[index - d.snapshot.meta.index - 1];
    return e !== undefined && e.index === index && e.term === term;
  }
}

function emptyView(): View {
  return {
    hardState: { term: 0, vote: 0, commit: 0 },
    snapshot: { meta: { index: 0, term: 0, conf: emptyConfState() }, data: new Uint8Array(0) },
    entries: [],
  };
}

function cloneView(v: View): View {
  return { hardState: { ...v.hardState }, snapshot: v.snapshot, entries: v.entries.slice() };
}

function cloneConf(c: ConfState): ConfState {
  return {
    voters: c.voters.slice(),
    votersOutgoing: c.votersOutgoing.slice(),
    learners: c.learners.slice(),
    learnersNext: c.learnersNext.slice(),
  };
}

function applyOp(v: View, op: PendingOp): void {
  switch (op.kind) {
    case "hardState":
      v.hardState = op.hs;
      return;
    case "append": {
      let entries = op.entries;
      const snapIndex = v.snapshot.meta.index;
      if (entries[0].index <= snapIndex) {
        entries = entries.filter((e) => e.index > snapIndex);
        if (entries.length === 0) return;
      }
      const last = snapIndex + v.entries.length;
      const start = entries[0].index;
      if (start > last + 1) {
        throw new SimStoreError(`append at ${start} leaves a gap after last index ${last}`);
      }
      for (let i = 1; i < entries.length; i++) {
        if (entries[i].index !== start + i) {
          throw new SimStoreError("appended entries not contiguous");
        }
      }
      v.entries.length = start - snapIndex - 1;
      for (const e of entries) v.entries.push(e);
      return;
    }
    case "applySnapshot": {
      const meta = op.snap.meta;
      const snapIndex = v.snapshot.meta.index;
      if (meta.index < snapIndex) {
        throw new SimStoreError(`installing snapshot ${meta.index} older than ${snapIndex}`);
      }
      const last = snapIndex + v.entries.length;
      let keep: Entry[] = [];
      if (meta.index > snapIndex && meta.index <= last) {
        const e = v.entries[meta.index - snapIndex - 1];
        if (e.term === meta.term) keep = v.entries.slice(meta.index - snapIndex);
      }
      v.snapshot = op.snap;
      v.entries = keep;
      return;
    }
    case "createSnapshot": {
      const meta = op.snap.meta;
      const snapIndex = v.snapshot.meta.index;
      if (meta.index <= snapIndex) return;
      const last = snapIndex + v.entries.length;
      if (meta.index > last) {
        throw new SimStoreError(`snapshot at ${meta.index} is past the last index ${last}`);
      }
      v.entries = v.entries.slice(meta.index - snapIndex);
      v.snapshot = op.snap;
      return;
    }
  }
}
