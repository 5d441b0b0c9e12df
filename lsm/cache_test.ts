import assert from "node:assert/strict";
import { BlockCache, POOL_MAX } from "./cache.ts";

Deno.test("block cache evicts least recently used blocks beyond its byte capacity", () => {
  const c = new BlockCache(300);
  c.set(BlockCache.key(1, 0), new Uint8Array(100));
  c.set(BlockCache.key(1, 100), new Uint8Array(100));
  c.set(BlockCache.key(2, 0), new Uint8Array(100));
  assert.ok(c.get(BlockCache.key(1, 0)));
  c.set(BlockCache.key(3, 0), new Uint8Array(100));
  assert.equal(c.get(BlockCache.key(1, 100)), undefined, "LRU entry evicted");
  assert.ok(c.get(BlockCache.key(1, 0)));
  assert.ok(c.size <= 300);
  assert.equal(c.hits, 2);
  assert.equal(c.misses, 1);
  c.evictFile(1);
  assert.equal(c.get(BlockCache.key(1, 0)), undefined);
  assert.ok(c.get(BlockCache.key(2, 0)));
  c.set(BlockCache.key(4, 0), new Uint8Array(1000));
  assert.equal(c.get(BlockCache.key(4, 0)), undefined, "blocks above capacity are not cached");
});

Deno.test("block cache charges a block the whole buffer it lives in and recycles pool buffers", () => {
  const c = new BlockCache(4000, 1000);
  // A 100-byte block read into a 1000-byte pool buffer costs 1000 bytes of memory.
  c.set(BlockCache.key(1, 0), new Uint8Array(new ArrayBuffer(1000), 0, 100));
  assert.equal(c.size, 1000);
  c.set(BlockCache.key(1, 1), new Uint8Array(new ArrayBuffer(1000), 0, 100));
  c.set(BlockCache.key(1, 2), new Uint8Array(new ArrayBuffer(1000), 0, 100));
  c.set(BlockCache.key(1, 3), new Uint8Array(new ArrayBuffer(1000), 0, 100));
  assert.equal(c.size, 4000);
  c.set(BlockCache.key(1, 4), new Uint8Array(new ArrayBuffer(1000), 0, 100));
  assert.equal(c.size, 4000, "one block evicted to stay within the budget");
  assert.equal(c.takeBuffer()?.byteLength, 1000, "the evicted block's buffer is reused");
  assert.equal(c.takeBuffer(), undefined);
});

Deno.test("block cache recycles evicted buffers within its budget and frees everything at release", () => {
  const c = new BlockCache(4 * 1000, 1000);
  const blocks: Uint8Array[] = [];
  for (let i = 0; i < 4; i++) {
    blocks.push(new Uint8Array(new ArrayBuffer(1000), 0, 100));
    c.set(BlockCache.key(1, i), blocks[i]);
  }
  const odd = new Uint8Array(new ArrayBuffer(3000), 0, 2500); // not a pool buffer's size
  c.set(BlockCache.key(2, 0), odd); // evicts blocks 0..2: recycled
  assert.equal(c.size, 4000);
  assert.equal(c.pooledBytes, 3000, "evicted pool-size buffers are recycled");
  c.evictFile(2);
  assert.equal(c.pooledBytes, 3000, "a buffer the pool cannot take is left to the collector");
  // Deleting a file's blocks turns them into read buffers, up to the budget plus POOL_MAX.
  const n = POOL_MAX + 20;
  const big = new BlockCache(1000 * n, 1000);
  for (let i = 0; i < n; i++) big.set(BlockCache.key(3, i), new Uint8Array(new ArrayBuffer(1000)));
  for (let i = 0; i < POOL_MAX; i++) big.set(BlockCache.key(4, i), new Uint8Array(1000));
  assert.equal(big.size, 1000 * n, "the cache stays within its budget");
  big.evictFile(3);
  big.evictFile(4);
  assert.equal(big.size, 0);
  assert.equal(big.pooledBytes, 1000 * (n + POOL_MAX), "budget plus POOL_MAX buffers at most");
  big.release();
  assert.equal(big.pooledBytes, 0);
  c.release();
  assert.equal(c.size, 0);
  assert.equal(c.get(BlockCache.key(1, 3)), undefined);
  assert.equal(blocks[3].buffer.byteLength, 0, "a cached block's memory is freed");
  assert.equal(blocks[0].buffer.byteLength, 0, "a recycled pool buffer is freed");
  assert.equal(c.takeBuffer(), undefined);
});
