/** storage/bytes.ts: the latin1 map-key conversion is order-preserving and round-trips; the Slab allocator. */
import assert from "node:assert/strict";
import { bytesToLatin1, compareBytes, latin1ToBytes, Slab } from "./bytes.ts";

Deno.test("bytesToLatin1 maps every byte to one code unit, round-trips, at chunk boundaries too", () => {
  for (const n of [0, 1, 17, 4095, 4096, 4097, 10_000]) {
    const b = new Uint8Array(n).map((_, i) => (i * 31 + 7) & 0xff);
    const s = bytesToLatin1(b);
    assert.equal(s.length, n);
    for (let i = 0; i < n; i += 997) assert.equal(s.charCodeAt(i), b[i]);
    assert.deepEqual(latin1ToBytes(s), b);
  }
  // A subarray converts only its own bytes.
  const whole = new Uint8Array([9, 1, 2, 3, 9]);
  assert.equal(bytesToLatin1(whole.subarray(1, 4)), "\x01\x02\x03");
});

Deno.test("bytesToLatin1 keeps the byte order (string comparison = compareBytes)", () => {
  const keys = [[], [0], [0, 0], [0, 255], [1], [127], [128], [255], [255, 0]].map((a) =>
    new Uint8Array(a)
  );
  for (const x of keys) {
    for (const y of keys) {
      const sx = bytesToLatin1(x), sy = bytesToLatin1(y);
      assert.equal(Math.sign(sx < sy ? -1 : sx > sy ? 1 : 0), Math.sign(compareBytes(x, y)));
    }
  }
});

Deno.test("Slab: views of one chunk that never overlap, arrays of their own above the bound, reset reuses the chunk", () => {
  const slab = new Slab(64, 16);
  const views = [3, 16, 1, 10, 16, 7, 16].map((n, i) => slab.alloc(n).fill(i + 1));
  views.forEach((v, i) => assert.ok(v.every((x) => x === i + 1), `view ${i}`));
  // 3+16+1+10+16 = 46 fit the first chunk; 7 more fit too (53); 16 more do not: a new chunk.
  assert.equal(views[0].buffer, views[5].buffer);
  assert.notEqual(views[5].buffer, views[6].buffer);
  const big = slab.alloc(17);
  assert.equal(big.byteOffset, 0);
  assert.equal(big.buffer.byteLength, 17);
  slab.reset();
  const again = slab.alloc(4);
  assert.equal(again.buffer, views[6].buffer);
  assert.equal(again.byteOffset, 0);
});
