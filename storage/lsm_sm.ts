/**
 * The lsm {@link KvStateMachine}: the kv_core.ts layout (user data, applied index, client
 * sessions, clock) stored in the LSM engine. The session records stay in the LSM: opening reads the clock and
 * every session record (kv_core.ts rebuilds the order of last use from them).
 *
 * The LSM runs without a write-ahead log of its own (`wal: false`): the Raft log is the write-ahead
 * log. Every applied batch records its last index under the applied-index key in the same LSM
 * batch, so what the LSM holds after a crash (its flushed memtables) carries the index it covers;
 * {@link LsmStateMachine.appliedIndex} reports it at open and the driver replays the Raft log from
 * there. `snapshot()` flushes the LSM up to the snapshot before it resolves, so a log compacted
 * behind the snapshot never drops entries the LSM could still lose; a clean close flushes too.
 *
 * `restore()` builds the new state in a fresh LSM directory (`sm-<gen>`), makes it durable, then
 * switches the `SM_CURRENT` pointer file atomically and deletes the old directory: a crash leaves
 * either the old or the new state, never a mix.
 *
 * @module
 */
import { join } from "node:path";
import { LsmDb, type LsmError, type LsmOptions, type Snapshot as LsmSnapshot } from "../lsm/mod.ts";
import type { ApplyCommand } from "../raft/state_machine.ts";
import { Slab } from "./bytes.ts";
import { CorruptionError, StoreClosedError } from "./errors.ts";
import {
  denoEnv,
  type Env,
  mkdirDurable,
  readFileIfExists,
  removeIfExists,
  writeFileAtomic,
} from "./fsutil.ts";
import {
  ALL,
  exportView,
  importRecords,
  KvCore,
  readAppliedIndex,
  readAppliedLastChange,
  type StoreOp,
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
import { readSnapshotPaced, SnapshotWriter } from "./sm_snapshot.ts";
import { Pacer } from "./settle.ts";

const CURRENT = "SM_CURRENT";
const RESTORE_BATCH = 1024;

function genDir(gen: number): string {
  return `sm-${String(gen).padStart(6, "0")}`;
}

/** Options of {@link LsmStateMachine.open}. */
export interface LsmStateMachineOptions {
  /** Options passed to the LSM engine. */
  lsm?: LsmOptions;
  /** Set as {@link LsmDb.onBackgroundWork} on every LSM database it opens (metrics). */
  onBackgroundWork?: LsmDb["onBackgroundWork"];
  /** The file system of the state machine and of its LSM engine (default: the real one). */
  env?: Env;
  /**
   * Called once when an LSM database of the state machine fails for good (a background flush
   * or compaction failed, a WAL write failed: {@link LsmDb.failure}); it refuses writes from then
   * on, so the node must halt. Overrides `lsm.onFailure`.
   */
  onFailure?: (error: LsmError) => void;
  /**
   * Paces the long work of a snapshot and a restore (reading, checksumming and copying the
   * whole state) into slices between which the event loop runs (default: a {@link Pacer} of
   * 4 ms slices per snapshot or restore).
   */
  pacer?: () => Pacer;
}

/** A state machine stored in the LSM engine. */
export class LsmStateMachine implements KvStateMachine {
  readonly #dir: string;
  readonly #lsmOptions: LsmOptions;
  #onWork: LsmDb["onBackgroundWork"];
  readonly #env: Env;
  #gen: number;
  #db: LsmDb;
  #applied: number;
  /** See {@link KvStateMachine.appliedLastChange}. */
  #appliedChange: number | undefined;
  #core: KvCore;
  #closed = false;
  /** Serializes apply, snapshot and restore. */
  #tail: Promise<unknown> = Promise.resolve();
  #applies = 0;
  #restores = 0;
  /** The store keys and values of the batch being applied (see {@link KvCore.apply}). */
  readonly #scratch = new Slab();
  /** Snapshot scans in progress (they read the LSM outside the apply queue). */
  readonly #reading = new Set<Promise<unknown>>();
  #pacer: () => Pacer = () => new Pacer();

  private constructor(
    dir: string,
    lsmOptions: LsmOptions,
    env: Env,
    gen: number,
    db: LsmDb,
    applied: number,
    appliedChange: number | undefined,
    core: KvCore,
  ) {
    this.#dir = dir;
    this.#lsmOptions = lsmOptions;
    this.#env = env;
    this.#gen = gen;
    this.#db = db;
    this.#applied = applied;
    this.#appliedChange = appliedChange;
    this.#core = core;
  }

  /** Opens (or creates) the state machine in `dir`. */
  static async open(dir: string, opts: LsmStateMachineOptions = {}): Promise<LsmStateMachine> {
    const env = opts.env ?? opts.lsm?.env ?? denoEnv;
    mkdirDurable(env, dir);
    const raw = readFileIfExists(env, join(dir, CURRENT));
    let gen = 1;
    if (raw) {
      const m = /^sm-(\d+)\s*$/.exec(new TextDecoder().decode(raw));
      if (!m) throw new CorruptionError(CURRENT, 0, "pointer");
      gen = Number(m[1]);
    } else {
      writeFileAtomic(env, dir, CURRENT, new TextEncoder().encode(genDir(gen) + "\n"));
    }
    // Remove directories of interrupted restores (or of the previous generation).
    for (const d of env.readDirSync(dir)) {
      if (d.isDirectory && /^sm-\d+$/.test(d.name) && d.name !== genDir(gen)) {
        env.removeSync(join(dir, d.name), { recursive: true });
      }
    }
    // The engine's files go through the same file system.
    // No WAL of its own: the Raft log is replayed from the flushed applied index.
    const lsmOptions: LsmOptions = {
      ...opts.lsm,
      env,
      wal: false,
      sync: false,
      onFailure: opts.onFailure ?? opts.lsm?.onFailure,
    };
    const db = await LsmDb.open(join(dir, genDir(gen)), lsmOptions);
    db.onBackgroundWork = opts.onBackgroundWork;
    try {
      const applied = await readAppliedIndex(db);
      const appliedChange = await readAppliedLastChange(db);
      const core = await KvCore.load(db);
      const sm = new LsmStateMachine(dir, lsmOptions, env, gen, db, applied, appliedChange, core);
      sm.#onWork = opts.onBackgroundWork;
      if (opts.pacer) sm.#pacer = opts.pacer;
      return sm;
    } catch (e) {
      await db.close();
      throw e;
    }
  }

  /** See {@link KvStateMachine.appliedIndex}: what the LSM holds (or will after replay). */
  appliedIndex(): number {
    return this.#applied;
  }

  /** See {@link KvStateMachine.appliedLastChange}: recorded with the applied index. */
  appliedLastChange(): number | undefined {
    return this.#appliedChange;
  }

  /** Runs `fn` after every earlier apply/snapshot/restore has finished. */
  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#tail.then(() => {
      this.#check();
      return fn();
    });
    this.#tail = run.catch(() => {});
    return run;
  }

  /** Applies commands in one LSM batch that also records the applied index (into the memtable). */
  apply(cmds: ApplyCommand[]): Promise<EntryResult[]> {
    return this.#serial(() => this.#apply(cmds));
  }

  async #apply(cmds: ApplyCommand[]): Promise<EntryResult[]> {
    if (cmds.length === 0) return [];
    // The batch's store keys and values are views of one reused chunk: the memtable copies
    // them, and the write below is awaited before the next batch starts (the apply queue).
    this.#scratch.reset();
    const batch = await this.#core.apply(this.#db, cmds, this.#scratch.alloc);
    await this.#db.write(batch.ops, { sync: false });
    batch.commit();
    this.#applied = cmds[cmds.length - 1].index;
    this.#appliedChange = batch.lastChange;
    this.#applies += cmds.length;
    if (batch.changes.length > 0) this.onChanges?.(batch.changes);
    return batch.results;
  }

  /** See {@link KvStateMachine.get}. */
  get(key: Uint8Array): Promise<Uint8Array | undefined> {
    this.#check();
    return KvCore.get(this.#db, key);
  }

  /** See {@link KvStateMachine.scan}. Runs on one LSM snapshot. */
  scan(opts: ScanOptions = {}): Promise<Array<[Uint8Array, Uint8Array]>> {
    this.#check();
    return KvCore.scan(this.#db, opts);
  }

  /** See {@link KvStateMachine.getEntries}. Runs on one LSM snapshot. */
  async getEntries(keys: Uint8Array[]): Promise<(KvEntry | null)[]> {
    this.#check();
    const snap = this.#db.snapshot();
    try {
      return await KvCore.getEntries(snap, keys);
    } finally {
      snap.release();
    }
  }

  /** See {@link KvStateMachine.scanEntries}. Runs on one LSM snapshot. */
  async scanEntries(opts: ScanOptions = {}): Promise<KvEntry[]> {
    this.#check();
    const snap = this.#db.snapshot();
    try {
      return await KvCore.scanEntries(snap, opts);
    } finally {
      snap.release();
    }
  }

  /** See {@link KvStateMachine.nextExpiry}. */
  nextExpiry(): Promise<number | undefined> {
    this.#check();
    return KvCore.nextExpiry(this.#db);
  }

  /** See {@link KvStateMachine.onChanges}. */
  onChanges?: (changes: KvChange[]) => void;

  /** See {@link KvStateMachine.onReset}. */
  onReset?: (appliedIndex: number) => void;

  /** See {@link KvStateMachine.watchState}. Runs on one LSM snapshot. */
  async watchState(
    keys: Uint8Array[],
    prefixes: Uint8Array[],
    maxEntries: number,
  ): Promise<WatchState> {
    this.#check();
    const snap = this.#db.snapshot();
    try {
      return await KvCore.watchState(snap, keys, prefixes, maxEntries);
    } finally {
      snap.release();
    }
  }

  /** See {@link KvStateMachine.sessionCount}. */
  sessionCount(): number {
    return this.#core.sessionCount;
  }

  /** See {@link KvStateMachine.session}. */
  session(id: bigint): Promise<SessionInfo | undefined> {
    this.#check();
    return this.#core.session(this.#db, id);
  }

  /** See {@link KvStateMachine.sessionList}. */
  sessionList(): Promise<SessionInfo[]> {
    this.#check();
    return this.#core.sessions(this.#db);
  }

  /** See {@link KvStateMachine.clock}. */
  clock(): number {
    return this.#core.clock;
  }

  /** See {@link KvStateMachine.clusterId}. */
  clusterId(): string | undefined {
    return this.#core.clusterId;
  }

  /**
   * Serializes a consistent LSM snapshot (data, sessions and applied index read from it); resolves
   * once the LSM is durable up to it (flushed).
   */
  snapshot(): Promise<Uint8Array> {
    // Only the LSM snapshot is taken (and the flush started) in the apply queue; the scan and the
    // flush run while later commands are applied.
    const p = this.#serial(() => this.#beginSnapshot()).then(async ({ snap, durable }) => {
      const data = await this.#readSnapshot(snap);
      await durable;
      return data;
    });
    const tracked = p.catch(() => {}).finally(() => this.#reading.delete(tracked));
    this.#reading.add(tracked);
    return p;
  }

  /** Waits for snapshot scans still reading the current LSM. */
  async #readsDone(): Promise<void> {
    while (this.#reading.size > 0) await Promise.all([...this.#reading]);
  }

  /** A consistent view of the LSM now, and the flush that makes it durable. */
  #beginSnapshot(): Promise<{ snap: LsmSnapshot; durable: Promise<void> }> {
    const durable = this.#db.flush();
    durable.catch(() => {}); // awaited by the caller
    return Promise.resolve({ snap: this.#db.snapshot(), durable });
  }

  async #readSnapshot(snap: LsmSnapshot): Promise<Uint8Array> {
    try {
      // Paced: a large state is read, checksummed and copied in slices between which the event
      // loop runs (heartbeats, requests), never in one block of seconds.
      const pacer = this.#pacer();
      const w = new SnapshotWriter(await readAppliedIndex(snap));
      let n = 0;
      for await (const [k, v] of snap.scan(ALL)) {
        w.add(k, v);
        if ((++n & 63) === 0) await pacer.pace();
      }
      return await w.finishPaced(pacer);
    } finally {
      snap.release();
    }
  }

  /**
   * See {@link KvStateMachine.exportState}: an LSM snapshot taken in the apply queue; its records
   * are read block by block as they are consumed, while later commands are applied.
   */
  exportState(): Promise<StateExport> {
    return this.#serial(() => Promise.resolve(this.#db.snapshot())).then((snap) => {
      let done!: () => void;
      const tracked: Promise<void> = new Promise<void>((r) => done = r).finally(() =>
        this.#reading.delete(tracked)
      );
      this.#reading.add(tracked);
      return exportView(snap, () => {
        snap.release();
        done();
      });
    });
  }

  /** Replaces everything with a snapshot taken at `index` (atomic switch to a new LSM). */
  restore(data: Uint8Array, index: number): Promise<void> {
    return this.#serial(async () => {
      const content = await readSnapshotPaced(data, this.#pacer());
      return this.#load(
        (function* () {
          for (const [key, value] of content.records()) {
            yield { type: "put", key, value } as StoreOp;
          }
          yield KvCore.appliedOp(index);
        })(),
        index,
      );
    });
  }

  /** See {@link KvStateMachine.importState}: the same atomic switch as {@link restore}. */
  importState(src: StateImport): Promise<void> {
    return this.#serial(() => this.#load(importRecords(src), src.appliedIndex));
  }

  /** Builds a new LSM from `records` (the applied index among them), then switches to it. */
  async #load(
    records: Iterable<StoreOp> | AsyncIterable<StoreOp>,
    index: number,
  ): Promise<void> {
    const gen = this.#gen + 1;
    const path = join(this.#dir, genDir(gen));
    removeIfExists(this.#env, path, true);
    const db = await LsmDb.open(path, this.#lsmOptions);
    db.onBackgroundWork = this.#onWork;
    try {
      const pacer = this.#pacer();
      let ops: StoreOp[] = [];
      for await (const op of records) {
        ops.push(op);
        if (ops.length >= RESTORE_BATCH) {
          await db.write(ops, { sync: false });
          ops = [];
          await pacer.pace();
        }
      }
      await db.write(ops, { sync: false });
      await db.flush();
    } catch (e) {
      await db.close();
      removeIfExists(this.#env, path, true);
      throw e;
    }
    writeFileAtomic(this.#env, this.#dir, CURRENT, new TextEncoder().encode(genDir(gen) + "\n"));
    const old = this.#db;
    const oldPath = join(this.#dir, genDir(this.#gen));
    this.#db = db;
    this.#gen = gen;
    this.#applied = index;
    this.#appliedChange = await readAppliedLastChange(db);
    this.#core = await KvCore.load(db);
    this.#restores++;
    this.onReset?.(index);
    await this.#readsDone();
    await old.close();
    removeIfExists(this.#env, oldPath, true);
  }

  /** See {@link KvStateMachine.stats}. */
  stats(): Record<string, unknown> {
    let lsm: unknown;
    try {
      lsm = this.#db.stats();
    } catch {
      lsm = undefined;
    }
    return {
      backend: "lsm",
      appliedIndex: this.#applied,
      sessions: this.#core.sessionCount,
      applied: this.#applies,
      restores: this.#restores,
      generation: this.#gen,
      lsm,
    };
  }

  /** Closes the LSM. */
  async close(): Promise<void> {
    if (this.#closed) return;
    await this.#tail;
    this.#closed = true;
    await this.#readsDone();
    await this.#db.close();
  }

  #check(): void {
    if (this.#closed) throw new StoreClosedError("lsm state machine");
  }
}
