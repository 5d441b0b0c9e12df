/**
 * The segmented, CRC-checked Raft log used by the lsm backend. It is the node's only write-ahead
 * log: the state machine writes to the LSM without syncing and is replayed from this log after a
 * crash.
 *
 * - Records (entries, hard states, snapshot markers) are buffered by `append`/`setHardState` and
 *   written as one checksummed batch with one write and one fdatasync per `sync()` (group commit).
 *   The fdatasync runs off the event loop (`EnvFile.syncData`): the node keeps receiving messages
 *   and proposals while it runs, and records buffered meanwhile go into the next batch. Syncs run
 *   one at a time, in order; a sync resolves once its batch and every earlier one is durable.
 * - Segments `wal-<seq>.log` roll when they reach `segmentBytes`. A new segment starts with a
 *   Header record (snapshot metadata + hard state) and is created through a temporary file and a
 *   rename, so a segment either exists whole or not at all.
 * - Snapshot data is kept in `snap-<index>.snap` (meta record + data + CRC32C), written durably
 *   before the Snapshot record that refers to it. Whole segments whose entries are all covered by
 *   the snapshot are deleted; entries after the snapshot index are always kept.
 * - On open every segment is replayed. In the last segment a bad batch with the shape of an
 *   interrupted write is a torn tail and is cut off; any other bad batch is a
 *   {@link CorruptionError} (rules in segment_format.ts and storage/FORMAT.md).
 *
 * @module
 */
import { join } from "node:path";
import type { LogStore } from "../raft/storage.ts";
import type { Entry, HardState, Snapshot, SnapshotMeta } from "../raft/types.ts";
import { ByteWriter } from "./bytes.ts";
import { crc32c } from "./crc32c.ts";
import { CorruptionError, StorageIoError, StoreClosedError } from "./errors.ts";
import {
  denoEnv,
  type DirLock,
  type Env,
  type EnvFile,
  fsyncDir,
  lockDir,
  mkdirDurable,
  readFileIfExists,
  removeIfExists,
  writeFileAtomic,
  writeFully,
} from "./fsutil.ts";
import { Pacer, settle } from "./settle.ts";
import { cloneMeta, LogCoreReads } from "./log_core.ts";
import type { Logger } from "../raft/logger.ts";
import { nullLogger } from "../raft/logger.ts";
import {
  BATCH_HEADER_SIZE,
  beginBatch,
  decodeRecordAt,
  encodeBatch,
  type LogRecord,
  RecordType,
  scanSegment,
  sealBatch,
  SEGMENT_MAGIC,
  writeEntryRecord,
  writeHardStateRecord,
  writeHeaderRecord,
  writeSnapshotRecord,
} from "./segment_format.ts";

/** Options of {@link SegmentLogStore.open}. */
export interface SegmentLogOptions {
  /** Roll to a new segment once the current one reaches this size (default 64 MiB). */
  segmentBytes?: number;
  /** Where to report repairs. */
  logger?: Logger;
  /** The file system (default: the real one; tests pass a fault-injecting one). */
  env?: Env;
}

const SNAP_MAGIC = new TextEncoder().encode("GKVSNPF1");
const SEG_RE = /^wal-(\d{16})\.log$/;
const SNAP_RE = /^snap-(\d{20})\.snap$/;

function segName(seq: number): string {
  return `wal-${String(seq).padStart(16, "0")}.log`;
}

function snapName(index: number): string {
  return `snap-${String(index).padStart(20, "0")}.snap`;
}

interface SegmentInfo {
  seq: number;
  /** The highest entry index written to the segment (0 if none or superseded). */
  maxIndex: number;
}

/** The head of a snapshot file: magic, Snapshot record (meta), u64 length of the data; the data
 * and crc32c(data) follow. */
function encodeSnapshotHead(snap: Snapshot): Uint8Array {
  const w = new ByteWriter(256);
  w.raw(SNAP_MAGIC);
  writeSnapshotRecord(w, snap.meta, true, "v1");
  w.u64(snap.data.length);
  return w.finish();
}

/** Bytes of snapshot data written (and checksummed) between two turns of the event loop. */
const SNAP_SLICE = 1 << 20;

function decodeSnapshotFile(name: string, buf: Uint8Array): Snapshot {
  for (let i = 0; i < SNAP_MAGIC.length; i++) {
    if (buf[i] !== SNAP_MAGIC[i]) throw new CorruptionError(name, 0, "magic");
  }
  const d = decodeRecordAt(buf, SNAP_MAGIC.length);
  if (d.status !== "ok" || d.record.type !== RecordType.Snapshot) {
    throw new CorruptionError(name, SNAP_MAGIC.length, "meta");
  }
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  if (d.next + 8 > buf.length) throw new CorruptionError(name, d.next, "truncated");
  const len = dv.getUint32(d.next, true) + dv.getUint32(d.next + 4, true) * 0x1_0000_0000;
  const start = d.next + 8;
  if (start + len + 4 !== buf.length) throw new CorruptionError(name, d.next, "length");
  const data = buf.slice(start, start + len);
  if (crc32c(data) !== dv.getUint32(start + len, true)) {
    throw new CorruptionError(name, start, "checksum");
  }
  return { meta: d.record.meta, data };
}

/** A Raft log in CRC-checked, group-committed segment files. */
export class SegmentLogStore extends LogCoreReads implements LogStore {
  readonly #dir: string;
  readonly #segmentBytes: number;
  readonly #logger: Logger;
  readonly #segments: SegmentInfo[] = [];
  readonly #env: Env;
  #file: EnvFile | null = null;
  #fileSize = 0;
  readonly #buf = new ByteWriter(64 * 1024);
  #hsDirty = false;
  /** The highest entry index buffered for the next batch (0: none). */
  #bufMaxIndex = 0;
  #pendingSnap: Snapshot | null = null;
  /** The snapshot a running sync writes (its file may not exist yet). */
  #writingSnap: Snapshot | null = null;
  /** The last sync in the queue (syncs run one at a time). */
  #syncTail: Promise<void> = Promise.resolve();
  #syncs = 0;
  #closed = false;
  #lock: DirLock | null = null;
  /** Set by the first failed I/O: the store is unusable from then on. */
  #failed: StorageIoError | null = null;

  private constructor(dir: string, opts: SegmentLogOptions) {
    super();
    this.#dir = dir;
    this.#env = opts.env ?? denoEnv;
    this.#segmentBytes = opts.segmentBytes ?? 64 * 1024 * 1024;
    this.#logger = opts.logger ?? nullLogger;
    beginBatch(this.#buf);
  }

  /** Opens (or creates) the log in `dir`, repairing a torn tail. */
  static open(dir: string, opts: SegmentLogOptions = {}): Promise<SegmentLogStore> {
    return settle(() => SegmentLogStore.#openSync(dir, opts));
  }

  static #openSync(dir: string, opts: SegmentLogOptions): SegmentLogStore {
    const env = opts.env ?? denoEnv;
    mkdirDurable(env, dir);
    const s = new SegmentLogStore(dir, opts);
    s.#lock = lockDir(env, dir);
    try {
      s.#load();
    } catch (e) {
      s.#file?.close();
      s.#lock.release();
      throw e;
    }
    return s;
  }

  #load(): void {
    const seqs: number[] = [];
    const snaps: string[] = [];
    const env = this.#env;
    for (const d of env.readDirSync(this.#dir)) {
      const m = SEG_RE.exec(d.name);
      if (m) seqs.push(Number(m[1]));
      else if (SNAP_RE.test(d.name)) snaps.push(d.name);
      else if (d.name.endsWith(".tmp")) removeIfExists(env, join(this.#dir, d.name));
    }
    seqs.sort((a, b) => a - b);
    for (let i = 1; i < seqs.length; i++) {
      if (seqs[i] !== seqs[i - 1] + 1) {
        throw new CorruptionError(segName(seqs[i]), 0, "missing segment", segName(seqs[i - 1] + 1));
      }
    }
    if (seqs.length === 0) {
      this.#createSegment(1);
    } else {
      const version = this.#replay(seqs);
      const last = seqs[seqs.length - 1];
      if (version === 2) {
        this.#file = env.openSync(join(this.#dir, segName(last)), { write: true, append: true });
        this.#fileSize = this.#file.sizeSync();
      } else {
        // Never append to a segment of an older format: continue in a new v2 segment.
        this.#createSegment(last + 1);
      }
    }
    const keep = this.core.snap.index > 0 ? snapName(this.core.snap.index) : "";
    if (keep && !snaps.includes(keep)) throw new CorruptionError(keep, 0, "missing snapshot");
    for (const n of snaps) if (n !== keep) removeIfExists(env, join(this.#dir, n));
  }

  /**
   * Replays all segments into the in-memory log (see the module documentation). Returns the
   * format version of the last segment.
   */
  #replay(seqs: number[]): number {
    let snap: SnapshotMeta | null = null;
    let hs: HardState = { term: 0, vote: 0, commit: 0 };
    let ents: Entry[] = [];
    let version = 0;
    for (let si = 0; si < seqs.length; si++) {
      const name = segName(seqs[si]);
      const path = join(this.#dir, name);
      const buf = this.#env.readFileSync(path);
      const scan = scanSegment(buf);
      const isLast = si === seqs.length - 1;
      version = scan.version;
      if (scan.error) {
        if (!isLast || !scan.error.torn || scan.records.length === 0) {
          throw new CorruptionError(name, scan.error.offset, scan.error.reason);
        }
        this.#logger.warn("truncating torn log tail", {
          file: name,
          offset: scan.error.offset,
          dropped: buf.length - scan.validEnd,
        });
        const f = this.#env.openSync(path, { write: true });
        try {
          f.truncateSync(scan.validEnd);
          f.syncDataSync();
        } finally {
          f.close();
        }
      }
      const first = scan.records[0];
      if (!first || first.type !== RecordType.Header) {
        throw new CorruptionError(name, SEGMENT_MAGIC.length, "missing header");
      }
      let maxIndex = 0;
      for (const rec of scan.records) {
        switch (rec.type) {
          case RecordType.Header:
            if (snap === null || rec.meta.index > snap.index) {
              snap = rec.meta;
              ents = ents.filter((e) => e.index > rec.meta.index);
            }
            hs = rec.hs;
            break;
          case RecordType.HardState:
            hs = rec.hs;
            break;
          case RecordType.Snapshot:
            snap = rec.meta;
            ents = rec.keep ? ents.filter((e) => e.index > rec.meta.index) : [];
            if (!rec.keep) {
              for (const s of this.#segments) s.maxIndex = 0;
              maxIndex = 0;
            }
            break;
          case RecordType.Entry: {
            const e = rec.entry;
            maxIndex = Math.max(maxIndex, e.index);
            ents = appendReplay(ents, e);
            break;
          }
        }
      }
      this.#segments.push({ seq: seqs[si], maxIndex });
    }
    const s = snap!;
    ents = ents.filter((e) => e.index > s.index);
    if (ents.length > 0 && ents[0].index !== s.index + 1) {
      throw new CorruptionError(
        segName(seqs[0]),
        0,
        "gap",
        `snapshot ${s.index}, first entry ${ents[0].index}`,
      );
    }
    this.core.snap = cloneMeta(s);
    this.core.ents = ents;
    this.core.hs = hs;
    return version;
  }

  /**
   * Creates segment `seq` atomically and makes it active; its header holds `snap` and `hs`
   * (what is durable; default: the current state).
   */
  #createSegment(seq: number, snap = this.core.snap, hs = this.core.hs): void {
    const batch = encodeBatch((w) => writeHeaderRecord(w, snap, hs));
    const bytes = new Uint8Array(SEGMENT_MAGIC.length + batch.length);
    bytes.set(SEGMENT_MAGIC);
    bytes.set(batch, SEGMENT_MAGIC.length);
    writeFileAtomic(this.#env, this.#dir, segName(seq), bytes);
    this.#file?.close();
    this.#file = this.#env.openSync(join(this.#dir, segName(seq)), { write: true, append: true });
    this.#fileSize = bytes.length;
    this.#segments.push({ seq, maxIndex: 0 });
  }

  /** See {@link LogStore.snapshot}. Reads the data from its file. */
  snapshot(): Snapshot {
    const meta = cloneMeta(this.core.snap);
    const pending = this.#pendingSnap ?? this.#writingSnap;
    if (pending && pending.meta.index === meta.index) return { meta, data: pending.data };
    if (meta.index === 0) return { meta, data: new Uint8Array(0) };
    const name = snapName(meta.index);
    const buf = readFileIfExists(this.#env, join(this.#dir, name));
    if (!buf) throw new CorruptionError(name, 0, "missing snapshot");
    return { meta, data: decodeSnapshotFile(name, buf).data };
  }

  /** See {@link LogStore.append}. */
  append(entries: Entry[]): void {
    this.#check();
    const added = this.core.append(entries);
    if (added.length === 0) return;
    for (const e of added) writeEntryRecord(this.#buf, e);
    this.#bufMaxIndex = Math.max(this.#bufMaxIndex, added[added.length - 1].index);
  }

  /** See {@link LogStore.setHardState}. Only the latest hard state before a sync is written. */
  setHardState(hs: HardState): void {
    this.#check();
    const cur = this.core.hs;
    if (cur.term === hs.term && cur.vote === hs.vote && cur.commit === hs.commit) return;
    this.core.hs = { term: hs.term, vote: hs.vote, commit: hs.commit };
    this.#hsDirty = true;
  }

  /** See {@link LogStore.applySnapshot}. */
  applySnapshot(snap: Snapshot): void {
    this.#check();
    if (snap.meta.index <= this.core.snap.index) return;
    const keep = this.core.install(snap.meta)!;
    writeSnapshotRecord(this.#buf, this.core.snap, keep);
    if (!keep) {
      for (const s of this.#segments) s.maxIndex = 0;
      this.#bufMaxIndex = 0;
    }
    // A snapshot still pending is superseded: its record is in the same batch as this one's.
    this.#pendingSnap = { meta: cloneMeta(this.core.snap), data: snap.data };
  }

  /** See {@link LogStore.createSnapshot}. */
  createSnapshot(snap: Snapshot): void {
    this.#check();
    if (snap.meta.index <= this.core.snap.index) return;
    this.core.compact(snap.meta);
    writeSnapshotRecord(this.#buf, this.core.snap, true);
    // A snapshot still pending is superseded: its record is in the same batch as this one's.
    this.#pendingSnap = { meta: cloneMeta(this.core.snap), data: snap.data };
  }

  /**
   * Makes everything recorded so far durable: one write, then one fdatasync off the event loop.
   * Records buffered while it runs go into the next batch.
   */
  sync(): Promise<void> {
    return this.#enqueueSync();
  }

  #enqueueSync(): Promise<void> {
    const run = this.#syncTail.then(() => this.#syncBatch());
    this.#syncTail = run.catch(() => {});
    return run;
  }

  /**
   * Writes and syncs what is buffered. Any failure fails the store for good
   * ({@link StorageIoError}): what reached the disk is unknown, and a failed fsync must not be
   * retried (the kernel may have dropped the pages it could not write, a second fsync would
   * succeed without them).
   */
  async #syncBatch(): Promise<void> {
    this.#check();
    try {
      await this.#syncUnchecked();
    } catch (e) {
      this.#failed ??= e instanceof StorageIoError
        ? e
        : new StorageIoError("segment log", "sync", e);
      this.#logger.error("segment log: I/O failed; the log refuses every further write", {
        err: String(e),
      });
      throw this.#failed;
    }
  }

  async #syncUnchecked(): Promise<void> {
    const env = this.#env;
    // What this batch makes durable is fixed here, synchronously: records added while its
    // fdatasyncs run belong to the next batch.
    const snap = this.#pendingSnap;
    this.#pendingSnap = null;
    if (this.#hsDirty) {
      writeHardStateRecord(this.#buf, this.core.hs);
      this.#hsDirty = false;
    }
    const durableSnap = cloneMeta(this.core.snap);
    const durableHs = { ...this.core.hs };
    const seg = this.#segments[this.#segments.length - 1];
    const file = this.#file!;
    let batch: Uint8Array | null = null;
    if (this.#buf.length > BATCH_HEADER_SIZE) {
      sealBatch(this.#buf, 0);
      seg.maxIndex = Math.max(seg.maxIndex, this.#bufMaxIndex);
      if (snap) {
        // Written once the snapshot file it refers to is durable.
        batch = this.#buf.view().slice();
      } else {
        // A failed write leaves the store failed: nothing is ever written after a partial batch.
        writeFully(file, this.#buf.view());
        this.#fileSize += this.#buf.length;
        batch = new Uint8Array(0);
      }
      this.#buf.reset();
      beginBatch(this.#buf);
      this.#bufMaxIndex = 0;
    }
    this.#writingSnap = snap;
    try {
      if (snap) await this.#writeSnapshotFile(snap);
      if (batch) {
        if (batch.length > 0) {
          writeFully(file, batch);
          this.#fileSize += batch.length;
        }
        await file.syncData();
        this.#check();
        this.#syncs++;
      }
    } finally {
      this.#writingSnap = null;
    }
    if (snap) {
      for (const d of env.readDirSync(this.#dir)) {
        const name = d.name;
        // Older snapshots only: a newer one taken meanwhile is written by the next sync.
        const m = SNAP_RE.exec(name);
        if (m && Number(m[1]) < snap.meta.index) removeIfExists(env, join(this.#dir, name));
      }
    }
    if (this.#fileSize >= this.#segmentBytes) {
      this.#createSegment(
        this.#segments[this.#segments.length - 1].seq + 1,
        durableSnap,
        durableHs,
      );
    }
    if (snap) this.#dropCoveredSegments(snap.meta.index);
  }

  /**
   * Writes a snapshot file atomically and durably (tmp, fdatasync off the event loop, rename,
   * directory fsync) before the batch that refers to it.
   */
  async #writeSnapshotFile(snap: Snapshot): Promise<void> {
    const env = this.#env;
    const name = snapName(snap.meta.index);
    const tmp = join(this.#dir, `${name}.tmp`);
    const f = env.openSync(tmp, { write: true, create: true, truncate: true });
    try {
      // In slices, the checksum extended over each: a large snapshot is written (to the page
      // cache) without holding the event loop; the fdatasync runs off it.
      const pacer = new Pacer();
      writeFully(f, encodeSnapshotHead(snap));
      const data = snap.data;
      let crc = 0;
      for (let at = 0; at < data.length; at += SNAP_SLICE) {
        const slice = data.subarray(at, Math.min(data.length, at + SNAP_SLICE));
        crc = crc32c(slice, crc);
        writeFully(f, slice);
        await pacer.pace();
        this.#check();
      }
      const tail = new Uint8Array(4);
      new DataView(tail.buffer).setUint32(0, crc, true);
      writeFully(f, tail);
      await f.syncData();
    } finally {
      f.close();
    }
    this.#check();
    env.renameSync(tmp, join(this.#dir, name));
    fsyncDir(this.#dir, env);
  }

  /** Deletes the oldest non-active segments whose entries are all covered by snapshot `index`. */
  #dropCoveredSegments(index: number): void {
    let dropped = 0;
    while (
      this.#segments.length > 1 && this.#segments[0].maxIndex <= index
    ) {
      const s = this.#segments.shift()!;
      removeIfExists(this.#env, join(this.#dir, segName(s.seq)));
      dropped++;
    }
    if (dropped > 0) fsyncDir(this.#dir, this.#env);
  }

  /** Counters for monitoring. */
  stats(): Record<string, unknown> {
    return {
      segments: this.#segments.length,
      activeSegmentBytes: this.#fileSize,
      syncs: this.#syncs,
      firstIndex: this.firstIndex(),
      lastIndex: this.lastIndex(),
    };
  }

  /** Syncs and closes the active segment. */
  async close(): Promise<void> {
    if (this.#closed) return;
    try {
      if (!this.#failed) await this.#enqueueSync();
      else await this.#syncTail;
    } finally {
      if (!this.#closed) {
        this.#closed = true;
        this.#file?.close();
        this.#file = null;
        this.#lock?.release();
        this.#lock = null;
      }
    }
  }

  #check(): void {
    if (this.#failed) throw this.#failed;
    if (this.#closed) throw new StoreClosedError("segment log store");
  }

  /** The I/O error that failed the store, if one did. */
  get failure(): StorageIoError | null {
    return this.#failed;
  }
}

/** Replay rule: an entry replaces the suffix from its index; a gap restarts the window. */
function appendReplay(ents: Entry[], e: Entry): Entry[] {
  if (ents.length === 0) return [e];
  const start = ents[0].index;
  if (e.index < start || e.index > start + ents.length) return [e];
  ents.length = e.index - start;
  ents.push(e);
  return ents;
}

/** Exposed for tests: the record types a segment holds. */
export type { LogRecord };
