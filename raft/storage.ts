/**
 * The interfaces the Raft core and its driver need from storage. storage/ implements them
 * (memory, simplefile, lsm); the core itself performs no I/O.
 *
 * @module
 */
import type { ConfState, Entry, HardState, Snapshot, SnapshotMeta } from "./types.ts";

/** What a log store holds when it is opened. */
export interface InitialState {
  /** The durable hard state (zeros for a new node). */
  hardState: HardState;
  /** The configuration as of the last snapshot or conf-change entry persisted (empty if new). */
  confState: ConfState;
}

/**
 * The durable Raft log: hard state, entries after the last snapshot, and snapshot metadata.
 *
 * Reads are synchronous (implementations keep the live log in memory or can read it at once),
 * so the deterministic core can consult it. Writes are buffered by `append`/`setHardState`
 * and made durable together by one `sync()` (group commit): nothing is acknowledged to another
 * node before the `sync()` covering it resolves.
 */
export interface LogStore {
  /** The hard state and configuration found at open. */
  initialState(): InitialState;
  /** Entries in [lo, hi), at least one if any exist, at most `maxBytes` of data after the first. */
  entries(lo: number, hi: number, maxBytes?: number): Entry[];
  /** The term of the entry at `index`; the snapshot's term at the snapshot index; throws
   * {@link CompactedError} below it and {@link UnavailableError} past the last index. */
  term(index: number): number;
  /** The first index still in the log (snapshot index + 1). */
  firstIndex(): number;
  /** The last index in the log (the snapshot index when the log is empty). */
  lastIndex(): number;
  /** The metadata of the latest snapshot (index 0 when there is none). */
  snapshotMeta(): SnapshotMeta;
  /** The latest snapshot with its data. */
  snapshot(): Snapshot;

  /** Appends entries; entries at or after `entries[0].index` already present are replaced. */
  append(entries: Entry[]): void;
  /** Records a new hard state. */
  setHardState(hs: HardState): void;
  /** Installs a snapshot: replaces the log up to `snap.meta.index` (discarding everything if the
   * log does not contain an entry matching it). */
  applySnapshot(snap: Snapshot): void;
  /** Stores a snapshot made locally at `meta.index` and drops the entries up to it. */
  createSnapshot(snap: Snapshot): void;
  /** Makes everything recorded so far durable (one fsync for the whole batch). */
  sync(): Promise<void>;
  /** Flushes and releases files. */
  close(): Promise<void>;
}

/** A read of the log below its first index. */
export class CompactedError extends Error {
  /** Creates the error. */
  constructor(index: number) {
    super(`requested index ${index} is unavailable due to compaction`);
    this.name = "CompactedError";
  }
}

/** A read past the last index. */
export class UnavailableError extends Error {
  /** Creates the error. */
  constructor(index: number) {
    super(`requested entry at index ${index} is unavailable`);
    this.name = "UnavailableError";
  }
}
