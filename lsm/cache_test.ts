import assert from "node:assert/strict";
import { BlockCache } from "./cache.ts";

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

Deno.test("block cache release frees unpinned blocks and pool buffers at once, never pinned ones", () => {
  const c = new BlockCache(3000, 1000);
  const plain = new Uint8Array(new ArrayBuffer(1000), 0, 100);
  const pinned = new Uint8Array(new ArrayBuffer(1000), 0, 100);
  const evicted = new Uint8Array(new ArrayBuffer(1000), 0, 100);
  c.set(BlockCache.key(1, 0), evicted);
  c.set(BlockCache.key(1, 1), plain);
  c.set(BlockCache.key(1, 2), pinned);
  c.pin(pinned);
  c.set(BlockCache.key(1, 3), new Uint8Array(new ArrayBuffer(1000), 0, 100)); // evicts `evicted`
  c.release();
  assert.equal(c.size, 0);
  assert.equal(c.get(BlockCache.key(1, 1)), undefined);
  assert.equal(plain.buffer.byteLength, 0, "an unpinned block's memory is freed");
  assert.equal(evicted.buffer.byteLength, 0, "a recycled pool buffer is freed");
  assert.equal(pinned.length, 100, "a block an iterator may hold stays readable");
  assert.equal(c.takeBuffer(), undefined);
});
