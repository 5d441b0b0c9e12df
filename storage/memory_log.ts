/**
 * The memory {@link LogStore}: nothing is persisted (tests, throwaway nodes).
 *
 * @module
 */
import type { LogStore } from "../raft/storage.ts";
import type { Entry, HardState, Snapshot } from "../raft/types.ts";
import { StoreClosedError } from "./errors.ts";
import { cloneMeta, LogCoreReads } from "./log_core.ts";

/** A Raft log held in memory only; `sync()` resolves at once. */
export class MemoryLogStore extends LogCoreReads implements LogStore {
  #snapData: Uint8Array = new Uint8Array(0);
  #closed = false;

  /** See {@link LogStore.snapshot}. */
  snapshot(): Snapshot {
    return { meta: cloneMeta(this.core.snap), data: this.#snapData };
  }

  /** See {@link LogStore.append}. */
  append(entries: Entry[]): void {
    this.#check();
    this.core.append(entries);
  }

  /** See {@link LogStore.setHardState}. */
  setHardState(hs: HardState): void {
    this.#check();
    this.core.hs = { term: hs.term, vote: hs.vote, commit: hs.commit };
  }

  /** See {@link LogStore.applySnapshot}. */
  applySnapshot(snap: Snapshot): void {
    this.#check();
    if (this.core.install(snap.meta) !== undefined) this.#snapData = snap.data;
  }

  /** See {@link LogStore.createSnapshot}. */
  createSnapshot(snap: Snapshot): void {
    this.#check();
    if (this.core.compact(snap.meta)) this.#snapData = snap.data;
  }

  /** Nothing to make durable. */
  sync(): Promise<void> {
    this.#check();
    return Promise.resolve();
  }

  /** Marks the store closed. */
  close(): Promise<void> {
    this.#closed = true;
    return Promise.resolve();
  }

  #check(): void {
    if (this.#closed) throw new StoreClosedError("memory log store");
  }
}
