/**
 * SSTable writer. Output is written under a temporary name; `finish()`
 * appends filter, index and footer, fsyncs and renames to the final name
 * (the caller fsyncs the directory once for a group of files).
 * @module
 */
import { ByteWriter, putVarint } from "./bytes.ts";
import { BlockBuilder } from "./block_builder.ts";
import { bloomHash, buildBloom } from "./bloom.ts";
import { denoEnv, type Env, type EnvFile } from "./env.ts";
import { makeInternalKey, TRAILER } from "./internal_key.ts";
import {
  BLOCK_TRAILER,
  encodeFooter,
  RESTART_INTERVAL,
  TABLE_VERSION,
  writeBlockTrailer,
} from "./sstable_format.ts";

/** Table-level metadata returned by {@linkcode TableWriter.finish}. */
export interface TableInfo {
  size: number;
  smallest: Uint8Array;
  largest: Uint8Array;
  entries: number;
}

/** Options for building a table. */
export interface TableWriterOptions {
  blockBytes: number;
  bloomBitsPerKey: number;
  /** Called before each write/fsync of table data (lets compaction yield I/O to foreground syncs). */
  beforeIo?: () => void;
}

const FLUSH_AT = 256 * 1024;

/** Streams sorted internal entries into a new table file. */
export class TableWriter {
  private file: EnvFile;
  private readonly tmpPath: string;
  private data = new BlockBuilder(RESTART_INTERVAL);
  private index = new BlockBuilder(1);
  private out = new ByteWriter(FLUSH_AT + 65536);
  private offset = 0;
  private hashes = new Uint32Array(1024);
  private nHashes = 0;
  private lastUser = new Uint8Array(64);
  private lastUserLen = -1;
  private smallest: Uint8Array | undefined;
  private handle = new Uint8Array(20);
  /** Entries added. */
  entries = 0;

  constructor(
    readonly path: string,
    private readonly opts: TableWriterOptions,
    private readonly env: Env = denoEnv,
  ) {
    this.tmpPath = path + ".tmp";
    this.file = env.openSync(this.tmpPath, { write: true, create: true, truncate: true });
  }

  /** Bytes written so far plus the open block (a size estimate). */
  get approximateSize(): number {
    return this.offset + this.out.len + this.data.size;
  }

  /** Appends an entry; internal keys must strictly ascend. */
  add(userKey: Uint8Array, seq: number, kind: number, value: Uint8Array): void {
    if (this.smallest === undefined) this.smallest = makeInternalKey(userKey, seq, kind);
    if (this.opts.bloomBitsPerKey > 0 && !this.sameUser(userKey)) {
      if (this.nHashes === this.hashes.length) {
        const nh = new Uint32Array(this.hashes.length * 2);
        nh.set(this.hashes);
        this.hashes = nh;
      }
      this.hashes[this.nHashes++] = bloomHash(userKey);
      if (userKey.length > this.lastUser.length) this.lastUser = new Uint8Array(userKey.length * 2);
      this.lastUser.set(userKey);
      this.lastUserLen = userKey.length;
    }
    this.data.add(userKey, seq, kind, value);
    this.entries++;
    if (this.data.size >= this.opts.blockBytes) this.finishDataBlock();
  }

  private sameUser(k: Uint8Array): boolean {
    if (k.length !== this.lastUserLen) return false;
    const l = this.lastUser;
    for (let i = 0; i < k.length; i++) if (l[i] !== k[i]) return false;
    return true;
  }

  private writeBlock(block: Uint8Array): [number, number] {
    const o = this.out;
    const off = this.offset + o.len;
    o.reserve(block.length + BLOCK_TRAILER);
    o.buf.set(block, o.len);
    writeBlockTrailer(block, o.buf, o.len + block.length);
    o.len += block.length + BLOCK_TRAILER;
    if (o.len >= FLUSH_AT) this.flushOut();
    return [off, block.length];
  }

  private flushOut(): void {
    this.opts.beforeIo?.();
    const o = this.out;
    let w = 0;
    while (w < o.len) w += this.file.writeSync(o.buf.subarray(w, o.len));
    this.offset += o.len;
    o.reset();
  }

  private finishDataBlock(): void {
    if (this.data.entries === 0) return;
    const lastKey = this.data.lastKey().slice();
    const [off, size] = this.writeBlock(this.data.finish());
    this.data.reset();
    let p = putVarint(this.handle, 0, off);
    p = putVarint(this.handle, p, size);
    this.index.addRaw(lastKey, this.handle.subarray(0, p));
    this.largestKey = lastKey;
  }
  private largestKey: Uint8Array | undefined;

  /** Completes the file: filter, index, footer, fsync, rename. */
  finish(): TableInfo {
    this.finishDataBlock();
    const filter = this.opts.bloomBitsPerKey > 0
      ? buildBloom(this.hashes, this.nHashes, this.opts.bloomBitsPerKey)
      : new Uint8Array(0);
    const [filterOffset, filterSize] = this.writeBlock(filter);
    const [indexOffset, indexSize] = this.writeBlock(this.index.finish());
    this.out.bytes(
      encodeFooter({ indexOffset, indexSize, filterOffset, filterSize, version: TABLE_VERSION }),
    );
    this.flushOut();
    this.opts.beforeIo?.();
    this.file.syncDataSync();
    this.file.close();
    this.env.renameSync(this.tmpPath, this.path);
    if (this.smallest === undefined || this.largestKey === undefined) {
      throw new Error("empty table");
    }
    if (this.largestKey.length < TRAILER) throw new Error("bad key");
    return {
      size: this.offset,
      smallest: this.smallest,
      largest: this.largestKey,
      entries: this.entries,
    };
  }

  /** Discards the partial file. */
  abandon(): void {
    try {
      this.file.close();
    } catch { /* already closed */ }
    try {
      this.env.removeSync(this.tmpPath);
    } catch { /* ignore */ }
  }
}
