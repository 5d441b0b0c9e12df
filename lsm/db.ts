/**
 * LsmDb: the database. Ties together the WAL, memtables, SSTables, the
 * manifest-backed version set, the block cache and background flush and
 * compaction (run on the main thread in short chunks between event-loop turns).
 * @module
 */
import { type Bytes, compareBytes, hasPrefix, prefixSuccessor, toBytes } from "./bytes.ts";
import {
  BATCH_HEADER,
  BatchFormatError,
  decodeBatch,
  opSize,
  writeBatchHeader,
  writeOp,
} from "./batch.ts";
import { BlockCache } from "./cache.ts";
import { bloomHash } from "./bloom.ts";
import {
  type Compaction,
  levelScores,
  makeCompaction,
  maxBytesForLevel,
  type MergeContext,
  type MergeOutput,
  pickCompaction,
  runMerge,
} from "./compaction.ts";
import {
  BackgroundError,
  ClosedError,
  CorruptionError,
  InvalidArgumentError,
  LsmError,
} from "./errors.ts";
import { WorkerClient } from "./worker_client.ts";
import { copyBytes } from "./slab.ts";
import { manifestPath, parseFileName, syncDir, tablePath, walPath } from "./filenames.ts";
import { denoEnv, type Env, mkdirDurable, writeFully } from "./env.ts";
import { compareUserToInternal, KIND_DELETE, KIND_PUT, MAX_SEQ } from "./internal_key.ts";
import { type InternalIterator, MergingIterator } from "./iterator.ts";
import { LevelIterator } from "./level_iterator.ts";
import { DirLock } from "./lock.ts";
import { readLog } from "./log_reader.ts";
import { LogWriter } from "./log_writer.ts";
import { freeMemtableBuffers, Memtable, type MemtableBuffers } from "./memtable.ts";
import { type LsmOptions, type ResolvedOptions, resolveOptions } from "./options.ts";
import { TableReader, TOMBSTONE } from "./sstable_reader.ts";
import { TableWriter } from "./sstable_writer.ts";
import { type Version, VersionSet } from "./version.ts";
import { type FileMeta, NUM_LEVELS, type VersionEdit } from "./version_edit.ts";

/** Largest accepted key length in bytes (64 KiB). */
export const MAX_KEY_BYTES = 64 * 1024;
/** Largest accepted value length in bytes (64 MiB). */
export const MAX_VALUE_BYTES = 64 * 1024 * 1024;

/** Options of a single write. */
export interface WriteOptions {
  /** Resolve only after the write is fdatasynced (default: the db's `sync` option). */
  sync?: boolean;
}

/** One operation of an atomic batch. */
export type BatchOperation =
  | { type: "put"; key: Bytes; value: Bytes }
  | { type: "delete"; key: Bytes };

/** Range and order of a scan. Bounds combine (intersection). */
export interface ScanOptions {
  /** Inclusive lower bound. */
  gte?: Bytes;
  /** Exclusive lower bound. */
  gt?: Bytes;
  /** Exclusive upper bound. */
  lt?: Bytes;
  /** Inclusive upper bound. */
  lte?: Bytes;
  /** Only keys starting with this prefix. */
  prefix?: Bytes;
  /** Iterate in descending key order. */
  reverse?: boolean;
  /** Stop after this many entries. */
  limit?: number;
}

/** Optional range of {@linkcode LsmDb.compact}. */
export interface CompactRange {
  /** Inclusive start (undefined = from the first key). */
  start?: Bytes;
  /** Inclusive end (undefined = to the last key). */
  end?: Bytes;
}

/** Per-level statistics. */
export interface LevelStats {
  /** Level number (0..6). */
  level: number;
  /** Number of table files. */
  files: number;
  /** Total bytes of the level's tables. */
  bytes: number;
  /** Compaction score (>= 1 means due). */
  score: number;
}

/** Engine statistics (cheap to compute; used by /metrics). */
export interface LsmStats {
  /** One entry per level, L0 first. */
  levels: LevelStats[];
  /** Completed compactions (including trivial moves). */
  compactions: number;
  /** Completed memtable flushes. */
  flushes: number;
  /** Approximate bytes held by the active and immutable memtables. */
  memtableBytes: number;
  /** Frozen memtables waiting to be flushed. */
  immutableMemtables: number;
  /** Block cache lookups that hit. */
  cacheHits: number;
  /** Block cache lookups that missed (block read from disk). */
  cacheMisses: number;
  /** Bytes currently in the block cache. */
  cacheBytes: number;
  /** Bytes of index + filter blocks held in memory. */
  tableMetaBytes: number;
  /** Sequence number of the newest write. */
  lastSequence: number;
  /** Snapshots not yet released. */
  liveSnapshots: number;
  /** Writes that had to wait for flush/compaction. */
  writeStalls: number;
  /** Total milliseconds writes spent waiting for flush/compaction. */
  writeStallMs: number;
  /** Group commits (fdatasync calls for sync writes). */
  syncs: number;
  /** Bytes read by compactions. */
  compactionBytesRead: number;
  /** Bytes written by compactions. */
  compactionBytesWritten: number;
  /** Message of the background error that stopped flush/compaction, if any. */
  backgroundError?: string;
}

interface Op {
  kind: number;
  key: Uint8Array;
  value: Uint8Array | undefined;
}

function checkKey(k: unknown, arg = "key"): Uint8Array {
  if (typeof k !== "string" && !(k instanceof Uint8Array)) {
    throw new InvalidArgumentError(arg, "must be a Uint8Array or string");
  }
  const b = toBytes(k);
  if (b.length === 0) throw new InvalidArgumentError(arg, "must not be empty");
  if (b.length > MAX_KEY_BYTES) {
    throw new InvalidArgumentError(arg, `length ${b.length} exceeds ${MAX_KEY_BYTES}`);
  }
  return b;
}

function checkValue(v: unknown): Uint8Array {
  if (typeof v !== "string" && !(v instanceof Uint8Array)) {
    throw new InvalidArgumentError("value", "must be a Uint8Array or string");
  }
  const b = toBytes(v);
  if (b.length > MAX_VALUE_BYTES) {
    throw new InvalidArgumentError("value", `length ${b.length} exceeds ${MAX_VALUE_BYTES}`);
  }
  return b;
}

function boundBytes(v: unknown, arg: string): Uint8Array {
  if (typeof v !== "string" && !(v instanceof Uint8Array)) {
    throw new InvalidArgumentError(arg, "must be a Uint8Array or string");
  }
  return toBytes(v);
}

/**
 * Async iterator over scan results. Each step runs synchronously; the version
 * it reads is released when iteration ends, fails or is abandoned via return().
 */
class ScanCursor implements AsyncIterableIterator<[Uint8Array, Uint8Array]> {
  private done = false;
  constructor(
    version: Version | undefined,
    private readonly step: () => [Uint8Array, Uint8Array] | undefined,
    private readonly release: () => void,
    private readonly settle: <T>(v: T) => Promise<T> = (v) => Promise.resolve(v),
  ) {
    if (version === undefined) this.done = true;
  }
  private finish(): void {
    if (this.done) return;
    this.done = true;
    this.release();
  }
  next(): Promise<IteratorResult<[Uint8Array, Uint8Array]>> {
    if (this.done) return Promise.resolve({ value: undefined, done: true });
    try {
      const r = this.step();
      if (r === undefined) {
        this.finish();
        return Promise.resolve({ value: undefined, done: true });
      }
      return this.settle({ value: r, done: false });
    } catch (e) {
      this.finish();
      return Promise.reject(e);
    }
  }
  return(): Promise<IteratorResult<[Uint8Array, Uint8Array]>> {
    this.finish();
    return Promise.resolve({ value: undefined, done: true });
  }
  [Symbol.asyncIterator](): AsyncIterableIterator<[Uint8Array, Uint8Array]> {
    return this;
  }
}

/**
 * A consistent read-only view of the database at one sequence number. Holds
 * old versions alive against compaction until {@linkcode Snapshot.release}.
 */
export class Snapshot {
  private released = false;
  /** @internal */
  constructor(private readonly db: LsmDb, readonly sequence: number) {}

  /** Reads `key` as of this snapshot. */
  get(key: Bytes): Promise<Uint8Array | undefined> {
    try {
      this.check();
      return Promise.resolve(this.db._getAt(checkKey(key), this.sequence));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** Iterates key/value pairs as of this snapshot. */
  scan(opts: ScanOptions = {}): AsyncIterableIterator<[Uint8Array, Uint8Array]> {
    this.check();
    return this.db._scanAt(opts, this.sequence);
  }

  /** Releases the snapshot (idempotent). */
  release(): void {
    if (this.released) return;
    this.released = true;
    this.db._releaseSnapshot(this.sequence);
  }

  /** Throws ClosedError once the database is closed. */
  private check(): void {
    if (this.released) throw new ClosedError("snapshot");
  }
}

/**
 * The sync writers waiting for the next fdatasync. They share one promise: a group commit
 * settles one promise, not one per writer.
 */
interface SyncGroup {
  promise: Promise<void>;
  resolve: () => void;
  reject: (e: unknown) => void;
  /** First sequence number of the group's first write (every later write is above it). */
  seq: number;
}

/**
 * Zeros written into a prepared WAL (never written to: its pages stay unallocated), one buffer
 * for every preparation instead of a new 1 MiB one each time.
 */
const walZeros = new Uint8Array(1 << 20);

/** A new, empty sync group whose first write starts at `seq`. */
function newSyncGroup(seq: number): SyncGroup {
  let resolve!: () => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject, seq };
}

/**
 * A durable, crash-safe LSM-tree key-value store.
 *
 * ```ts
 * const db = await LsmDb.open(await Deno.makeTempDir());
 * await db.put("k", "v");
 * const v = await db.get("k"); // Uint8Array
 * await db.close();
 * ```
 */
export class LsmDb {
  private mem: Memtable;
  /** Frozen memtables, oldest first. */
  private imms: Memtable[] = [];
  /** The write-ahead log (undefined with `wal: false`). */
  private wal: LogWriter | undefined;
  private lastSeq: number;
  private readonly tables = new Map<number, TableReader>();
  private readonly cache: BlockCache;
  private readonly snapshots = new Map<number, number>();
  private readonly versionRefs = new Map<Version, number>();
  private obsoleteTables: number[] = [];
  /** Obsolete files waiting to be unlinked, and the paced loop unlinking them. */
  private removals: string[] = [];
  private removing: Promise<void> | null = null;
  private closed = false;
  private closing = false;
  private flushRunning: Promise<void> | undefined;
  private compactRunning: Promise<void> | undefined;
  /**
   * The one background Worker: flushes and merges (a merge yields to a flush
   * every few ms). One isolate instead of two: each costs ~50 MiB of resident memory.
   */
  private readonly worker = new WorkerClient(() => this.newMergeOutput());
  /** File numbers handed to the running merge for its outputs (removed if it fails). */
  private mergeOutputs: number[] = [];
  private bgError: unknown;
  private bgWaiters: Array<() => void> = [];
  private writeQueue: Promise<void> | undefined;
  private queued = 0;
  /** Sync writers waiting for the next group commit (undefined when none). */
  private syncGroup: SyncGroup | undefined;
  private syncInFlight: Promise<void> | undefined;
  private walError: LsmError | undefined;
  /**
   * Reads see no sequence above this: after a WAL failure, the writes whose
   * outcome is unknown (refused to their writers) stay invisible and are never flushed.
   */
  private visibleSeq = MAX_SEQ;
  /**
   * Shared with the compaction worker: [0] WAL fdatasyncs in flight,
   * [1] set to 1 when closing (merges abort at their next chunk).
   */
  private readonly ioSignal = new Int32Array(new SharedArrayBuffer(8));
  private scratch = new Uint8Array(4096);
  private readonly pointers: Array<Uint8Array | undefined> = new Array(NUM_LEVELS);
  private manualCompaction = false;
  private readonly channel = new MessageChannel();
  private yieldResolvers: Array<() => void> = [];
  /**
   * Called after each piece of background work with its kind and duration in seconds
   * (metrics). Exceptions it throws are ignored.
   */
  onBackgroundWork?: (kind: "flush" | "compaction" | "move", seconds: number) => void;
  private counters = {
    compactions: 0,
    flushes: 0,
    writeStalls: 0,
    writeStallMs: 0,
    syncs: 0,
    compactionBytesRead: 0,
    compactionBytesWritten: 0,
  };

  private constructor(
    /** Directory of the database. */
    readonly dir: string,
    private readonly opts: ResolvedOptions,
    private readonly lock: DirLock,
    private readonly vs: VersionSet,
    private readonly env: Env,
    private readonly onFailure: ((e: LsmError) => void) | undefined,
  ) {
    // Read buffers fit a block of blockBytes plus a typical entry (blocks are cut past blockBytes).
    this.cache = new BlockCache(opts.blockCacheBytes, (opts.blockBytes + 512 + 63) & ~63);
    this.mem = this.newMemtable();
    this.lastSeq = vs.lastSequence;
    this.channel.port1.onmessage = () => {
      this.lastTurn = performance.now();
      const rs = this.yieldResolvers;
      this.yieldResolvers = [];
      for (const r of rs) r();
    };
  }

  /**
   * Opens (creating when missing) the database in `dir`. Replays live WALs,
   * rewrites the manifest and removes files outside the live version.
   * Throws {@linkcode DatabaseLockedError} when another handle holds the
   * directory and {@linkcode CorruptionError} when files are damaged.
   * An open database keeps the process alive until {@linkcode LsmDb.close}.
   */
  static open(dir: string, options: LsmOptions = {}): Promise<LsmDb> {
    try {
      return Promise.resolve(LsmDb.openSync(dir, options));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** Opens (or creates) the database synchronously: lock, recover, open the WAL. */
  private static openSync(dir: string, options: LsmOptions): LsmDb {
    const opts = resolveOptions(options);
    if (typeof dir !== "string" || dir === "") {
      throw new InvalidArgumentError("dir", "must be a path");
    }
    const env = options.env ?? denoEnv;
    if (opts.createIfMissing) mkdirDurable(env, dir);
    const lock = DirLock.acquire(dir, env);
    let db: LsmDb | undefined;
    try {
      const vs = new VersionSet(dir, env);
      const exists = vs.recover();
      if (exists && opts.errorIfExists) {
        throw new InvalidArgumentError("dir", "database already exists (errorIfExists)");
      }
      if (!exists) LsmDb.checkNoOrphanData(dir, env);
      if (!exists && !opts.createIfMissing) {
        throw new InvalidArgumentError("dir", "database does not exist (createIfMissing false)");
      }
      db = new LsmDb(dir, opts, lock, vs, env, options.onFailure);
      db.recoverSync(exists);
      return db;
    } catch (e) {
      if (db) db.abortOpen();
      else lock.release();
      throw e;
    }
  }

  /**
   * Without CURRENT the directory must not hold data: only an interrupted
   * first open (empty WALs, a manifest) is tolerated. Never guess from names.
   */
  private static checkNoOrphanData(dir: string, env: Env): void {
    for (const e of env.readDirSync(dir)) {
      const p = parseFileName(e.name);
      if (!p || !e.isFile) continue;
      const path = `${dir}/${e.name}`;
      if (p.kind === "table" || (p.kind === "wal" && env.statSync(path).size > 0)) {
        throw new CorruptionError(
          `${dir}/CURRENT`,
          0,
          `CURRENT is missing but ${e.name} holds data`,
        );
      }
    }
  }

  /** Releases what a failed open acquired. */
  private abortOpen(): void {
    this.terminateWorkers();
    for (const t of this.tables.values()) t.close();
    this.tables.clear();
    try {
      this.wal?.close();
    } catch { /* ignore */ }
    this.vs.close();
    this.channel.port1.close();
    this.channel.port2.close();
    this.lock.release();
  }

  /** Replays the manifest and the live WAL files into the memtable. */
  private recoverSync(exists: boolean): void {
    const vs = this.vs;
    const recovered = new Memtable(64 * 1024, this.opts.memtableBytes);
    let maxSeq = vs.lastSequence;
    if (exists) {
      const wals = vs.wals.filter((n) => n >= vs.logNumber);
      let tornAt: string | undefined;
      for (let i = 0; i < wals.length; i++) {
        const path = walPath(this.dir, wals[i]);
        let data: Uint8Array;
        try {
          data = this.env.readFileSync(path);
        } catch (e) {
          if (e instanceof Deno.errors.NotFound) {
            throw new CorruptionError(path, 0, "live WAL missing");
          }
          throw e;
        }
        if (tornAt !== undefined) {
          // Point-in-time recovery stops at the first torn WAL. A later WAL
          // cannot hold writes (the old WAL is durable before the new one
          // takes any): if it does, applying or dropping them would both be wrong.
          let records = 0;
          try {
            readLog(data, path, () => records++);
          } catch {
            /* damaged: counts as holding data */ records = 1;
          }
          if (records > 0) {
            throw new CorruptionError(
              tornAt,
              0,
              `WAL ends in a torn write but a later WAL (${path}) holds writes`,
            );
          }
          continue;
        }
        const res = readLog(data, path, (rec, off) => {
          let b;
          try {
            b = decodeBatch(rec);
          } catch (e) {
            if (e instanceof BatchFormatError) throw new CorruptionError(path, off, e.message);
            throw e;
          }
          for (let j = 0; j < b.ops.length; j++) {
            const op = b.ops[j];
            recovered.add(b.seq + j, op.kind, op.key, op.value);
          }
          if (b.ops.length > 0 && b.seq + b.ops.length - 1 > maxSeq) {
            maxSeq = b.seq + b.ops.length - 1;
          }
        });
        if (res.tornTail) {
          // The write in progress at a power cut: cut it off, replay nothing after it.
          // Only zeros after the last record is where a (preallocated) WAL ends, not a torn write.
          const f = this.env.openSync(path, { write: true });
          f.truncateSync(res.validEnd);
          f.syncDataSync();
          f.close();
          if (!res.zeroTail) tornAt = path;
        }
      }
    }
    const edit: VersionEdit = { newFiles: [] };
    if (recovered.entries > 0) {
      const number = vs.newFileNumber();
      edit.newFiles!.push([0, this.writeMemtableSync(recovered, number)]);
      syncDir(this.dir, this.env);
    }
    // Without a WAL the number only marks every earlier WAL as replayed (they are removed).
    const walNum = vs.newFileNumber();
    if (this.opts.wal) {
      this.openWal(walNum);
      edit.addWals = [walNum];
    }
    this.mem.walNumber = walNum;
    edit.logNumber = walNum;
    edit.lastSequence = maxSeq;
    vs.writeNewManifest(edit);
    this.lastSeq = maxSeq;
    // Open every live table now so damage is reported at open.
    for (const level of vs.current.levels) for (const f of level) this.table(f);
    this.removeObsoleteFiles();
    this.prepareNextWal();
  }

  /**
   * Creates the WAL for the next memtable ahead of the switch: zero-filled to
   * `memtableBytes` (in 1 MiB steps between event-loop turns) and fdatasynced
   * off the main thread. Writes then overwrite allocated blocks, so each
   * fdatasync of a sync write flushes data only, without the file-size journal
   * commit an append needs (about half the latency on ext4).
   */
  private prepareNextWal(): void {
    if (!this.opts.wal || this.nextWal || this.closing || this.closed) return;
    if (this.walError !== undefined) return;
    const number = this.vs.newFileNumber();
    const prep = { number, ready: false, cancelled: false, done: Promise.resolve() };
    this.nextWal = prep;
    const path = walPath(this.dir, number);
    const size = this.opts.memtableBytes;
    const run = async () => {
      const f = this.env.openSync(path, { write: true, create: true, truncate: true });
      try {
        const zeros = walZeros.subarray(0, Math.min(size, walZeros.length));
        for (let done = 0; done < size; done += zeros.length) {
          writeFully(f, zeros.subarray(0, Math.min(zeros.length, size - done)));
          await this.yieldNow();
          if (prep.cancelled || this.closed || this.closing) throw new ClosedError();
        }
        await f.syncData();
      } finally {
        f.close();
      }
      if (prep.cancelled || this.closed) throw new ClosedError();
      prep.ready = true;
    };
    prep.done = run().catch(() => {
      // Not used (cancelled, closed, or an I/O error: the switch then creates a WAL as before).
      if (this.nextWal === prep) this.nextWal = undefined;
      this.discardPreparedWal(number);
    });
  }
  /** The WAL being prepared for the next memtable switch, if any. */
  private nextWal:
    | { number: number; ready: boolean; cancelled: boolean; done: Promise<void> }
    | undefined;

  /** Removes a prepared WAL that will not be used (named by no manifest: safe at any time). */
  private discardPreparedWal(number: number): void {
    try {
      this.env.removeSync(walPath(this.dir, number));
    } catch { /* never created, or already gone */ }
  }

  /**
   * A new active memtable, on ordinary arrays (reusing those of the previous active memtable
   * when no reader holds them): close() frees them at once. A Worker reads frozen memtables in
   * place, so with one a memtable moves onto shared arrays when it is frozen ({@linkcode
   * LsmDb.freeze}).
   */
  private newMemtable(): Memtable {
    // Sized for a full memtable up front (untouched pages cost nothing): growing by doubling
    // would copy and leave ~1.5x its size in dead arrays until a full garbage collection.
    const m = new Memtable(
      this.opts.memtableBytes,
      this.opts.memtableBytes,
      false,
      this.spareMem,
    );
    this.spareMem = undefined;
    return m;
  }
  /** Ordinary arrays no reader holds, for the next active memtable. */
  private spareMem: MemtableBuffers | undefined;
  /** Shared arrays of a flushed memtable that no reader holds, for the next frozen one. */
  private spareShared: MemtableBuffers | undefined;

  /** Freezes the active memtable (moved onto shared arrays when a Worker flushes). */
  private freeze(m: Memtable): void {
    if (this.opts.backgroundWorker) {
      this.spareMem = m.moveToShared(this.spareShared) ?? this.spareMem;
      this.spareShared = undefined;
    }
    this.imms.push(m);
  }

  /** Starts WAL file number `n` for new writes. */
  private openWal(n: number): void {
    const path = walPath(this.dir, n);
    const f = this.env.openSync(path, { write: true, create: true, truncate: true });
    this.wal = new LogWriter(f, path);
  }

  /** Deletes files that belong to no live version (used at open). */
  private removeObsoleteFiles(): void {
    const live = new Set<number>();
    for (const l of this.vs.current.levels) for (const f of l) live.add(f.number);
    const wals = new Set(this.vs.wals);
    for (const e of this.env.readDirSync(this.dir)) {
      if (!e.isFile) continue;
      const p = parseFileName(e.name);
      if (!p) continue;
      const keep = (p.kind === "table" && live.has(p.number)) ||
        (p.kind === "wal" && wals.has(p.number)) ||
        (p.kind === "manifest" && p.number === this.vs.manifestNumber);
      if (!keep) {
        try {
          this.env.removeSync(`${this.dir}/${e.name}`);
        } catch { /* ignore */ }
      }
    }
  }

  /** Writes a memtable to an SSTable (temp name, fsync, rename). */
  private writeMemtableSync(m: Memtable, number: number): FileMeta {
    const w = new TableWriter(tablePath(this.dir, number), this.opts, this.env);
    try {
      const it = m.iterator();
      for (it.seekToFirst(); it.valid(); it.next()) {
        w.add(it.userKey(), it.seq(), it.kind(), it.value());
      }
      const info = w.finish();
      return { number, size: info.size, smallest: info.smallest, largest: info.largest };
    } catch (e) {
      w.abandon();
      throw e;
    }
  }

  /** Opens (or returns the cached) reader of a table. */
  private table(f: FileMeta): TableReader {
    let t = this.tables.get(f.number);
    if (t === undefined) {
      t = TableReader.open(tablePath(this.dir, f.number), f.number, this.cache, this.env);
      this.tables.set(f.number, t);
    }
    return t;
  }

  // ---------------------------------------------------------------- writes

  /** Stores `value` under `key`. */
  put(key: Bytes, value: Bytes, options?: WriteOptions): Promise<void> {
    let op: Op;
    try {
      op = { kind: KIND_PUT, key: checkKey(key), value: checkValue(value) };
    } catch (e) {
      return Promise.reject(e);
    }
    return this.writeOps([op], options?.sync ?? this.opts.sync);
  }

  /** Removes `key` (writes a tombstone). */
  delete(key: Bytes, options?: WriteOptions): Promise<void> {
    let op: Op;
    try {
      op = { kind: KIND_DELETE, key: checkKey(key), value: undefined };
    } catch (e) {
      return Promise.reject(e);
    }
    return this.writeOps([op], options?.sync ?? this.opts.sync);
  }

  /** Applies all operations atomically (all or none survive a crash). */
  write(batch: BatchOperation[], options?: WriteOptions): Promise<void> {
    let ops: Op[];
    try {
      if (!Array.isArray(batch)) throw new InvalidArgumentError("batch", "must be an array");
      const n = batch.length;
      ops = new Array(n);
      let total = 0;
      for (let i = 0; i < n; i++) {
        const b = batch[i];
        const type = b?.type;
        let key = b?.key;
        // Fast path: byte keys/values of valid sizes; otherwise the checking helpers.
        if (!(key instanceof Uint8Array) || key.length === 0 || key.length > MAX_KEY_BYTES) {
          key = checkKey(key, `batch[${i}].key`);
        }
        if (type === "put") {
          let value = (b as { value: Bytes }).value;
          if (!(value instanceof Uint8Array) || value.length > MAX_VALUE_BYTES) {
            value = checkValue(value);
          }
          total += key.length + value.length;
          ops[i] = { kind: KIND_PUT, key, value };
        } else if (type === "delete") {
          total += key.length;
          ops[i] = { kind: KIND_DELETE, key, value: undefined };
        } else {
          throw new InvalidArgumentError(`batch[${i}].type`, 'must be "put" or "delete"');
        }
      }
      if (total > 0xffffffff - 1024) throw new InvalidArgumentError("batch", "too large");
    } catch (e) {
      return Promise.reject(e);
    }
    if (ops.length === 0) {
      return this.closed ? Promise.reject(new ClosedError()) : Promise.resolve();
    }
    return this.writeOps(ops, options?.sync ?? this.opts.sync);
  }

  /** Appends a batch to the WAL and the memtable; group-commits synced writes. */
  private writeOps(ops: Op[], sync: boolean): Promise<void> {
    if (this.closed || this.closing) return Promise.reject(new ClosedError());
    if (sync && !this.wal) {
      return Promise.reject(
        new InvalidArgumentError("sync", "the database has no WAL (wal: false); flush() instead"),
      );
    }
    if (this.walError !== undefined) return Promise.reject(this.walError);
    if (this.bgError !== undefined) return Promise.reject(this.bgError);
    if (this.queued === 0 && !this.needsRoom()) {
      try {
        return this.apply(ops, sync);
      } catch (e) {
        return Promise.reject(e);
      }
    }
    // Slow path: wait in FIFO order for flush/compaction to make room.
    this.counters.writeStalls++;
    this.queued++;
    // The next queued write waits only until this one is applied (order), not
    // until it is durable, so queued sync writes still share group commits.
    const prev = this.writeQueue ?? Promise.resolve();
    let applied!: () => void;
    const appliedP = new Promise<void>((r) => (applied = r));
    this.writeQueue = appliedP;
    return prev.then(async () => {
      try {
        const t0 = performance.now();
        await this.waitForRoom();
        this.counters.writeStallMs += performance.now() - t0;
        if (this.closed) throw new ClosedError();
        return this.apply(ops, sync);
      } finally {
        this.queued--;
        if (this.writeQueue === appliedP) this.writeQueue = undefined;
        applied();
      }
    });
  }

  /** True when the active memtable reached its size. */
  private memFull(): boolean {
    return this.mem.approximateBytes >= this.opts.memtableBytes;
  }

  /** True when writes must wait for flushes or L0 compaction. */
  private needsRoom(): boolean {
    return (this.memFull() && this.imms.length >= this.opts.maxMemtables - 1) ||
      this.vs.current.levels[0].length >= this.opts.l0StopTrigger;
  }

  /** Waits (never fails) until writes may proceed. */
  private async waitForRoom(): Promise<void> {
    for (;;) {
      if (this.bgError !== undefined) throw this.bgError;
      if (this.closed) throw new ClosedError();
      if (this.memFull() && this.imms.length < this.opts.maxMemtables - 1) this.rotateMemtable();
      if (!this.needsRoom()) return;
      this.scheduleBackground();
      await new Promise<void>((r) => this.bgWaiters.push(r));
    }
  }

  /** Appends ops to the WAL and memtable (synchronously). */
  private apply(ops: Op[], sync: boolean): Promise<void> {
    const seq = this.lastSeq + 1;
    if (this.wal) this.logBatch(this.wal, ops, seq, sync);
    const mem = this.mem;
    for (let i = 0; i < ops.length; i++) mem.add(seq + i, ops[i].kind, ops[i].key, ops[i].value);
    this.lastSeq = seq + ops.length - 1;
    let p: Promise<void>;
    if (sync) {
      p = (this.syncGroup ??= newSyncGroup(seq)).promise;
      if (this.syncInFlight === undefined) this.syncInFlight = this.groupCommit();
    } else {
      p = this.settle(undefined);
    }
    if (this.memFull() && this.imms.length < this.opts.maxMemtables - 1) {
      try {
        this.rotateMemtable();
      } catch {
        // Recorded by failWal: sync writers still waiting were refused; this
        // write, if not sync, was handed to the OS before the failure.
      }
    }
    return p;
  }

  /** Appends a batch to the WAL; without `sync` hands it to the OS at once. */
  private logBatch(wal: LogWriter, ops: Op[], seq: number, sync: boolean): void {
    let size = BATCH_HEADER;
    for (let i = 0; i < ops.length; i++) size += opSize(ops[i].kind, ops[i].key, ops[i].value);
    if (size > this.scratch.length) {
      this.scratch = new Uint8Array(Math.max(size, this.scratch.length * 2));
    }
    const buf = this.scratch;
    writeBatchHeader(buf, 0, seq, ops.length);
    let off = BATCH_HEADER;
    for (let i = 0; i < ops.length; i++) {
      off = writeOp(buf, off, ops[i].kind, ops[i].key, ops[i].value);
    }
    wal.addRecord(buf.subarray(0, off));
    if (this.scratch.length > 1 << 20) this.scratch = new Uint8Array(4096);
    if (!sync) {
      // Handed to the OS before the memtable sees it: a write refused here is never readable.
      try {
        wal.flushSync();
      } catch (e) {
        throw this.failWal(e);
      }
    }
  }

  /**
   * One fdatasync for every sync writer queued so far; repeats while more queue up. The
   * fdatasync runs on a thread-pool thread (`syncData`), off the event loop: reads and other work
   * go on while it runs. (Running it on this thread, as LevelDB's writer thread does, saved about
   * 0.5 ms per group on the 2-core development VM — 64 sync writers ~3.1x classic-level instead of
   * ~1.8x — but blocks the event loop for every group; the project keeps fsync off the loop.)
   */
  private async groupCommit(): Promise<void> {
    try {
      for (;;) {
        // One event-loop turn lets every writer that is ready (including those
        // just released by the previous sync) join this group.
        await this.yieldNow();
        const group = this.syncGroup;
        if (group === undefined) break;
        this.syncGroup = undefined;
        if (this.walError !== undefined) {
          // Never retry a failed fdatasync: its outcome is unknown.
          this.failWal(this.walError, group);
          continue;
        }
        const wal = this.wal!;
        try {
          Atomics.add(this.ioSignal, 0, 1);
          try {
            await wal.sync();
          } finally {
            Atomics.sub(this.ioSignal, 0, 1);
            Atomics.notify(this.ioSignal, 0);
          }
          this.counters.syncs++;
          group.resolve();
        } catch (e) {
          this.failWal(e, group);
        }
      }
    } finally {
      this.syncInFlight = undefined;
    }
  }

  /**
   * A WAL write or sync failed (e.g. disk full, EIO): the outcome of in-flight
   * writes is unknown, so they and every queued sync writer are refused, stay
   * invisible to reads, and every later write is refused with the same error
   * (the database is read-only until reopened, as in LevelDB). Returns the error.
   */
  private failWal(e: unknown, refused?: SyncGroup): LsmError {
    if (this.walError === undefined) {
      this.walError = e instanceof LsmError && e.code === "WAL_FAILED"
        ? e
        : new LsmError("WAL_FAILED", `write-ahead log failed; database is read-only: ${e}`, {
          cause: e,
        });
      this.reportFailure(this.walError);
    }
    const queued = this.syncGroup;
    this.syncGroup = undefined;
    for (const g of [refused, queued]) {
      if (g === undefined) continue;
      if (g.seq <= this.visibleSeq) this.visibleSeq = g.seq - 1;
      g.reject(this.walError);
    }
    return this.walError;
  }

  /**
   * Freezes the memtable and starts a new WAL. The old WAL is fdatasynced
   * first (on this thread), so the new one never takes a write while an older
   * one could still lose its tail: after a power cut, recovery's replay is a
   * prefix of the writes. The new WAL's directory entry is fsynced before the
   * manifest names it.
   */
  private rotateMemtable(): void {
    if (this.walError !== undefined) throw this.walError;
    const old = this.wal;
    if (!old) {
      const walNumber = this.mem.walNumber;
      this.freeze(this.mem);
      this.mem = this.newMemtable();
      this.mem.walNumber = walNumber;
      this.scheduleBackground();
      return;
    }
    const group = this.syncGroup;
    this.syncGroup = undefined;
    try {
      old.syncSync();
    } catch (e) {
      throw this.failWal(e, group);
    }
    group?.resolve();
    let n: number;
    try {
      const prep = this.nextWal;
      this.nextWal = undefined;
      if (prep?.ready) {
        // Preallocated and durable: written from offset 0 over its zeros.
        n = prep.number;
        const path = walPath(this.dir, n);
        this.wal = new LogWriter(this.env.openSync(path, { write: true }), path);
      } else {
        // Not ready: dropped, since WAL numbers must grow with every switch.
        if (prep) prep.cancelled = true;
        n = this.vs.newFileNumber();
        this.openWal(n);
      }
      syncDir(this.dir, this.env);
      this.vs.logAndApply({ addWals: [n] });
    } catch (e) {
      if (this.wal !== old) {
        this.wal?.abandon();
        this.wal = old;
      }
      throw this.failWal(e);
    }
    this.freeze(this.mem);
    this.mem = this.newMemtable();
    this.mem.walNumber = n;
    old.closeWhenIdle().catch(() => {});
    this.prepareNextWal();
    this.scheduleBackground();
  }

  // ---------------------------------------------------------------- reads

  /** Reads the newest value of `key`, or undefined. */
  get(key: Bytes): Promise<Uint8Array | undefined> {
    try {
      return this.settle(this._getAt(checkKey(key), this.visibleSeq));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** @internal Point lookup at a sequence number (synchronous). */
  _getAt(key: Uint8Array, seq: number): Uint8Array | undefined {
    if (this.closed) throw new ClosedError();
    if (seq > this.visibleSeq) seq = this.visibleSeq;
    const hash = bloomHash(key);
    let m = this.mem;
    let x = m.find(key, seq, hash);
    if (x >= 0) return m.kindOf(x) === KIND_PUT ? m.valueCopy(x) : undefined;
    for (let i = this.imms.length - 1; i >= 0; i--) {
      m = this.imms[i];
      x = m.find(key, seq, hash);
      if (x >= 0) return m.kindOf(x) === KIND_PUT ? m.valueCopy(x) : undefined;
    }
    const v = this.vs.current;
    const l0 = v.levels[0];
    for (let i = l0.length - 1; i >= 0; i--) {
      const f = l0[i];
      if (
        compareUserToInternal(key, f.smallest) < 0 || compareUserToInternal(key, f.largest) > 0
      ) {
        continue;
      }
      const r = this.table(f).get(key, seq, hash);
      if (r !== undefined) return r === TOMBSTONE ? undefined : r;
    }
    for (let l = 1; l < NUM_LEVELS; l++) {
      const files = v.levels[l];
      if (files.length === 0) continue;
      const i = v.findFile(l, key);
      if (i >= files.length) continue;
      const f = files[i];
      if (compareUserToInternal(key, f.smallest) < 0) continue;
      const r = this.table(f).get(key, seq, hash);
      if (r !== undefined) return r === TOMBSTONE ? undefined : r;
    }
    return undefined;
  }

  /**
   * Iterates live key/value pairs in key order (or reverse) over a consistent
   * snapshot taken when the scan starts. Yielded arrays are copies.
   */
  scan(opts: ScanOptions = {}): AsyncIterableIterator<[Uint8Array, Uint8Array]> {
    if (this.closed) throw new ClosedError();
    return this._scanAt(opts, Math.min(this.lastSeq, this.visibleSeq));
  }

  /** @internal */
  _scanAt(opts: ScanOptions, seq: number): AsyncIterableIterator<[Uint8Array, Uint8Array]> {
    let lower: Uint8Array | undefined;
    let lowerInclusive = true;
    let upper: Uint8Array | undefined;
    let upperInclusive = false;
    let prefix: Uint8Array | undefined;
    const raise = (b: Uint8Array, inc: boolean) => {
      const c = lower === undefined ? 1 : compareBytes(b, lower);
      if (c > 0 || (c === 0 && !inc)) (lower = b, lowerInclusive = inc);
    };
    const cut = (b: Uint8Array, inc: boolean) => {
      const c = upper === undefined ? -1 : compareBytes(b, upper);
      if (c < 0 || (c === 0 && !inc)) (upper = b, upperInclusive = inc);
    };
    if (opts.gte !== undefined) raise(boundBytes(opts.gte, "gte"), true);
    if (opts.gt !== undefined) raise(boundBytes(opts.gt, "gt"), false);
    if (opts.lt !== undefined) cut(boundBytes(opts.lt, "lt"), false);
    if (opts.lte !== undefined) cut(boundBytes(opts.lte, "lte"), true);
    if (opts.prefix !== undefined) {
      prefix = boundBytes(opts.prefix, "prefix");
      if (prefix.length > 0) {
        raise(prefix, true);
        const s = prefixSuccessor(prefix);
        if (s) cut(s, false);
      }
    }
    const limit = opts.limit ?? Infinity;
    if (typeof limit !== "number" || !(limit >= 0)) {
      throw new InvalidArgumentError("limit", "must be >= 0");
    }
    return this.scanGen(
      seq,
      lower,
      lowerInclusive,
      upper,
      upperInclusive,
      prefix,
      limit,
      !!opts.reverse,
    );
  }

  /** Takes a reference on the current version for a reader. */
  private pinVersion(): Version {
    const v = this.vs.current;
    this.versionRefs.set(v, (this.versionRefs.get(v) ?? 0) + 1);
    return v;
  }

  /** Drops a reader's reference; obsolete files may be deleted. */
  private unpinVersion(v: Version): void {
    const n = (this.versionRefs.get(v) ?? 1) - 1;
    if (n <= 0) this.versionRefs.delete(v);
    else this.versionRefs.set(v, n);
    this.deleteObsoleteTables();
  }

  /** A merging iterator over the memtables and the tables of `v`. */
  private buildIterator(v: Version): MergingIterator {
    const ch: InternalIterator[] = [this.mem.iterator()];
    for (let i = this.imms.length - 1; i >= 0; i--) ch.push(this.imms[i].iterator());
    const l0 = v.levels[0];
    for (let i = l0.length - 1; i >= 0; i--) ch.push(this.table(l0[i]).iterator());
    for (let l = 1; l < NUM_LEVELS; l++) {
      if (v.levels[l].length > 0) {
        ch.push(new LevelIterator(v.levels[l], (f) => this.table(f)));
      }
    }
    return new MergingIterator(ch);
  }

  /** The generator behind scan(): one pinned version and sequence (and its memtables). */
  private scanGen(
    seq: number,
    lower: Uint8Array | undefined,
    lowerInc: boolean,
    upper: Uint8Array | undefined,
    upperInc: boolean,
    prefix: Uint8Array | undefined,
    limit: number,
    reverse: boolean,
  ): AsyncIterableIterator<[Uint8Array, Uint8Array]> {
    let empty = limit === 0;
    if (lower && upper) {
      const c = compareBytes(lower, upper);
      if (c > 0 || (c === 0 && !(lowerInc && upperInc))) empty = true;
    }
    if (empty) return new ScanCursor(undefined, () => undefined, () => {});
    const v = this.pinVersion();
    // The memtables stay readable while the scan runs: their arrays are not reused before.
    const mems = [this.mem, ...this.imms];
    for (const m of mems) m.readers++;
    const release = () => {
      for (const m of mems) m.readers--;
      this.unpinVersion(v);
    };
    let it: MergingIterator;
    try {
      it = this.buildIterator(v);
    } catch (e) {
      release();
      throw e;
    }
    let count = 0;
    let started = false;
    let cur: Uint8Array | undefined;
    let bound = upper;
    let first = true;
    const forward = (): [Uint8Array, Uint8Array] | undefined => {
      if (!started) {
        started = true;
        if (lower) it.seek(lower, MAX_SEQ);
        else it.seekToFirst();
      }
      while (it.valid()) {
        if (it.seq() > seq) {
          it.next();
          continue;
        }
        const uk = it.userKey();
        if (cur !== undefined && compareBytes(uk, cur) === 0) {
          it.next();
          continue;
        }
        cur = copyBytes(uk);
        if (!lowerInc && lower && compareBytes(cur, lower) === 0) {
          it.next();
          continue;
        }
        if (upper) {
          const c = compareBytes(cur, upper);
          if (c > 0 || (c === 0 && !upperInc)) return undefined;
        }
        if (prefix && !hasPrefix(cur, prefix)) return undefined;
        if (it.kind() === KIND_PUT) {
          const val = copyBytes(it.value());
          it.next();
          return [cur, val];
        }
        it.next();
      }
      return undefined;
    };
    const backward = (): [Uint8Array, Uint8Array] | undefined => {
      for (;;) {
        if (first && upper && upperInc) {
          // Inclusive upper bound: look at `upper` itself first.
          first = false;
          it.seek(upper, seq);
          if (
            it.valid() && compareBytes(it.userKey(), upper) === 0 && it.kind() === KIND_PUT &&
            (!prefix || hasPrefix(upper, prefix))
          ) {
            return [copyBytes(upper), copyBytes(it.value())];
          }
          continue;
        }
        first = false;
        if (bound) it.seekLT(bound);
        else it.seekToLast();
        if (!it.valid()) return undefined;
        const k = copyBytes(it.userKey());
        if (lower) {
          const c = compareBytes(k, lower);
          if (c < 0 || (c === 0 && !lowerInc)) return undefined;
        }
        if (prefix && !hasPrefix(k, prefix)) return undefined;
        bound = k;
        it.seek(k, seq);
        if (it.valid() && compareBytes(it.userKey(), k) === 0 && it.kind() === KIND_PUT) {
          return [k, copyBytes(it.value())];
        }
      }
    };
    const step = reverse ? backward : forward;
    return new ScanCursor(
      v,
      () => {
        if (this.closed) throw new ClosedError();
        if (count >= limit) return undefined;
        const r = step();
        if (r !== undefined) count++;
        return r;
      },
      release,
      (x) => this.settle(x),
    );
  }

  /** Takes a consistent snapshot; call {@linkcode Snapshot.release} when done. */
  snapshot(): Snapshot {
    if (this.closed) throw new ClosedError();
    const s = Math.min(this.lastSeq, this.visibleSeq);
    this.snapshots.set(s, (this.snapshots.get(s) ?? 0) + 1);
    return new Snapshot(this, s);
  }

  /** @internal */
  _releaseSnapshot(seq: number): void {
    const n = (this.snapshots.get(seq) ?? 1) - 1;
    if (n <= 0) this.snapshots.delete(seq);
    else this.snapshots.set(seq, n);
  }

  /** The oldest sequence an open snapshot can still read. */
  private smallestSnapshot(): number {
    let s = this.lastSeq;
    for (const k of this.snapshots.keys()) if (k < s) s = k;
    return s;
  }

  // ---------------------------------------------------------------- background

  /**
   * Resolves `v` right away, except at most every few milliseconds, when it
   * resolves after one event-loop turn: a caller looping on already-resolved
   * promises would otherwise never let worker replies and I/O be processed.
   */
  private settle<T>(v: T): Promise<T> {
    const now = performance.now();
    if (now - this.lastTurn < 4) return Promise.resolve(v);
    this.lastTurn = now;
    return this.yieldNow().then(() => v);
  }
  private lastTurn = 0;

  /** Lets one event-loop turn through (worker replies) every few ms. */
  private yieldNow(): Promise<void> {
    return new Promise<void>((r) => {
      this.yieldResolvers.push(r);
      if (this.yieldResolvers.length === 1) this.channel.port2.postMessage(0);
    });
  }

  /** Wakes writers waiting for room. */
  private wakeWaiters(): void {
    const ws = this.bgWaiters;
    this.bgWaiters = [];
    for (const w of ws) w();
  }

  /** Starts a flush or compaction when one is needed and none runs. */
  private scheduleBackground(): void {
    if (this.closed || this.bgError !== undefined) return;
    if (!this.flushRunning && this.imms.length > 0) {
      this.flushRunning = this.flushLoop().finally(() => {
        this.flushRunning = undefined;
        this.wakeWaiters();
      });
    }
    if (!this.compactRunning && !this.manualCompaction && !this.closing) {
      const c = pickCompaction(this.vs.current, this.opts, this.pointers);
      if (c) {
        this.compactRunning = this.compactionLoop(c).finally(() => {
          this.compactRunning = undefined;
          this.wakeWaiters();
          this.scheduleBackground();
        });
      }
    }
  }

  /** Records a background error (typed, reported once); later writes are refused with it. */
  private backgroundFailed(e: unknown, operation: "flush" | "compaction"): void {
    if (!this.closed && !this.closing && this.bgError === undefined) {
      const err = e instanceof CorruptionError ||
          (e instanceof LsmError && (e.code === "WAL_FAILED" || e.code === "BACKGROUND_FAILED"))
        ? e
        : new BackgroundError(operation, e);
      this.bgError = err;
      this.reportFailure(err);
    }
    this.wakeWaiters();
  }

  /** Reports the failed state once (the onFailure option, else stderr). */
  private reportFailure(e: LsmError): void {
    if (this.failureReported) return;
    this.failureReported = true;
    try {
      if (this.onFailure) this.onFailure(e);
      else console.error(`lsm: database ${this.dir} failed: ${e.message}`);
    } catch { /* a failing callback must not break the engine */ }
  }
  private failureReported = false;

  /**
   * The error that put the database in its failed state (writes refused until
   * reopen), or undefined while it is healthy. See `onFailure` in the options.
   */
  get failure(): LsmError | undefined {
    return this.walError ?? (this.bgError as LsmError | undefined);
  }

  /** Flushes immutable memtables to L0 until none is left. */
  private async flushLoop(): Promise<void> {
    try {
      while (!this.closed && this.imms.length > 0) {
        const t0 = performance.now();
        await this.flushOldestImm();
        this.reportWork("flush", t0);
        this.wakeWaiters();
        this.scheduleBackground();
      }
    } catch (e) {
      this.backgroundFailed(e, "flush");
    }
  }

  /** Runs compactions while the picker finds work. */
  private async compactionLoop(first: Compaction): Promise<void> {
    try {
      let c: Compaction | undefined = first;
      while (c && !this.closed && !this.closing && !this.manualCompaction) {
        await this.doCompaction(c);
        this.wakeWaiters();
        if (this.bgError !== undefined) return;
        c = pickCompaction(this.vs.current, this.opts, this.pointers);
      }
    } catch (e) {
      this.backgroundFailed(e, "compaction");
    }
  }

  /** Flushes the oldest immutable memtable and records it in the manifest. */
  private async flushOldestImm(): Promise<void> {
    const m = this.imms[0];
    const edit: VersionEdit = {};
    if (m.entries > 0) {
      const number = this.vs.newFileNumber();
      if (this.opts.backgroundWorker) {
        // Shared arrays: the worker reads the frozen memtable in place.
        const out = await this.worker.request({
          type: "flush",
          dir: this.dir,
          path: tablePath(this.dir, number),
          number,
          opts: this.opts,
          mem: m.exportState(),
        });
        if (this.closed) throw new ClosedError();
        edit.newFiles = [[0, out.files[0]]];
      }
      const w = this.opts.backgroundWorker
        ? undefined
        : new TableWriter(tablePath(this.dir, number), this.opts, this.env);
      if (w) {
        try {
          const it = m.iterator();
          let n = 0;
          for (it.seekToFirst(); it.valid(); it.next()) {
            w.add(it.userKey(), it.seq(), it.kind(), it.value());
            if ((++n & 1023) === 0) await this.yieldNow();
            if (this.closed) throw new ClosedError();
          }
          const info = w.finish();
          syncDir(this.dir, this.env);
          edit.newFiles = [[0, {
            number,
            size: info.size,
            smallest: info.smallest,
            largest: info.largest,
          }]];
        } catch (e) {
          w.abandon();
          throw e;
        }
      }
    }
    // After a WAL failure nothing is installed: the memtables may hold writes
    // that were refused, and the WALs still hold everything acknowledged.
    if (this.walError !== undefined) throw this.walError;
    const nextLog = this.imms.length > 1 ? this.imms[1].walNumber : this.mem.walNumber;
    edit.logNumber = nextLog;
    edit.lastSequence = Math.max(m.maxSeq, this.vs.lastSequence);
    const obsoleteWals = this.vs.wals.filter((n) => n < nextLog);
    this.vs.logAndApply(edit);
    this.imms.shift();
    if (m.readers === 0 && !this.closed) {
      const b = m.releaseBuffers();
      if (b.shared) this.spareShared = b;
      else this.spareMem ??= b;
    }
    this.counters.flushes++;
    for (const n of obsoleteWals) {
      try {
        this.env.removeSync(walPath(this.dir, n));
      } catch { /* already gone */ }
    }
    this.maybeRollManifest();
  }

  /** Starts a new manifest when the current one grew too large. */
  private maybeRollManifest(): void {
    if (this.vs.manifestBytes < 4 << 20) return;
    const old = this.vs.writeNewManifest({});
    try {
      this.env.removeSync(manifestPath(this.dir, old));
    } catch { /* ignore */ }
  }

  /** What a merge needs: inputs, snapshot floor, output sizing. */
  private mergeContext(c: Compaction): MergeContext {
    const outLevel = c.level + 1;
    const v = this.vs.current;
    return {
      opts: this.opts,
      env: this.env,
      table: (f) => this.table(f),
      newTable: () => {
        const number = this.newMergeOutput();
        return { number, path: tablePath(this.dir, number) };
      },
      smallestSnapshot: this.smallestSnapshot(),
      isBaseLevelForKey: (uk) => {
        for (let l = outLevel + 1; l < NUM_LEVELS; l++) {
          const files = v.levels[l];
          const i = v.findFile(l, uk);
          if (i < files.length && compareUserToInternal(uk, files[i].smallest) >= 0) return false;
        }
        return true;
      },
      yield: async () => {
        await this.yieldNow();
        if (this.closed || this.closing) throw new ClosedError();
      },
    };
  }

  /** Reports finished background work to {@link LsmDb.onBackgroundWork}. */
  private reportWork(kind: "flush" | "compaction" | "move", t0: number): void {
    try {
      this.onBackgroundWork?.(kind, (performance.now() - t0) / 1000);
    } catch { /* a metrics callback never fails background work */ }
  }

  /** Runs one compaction; inputs are deleted only after outputs are durable. */
  private async doCompaction(c: Compaction): Promise<void> {
    const t0 = performance.now();
    const edit: VersionEdit = { deletedFiles: [], newFiles: [] };
    for (const f of c.inputs) edit.deletedFiles!.push([c.level, f.number]);
    if (c.trivialMove) {
      edit.newFiles!.push([c.level + 1, c.inputs[0]]);
      this.vs.logAndApply(edit);
      this.pointers[c.level] = c.inputs[0].largest;
      this.counters.compactions++;
      this.reportWork("move", t0);
      return;
    }
    const v = this.pinVersion();
    try {
      this.mergeOutputs = [];
      let out: MergeOutput;
      try {
        out = this.opts.backgroundWorker
          ? await this.mergeInWorker(c, v)
          : await runMerge(c, this.mergeContext(c));
        if (!this.opts.backgroundWorker) syncDir(this.dir, this.env);
      } catch (e) {
        this.removeFailedMergeOutputs();
        throw e;
      }
      this.mergeOutputs = [];
      for (const f of c.overlaps) edit.deletedFiles!.push([c.level + 1, f.number]);
      for (const f of out.files) edit.newFiles!.push([c.level + 1, f]);
      this.vs.logAndApply(edit);
      this.counters.compactions++;
      this.counters.compactionBytesRead += out.bytesRead;
      this.counters.compactionBytesWritten += out.bytesWritten;
      this.reportWork("compaction", t0);
      let largest = c.inputs[0].largest;
      for (const f of c.inputs) if (compareBytes(f.largest, largest) > 0) largest = f.largest;
      this.pointers[c.level] = largest;
      for (const f of [...c.inputs, ...c.overlaps]) this.obsoleteTables.push(f.number);
    } finally {
      this.unpinVersion(v);
    }
  }

  /** Allocates a file number for an output of the running merge. */
  private newMergeOutput(): number {
    const n = this.vs.newFileNumber();
    this.mergeOutputs.push(n);
    return n;
  }

  /**
   * A merge failed (error, worker crash, close) before its outputs were named in the manifest:
   * nothing references them, so they are removed now rather than left on disk until a reopen.
   */
  private removeFailedMergeOutputs(): void {
    const numbers = this.mergeOutputs;
    this.mergeOutputs = [];
    for (const n of numbers) {
      for (const path of [tablePath(this.dir, n), `${tablePath(this.dir, n)}.tmp`]) {
        try {
          this.env.removeSync(path);
        } catch { /* never written, or already gone */ }
      }
    }
  }

  /** Runs a compaction's merge in the background worker. */
  private mergeInWorker(c: Compaction, v: Version): Promise<MergeOutput> {
    let bytes = 0;
    for (const f of c.inputs) bytes += f.size;
    for (const f of c.overlaps) bytes += f.size;
    const fileNumbers: number[] = [];
    const n = Math.ceil((bytes * 1.1) / this.opts.targetFileBytes) + 2;
    for (let i = 0; i < n; i++) fileNumbers.push(this.newMergeOutput());
    return this.worker.request({
      fileNumbers,
      type: "merge",
      dir: this.dir,
      compaction: c,
      opts: this.opts,
      smallestSnapshot: this.smallestSnapshot(),
      levels: v.levels,
      ioSignal: this.ioSignal,
    });
  }

  /** Stops the background worker (resolves when its thread has exited). */
  private terminateWorkers(): Promise<void> {
    return this.worker.terminate();
  }

  /** Deletes obsolete tables that no pinned version still references. */
  private deleteObsoleteTables(): void {
    if (this.obsoleteTables.length === 0) return;
    const inUse = new Set<number>();
    const versions = [this.vs.current, ...this.versionRefs.keys()];
    for (const v of versions) for (const l of v.levels) for (const f of l) inUse.add(f.number);
    const keep: number[] = [];
    for (const n of this.obsoleteTables) {
      if (inUse.has(n)) {
        keep.push(n);
        continue;
      }
      this.tables.get(n)?.close();
      this.tables.delete(n);
      this.cache.evictFile(n);
      this.removals.push(tablePath(this.dir, n));
    }
    this.obsoleteTables = keep;
    this.startRemovals();
  }

  /**
   * Starts a removal pass unless one runs. `removing` is cleared in a callback of the pass's
   * promise, never inside the pass: a pass that ends without yielding would clear it before it
   * is stored and leave it set for good (no later pass would start). Paths queued while a pass
   * ends are picked up by the next one.
   */
  private startRemovals(): void {
    if (this.removing || this.removals.length === 0) return;
    this.removing = this.drainRemovals().finally(() => {
      this.removing = null;
      this.startRemovals();
    });
  }

  /**
   * Unlinks the queued obsolete files, yielding to the event loop every few milliseconds:
   * releasing a snapshot that pinned a large database can free hundreds of tables, whose
   * unlinks in one go held the loop for half a second. A file left by a crash meanwhile belongs
   * to no version and is removed at the next open ({@link removeObsoleteFiles}).
   */
  private async drainRemovals(): Promise<void> {
    let since = performance.now();
    while (this.removals.length > 0) {
      const path = this.removals.shift()!;
      try {
        this.env.removeSync(path);
      } catch { /* ignore */ }
      if (performance.now() - since >= 4) {
        await new Promise((r) => setTimeout(r, 0));
        since = performance.now();
      }
    }
  }

  /** Waits until the background loop is idle. */
  private async waitBackgroundIdle(): Promise<void> {
    while (this.flushRunning || this.compactRunning) {
      await (this.flushRunning ?? this.compactRunning);
    }
    if (this.bgError !== undefined) throw this.bgError;
  }

  /** Flushes the memtable to an L0 table and waits for it. */
  async flush(): Promise<void> {
    if (this.closed) throw new ClosedError();
    if (this.writeQueue) await this.writeQueue;
    if (this.mem.entries > 0) this.rotateMemtable();
    for (;;) {
      this.scheduleBackground();
      await this.waitBackgroundIdle();
      if (this.imms.length === 0) return;
    }
  }

  /**
   * Flushes the memtable and compacts every level overlapping `range` (all
   * when omitted) down into the deepest non-empty level.
   */
  async compact(range: CompactRange = {}): Promise<void> {
    const lo = range.start !== undefined ? boundBytes(range.start, "start") : undefined;
    const hi = range.end !== undefined ? boundBytes(range.end, "end") : undefined;
    await this.flush();
    this.manualCompaction = true;
    try {
      await this.waitBackgroundIdle();
      let deepest = 0;
      const v0 = this.vs.current;
      for (let l = 0; l < NUM_LEVELS; l++) if (v0.levels[l].length > 0) deepest = l;
      if (deepest === 0 && v0.levels[0].length > 0) deepest = 1; // L0 at least moves to L1
      for (let l = 0; l < deepest; l++) {
        if (this.closed) throw new ClosedError();
        const v = this.vs.current;
        const inputs = l === 0 ? v.levels[0].slice() : v.overlapping(l, lo, hi);
        if (inputs.length === 0) continue;
        if (
          l === 0 && (lo !== undefined || hi !== undefined) && v.overlapping(0, lo, hi).length === 0
        ) {
          continue;
        }
        await this.doCompaction(makeCompaction(v, l, inputs));
        await this.waitBackgroundIdle();
      }
    } finally {
      this.manualCompaction = false;
    }
    this.scheduleBackground();
  }

  /** Engine statistics. */
  stats(): LsmStats {
    const v = this.vs.current;
    const scores = levelScores(v, this.opts);
    let metaBytes = 0;
    for (const t of this.tables.values()) metaBytes += t.metaBytes;
    let memBytes = this.mem.approximateBytes;
    for (const m of this.imms) memBytes += m.approximateBytes;
    const s: LsmStats = {
      levels: v.levels.map((files, level) => ({
        level,
        files: files.length,
        bytes: v.levelBytes(level),
        score: level < scores.length ? scores[level] : 0,
      })),
      ...this.counters,
      memtableBytes: memBytes,
      immutableMemtables: this.imms.length,
      cacheHits: this.cache.hits,
      cacheMisses: this.cache.misses,
      cacheBytes: this.cache.size,
      tableMetaBytes: metaBytes,
      lastSequence: this.lastSeq,
      liveSnapshots: [...this.snapshots.values()].reduce((a, b) => a + b, 0),
    };
    const err = this.bgError ?? this.walError;
    if (err !== undefined) s.backgroundError = err instanceof Error ? err.message : String(err);
    return s;
  }

  /** Target bytes of each level (for tooling). */
  levelTargets(): number[] {
    return Array.from(
      { length: NUM_LEVELS },
      (_, l) => (l === 0 ? 0 : maxBytesForLevel(this.opts, l)),
    );
  }

  /** True after {@linkcode LsmDb.close}. */
  get isClosed(): boolean {
    return this.closed;
  }

  /**
   * Waits for queued writes and background work, syncs the WAL and releases
   * every resource. Idempotent.
   */
  async close(): Promise<void> {
    if (this.closed || this.closing) return;
    // Without a WAL, a clean close flushes: what the memtables hold survives it.
    if (!this.wal && this.bgError === undefined) {
      await this.flush().catch(() => {/* the failure is reported; close anyway */});
      if (this.closed || this.closing) return;
    }
    this.closing = true;
    try {
      if (this.writeQueue) await this.writeQueue;
      if (this.syncInFlight) await this.syncInFlight;
      const prep = this.nextWal;
      if (prep) {
        prep.cancelled = true;
        await prep.done;
      }
      Atomics.store(this.ioSignal, 1, 1);
      while (this.flushRunning || this.compactRunning) {
        await (this.flushRunning ?? this.compactRunning);
      }
      while (this.removing) await this.removing;
    } finally {
      this.closed = true;
      this.wakeWaiters();
      const wal = this.wal;
      try {
        if (!wal) { /* nothing to sync */ }
        else if (this.walError !== undefined) wal.abandon(); // never retry a failed WAL
        else {
          wal.syncSync();
          wal.close();
        }
      } catch {
        try {
          wal?.abandon();
        } catch { /* best effort */ }
      }
      this.vs.close();
      const prep = this.nextWal;
      this.nextWal = undefined;
      if (prep) {
        prep.cancelled = true;
        if (prep.ready) this.discardPreparedWal(prep.number);
      }
      for (const t of this.tables.values()) t.close();
      this.tables.clear();
      this.cache.release();
      // No read runs after close: the memtables' memory goes now (or, shared, at the next GC).
      for (const m of [this.mem, ...this.imms]) m.dispose();
      this.imms = [];
      if (this.spareMem !== undefined) freeMemtableBuffers(this.spareMem);
      this.spareMem = undefined;
      this.spareShared = undefined;
      this.channel.port1.close();
      this.channel.port2.close();
      for (const r of this.yieldResolvers) r();
      const stopped = this.terminateWorkers();
      this.lock.release();
      // close() resolves once the worker thread is gone: its memory is released by then.
      await stopped;
    }
  }
}
