/**
 * The memory {@link KvStateMachine}: the kv_core.ts layout in an in-memory B+ tree, nothing
 * persisted. The simplefile backend extends it with a JSON state file.
 *
 * @module
 */
import BTreeModule from "sorted-btree";
import type { ApplyCommand } from "../raft/state_machine.ts";
import { bytesToLatin1, latin1ToBytes } from "./bytes.ts";
import { StoreClosedError } from "./errors.ts";
import {
  ALL,
  exportView,
  importRecords,
  KvCore,
  readAppliedIndex,
  readAppliedLastChange,
  type StoreOp,
  type StoreRange,
  USER_LO,
} from "./kv_core.ts";
import type {
  EntryResult,
  KvChange,
  KvEntry,
  KvStateMachine,
  ScanOptions,
  SessionInfo,
  StateExport,
  StateImport,
  WatchState,
} from "./kv_state_machine.ts";
import { readSnapshot, SnapshotWriter } from "./sm_snapshot.ts";

// The package is CommonJS: its default import is the module object, whose `default` is the class.
const BTree = BTreeModule.default;

/** An ordered byte store in memory (keys as latin1 strings, which sort like the bytes). */
export class MemoryStore {
  #tree = new BTree<string, Uint8Array>();
  #userKeys = 0;

  /** Number of user keys (kv_core.ts layout). */
  get userKeys(): number {
    return this.#userKeys;
  }

  /** See {@link StoreReader.get}. */
  get(key: Uint8Array): Promise<Uint8Array | undefined> {
    return Promise.resolve(this.#tree.get(bytesToLatin1(key)));
  }

  /** See {@link StoreReader.scan} (synchronous underneath). */
  async *scan(range: StoreRange): AsyncGenerator<[Uint8Array, Uint8Array]> {
    for (const e of this.scanSync(range)) yield e;
  }

  /** The pairs in `range`, in order. */
  *scanSync(range: StoreRange): Generator<[Uint8Array, Uint8Array]> {
    const lo = bytesToLatin1(range.gte);
    const hi = bytesToLatin1(range.lt);
    if (range.reverse) {
      for (const [k, v] of this.#tree.entriesReversed(hi)) {
        if (k >= hi) continue;
        if (k < lo) break;
        yield [latin1ToBytes(k), v];
      }
    } else {
      for (const [k, v] of this.#tree.entries(lo)) {
        if (k >= hi) break;
        yield [latin1ToBytes(k), v];
      }
    }
  }

  /** A copy that later writes to either do not affect (copy-on-write: O(1)). */
  clone(): MemoryStore {
    const c = new MemoryStore();
    c.#tree = this.#tree.clone();
    c.#userKeys = this.#userKeys;
    return c;
  }

  /** Applies a batch of writes. */
  write(ops: StoreOp[]): void {
    for (const op of ops) {
      const k = bytesToLatin1(op.key);
      const user = op.key[0] === USER_LO[0];
      if (op.type === "put") {
        if (this.#tree.set(k, op.value, true) && user) this.#userKeys++;
      } else if (this.#tree.delete(k) && user) {
        this.#userKeys--;
      }
    }
  }
}

/** A state machine held in memory only. */
export class MemoryStateMachine implements KvStateMachine {
  /** The store. */
  protected store = new MemoryStore();
  /** The semantics over the store. */
  protected core: KvCore = KvCore.empty();
  /** The last applied index. */
  protected applied = 0;
  /** See {@link KvStateMachine.appliedLastChange}. */
  protected appliedChange: number | undefined;
  #closed = false;
  #applies = 0;
  /** Serializes apply and restore. */
  #tail: Promise<unknown> = Promise.resolve();

  /** Replaces the store (and reloads what the core caches from it). */
  protected async installStore(store: MemoryStore): Promise<void> {
    const core = await KvCore.load(store);
    this.applied = await readAppliedIndex(store);
    this.appliedChange = await readAppliedLastChange(store);
    this.store = store;
    this.core = core;
  }

  /** Runs `fn` after every earlier apply/restore. */
  protected serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#tail.then(() => {
      this.check();
      return fn();
    });
    this.#tail = run.catch(() => {});
    return run;
  }

  /** See {@link KvStateMachine.appliedIndex}. */
  appliedIndex(): number {
    return this.applied;
  }

  /** See {@link KvStateMachine.appliedLastChange}. */
  appliedLastChange(): number | undefined {
    return this.appliedChange;
  }

  /** Applies commands (see kv_state_machine.ts for the results). */
  apply(cmds: ApplyCommand[]): Promise<EntryResult[]> {
    return this.serial(() => this.applyBatch(cmds));
  }

  /** Computes and writes one batch. */
  protected async applyBatch(cmds: ApplyCommand[]): Promise<EntryResult[]> {
    if (cmds.length === 0) return [];
    const batch = await this.core.apply(this.store, cmds);
    this.store.write(batch.ops);
    batch.commit();
    this.applied = cmds[cmds.length - 1].index;
    this.appliedChange = batch.lastChange;
    this.#applies += cmds.length;
    if (batch.changes.length > 0) this.onChanges?.(batch.changes);
    return batch.results;
  }

  /** See {@link KvStateMachine.get}. */
  get(key: Uint8Array): Promise<Uint8Array | undefined> {
    return this.#read(() => KvCore.get(this.store, key));
  }

  /** See {@link KvStateMachine.scan}. */
  scan(opts: ScanOptions = {}): Promise<Array<[Uint8Array, Uint8Array]>> {
    return this.#read(() => KvCore.scan(this.store.clone(), opts));
  }

  /** See {@link KvStateMachine.getEntries} (a copy-on-write clone is the view). */
  getEntries(keys: Uint8Array[]): Promise<(KvEntry | null)[]> {
    return this.#read(() => KvCore.getEntries(this.store.clone(), keys));
  }

  /** See {@link KvStateMachine.scanEntries}. */
  scanEntries(opts: ScanOptions = {}): Promise<KvEntry[]> {
    return this.#read(() => KvCore.scanEntries(this.store.clone(), opts));
  }

  /** See {@link KvStateMachine.nextExpiry}. */
  nextExpiry(): Promise<number | undefined> {
    return this.#read(() => KvCore.nextExpiry(this.store));
  }

  /** See {@link KvStateMachine.onChanges}. */
  onChanges?: (changes: KvChange[]) => void;

  /** See {@link KvStateMachine.onReset}. */
  onReset?: (appliedIndex: number) => void;

  /** See {@link KvStateMachine.watchState}. */
  watchState(keys: Uint8Array[], prefixes: Uint8Array[], maxEntries: number): Promise<WatchState> {
    return this.#read(() => KvCore.watchState(this.store.clone(), keys, prefixes, maxEntries));
  }

  #read<T>(fn: () => Promise<T>): Promise<T> {
    try {
      this.check();
    } catch (e) {
      return Promise.reject(e);
    }
    return fn();
  }

  /** See {@link KvStateMachine.sessionCount}. */
  sessionCount(): number {
    return this.core.sessionCount;
  }

  /** See {@link KvStateMachine.session}. */
  session(id: bigint): Promise<SessionInfo | undefined> {
    return this.#read(() => this.core.session(this.store, id));
  }

  /** See {@link KvStateMachine.sessionList}. */
  sessionList(): Promise<SessionInfo[]> {
    return this.#read(() => this.core.sessions(this.store));
  }

  /** See {@link KvStateMachine.clock}. */
  clock(): number {
    return this.core.clock;
  }

  /** See {@link KvStateMachine.clusterId}. */
  clusterId(): string | undefined {
    return this.core.clusterId;
  }

  /** Serializes the store and applied index (see sm_snapshot.ts). */
  snapshot(): Promise<Uint8Array> {
    return this.#read(() => Promise.resolve(this.encodeSnapshot()));
  }

  /** Encodes the current state as a snapshot stream. */
  protected encodeSnapshot(): Uint8Array {
    const w = new SnapshotWriter(this.applied);
    for (const [k, v] of this.store.scanSync(ALL)) w.add(k, v);
    return w.finish();
  }

  /** Replaces everything with a snapshot taken at `index`. */
  restore(data: Uint8Array, index: number): Promise<void> {
    return this.serial(() => this.restoreStore(data, index));
  }

  /** Decodes the whole snapshot first, then swaps it in (a bad snapshot changes nothing). */
  protected async restoreStore(data: Uint8Array, index: number): Promise<void> {
    const content = readSnapshot(data);
    const next = new MemoryStore();
    const ops: StoreOp[] = [];
    for (const [key, value] of content.records()) ops.push({ type: "put", key, value });
    ops.push(KvCore.appliedOp(index));
    next.write(ops);
    await this.installStore(next);
    this.onReset?.(index);
  }

  /** See {@link KvStateMachine.exportState}: a copy-on-write clone of the store, taken at the
   * current applied index. */
  exportState(): Promise<StateExport> {
    return this.#read(() => exportView(this.store.clone(), () => {}));
  }

  /** See {@link KvStateMachine.importState}: builds the new store first, then swaps it in. */
  importState(src: StateImport): Promise<void> {
    return this.serial(async () => {
      const next = new MemoryStore();
      for await (const op of importRecords(src)) next.write([op]);
      this.check();
      await this.installStore(next);
      this.afterImport();
      this.onReset?.(src.appliedIndex);
    });
  }

  /** Called after an import swapped the state in (simplefile persists it). */
  protected afterImport(): void {}

  /** See {@link KvStateMachine.stats}. */
  stats(): Record<string, unknown> {
    return {
      backend: this.backendName(),
      keys: this.store.userKeys,
      sessions: this.sessionCount(),
      appliedIndex: this.applied,
      applied: this.#applies,
    };
  }

  /** The backend's name in stats. */
  protected backendName(): string {
    return "memory";
  }

  /** Releases nothing; later calls fail. */
  close(): Promise<void> {
    this.#closed = true;
    return Promise.resolve();
  }

  /** Throws when closed. */
  protected check(): void {
    if (this.#closed) throw new StoreClosedError(`${this.backendName()} state machine`);
  }
}
