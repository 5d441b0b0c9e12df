/**
 * SSTable reader: validates the footer, keeps the index and bloom filter in
 * memory, reads data blocks through the shared LRU {@linkcode BlockCache} and
 * verifies every block checksum when it is read from disk.
 * @module
 */
import { compareBytes, getVarint, varintOut } from "./bytes.ts";
import { BlockIterator } from "./block_reader.ts";
import { bloomHash, bloomMayContain } from "./bloom.ts";
import type { BlockCache } from "./cache.ts";
import { denoEnv, type Env, type EnvFile } from "./env.ts";
import { CorruptionError } from "./errors.ts";
import { compareInternalTo, KIND_PUT } from "./internal_key.ts";
import { TwoLevelIterator } from "./two_level_iterator.ts";
import { copyBytes } from "./slab.ts";
import { BLOCK_TRAILER, checkBlockTrailer, decodeFooter, FOOTER_SIZE } from "./sstable_format.ts";

/** Sentinel returned by lookups that found a tombstone. */
export const TOMBSTONE: Uint8Array = new Uint8Array(0);

/** An open table file. */
export class TableReader {
  /**
   * The index's last-key-of-block keys, packed into one buffer (key `i` is
   * `indexKeyBytes[keyOffs[i], keyOffs[i + 1])`): one allocation per table instead of one per block.
   */
  private readonly indexKeyBytes: Uint8Array;
  private readonly keyOffs: number[] = [0];
  private readonly blockOffs: number[] = [];
  private readonly blockSizes: number[] = [];
  private readonly filter: Uint8Array;
  private closed = false;

  private constructor(
    private readonly file: EnvFile,
    readonly path: string,
    readonly number: number,
    readonly fileSize: number,
    private readonly cache: BlockCache | undefined,
    filter: Uint8Array,
    index: Uint8Array,
    indexOffset: number,
  ) {
    this.filter = filter;
    // The index block has a restart per entry (full keys), so its keys fit in its own size.
    let keys = new Uint8Array(index.length);
    let used = 0;
    const it = new BlockIterator(index, path, indexOffset);
    for (it.seekToFirst(); it.valid(); it.next()) {
      const v = it.value();
      if (!getVarint(v, 0, v.length)) {
        throw new CorruptionError(path, indexOffset, "bad index entry");
      }
      const off = varintOut.value;
      if (!getVarint(v, varintOut.offset, v.length)) {
        throw new CorruptionError(path, indexOffset, "bad index entry");
      }
      const size = varintOut.value;
      if (off + size + BLOCK_TRAILER > indexOffset) {
        throw new CorruptionError(path, indexOffset, "index entry points past data");
      }
      const k = it.internalKey();
      if (used + k.length > keys.length) { // prefix-shared index entries: grow
        const nk = new Uint8Array((used + k.length) * 2);
        nk.set(keys.subarray(0, used));
        keys = nk;
      }
      keys.set(k, used);
      used += k.length;
      this.keyOffs.push(used);
      this.blockOffs.push(off);
      this.blockSizes.push(size);
    }
    this.indexKeyBytes = keys.slice(0, used);
  }

  /**
   * Opens and validates a table file. Throws CorruptionError on damage. `withFilter` false
   * (a merge's input: it only iterates) skips loading the bloom filter.
   */
  static open(
    path: string,
    number: number,
    cache?: BlockCache,
    env: Env = denoEnv,
    withFilter = true,
  ): TableReader {
    let file: EnvFile;
    try {
      file = env.openSync(path, { read: true });
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) {
        throw new CorruptionError(path, 0, "table file missing");
      }
      throw e;
    }
    try {
      const size = file.sizeSync();
      if (size < FOOTER_SIZE) throw new CorruptionError(path, 0, "file shorter than footer");
      const fb = readAt(file, size - FOOTER_SIZE, FOOTER_SIZE, path);
      const f = decodeFooter(fb);
      if (typeof f === "string") throw new CorruptionError(path, size - FOOTER_SIZE, f);
      const metaEnd = size - FOOTER_SIZE;
      if (
        f.indexOffset + f.indexSize + BLOCK_TRAILER > metaEnd ||
        f.filterOffset + f.filterSize + BLOCK_TRAILER > metaEnd
      ) {
        throw new CorruptionError(path, size - FOOTER_SIZE, "footer handles out of range");
      }
      const index = readBlockAt(file, path, f.indexOffset, f.indexSize);
      const filter = withFilter
        ? readBlockAt(file, path, f.filterOffset, f.filterSize)
        : new Uint8Array(0);
      return new TableReader(file, path, number, size, cache, filter, index, f.indexOffset);
    } catch (e) {
      file.close();
      throw e;
    }
  }

  /** Number of data blocks. */
  get blockCount(): number {
    return this.blockOffs.length;
  }

  /** Memory held by index + filter. */
  get metaBytes(): number {
    return this.filter.length + this.indexKeyBytes.length + this.keyOffs.length * 24;
  }

  /** Returns data block `i` (cached). */
  block(i: number): Uint8Array {
    const off = this.blockOffs[i];
    const c = this.cache;
    if (c !== undefined) {
      const key = this.number * 4294967296 + off;
      let b = c.get(key);
      if (b === undefined) {
        // Every read from disk is checksummed (also re-reads after eviction).
        const size = this.blockSizes[i];
        let into: Uint8Array | undefined;
        if (size + BLOCK_TRAILER <= c.bufferBytes) {
          into = new Uint8Array(c.takeBuffer() ?? new ArrayBuffer(c.bufferBytes));
        }
        b = readBlockAt(this.file, this.path, off, size, into);
        c.set(key, b);
      }
      return b;
    }
    // Uncached readers (compaction inputs) have one iterator each: reuse a buffer.
    const need = this.blockSizes[i] + BLOCK_TRAILER;
    if (this.scratch.length < need) this.scratch = new Uint8Array(Math.max(need, 8192));
    return readBlockAt(this.file, this.path, off, this.blockSizes[i], this.scratch);
  }
  private scratch = new Uint8Array(0);
  private getIter: BlockIterator | undefined;

  /**
   * Data block `i` for an iterator, in `buf` (grown when too small; returned as
   * `[block, buffer]`): a copy of the cached block, or else read from disk
   * without filling the cache. A scan neither evicts the point lookups' blocks
   * nor allocates a buffer per block, and it never holds a cached block's
   * buffer, which the cache may then recycle or free as soon as it evicts it.
   */
  iteratorBlock(i: number, buf: Uint8Array): [Uint8Array, Uint8Array] {
    const off = this.blockOffs[i];
    const size = this.blockSizes[i];
    const need = size + BLOCK_TRAILER;
    if (buf.length < need) buf = new Uint8Array(Math.max(need, 8192));
    const c = this.cache;
    if (c !== undefined) {
      const b = c.get(this.number * 4294967296 + off);
      if (b !== undefined) {
        buf.set(b);
        return [buf.subarray(0, b.length), buf];
      }
    }
    return [readBlockAt(this.file, this.path, off, size, buf), buf];
  }

  /** Offset of data block `i`. */
  blockOffset(i: number): number {
    return this.blockOffs[i];
  }

  /** Index of the first block whose last key >= (key, seq); blockCount when none. */
  findBlock(key: Uint8Array, seq: number): number {
    const keys = this.indexKeyBytes;
    const offs = this.keyOffs;
    let lo = 0;
    let hi = offs.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const o = offs[mid];
      if (compareInternalTo(keys, o, offs[mid + 1] - o, key, seq) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** True when the bloom filter says `key` may be present. */
  mayContain(key: Uint8Array): boolean {
    return bloomMayContain(this.filter, bloomHash(key));
  }

  /**
   * Newest entry of `key` with sequence <= seq: its value, {@linkcode TOMBSTONE},
   * or undefined when the table holds no such entry.
   */
  get(key: Uint8Array, seq: number, hash = bloomHash(key)): Uint8Array | undefined {
    if (!bloomMayContain(this.filter, hash)) return undefined;
    const i = this.findBlock(key, seq);
    if (i >= this.blockOffs.length) return undefined;
    // Point lookups are synchronous: one reusable block cursor per table.
    let it = this.getIter;
    if (it === undefined) {
      it = this.getIter = new BlockIterator(this.block(i), this.path, this.blockOffs[i]);
    } else it.reset(this.block(i), this.blockOffs[i]);
    it.seek(key, seq);
    if (!it.valid() || compareBytes(it.userKey(), key) !== 0) return undefined;
    return it.kind() === KIND_PUT ? copyBytes(it.value()) : TOMBSTONE;
  }

  /** A new two-level iterator over the whole table. */
  iterator(): TableIterator {
    return new TableIterator(this);
  }

  /** Closes the file handle. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.file.close();
  }
}

function readAt(
  file: EnvFile,
  off: number,
  len: number,
  path: string,
  into?: Uint8Array,
): Uint8Array {
  const buf = into ? into.subarray(0, len) : new Uint8Array(len);
  const got = file.readAtSync(buf, off);
  if (got < len) throw new CorruptionError(path, off + got, "unexpected end of file");
  return buf;
}

function readBlockAt(
  file: EnvFile,
  path: string,
  off: number,
  size: number,
  into?: Uint8Array,
): Uint8Array {
  const buf = readAt(file, off, size + BLOCK_TRAILER, path, into);
  const err = checkBlockTrailer(buf, size);
  if (err !== "") throw new CorruptionError(path, off, err);
  return buf.subarray(0, size);
}

/** Iterates a table block by block. */
export class TableIterator extends TwoLevelIterator<BlockIterator> {
  /** Iterates the blocks of `t`. */
  constructor(private readonly t: TableReader) {
    super();
  }
  /** The number of data blocks. */
  protected childCount(): number {
    return this.t.blockCount;
  }
  /** This iterator's block buffer and the block it holds (-1: none). */
  private buf: Uint8Array = new Uint8Array(0);
  private bufBlock = -1;
  private bufData: Uint8Array | undefined;
  /** An iterator over data block `i`, in this iterator's buffer (copied from the cache or read). */
  protected openChild(i: number): BlockIterator {
    let data: Uint8Array;
    if (i === this.bufBlock) data = this.bufData!; // reverse scans re-open the same block
    else {
      const [b, buf] = this.t.iteratorBlock(i, this.buf);
      data = b;
      this.buf = buf;
      this.bufBlock = i;
      this.bufData = b;
    }
    return new BlockIterator(data, this.t.path, this.t.blockOffset(i));
  }
  /** The first block that may hold (key, seq). */
  protected findChild(key: Uint8Array, seq: number): number {
    return this.t.findBlock(key, seq);
  }
  /** Full internal key of the current entry (a view). */
  internalKey(): Uint8Array {
    return this.it!.internalKey();
  }
}
