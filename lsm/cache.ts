/**
 * LRU cache of data blocks bounded in bytes. Keys are numbers
 * (file number × 2^32 + block offset); a Map keeps recency order.
 *
 * A block is charged what its buffer holds (`buffer.byteLength`), so the cache
 * uses what its budget says. Nothing outside the cache keeps a cached block
 * (point lookups copy values out, iterators copy a cached block into their own
 * buffer), so every evicted block's buffer can be recycled as a read buffer
 * (allocating buffers costs as much as the read): the pool of recycled buffers
 * takes them as long as cached plus pooled bytes stay within the budget plus
 * {@linkcode POOL_MAX} buffers. A compaction that deletes tables thus turns
 * their cached blocks into the read buffers of the next misses, instead of dead
 * memory resident until the next full garbage collection. (Freeing evicted
 * buffers at once instead made malloc return and re-fault pages: 64 sync writers
 * ran ~35% slower right after a read phase.) `release` frees everything at once.
 * @module
 */

/** Recycled read buffers the pool may hold beyond the cache's budget. */
export const POOL_MAX = 64;

/** Byte-bounded LRU block cache. */
export class BlockCache {
  private map = new Map<number, Uint8Array>();
  private bytes = 0;
  private readonly pool: ArrayBuffer[] = [];
  /** Lookup hits. */
  hits = 0;
  /** Lookup misses. */
  misses = 0;

  /**
   * @param capacity budget in bytes
   * @param bufferBytes size of the recycled read buffers: blocks up to this size
   *   (with their trailer) are read into one (default: a 4 KiB block plus one entry)
   */
  constructor(readonly capacity: number, readonly bufferBytes = 4096 + 512) {}

  /** Cache key of a block. */
  static key(fileNumber: number, offset: number): number {
    return fileNumber * 4294967296 + offset;
  }

  /**
   * Returns the cached block and marks it recently used. The block stays valid until the next
   * call that inserts or evicts (`set`, `evictFile`, `release`): a caller copies what it keeps.
   */
  get(key: number): Uint8Array | undefined {
    const v = this.map.get(key);
    if (v === undefined) {
      this.misses++;
      return undefined;
    }
    this.hits++;
    this.map.delete(key);
    this.map.set(key, v);
    return v;
  }

  /**
   * Inserts a block, evicting least recently used blocks beyond capacity. The cache owns the
   * block's buffer from then on (it is recycled or freed at eviction).
   */
  set(key: number, block: Uint8Array): void {
    if (block.buffer.byteLength > this.capacity) return;
    const old = this.map.get(key);
    if (old !== undefined) {
      this.bytes -= old.buffer.byteLength;
      this.map.delete(key);
      if (old.buffer !== block.buffer) this.retire(old);
    }
    this.map.set(key, block);
    this.bytes += block.buffer.byteLength;
    if (this.bytes > this.capacity) {
      for (const [k, v] of this.map) {
        this.map.delete(k);
        this.bytes -= v.buffer.byteLength;
        this.retire(v);
        if (this.bytes <= this.capacity) break;
      }
    }
  }

  /** An evicted block's buffer: kept for the next read (within the budget), else dropped. */
  private retire(v: Uint8Array): void {
    const ab = v.buffer as ArrayBuffer;
    const n = this.bufferBytes;
    if (ab.byteLength !== n) return;
    if (this.bytes + (this.pool.length + 1) * n <= this.capacity + POOL_MAX * n) this.pool.push(ab);
  }

  /** A recycled buffer of {@linkcode BlockCache.bufferBytes} bytes, if any. */
  takeBuffer(): ArrayBuffer | undefined {
    return this.pool.pop();
  }

  /** Drops every block of a file (after it is deleted). */
  evictFile(fileNumber: number): void {
    const lo = fileNumber * 4294967296;
    const hi = lo + 4294967296;
    for (const [k, v] of this.map) {
      if (k >= lo && k < hi) {
        this.map.delete(k);
        this.bytes -= v.buffer.byteLength;
        this.retire(v);
      }
    }
  }

  /**
   * Empties the cache and frees its buffers at once (cached blocks, recycled buffers), as
   * LevelDB frees its cache at close, rather than leaving them resident until the garbage
   * collector finds them. Used by `LsmDb.close`.
   */
  release(): void {
    for (const v of this.map.values()) free(v.buffer as ArrayBuffer);
    for (const ab of this.pool) free(ab);
    this.map.clear();
    this.pool.length = 0;
    this.bytes = 0;
  }

  /** Bytes currently cached. */
  get size(): number {
    return this.bytes;
  }

  /** Bytes of recycled read buffers held for the next misses. */
  get pooledBytes(): number {
    return this.pool.length * this.bufferBytes;
  }
}

/** Frees an ArrayBuffer's memory now: a transfer detaches it and drops its backing store. */
function free(ab: ArrayBuffer): void {
  if (!ab.detached) ab.transfer(0);
}
