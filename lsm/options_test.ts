import assert from "node:assert/strict";
import { InvalidArgumentError } from "./errors.ts";
import { DEFAULT_OPTIONS, resolveOptions } from "./options.ts";
import { copyOut } from "./slab.ts";

Deno.test("options default every field and reject bad values", () => {
  assert.deepEqual(resolveOptions(), DEFAULT_OPTIONS);
  assert.equal(resolveOptions({ memtableBytes: 4096 }).memtableBytes, 4096);
  assert.equal(resolveOptions({ sync: undefined }).sync, false);
  for (
    const bad of [{ memtableBytes: 0 }, { blockBytes: 1.5 }, {
      l0StopTrigger: 2,
      l0CompactionTrigger: 4,
    }, { sync: 1 }]
  ) {
    // deno-lint-ignore no-explicit-any
    assert.throws(() => resolveOptions(bad as any), InvalidArgumentError);
  }
});

Deno.test("copied-out bytes are private copies even when carved from a shared slab", () => {
  const src = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]);
  const a = copyOut(src, 2, 3);
  const big = copyOut(new Uint8Array(5000).fill(9), 0, 5000);
  src[2] = 99;
  assert.deepEqual([...a], [3, 4, 5]);
  assert.equal(big.length, 5000);
  assert.equal(big[4999], 9);
  const c = copyOut(src, 0, 8);
  assert.notEqual(c.buffer, src.buffer);
});
