import assert from "node:assert/strict";
import {
  ByteWriter,
  compareBytes,
  getVarint,
  hasPrefix,
  prefixSuccessor,
  putVarint,
  readU64,
  varintLength,
  varintOut,
  writeU64,
} from "./bytes.ts";
import { b } from "./testutil_test.ts";

Deno.test("compareBytes orders bytes unsigned and shorter prefixes first", () => {
  assert.ok(compareBytes(b("a"), b("b")) < 0);
  assert.ok(compareBytes(b("ab"), b("a")) > 0);
  assert.equal(compareBytes(b("abc"), b("abc")), 0);
  assert.ok(compareBytes(new Uint8Array([0x7f]), new Uint8Array([0x80])) < 0);
});

Deno.test("varints round-trip up to 2^53", () => {
  const buf = new Uint8Array(10);
  for (const v of [0, 1, 127, 128, 300, 2 ** 31, 2 ** 32 + 5, Number.MAX_SAFE_INTEGER]) {
    const end = putVarint(buf, 0, v);
    assert.equal(end, varintLength(v));
    assert.ok(getVarint(buf, 0, end));
    assert.equal(varintOut.value, v);
    assert.equal(varintOut.offset, end);
    assert.equal(getVarint(buf, 0, end - 1), false, "truncated varint is rejected");
  }
});

Deno.test("u64 helpers round-trip", () => {
  const buf = new Uint8Array(8);
  for (const v of [0, 1, 2 ** 32, 2 ** 40 + 123, Number.MAX_SAFE_INTEGER]) {
    writeU64(buf, 0, v);
    assert.equal(readU64(buf, 0), v);
  }
});

Deno.test("prefix helpers find the successor of a prefix", () => {
  assert.deepEqual(prefixSuccessor(b("ab")), b("ac"));
  assert.deepEqual(prefixSuccessor(new Uint8Array([1, 0xff])), new Uint8Array([2]));
  assert.equal(prefixSuccessor(new Uint8Array([0xff, 0xff])), undefined);
  assert.ok(hasPrefix(b("abc"), b("ab")));
  assert.ok(!hasPrefix(b("a"), b("ab")));
});

Deno.test("ByteWriter grows and keeps contents", () => {
  const w = new ByteWriter(2);
  for (let i = 0; i < 100; i++) w.u8(i);
  w.lenBytes(b("xyz"));
  const out = w.toBytes();
  assert.equal(out.length, 104);
  assert.equal(out[99], 99);
  assert.equal(out[100], 3);
});
