import assert from "node:assert/strict";
import { bloomHash, bloomMayContain, buildBloom } from "./bloom.ts";
import { b } from "./testutil_test.ts";

Deno.test("bloom filter has no false negatives and about 1% false positives at 10 bits/key", () => {
  const n = 10000;
  const hashes = new Uint32Array(n);
  for (let i = 0; i < n; i++) hashes[i] = bloomHash(b("key" + i));
  const f = buildBloom(hashes, n, 10);
  assert.ok(f.length >= n * 10 / 8);
  for (let i = 0; i < n; i++) assert.ok(bloomMayContain(f, bloomHash(b("key" + i))));
  let fp = 0;
  for (let i = 0; i < n; i++) if (bloomMayContain(f, bloomHash(b("other" + i)))) fp++;
  assert.ok(fp / n < 0.03, `false positive rate ${fp / n}`);
});

Deno.test("empty or unknown filters match everything", () => {
  assert.ok(bloomMayContain(new Uint8Array(0), 123));
  const f = new Uint8Array(10);
  f[9] = 31;
  assert.ok(bloomMayContain(f, 5));
});

Deno.test("bloom hash depends on every byte", () => {
  const h = new Set<number>();
  for (let len = 0; len < 9; len++) h.add(bloomHash(new Uint8Array(len).fill(1)));
  assert.equal(h.size, 9);
});
